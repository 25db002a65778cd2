// nsplay key bar (narrow or touch screens): Ctrl, Tab, Esc and the arrow keys
// that a phone's keyboard lacks, in a strip above the terminal. Ctrl is a
// one-shot modifier: tap it, then a letter, and the terminal gets Ctrl+letter.
// Buttons act on pointerdown with the default prevented, so the terminal keeps
// the focus and the phone keeps its keyboard open.

import { t } from './i18n.js';
import { el } from './dom.js';

// The control character for `s` (one key) under Ctrl, or null.
export function ctrlOf(s) {
  if (s.length !== 1) return null;
  const c = s.toUpperCase().charCodeAt(0);
  if (c >= 64 && c <= 95) return String.fromCharCode(c - 64); // @ A–Z [ \ ] ^ _
  if (s === ' ') return '\x00';
  if (s === '?') return '\x7f';
  return null;
}

export function addKeyBar(conn) {
  const term = document.getElementById('terminal');
  const box = term && term.parentElement;
  if (!box || box.querySelector('.keybar')) return;
  let armed = false;
  const ctrl = el('button', { type: 'button', class: 'key', 'aria-pressed': 'false' }, 'Ctrl');
  const arm = (on) => { armed = on; ctrl.setAttribute('aria-pressed', String(on)); };
  conn.setInputFilter((s) => {
    if (!armed) return s;
    arm(false);
    return ctrlOf(s) ?? s;
  });
  // Arrow keys follow the terminal's cursor-key mode (vi and less switch it).
  const arrow = (c) => () => (conn.term.modes.applicationCursorKeysMode ? '\x1bO' : '\x1b[') + c;
  const keys = [
    ['Tab', () => '\t', 'Tab'], ['Esc', () => '\x1b', 'Esc'],
    ['←', arrow('D'), t('key_left')], ['↑', arrow('A'), t('key_up')],
    ['↓', arrow('B'), t('key_down')], ['→', arrow('C'), t('key_right')],
  ];
  const bar = el('div', { class: 'keybar', role: 'toolbar', 'aria-label': t('keybar') }, ctrl);
  const press = (fn) => (ev) => { ev.preventDefault(); fn(); conn.term.focus(); };
  ctrl.addEventListener('pointerdown', press(() => arm(!armed)));
  for (const [label, seq, name] of keys) {
    const b = el('button', { type: 'button', class: 'key', 'aria-label': name }, label);
    b.addEventListener('pointerdown', press(() => { arm(false); conn.send(seq()); }));
    bar.append(b);
  }
  box.prepend(bar);
  box.classList.add('has-keys');
}
