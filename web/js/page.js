// nsplay page chrome shared by the terminal pages (/play and lessons): the
// #banner for page-level errors and countdowns, the clipboard hint, and
// attaching #terminal (its tabs: tabs.js) with #conn-state and #notices.

import { t } from './i18n.js';
import { endMySessions, terminalPath } from './api.js';
import { clipboardHint } from './terminal.js';
import { attachTabs } from './tabs.js';
import { $, el } from './dom.js';

export function showClipboardHint() {
  const hint = $('#clip-hint');
  if (!hint) return;
  hint.textContent = clipboardHint();
}

// What a refusal lets the learner do besides waiting: with too many sessions
// open, end the others (the learner's own, by its identity cookie) and go on
// with `retry`. Returns the buttons to show (none for other errors).
export function refusalActions(err, retry, showError) {
  if (!err || err.code !== 'too_many_sessions') return [];
  const button = el('button', { type: 'button', class: 'end-others' }, t('end_other_sessions'));
  button.addEventListener('click', () => {
    button.disabled = true;
    endMySessions(null).then(() => retry(), (e) => { button.disabled = false; showError(e.message); });
  });
  return [button];
}

// A fatal page-level error (creation failed) shown in #banner with a retry,
// and what else the refusal allows (refusalActions). `err` is an API error or
// a message.
export function showPageError(err) {
  const message = typeof err === 'string' ? err : err.message;
  const banner = $('#banner');
  if (!banner) { alert(message); return; }
  const button = el('button', { type: 'button' }, t('try_again'));
  button.addEventListener('click', () => location.reload());
  const text = el('span', null, message);
  const extra = refusalActions(err, () => location.reload(), (m) => { text.textContent = m; });
  banner.replaceChildren(text, ...extra, button);
  banner.hidden = false;
}

// Transient text such as the "full, retrying in N s" countdown.
export function showBannerText(message) {
  const banner = $('#banner');
  if (!banner) return;
  banner.textContent = message;
  banner.hidden = !message;
}

// Attaches the page's terminals to session `id` (its terminal at `path`, terminal 0 when
// not given, then every other one still running, each in a tab); returns the connection,
// which acts on the active tab.
export function attachPage(id, onNewSession, path) {
  return attachTabs(id, path || terminalPath(id), onNewSession);
}
