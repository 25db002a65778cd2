// nsplay colour theme (the top bar's ☀ / ☾ button): light or dark pages and terminals.
// Until the learner picks one the page follows the system's prefers-color-scheme (the CSS
// does that by itself), or on an /embed/* page the embedding site's ?theme=; a choice is
// remembered in localStorage and set as <html data-theme> (before the first paint, by the
// inline script in templates/base.html and templates/embed.html).

import { t } from './i18n.js';
import { $ } from './dom.js';

const KEY = 'nsplay.theme';

// xterm.js colours of each theme (the terminal box's CSS --term-bg matches background).
export const TERMINAL_THEMES = {
  dark: { background: '#15181d', foreground: '#e4e6eb', cursor: '#e4e6eb', selectionBackground: '#3b5b8a' },
  light: {
    background: '#ffffff', foreground: '#1d2128', cursor: '#1d2128', cursorAccent: '#ffffff',
    selectionBackground: '#b7d1f5',
    // ANSI colours readable on white (the defaults are made for a dark background).
    black: '#1d2128', red: '#b42318', green: '#17703d', yellow: '#8a5a00', blue: '#1f5fbf',
    magenta: '#8e3aa8', cyan: '#0f6e7a', white: '#5d6675', brightBlack: '#5d6675',
    brightRed: '#c63b3b', brightGreen: '#1f8a4c', brightYellow: '#9a6700', brightBlue: '#2f6fd6',
    brightMagenta: '#a347c2', brightCyan: '#138596', brightWhite: '#1d2128',
  },
};

function stored() {
  try {
    const v = localStorage.getItem(KEY);
    return v === 'light' || v === 'dark' ? v : null;
  } catch (_) { return null; } // private mode
}

const prefersLight = () => typeof matchMedia === 'function' && matchMedia('(prefers-color-scheme: light)').matches;

// An /embed/* page's default from the embedding site (?theme=, templates/embed.html).
function siteDefault() {
  const v = document.documentElement.dataset.themeDefault;
  return v === 'light' || v === 'dark' ? v : null;
}

// The theme in force: the learner's choice, else the embedding site's, else the system's.
export function currentTheme() {
  return stored() || siteDefault() || (prefersLight() ? 'light' : 'dark');
}

export function terminalTheme() {
  return TERMINAL_THEMES[currentTheme()];
}

// The button shows what a click switches to.
function label(button, theme) {
  const next = theme === 'light' ? 'dark' : 'light';
  button.textContent = next === 'light' ? '☀' : '☾';
  const text = next === 'light' ? t('theme_to_light') : t('theme_to_dark');
  button.title = text;
  button.setAttribute('aria-label', text);
}

// Wires the toggle; `conn` (optional) is the page's terminal connection, whose colours follow.
export function wireTheme(conn) {
  const button = $('#theme-toggle');
  const follow = () => {
    const theme = currentTheme();
    if (conn && conn.setTermOption) conn.setTermOption('theme', TERMINAL_THEMES[theme]);
    if (button) label(button, theme);
  };
  if (typeof matchMedia === 'function') {
    // The system switched (an evening dark mode): follow it unless the learner chose.
    matchMedia('(prefers-color-scheme: light)').addEventListener('change', () => { if (!stored() && !siteDefault()) follow(); });
  }
  if (!button) return;
  button.hidden = false;
  label(button, currentTheme());
  button.addEventListener('click', () => {
    const theme = currentTheme() === 'light' ? 'dark' : 'light';
    try { localStorage.setItem(KEY, theme); } catch (_) { /* private mode: this page only */ }
    document.documentElement.dataset.theme = theme;
    follow();
    if (conn && conn.term) conn.term.focus();
  });
}
