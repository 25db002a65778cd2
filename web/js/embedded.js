// nsplay's /embed/<topic> and /embed/play pages, made to live in another
// site's iframe (docs/embedding.md). Nothing starts on load: the first Start,
// Run or Check click creates the session (or, with the learner cookie, which a
// same-site embed has, finds the learner's one session). The session id is
// kept in sessionStorage, which browsers keep per embedding site, so a reload
// of the author's page reattaches to the same shell.
//
// /embed/play also takes Run commands by postMessage from the page that frames
// it (/embed.js): only from its parent window, and only when that page's
// origin is nsplay's own or one of the server's embed_origins (the body's
// data-parent-origins); its own messages go to those origins only.

import { pageLang, t } from './i18n.js';
import { createSessionPatiently, getSession, learnerSession, runCheck } from './api.js';
import { runInTerminal, setState } from './terminal.js';
import { attachPage, showBannerText, showPageError } from './page.js';
import { wireCast } from './cast.js';
import { wireTheme } from './theme.js';
import { $ } from './dom.js';

const MAX_COMMAND = 4096;

function store(key) {
  return {
    get() {
      try { return JSON.parse(sessionStorage.getItem(key) || 'null'); } catch (_) { return null; }
    },
    set(v) {
      try { if (v) sessionStorage.setItem(key, JSON.stringify(v)); else sessionStorage.removeItem(key); } catch (_) { /* storage blocked */ }
    },
  };
}

// Resolves to { start() -> Promise<conn> } once a stored session is reattached
// (or found gone).
async function embedTerminal(topic, onConnected) {
  const saved = store('nsplay.embed.' + (topic || 'play'));
  const startButton = $('#embed-start');
  let conn = null;
  let starting = null;

  const connect = (id, path) => {
    if (startButton) startButton.hidden = true;
    conn = attachPage(id, () => { saved.set(null); location.reload(); }, path);
    wireCast(conn);
    // For devtools and the browser tests, as on the other terminal pages (main.js).
    if (window.Nsplay) window.Nsplay.connection = conn;
    if (onConnected) onConnected(conn);
    return conn;
  };

  const start = () => {
    if (conn) return Promise.resolve(conn);
    if (starting) return starting;
    if (startButton) startButton.disabled = true;
    setState($('#conn-state'), 'connecting');
    starting = createSessionPatiently(topic || null, showBannerText, () => learnerSession(topic || null))
      .then((s) => {
        saved.set({ id: s.id, terminal: s.terminal });
        return connect(s.id, s.terminal);
      }, (err) => {
        starting = null;
        if (startButton) startButton.disabled = false;
        setState($('#conn-state'), 'disconnected');
        showPageError(err);
        throw err;
      });
    return starting;
  };

  if (startButton) startButton.addEventListener('click', () => { start().catch(() => {}); });
  // ☀ / ☾ works before the session starts; the terminal, once there, follows.
  wireTheme({
    setTermOption(name, value) { if (conn) conn.setTermOption(name, value); },
    get term() { return conn && conn.term; },
  });
  const old = saved.get();
  if (old && old.id) {
    let s = null;
    try { s = await getSession(old.id); } catch (_) { /* unreachable: start anew on click */ }
    if (s) connect(old.id, old.terminal);
    else saved.set(null);
  }
  return { start, current: () => conn };
}

export async function bootEmbedLesson() {
  const topic = document.body.dataset.topic;
  const lang = pageLang();
  const term = await embedTerminal(topic);
  for (const step of document.querySelectorAll('.step[data-step]')) {
    for (const run of step.querySelectorAll('.run[data-command]')) {
      run.addEventListener('click', () => {
        term.start().then((conn) => runInTerminal(conn, run.dataset.command), () => {});
      });
    }
    for (const check of step.querySelectorAll('.check')) {
      check.addEventListener('click', async () => {
        const result = step.querySelector('.check-result');
        check.disabled = true;
        try {
          const conn = await term.start();
          if (result) result.textContent = t('checking');
          const r = await runCheck(conn.sessionId, topic, step.dataset.step, lang);
          step.dataset.passed = r.passed ? 'true' : 'false';
          if (result) result.textContent = (r.passed ? t('check_passed') : t('check_failed')) + (r.detail ? ' — ' + r.detail : '');
        } catch (err) {
          if (result && err && err.message) result.textContent = err.message;
        } finally {
          check.disabled = false;
        }
      });
    }
  }
  return term.current();
}

export async function bootEmbedPlay() {
  const parents = (document.body.dataset.parentOrigins || '').split(' ').filter(Boolean);
  parents.push(location.origin);
  // The framing page's origin (Chromium and Safari say it; elsewhere the referrer's), told
  // anything only when it is one of the allowed ones.
  let parentOrigin = '';
  try {
    parentOrigin = (location.ancestorOrigins && location.ancestorOrigins[0]) ||
      (document.referrer ? new URL(document.referrer).origin : '');
  } catch (_) { /* no referrer */ }
  const tell = (msg) => {
    if (window.parent === window || !parents.includes(parentOrigin)) return;
    window.parent.postMessage({ nsplay: 1, ...msg }, parentOrigin);
  };
  const term = await embedTerminal('', () => tell({ type: 'started' }));
  window.addEventListener('message', (ev) => {
    if (ev.source !== window.parent || !parents.includes(ev.origin)) return;
    const m = ev.data;
    if (!m || m.nsplay !== 1 || m.type !== 'run') return;
    if (typeof m.command !== 'string' || !m.command || m.command.length > MAX_COMMAND) return;
    term.start().then((conn) => runInTerminal(conn, m.command), () => {});
  });
  tell({ type: 'ready' });
  return term.current();
}
