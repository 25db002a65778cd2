// nsplay lesson page (/learn/{topic}): the learner's one session (the server
// finds it by the browser's identity cookie, so a reload, the next lesson or
// the playground finds the same shell and files), each step's Run buttons
// (type the command into the terminal) and Check button (ask the server
// whether the step is done), the inspector, and "start this lesson on a fresh
// session".

import { pageLang, t } from './i18n.js';
import { createSessionPatiently, getSession, learnerSession, runCheck } from './api.js';
import { runInTerminal, setState } from './terminal.js';
import { startInspector } from './inspector.js';
import { attachPage, showBannerText, showClipboardHint, showPageError } from './page.js';
import { $ } from './dom.js';

// The "fresh session" button: ends the learner's session (after asking) and
// starts this lesson on a new one.
function wireFresh(topic) {
  const button = $('#fresh-session');
  if (!button) return;
  button.addEventListener('click', () => {
    if (!confirm(t('fresh_session_confirm'))) return;
    button.disabled = true;
    learnerSession(topic, true).then(() => location.reload(), (err) => {
      button.disabled = false;
      showPageError(err);
    });
  });
}

// Wires the Run and Check buttons of every step to session `id`.
function wireSteps(conn, id, topic) {
  const lang = pageLang();
  for (const step of document.querySelectorAll('.step[data-step]')) {
    for (const run of step.querySelectorAll('.run[data-command]')) {
      run.addEventListener('click', () => runInTerminal(conn, run.dataset.command));
    }
    for (const check of step.querySelectorAll('.check')) {
      check.addEventListener('click', async () => {
        const result = step.querySelector('.check-result');
        check.disabled = true;
        if (result) result.textContent = t('checking');
        try {
          const answer = step.querySelector('input.answer');
          const r = await runCheck(id, topic, step.dataset.step, lang, answer ? answer.value : undefined);
          step.dataset.passed = r.passed ? 'true' : 'false';
          if (result) {
            result.textContent = (r.passed ? t('check_passed') : t('check_failed')) +
              (r.detail ? ' — ' + r.detail : '');
          }
        } catch (err) {
          if (result) result.textContent = err.message;
        } finally {
          check.disabled = false;
        }
      });
    }
  }
}

// Shows the steps the server recorded as passed in this session (a reload or
// coming back must not lose them) and scrolls to the first step after the last
// passed one, where the learner left off.
export async function showProgress(id, topic) {
  let s = null;
  try { s = await getSession(id); } catch (_) { return; }
  const passed = new Set((s && s.passed && s.passed[topic]) || []);
  if (!passed.size) return;
  const steps = [...document.querySelectorAll('.step[data-step]')];
  let last = -1;
  steps.forEach((step, i) => {
    if (!passed.has(step.dataset.step)) return;
    last = i;
    // A check the learner already ran again on this page says more than "earlier".
    if (step.dataset.passed) return;
    step.dataset.passed = 'true';
    const result = step.querySelector('.check-result');
    if (result) result.textContent = t('check_passed') + ' — ' + t('check_passed_earlier');
  });
  const next = steps[last + 1];
  if (next) next.scrollIntoView({ block: 'start' });
  else if (steps.length) steps[steps.length - 1].scrollIntoView({ block: 'end' });
}

// Resolves to the terminal connection, or undefined if no session could be made.
export async function bootLesson() {
  showClipboardHint();
  const topic = document.body.dataset.topic;
  setState($('#conn-state'), 'connecting');
  wireFresh(topic);

  let s;
  try {
    s = await createSessionPatiently(topic, showBannerText);
  } catch (err) {
    setState($('#conn-state'), 'disconnected');
    showPageError(err);
    return undefined;
  }
  const id = s.id;

  const conn = attachPage(id, () => location.reload(), s.terminal);
  wireSteps(conn, id, topic);
  showProgress(id, topic);
  const inspector = $('#inspector');
  if (inspector) startInspector(inspector, id);
  return conn;
}
