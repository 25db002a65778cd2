// nsplay's embed script, for an author's own page (docs/embedding.md). Served
// as /embed.js (a classic script, its strings filled in by the server):
//
//   <script src="https://play.example/embed.js" defer></script>
//   <div data-nsplay-lesson="uts"></div>        -> an iframe of /embed/uts
//   <pre data-nsplay-run>hostname demo</pre>    -> a Run button after the block
//   <div data-nsplay-terminal></div>            -> where the terminal goes (optional)
//
// data-nsplay-theme="light" (or "dark") on any of them, or on the script tag, sets the
// frames' default colours (the learner's own ☀ / ☾ choice wins); data-nsplay-height their
// height.
//
// Run buttons type into one live terminal, an iframe of /embed/play that is
// created on the first click (so is its session: nothing starts on page load)
// and driven by postMessage: messages go to nsplay's origin only, and only
// messages from that iframe and that origin are read.
(function () {
  'use strict';
  const TEXT = /*NSPLAY_TEXT*/ {};
  const script = document.currentScript;
  if (!script || !script.src) return;
  const ORIGIN = new URL(script.src).origin;
  const LANG = /^ja\b/i.test(document.documentElement.lang || navigator.language || '') ? 'ja' : 'en';
  const MAX_QUEUE = 16;

  function t(key) {
    return (TEXT[LANG] && TEXT[LANG][key]) || (TEXT.en && TEXT.en[key]) || key;
  }

  const SITE_THEME = script.getAttribute('data-nsplay-theme');

  function theme(el) {
    const v = (el && el.getAttribute('data-nsplay-theme')) || SITE_THEME;
    return v === 'light' || v === 'dark' ? v : '';
  }

  function frame(path, title, height, th) {
    const f = document.createElement('iframe');
    f.src = ORIGIN + path + '?lang=' + LANG + (th ? '&theme=' + th : '');
    f.title = title;
    f.className = 'nsplay-frame';
    f.setAttribute('allow', 'clipboard-write');
    const bg = th === 'light' ? '#ffffff' : '#15181d';
    const line = th === 'light' ? '#d0d5dd' : '#2b3038';
    f.style.cssText = 'display:block;width:100%;border:1px solid ' + line + ';border-radius:6px;background:' + bg + ';height:' + height;
    return f;
  }

  function boot() {
    for (const div of document.querySelectorAll('[data-nsplay-lesson]')) {
      const topic = div.getAttribute('data-nsplay-lesson');
      if (!/^[a-z0-9][a-z0-9_-]{0,63}$/.test(topic)) continue;
      div.replaceChildren(frame('/embed/' + topic, t('embed_lesson_title'), div.getAttribute('data-nsplay-height') || '600px', theme(div)));
    }

    const blocks = [...document.querySelectorAll('pre[data-nsplay-run]')];
    if (!blocks.length) return;
    let player = null;
    let ready = false;
    let queue = [];
    const send = (command) => player.contentWindow.postMessage({ nsplay: 1, type: 'run', command }, ORIGIN);

    function ensurePlayer() {
      if (player) return;
      let host = document.querySelector('[data-nsplay-terminal]');
      if (!host) {
        host = document.createElement('div');
        blocks[blocks.length - 1].after(host);
      }
      const themed = host.hasAttribute('data-nsplay-theme') ? host : blocks.find((b) => b.hasAttribute('data-nsplay-theme'));
      player = frame('/embed/play', t('embed_terminal_title'), host.getAttribute('data-nsplay-height') || '360px', theme(themed));
      host.replaceChildren(player);
    }

    window.addEventListener('message', (ev) => {
      if (!player || ev.source !== player.contentWindow || ev.origin !== ORIGIN) return;
      const m = ev.data;
      if (!m || m.nsplay !== 1) return;
      if (m.type === 'ready') {
        ready = true;
        for (const c of queue) send(c);
        queue = [];
      }
    });

    for (const pre of blocks) {
      const given = pre.getAttribute('data-nsplay-run');
      // The block's text, one line per command; a non-empty attribute overrides it.
      const command = (given || pre.textContent).trim().replace(/\r?\n/g, '\r');
      if (!command) continue;
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'nsplay-run';
      button.textContent = '▶ ' + t('run');
      button.addEventListener('click', () => {
        ensurePlayer();
        if (ready) send(command);
        else if (queue.length < MAX_QUEUE) queue.push(command);
      });
      pre.after(button);
    }
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot);
  else boot();
})();
