// nsplay "Reset" (the terminal pages' top bar): asks the server to stop every
// process in the session but its init and shells (POST /api/sessions/{id}/reset),
// the way out of a fork bomb that Ctrl-C cannot stop. The result is a terminal notice.

import { t } from './i18n.js';
import { request, errorFromResponse, sessionUrl } from './api.js';
import { $ } from './dom.js';

export function wireReset(conn) {
  const button = $('#reset');
  if (!button || !conn || !conn.sessionId) return;
  button.hidden = false;
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      const res = await request(sessionUrl(conn.sessionId) + '/reset', {
        method: 'POST', headers: { Accept: 'application/json' },
      });
      if (!res.ok) throw await errorFromResponse(res);
      const r = await res.json();
      conn.notice(t('reset_done', { killed: r.killed }));
    } catch (err) {
      conn.notice(err.message);
    } finally {
      button.disabled = false;
      conn.term.focus();
    }
  });
}
