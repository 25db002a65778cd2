// nsplay lesson page (/learn/{topic}): the learner's one session (the server
// finds it by the browser's identity cookie, so a reload, the next lesson or
// the playground finds the same shell and files), each step's Run buttons
// (type the command into the terminal) and Check button (ask the server
// whether the step is done), the inspector, and "start this lesson on a fresh
// session".

import { pageLang, t } from './i18n.js';
import { createSessionPatiently, learnerSession, runCheck } from './api.js';
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
          const r = await runCheck(id, topic, step.dataset.step, lang);
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
  const inspector = $('#inspector');
  if (inspector) startInspector(inspector, id);
  return conn;
}
