// nsplay text size (the top bar's A− / A+): the terminal's font size, and the
// lesson text with it, for a projector in a room; remembered in localStorage.

import { $ } from './dom.js';

const KEY = 'nsplay.fontSize';
export const DEFAULT_SIZE = 14;
const MIN = 10;
const MAX = 28;

function stored() {
  let v = NaN;
  try { v = parseInt(localStorage.getItem(KEY) || '', 10); } catch (_) { /* private mode */ }
  return Number.isFinite(v) ? Math.min(MAX, Math.max(MIN, v)) : DEFAULT_SIZE;
}

function apply(conn, size) {
  // Every tab's terminal (setTermOption), and the lesson text with them.
  if (conn.setTermOption) conn.setTermOption('fontSize', size);
  else { conn.term.options.fontSize = size; conn.fit(); }
  document.documentElement.style.setProperty('--text-scale', String(size / DEFAULT_SIZE));
}

export function wireFontSize(conn) {
  let size = stored();
  if (size !== DEFAULT_SIZE) apply(conn, size);
  const change = (by) => () => {
    size = Math.min(MAX, Math.max(MIN, size + by));
    apply(conn, size);
    try { localStorage.setItem(KEY, String(size)); } catch (_) { /* private mode */ }
    conn.term.focus();
  };
  const smaller = $('#font-smaller');
  const larger = $('#font-larger');
  if (smaller) { smaller.hidden = false; smaller.addEventListener('click', change(-2)); }
  if (larger) { larger.hidden = false; larger.addEventListener('click', change(2)); }
}
