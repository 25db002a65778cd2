// nsplay terminal client: one xterm.js terminal attached to a session's
// terminal WebSocket (docs/api.md), with reconnect and backoff, "server gone"
// and "session ended" banners, resize, and copy/paste keys.
//
// Expects the vendored xterm UMD bundles as classic scripts loaded before the
// modules (window.Terminal, window.FitAddon; templates/base.html).

import { pageLang, t } from './i18n.js';
import { getSession, request } from './api.js';
import { terminalTheme } from './theme.js';

// ----------------------------------------------------------- clipboard ---

async function copyText(text) {
  // navigator.clipboard only exists in secure contexts; classrooms often
  // reach the server as http://10.x.y.z, hence the execCommand fallback.
  if (navigator.clipboard && window.isSecureContext) {
    try { await navigator.clipboard.writeText(text); return; } catch (_) { /* fall through */ }
  }
  const ta = document.createElement('textarea');
  ta.value = text;
  ta.setAttribute('readonly', '');
  ta.style.cssText = 'position:fixed;top:0;left:0;width:1px;height:1px;opacity:0;';
  const prev = document.activeElement;
  document.body.appendChild(ta);
  ta.select();
  try { document.execCommand('copy'); } finally {
    ta.remove();
    if (prev && prev.focus) prev.focus({ preventScroll: true });
  }
}

const IS_MAC = /Mac|iPhone|iPad/.test(navigator.platform || navigator.userAgent);

function keyIs(ev, letter) {
  return ev.code === 'Key' + letter.toUpperCase() || ev.key.toLowerCase() === letter;
}

// Ctrl+Shift+C copies, Ctrl+Shift+V and Ctrl+V paste (macOS has Cmd+C/V,
// which xterm supports natively). Returning false stops xterm from sending
// ^C/^V to the shell. Giving up ^V is deliberate: learners expect Ctrl+V to
// paste, and vim accepts Ctrl+Q for visual-block mode.
//
// Paste deliberately does NOT use navigator.clipboard.readText(): that API
// is missing on plain-http origins and prompts for a permission elsewhere.
// Leaving the keydown's default action alone makes Chromium and Firefox fire
// an ordinary `paste` event on xterm's focused textarea, and xterm's own
// handler sends the text (bracketed if the shell asked for it).
function clipboardKeyHandler(term) {
  return (ev) => {
    if (!ev.ctrlKey || ev.altKey || ev.metaKey) return true;
    if (ev.shiftKey && keyIs(ev, 'c')) {
      if (ev.type === 'keydown') {
        ev.preventDefault(); // Chromium would otherwise open DevTools' inspector.
        if (term.hasSelection()) copyText(term.getSelection());
      }
      return false;
    }
    if (!IS_MAC && keyIs(ev, 'v')) return false;
    return true;
  };
}

// The copy/paste keys of this platform, for the hint in the top bar.
export function clipboardHint() {
  return IS_MAC
    ? `${t('copy')} ⌘C · ${t('paste')} ⌘V`
    : `${t('copy')} Ctrl+Shift+C · ${t('paste')} Ctrl+Shift+V`;
}

// --------------------------------------------------------------- attach ---

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 10000;
const STABLE_MS = 5000; // a connection this old resets the backoff
const NOTICE_MS = 10000;
const MAX_NOTICES = 3;
const MAX_PENDING_BYTES = 64 * 1024;

// Literal keys, so the ui.toml test sees each of them.
const STATE_TEXT = {
  connecting: () => t('state_connecting'),
  connected: () => t('state_connected'),
  reconnecting: () => t('state_reconnecting'),
  disconnected: () => t('state_disconnected'),
  ended: () => t('state_ended'),
};

// Shows a connection state in the #conn-state pill.
export function setState(el, state) {
  if (!el) return;
  el.dataset.state = state;
  el.textContent = STATE_TEXT[state]();
}

function debounce(fn, ms) {
  let timer = null;
  return () => { clearTimeout(timer); timer = setTimeout(fn, ms); };
}

