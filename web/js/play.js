// nsplay playground pages: the landing page's "Start a playground" button,
// and /play, whose session id lives in the URL fragment. Both use the
// learner's one session (the one every lesson page attaches to too).

import { t } from './i18n.js';
import { createSessionPatiently } from './api.js';
import { setState } from './terminal.js';
import { attachPage, refusalActions, showBannerText, showClipboardHint, showPageError } from './page.js';
import { $ } from './dom.js';

// Resolves to the terminal connection, or undefined if no session could be made.
export async function bootPlay() {
  showClipboardHint();
  setState($('#conn-state'), 'connecting');
  // The id lives in the fragment so that a reload reattaches to the same
  // shell, while never being sent to the server in Referer or access logs.
  let id = '';
  let path = null;
  try { id = decodeURIComponent(location.hash.slice(1)); } catch (_) { /* mangled: start over */ }
  if (!id) {
    try {
      const s = await createSessionPatiently(null, showBannerText);
      id = s.id;
      path = s.terminal;
    } catch (err) {
      setState($('#conn-state'), 'disconnected');
      showPageError(err);
      return undefined;
    }
    history.replaceState(null, '', '#' + encodeURIComponent(id));
  }
  return attachPage(id, () => {
    history.replaceState(null, '', location.pathname + location.search);
    location.reload();
  }, path);
}

export function bootLanding() {
  const button = $('#start');
  const errorEl = $('#start-error');
  if (!button) return;
  const label = button.textContent;
  let inFlight = null;
  const show = (msg) => { if (errorEl) errorEl.textContent = msg; };

  // Coming back via the back button restores the page as it was left.
  window.addEventListener('pageshow', (ev) => {
    if (!ev.persisted) return;
    inFlight = null;
    button.textContent = label;
    button.removeAttribute('aria-busy');
  });

  button.addEventListener('click', () => {
    if (inFlight) {
      // A request is on the wire: a second one would create a second session.
      if (!inFlight.isWaiting()) return;
      // During the 503 countdown a click means "try now".
      inFlight.cancel();
    }
    show('');
    button.textContent = t('starting');
    button.setAttribute('aria-busy', 'true');
    // While "full" counts down, the button reads "Try again" (a click
    // retries at once) rather than a "Starting…" that seems stuck.
    const countdown = (msg) => {
      show(msg);
      button.textContent = msg ? t('try_again') : t('starting');
      if (msg) button.removeAttribute('aria-busy');
      else button.setAttribute('aria-busy', 'true');
    };
    const p = createSessionPatiently(null, countdown);
    inFlight = p;
    p.then((s) => {
      location.href = '/play#' + encodeURIComponent(s.id);
    }, (err) => {
      if (inFlight !== p) return;
      inFlight = null;
      button.textContent = label;
      button.removeAttribute('aria-busy');
      show(err.message);
      if (errorEl) errorEl.append(...refusalActions(err, () => button.click(), show));
    });
  });
}
