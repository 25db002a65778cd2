// nsplay page chrome shared by the terminal pages (/play and lessons): the
// #banner for page-level errors and countdowns, the clipboard hint, and
// attaching #terminal with its #conn-state, #notices and #banner.

import { t } from './i18n.js';
import { terminalPath } from './api.js';
import { attach, clipboardHint } from './terminal.js';
import { $, el } from './dom.js';

export function showClipboardHint() {
  const hint = $('#clip-hint');
  if (!hint) return;
  hint.textContent = clipboardHint();
}

// A fatal page-level error (creation failed) shown in #banner with a retry.
export function showPageError(message) {
  const banner = $('#banner');
  if (!banner) { alert(message); return; }
  const button = el('button', { type: 'button' }, t('try_again'));
  button.addEventListener('click', () => location.reload());
  banner.replaceChildren(el('span', null, message), button);
  banner.hidden = false;
}

// Transient text such as the "full, retrying in N s" countdown.
export function showBannerText(message) {
  const banner = $('#banner');
  if (!banner) return;
  banner.textContent = message;
  banner.hidden = !message;
}

// Attaches the page's terminal to session `id`; returns the connection.
export function attachPage(id, onNewSession) {
  const conn = attach($('#terminal'), terminalPath(id), {
    sessionId: id,
    statusEl: $('#conn-state'),
    noticesEl: $('#notices'),
    bannerEl: $('#banner'),
    onNewSession,
  });
  conn.term.focus();
  return conn;
}