// Opens a terminal in `container` and connects it to the WebSocket at `path`.
// options: sessionId, statusEl (#conn-state), noticesEl (#notices), bannerEl
// (#banner), onNewSession (the banner's "New session" button; default reload),
// readOnly (an instructor's view: no input, no resize; the server drops them anyway),
// onState(state) (every connection state, besides statusEl), onViewers(count) (instead of
// the page's #viewing badge), endAction(state) (what the ended banner's button does instead of
// "New session": { label, run, message } or null), termOptions (xterm options such as fontSize).
// Returns { term, send(text), close(), fit(), setTermOption(name, value) }.
export function attach(container, path, options = {}) {
  const term = new window.Terminal({
    fontFamily: 'ui-monospace, "SFMono-Regular", "Cascadia Mono", "DejaVu Sans Mono", ' +
      '"Liberation Mono", Menlo, Consolas, "Noto Sans Mono CJK JP", monospace',
    fontSize: 14,
    // At 1.0 the DOM renderer clips underscores of some monospace fonts (uid_map read as "uid map").
    lineHeight: 1.15,
    scrollback: 5000,
    cursorBlink: true,
    convertEol: false,
    theme: terminalTheme(),
    ...(options.termOptions || {}),
  });
  const fitAddon = new window.FitAddon.FitAddon();
  term.loadAddon(fitAddon);
  term.open(container);
  term.attachCustomKeyEventHandler(clipboardKeyHandler(term));
  // Right-click menu: we keep the browser's native one. On contextmenu
  // xterm moves its hidden textarea under the pointer, fills it with the
  // selection and selects it, so Chromium's own Copy and Paste entries work
  // (Paste raises a regular paste event). A custom menu could only paste via
  // navigator.clipboard.readText(), which plain-http deployments lack.

  const m = /^\/api\/sessions\/([^/]+)\//.exec(path);
  const sessionId = options.sessionId || (m ? decodeURIComponent(m[1]) : null);
  const statusEl = options.statusEl || null;
  let state = 'connecting';
  const showState = (s) => {
    state = s;
    setState(statusEl, s);
    if (options.onState) options.onState(s);
  };
  const noticesEl = options.noticesEl || null;
  let bannerEl = options.bannerEl || null;

  const readOnly = !!options.readOnly;
  if (readOnly) { term.options.disableStdin = true; term.options.cursorBlink = false; }
  let viewingEl = null;
  // The server says how many read-only viewers (the instructor) watch this terminal.
  function viewing(count) {
    if (readOnly) return;
    if (options.onViewers) { options.onViewers(count); return; }
    // The page's own place for it (a lesson's side bar), else a badge of its own.
    if (!viewingEl) viewingEl = document.getElementById('viewing');
    if (!viewingEl && count > 0) {
      viewingEl = document.createElement('div');
      viewingEl.className = 'viewing';
      viewingEl.setAttribute('role', 'status');
      viewingEl.textContent = t('instructor_viewing');
      document.body.append(viewingEl);
    }
    if (viewingEl) viewingEl.hidden = !(count > 0);
  }

  const encoder = new TextEncoder();
  let ws = null;
  let attempt = 0;
  let everConnected = false;
  let resetPending = false;
  let reconnectTimer = null;
  let finished = false; // exit, gone or close(): never reconnect again
  let pending = [];
  let pendingBytes = 0;
  // The server cannot be reached (stopped, restarting, network gone). Sessions
  // do not survive a server restart, so once it answers again we either
  // reconnect (same session still there) or say plainly that it is gone.
  let serverDown = false;
  let probeTimer = null;
  let finishMessage = '';

  // ---- UI helpers

  function notice(message) {
    if (!noticesEl || !message) return;
    const el = document.createElement('div');
    el.className = 'notice';
    el.textContent = message;
    el.title = message; // the bar may truncate it
    noticesEl.appendChild(el);
    while (noticesEl.children.length > MAX_NOTICES) noticesEl.firstElementChild.remove();
    setTimeout(() => el.remove(), NOTICE_MS);
  }

  // withButton: offer "New session" (not while the server is unreachable:
  // a click would only lead to the browser's own error page).
  function banner(message, withButton = true) {
    if (!bannerEl) {
      bannerEl = document.createElement('div');
      bannerEl.className = 'banner';
      container.before(bannerEl);
    }
    bannerEl.replaceChildren();
    const text = document.createElement('span');
    text.textContent = message;
    bannerEl.append(text);
    bannerEl.hidden = false;
    if (!withButton) return;
    const button = document.createElement('button');
    button.type = 'button';
    // Another tab's shell still runs: this one only closes (the session lives on).
    const action = finished && options.endAction ? options.endAction(state) : null;
    if (action) {
      if (action.message) text.textContent = action.message;
      button.textContent = action.label;
      button.addEventListener('click', action.run);
      bannerEl.append(button);
      return;
    }
    button.textContent = t('new_session');
    button.addEventListener('click', async () => {
      button.disabled = true;
      try {
        await request('/healthz', { cache: 'no-store' });
      } catch (_) {
        button.disabled = false;
        serverLost();
        return;
      }
      if (options.onNewSession) options.onNewSession();
      else location.reload();
    });
    bannerEl.append(button);
    button.focus();
  }

  function hideBanner() {
    if (bannerEl) { bannerEl.hidden = true; bannerEl.replaceChildren(); }
  }

  function finish(state, message) {
    finished = true;
    finishMessage = message || '';
    serverDown = false;
    clearTimeout(reconnectTimer);
    clearTimeout(probeTimer);
    showState(state);
    term.options.disableStdin = true;
    term.options.cursorBlink = false;
    if (message) banner(message);
  }

  // The server did not answer at all (as opposed to answering "no such
  // session"): say so, and keep probing until it is back.
  function serverLost() {
    if (serverDown) return;
    serverDown = true;
    showState('disconnected');
    banner(t('server_unreachable'), false);
    // While not finished the reconnect loop is already probing.
    if (finished) probeServer(0);
  }

  // The server answered; `exists` tells whether our session is still there.
  function serverBack(exists) {
    if (!serverDown) return;
    serverDown = false;
    if (finished) {
      // Ended (exit frame) and then the server went away: if the session
      // survived, keep showing why it ended; normally it is gone.
      banner(exists ? finishMessage : t('session_gone'));
      if (!exists) showState('disconnected');
      return;
    }
    hideBanner();
    if (!exists) finish('disconnected', t('session_gone'));
    else showState('reconnecting');
  }

  function lookUpSession() {
    if (!sessionId || readOnly) return request('/healthz', { cache: 'no-store' }).then(() => true);
    return getSession(sessionId).then((s) => s !== null);
  }

  function probeServer(n) {
    clearTimeout(probeTimer);
    const delay = Math.min(BACKOFF_MAX_MS / 2, BACKOFF_MIN_MS * 2 ** n);
    probeTimer = setTimeout(() => {
      lookUpSession().then(serverBack, () => probeServer(n + 1));
    }, delay);
  }

  // ---- sending

  function sendBytes(bytes) {
    if (readOnly) return;
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(bytes);
  }

  function sendControl(obj) {
    if (readOnly) return;
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(obj));
  }

  function sendResize() {
    sendControl({ type: 'resize', cols: term.cols, rows: term.rows });
  }

  // While xterm.js parses a replay it must not answer what is in it: a program
  // that ran back then (vi) sent terminal queries (device attributes, colours,
  // modes), and xterm.js answers queries through onData as if typed. Those
  // answers would reach the shell, or a program now waiting for keys, as junk.
  let replaying = false;
  // A key bar's one-shot Ctrl (keys.js) rewrites the next key typed.
  let inputFilter = null;
  term.onData((s) => {
    if (replaying) return;
    const out = inputFilter ? inputFilter(s) : s;
    if (out) sendBytes(encoder.encode(out));
  });
  // onBinary carries non-UTF-8 input (some mouse reports): one byte per char.
  term.onBinary((s) => sendBytes(Uint8Array.from(s, (c) => c.charCodeAt(0) & 0xff)));
  term.onResize(sendResize);

  // ---- connection

  function connect() {
    clearTimeout(reconnectTimer);
    if (finished) return;
    if (!serverDown) showState(everConnected ? 'reconnecting' : 'connecting');
    const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
    // The server's notices on this socket (limits, expiry, shutdown) come in the page's language.
    const sock = new WebSocket(scheme + location.host + path + '?lang=' + encodeURIComponent(pageLang()));
    sock.binaryType = 'arraybuffer';
    ws = sock;
    let openedAt = 0;
    let sawExit = false;
    // The server's first binary message on every connection is the replay.
    let awaitingReplay = true;

    sock.onopen = () => {
      if (finished) { sock.close(1000); return; }
      openedAt = Date.now();
      // The server replays recent output on every connect; without a reset
      // the replay would be appended to what is already on screen.
      resetPending = everConnected;
      everConnected = true;
      if (serverDown) { serverDown = false; hideBanner(); }
      showState('connected');
      fit();
      sendResize();
      for (const chunk of pending) sock.send(chunk);
      pending = [];
      pendingBytes = 0;
    };

    sock.onmessage = (ev) => {
      if (ws !== sock) return;
      if (typeof ev.data !== 'string') {
        if (resetPending) {
          resetPending = false;
          // Queued through write() so output still buffered from the old
          // connection is parsed before the reset, not after it.
          term.write('', () => term.reset());
        }
        if (awaitingReplay) {
          awaitingReplay = false;
          replaying = true;
          term.write(new Uint8Array(ev.data), () => { replaying = false; });
        } else {
          term.write(new Uint8Array(ev.data));
        }
        return;
      }
      let msg;
      try { msg = JSON.parse(ev.data); } catch (_) { return; }
      if (msg.type === 'exit') {
        sawExit = true;
        finish('ended', t('ended_exit_code', { code: msg.code }));
      } else if (msg.type === 'notice') {
        notice(msg.message);
      } else if (msg.type === 'viewers') {
        viewing(msg.count);
      }
    };

    sock.onclose = (ev) => {
      if (ws !== sock) return;
      ws = null;
      if ((ev.code === 1008 || ev.code === 1009) && ev.reason) notice(ev.reason);
      if (finished || sawExit) {
        // A server shutting down ends every session (exit frame) and then
        // stops answering: tell the visitor, instead of offering a "New
        // session" button that leads nowhere.
        if (sawExit && !serverDown) lookUpSession().then(() => {}, serverLost);
        return;
      }
      if (openedAt && Date.now() - openedAt > STABLE_MS) attempt = 0;
      if (!serverDown) showState('reconnecting');
      scheduleReconnect();
    };
  }

  function scheduleReconnect() {
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** attempt);
    attempt += 1;
    // "Equal jitter": a whole classroom losing Wi-Fi at once must not come
    // back in lockstep.
    const delay = base / 2 + Math.random() * (base / 2);
    reconnectTimer = setTimeout(connect, delay);
    // A refused upgrade (404: session gone) is invisible to WebSocket code,
    // so ask the REST endpoint. Network errors mean "server down": say so
    // and keep going.
    lookUpSession().then((exists) => {
      if (finished) return;
      if (serverDown) serverBack(exists);
      else if (!exists) finish('disconnected', t('session_gone'));
    }, () => { if (!finished) serverLost(); });
  }

  // Skip the wait once the OS reports the network is back.
  const onOnline = () => { if (!ws && !finished) connect(); };

  // ---- fitting

  function fit() {
    try { fitAddon.fit(); } catch (_) { /* container not laid out yet */ }
  }
  const debouncedFit = debounce(fit, 100);
  const ro = typeof ResizeObserver === 'function' ? new ResizeObserver(debouncedFit) : null;
  if (ro) ro.observe(container);
  window.addEventListener('resize', debouncedFit);
  window.addEventListener('online', onOnline);

  fit();
  connect();

  return {
    term,
    sessionId,
    path, // the terminal's API path (cast.js downloads its recording)
    notice,
    setInputFilter(fn) { inputFilter = fn; },
    get state() { return state; },
    setTermOption(name, value) { term.options[name] = value; fit(); },
    send(text) {
      const bytes = encoder.encode(text);
      if (ws && ws.readyState === WebSocket.OPEN) ws.send(bytes);
      else if (!finished && pendingBytes + bytes.length <= MAX_PENDING_BYTES) {
        // A "Run" click during (re)connect should not be silently lost.
        pending.push(bytes);
        pendingBytes += bytes.length;
      }
    },
    close() {
      finished = true;
      clearTimeout(reconnectTimer);
      clearTimeout(probeTimer);
      if (ro) ro.disconnect();
      window.removeEventListener('resize', debouncedFit);
      window.removeEventListener('online', onOnline);
      if (ws) { const s = ws; ws = null; s.close(1000); }
      showState('disconnected');
    },
    fit,
  };
}

// Types `command` and Enter into the terminal (a lesson's Run button).
export function runInTerminal(conn, command) {
  conn.send(command + '\r');
  conn.term.focus();
}
