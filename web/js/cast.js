// nsplay "Recording" button (terminal pages' bar, embed pages): downloads the
// terminal's output as an asciicast v2 file (GET …/terminals/<n>/cast,
// docs/api.md), which `asciinema play` replays.

import { $ } from './dom.js';

export function wireCast(conn) {
  const button = $('#download-cast');
  if (!button || !conn || !conn.path) return;
  button.hidden = false;
  button.addEventListener('click', () => {
    // A plain link: the browser's download keeps the server's file name.
    const a = document.createElement('a');
    a.href = conn.path + '/cast';
    a.download = '';
    document.body.append(a);
    a.click();
    a.remove();
    conn.term.focus();
  });
}
