// nsplay UI language: the t() lookup and the language switch in the top bar.
//
// Every string comes from web/ui.toml, which the server injects into each page
// as window.NSPLAY_I18N (templates/base.html) in the page's language. There is
// no second copy here. A key missing from the table shows as the key itself,
// never as "undefined".
//
// Keys are always string literals, t('key') or t('key', { name: value }): a
// unit test (server/web/pages.rs) reads every t(...) in web/js/ and fails if a
// key is missing from ui.toml, or if a call builds its key at run time.

// Looks up `key`, filling in {name} placeholders from `vars`.
export function t(key, vars) {
  const table = window.NSPLAY_I18N || {};
  let s = typeof table[key] === 'string' ? table[key] : key;
  if (vars) {
    s = s.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
  }
  return s;
}

// The page language the server rendered (<html lang>).
export function pageLang() {
  return document.documentElement.lang || 'en';
}

// The English / 日本語 links: remember the choice in a cookie and reload.
// The links also carry ?lang=, which works without JavaScript.
export function initLanguageSwitch() {
  const current = document.documentElement.lang;
  for (const link of document.querySelectorAll('[data-set-lang]')) {
    if (link.dataset.setLang === current) link.setAttribute('aria-current', 'true');
    link.addEventListener('click', (ev) => {
      ev.preventDefault();
      const lang = link.dataset.setLang;
      document.cookie = 'nsplay_lang=' + encodeURIComponent(lang) + '; path=/; max-age=31536000; SameSite=Lax';
      // Drop a ?lang= left over from a no-JS switch so it can't override the
      // cookie; keep the hash, which holds the play page's session id.
      const url = new URL(location.href);
      url.searchParams.delete('lang');
      // Navigating to an identical URL that has a fragment does not reload.
      if (url.href === location.href) location.reload();
      else location.replace(url.href);
    });
  }
}
