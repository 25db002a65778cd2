// nsplay browser client. Plain script (no build step): expects the vendored
// xterm UMD bundles to be loaded first (window.Terminal, window.FitAddon).
(() => {
  'use strict';

  // ---------------------------------------------------------------- i18n ---

  // Only a safety net: the server injects every string via NSPLAY_I18N, but a
  // missing key must never show up as "undefined" in the UI.
  const DEFAULT_STRINGS = {
    state_connecting: 'Connecting…',
    state_connected: 'Connected',
    state_reconnecting: 'Reconnecting…',
    state_disconnected: 'Disconnected',
    state_ended: 'Session ended',
    ended_exit_code: 'Session ended, exit code {code}',
    session_gone: 'This session no longer exists.',
    server_unreachable: 'Lost the connection to the server. Waiting for it to come back…',
    new_session: 'New session',
    full_retry: 'The playground is full. Try again in {seconds} s.',
    rate_retry: 'You are starting sessions too quickly. Try again in {seconds} s.',
    error_generic: 'Something went wrong. Please try again.',
    try_again: 'Try again',
    starting: 'Starting…',
    checking: 'Checking…',
    copy: 'Copy',
    paste: 'Paste',
    ns_kind: 'Namespace',
    ns_session: 'Session inode',
    ns_host: 'Host inode',
    ns_isolated: 'Isolated',
    yes: 'yes',
    no: 'no',
    memory: 'Memory',
    pids: 'Processes',
    cpu: 'CPU time',
    oom_kills: 'OOM kills',
    nested_namespaces: 'Namespaces you created',
    events: 'Events',
    check_passed: 'Passed',
    check_failed: 'Not yet',
  };

  function t(key, vars) {
    const table = window.NSPLAY_I18N || {};
    let s = typeof table[key] === 'string' ? table[key] : (DEFAULT_STRINGS[key] ?? key);
    if (vars) {
      s = s.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
    }
    return s;
  }

  // ----------------------------------------------------------------- API ---

  function apiError(status, body, retryAfter) {
    let message;
    if (status === 503 && retryAfter != null) message = t('full_retry', { seconds: retryAfter });
    else if (status === 429 && retryAfter != null) message = t('rate_retry', { seconds: retryAfter });
    else message = t('error_generic');
    const err = new Error(message);
    err.status = status;
    err.code = body && body.error;
    err.detail = body && body.message;
    err.retryAfter = retryAfter;
    return err;
  }

  async function errorFromResponse(res) {
    let body = null;
    try { body = await res.json(); } catch (_) { /* proxies may answer with HTML */ }
    const ra = parseInt(res.headers.get('Retry-After') || '', 10);
    return apiError(res.status, body, Number.isFinite(ra) && ra >= 0 ? ra : null);
  }

  async function request(url, init) {
    try {
      return await fetch(url, init);
    } catch (_) {
      throw apiError(0, null, null);
    }
  }

  async function createSession(lesson) {
    const init = { method: 'POST', headers: { Accept: 'application/json' } };
    if (lesson != null) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify({ lesson });
    }
    const res = await request('/api/sessions', init);
    if (!res.ok) throw await errorFromResponse(res);
    return res.json();
  }

  // Resolves to the session JSON, or null when the session does not exist.
  async function getSession(id) {
    const res = await request(sessionUrl(id), { headers: { Accept: 'application/json' } });
    if (res.status === 404) return null;
    if (!res.ok) throw await errorFromResponse(res);
    return res.json();
  }

  function sessionUrl(id) {
    return '/api/sessions/' + encodeURIComponent(id);
  }

  function terminalPath(id) {
    return sessionUrl(id) + '/terminals/0';
  }

  // Creates a session, waiting out 503 ("full") answers with a visible
  // countdown instead of making the visitor click again. 429 is not retried
  // automatically: hammering a rate limiter only extends the penalty.
  function createSessionPatiently(lesson, showMessage) {
    let timer = null;
    let cancelled = false;
    let waiting = false;
    const promise = new Promise((resolve, reject) => {
      const attempt = () => {
        waiting = false;
        createSession(lesson).then((s) => { if (!cancelled) resolve(s); }, (err) => {
          if (cancelled) return;
          if (err.status !== 503 || err.retryAfter == null) { reject(err); return; }
          waiting = true;
          let left = Math.max(1, err.retryAfter);
          const tick = () => {
            if (cancelled) return;
            if (left <= 0) { showMessage(''); attempt(); return; }
            showMessage(t('full_retry', { seconds: left }));
            left -= 1;
            timer = setTimeout(tick, 1000);
          };
          tick();
        });
      };
      attempt();
    });
    promise.cancel = () => { cancelled = true; clearTimeout(timer); };
    promise.isWaiting = () => waiting;
    return promise;
  }

  // ----------------------------------------------------------- clipboard ---

  async function copyText(text) {
    // navigator.clipboard only exists in secure contexts; classrooms often
    // reach the server as http://10.x.y.z, hence the execCommand fallback.
    if (navigator.clipboard && window.isSecureContext) {
      try { await navigator.clipboard.writeText(text); return; } catch (_) { /* fall through */ }
    }
    const ta = document.createElement('textarea');
    ta.value = text;
    ta.setAttribute('readonly', '');
    ta.style.cssText = 'position:fixed;top:0;left:0;width:1px;height:1px;opacity:0;';
    const prev = document.activeElement;
    document.body.appendChild(ta);
    ta.select();
    try { document.execCommand('copy'); } finally {
      ta.remove();
      if (prev && prev.focus) prev.focus({ preventScroll: true });
    }
  }

  const IS_MAC = /Mac|iPhone|iPad/.test(navigator.platform || navigator.userAgent);

  function keyIs(ev, letter) {
    return ev.code === 'Key' + letter.toUpperCase() || ev.key.toLowerCase() === letter;
  }

  // Ctrl+Shift+C copies, Ctrl+Shift+V and Ctrl+V paste (macOS has Cmd+C/V,
  // which xterm supports natively). Returning false stops xterm from sending
  // ^C/^V to the shell. Giving up ^V is deliberate: learners expect Ctrl+V to
  // paste, and vim accepts Ctrl+Q for visual-block mode.
  //
  // Paste deliberately does NOT use navigator.clipboard.readText(): that API
  // is missing on plain-http origins and prompts for a permission elsewhere.
  // Leaving the keydown's default action alone makes Chromium and Firefox fire
  // an ordinary `paste` event on xterm's focused textarea, and xterm's own
  // handler sends the text (bracketed if the shell asked for it).
  function clipboardKeyHandler(term) {
    return (ev) => {
      if (!ev.ctrlKey || ev.altKey || ev.metaKey) return true;
      if (ev.shiftKey && keyIs(ev, 'c')) {
        if (ev.type === 'keydown') {
          ev.preventDefault(); // Chromium would otherwise open DevTools' inspector.
          if (term.hasSelection()) copyText(term.getSelection());
        }
        return false;
      }
      if (!IS_MAC && keyIs(ev, 'v')) return false;
      return true;
    };
  }

  // --------------------------------------------------------------- attach ---

  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 10000;
  const STABLE_MS = 5000; // a connection this old resets the backoff
  const NOTICE_MS = 10000;
  const MAX_NOTICES = 3;
  const MAX_PENDING_BYTES = 64 * 1024;

  function setState(el, state) {
    if (!el) return;
    el.dataset.state = state;
    el.textContent = t('state_' + state);
  }

  function debounce(fn, ms) {
    let timer = null;
    return () => { clearTimeout(timer); timer = setTimeout(fn, ms); };
  }

  function attach(container, path, options = {}) {
    const term = new window.Terminal({
      fontFamily: 'ui-monospace, "SFMono-Regular", "Cascadia Mono", "DejaVu Sans Mono", ' +
        '"Liberation Mono", Menlo, Consolas, "Noto Sans Mono CJK JP", monospace',
      fontSize: 14,
      // At 1.0 the DOM renderer clips underscores of some monospace fonts (uid_map read as "uid map").
      lineHeight: 1.15,
      scrollback: 5000,
      cursorBlink: true,
      convertEol: false,
      theme: { background: '#15181d', foreground: '#e4e6eb', selectionBackground: '#3b5b8a' },
    });
    const fitAddon = new window.FitAddon.FitAddon();
    term.loadAddon(fitAddon);
    term.open(container);
    term.attachCustomKeyEventHandler(clipboardKeyHandler(term));
    // Right-click menu: we keep the browser's native one. On contextmenu
    // xterm moves its hidden textarea under the pointer, fills it with the
    // selection and selects it, so Chromium's own Copy and Paste entries work
    // (Paste raises a regular paste event). A custom menu could only paste via
    // navigator.clipboard.readText(), which plain-http deployments lack.

    const m = /^\/api\/sessions\/([^/]+)\//.exec(path);
    const sessionId = options.sessionId || (m ? decodeURIComponent(m[1]) : null);
    const statusEl = options.statusEl || null;
    const noticesEl = options.noticesEl || null;
    let bannerEl = options.bannerEl || null;

    const encoder = new TextEncoder();
    let ws = null;
    let attempt = 0;
    let everConnected = false;
    let resetPending = false;
    let reconnectTimer = null;
    let finished = false; // exit, gone or close(): never reconnect again
    let pending = [];
    let pendingBytes = 0;
    // The server cannot be reached (stopped, restarting, network gone). Sessions
    // do not survive a server restart, so once it answers again we either
    // reconnect (same session still there) or say plainly that it is gone.
    let serverDown = false;
    let probeTimer = null;
    let finishMessage = '';

    // ---- UI helpers

    function notice(message) {
      if (!noticesEl || !message) return;
      const el = document.createElement('div');
      el.className = 'notice';
      el.textContent = message;
      el.title = message; // the bar may truncate it
      noticesEl.appendChild(el);
      while (noticesEl.children.length > MAX_NOTICES) noticesEl.firstElementChild.remove();
      setTimeout(() => el.remove(), NOTICE_MS);
    }

    // withButton: offer "New session" (not while the server is unreachable:
    // a click would only lead to the browser's own error page).
    function banner(message, withButton = true) {
      if (!bannerEl) {
        bannerEl = document.createElement('div');
        bannerEl.className = 'banner';
        container.before(bannerEl);
      }
      bannerEl.replaceChildren();
      const text = document.createElement('span');
      text.textContent = message;
      bannerEl.append(text);
      bannerEl.hidden = false;
      if (!withButton) return;
      const button = document.createElement('button');
      button.type = 'button';
      button.textContent = t('new_session');
      button.addEventListener('click', async () => {
        button.disabled = true;
        try {
          await request('/healthz', { cache: 'no-store' });
        } catch (_) {
          button.disabled = false;
          serverLost();
          return;
        }
        if (options.onNewSession) options.onNewSession();
        else location.reload();
      });
      bannerEl.append(button);
      button.focus();
    }

    function hideBanner() {
      if (bannerEl) { bannerEl.hidden = true; bannerEl.replaceChildren(); }
    }

    function finish(state, message) {
      finished = true;
      finishMessage = message || '';
      serverDown = false;
      clearTimeout(reconnectTimer);
      clearTimeout(probeTimer);
      setState(statusEl, state);
      term.options.disableStdin = true;
      term.options.cursorBlink = false;
      if (message) banner(message);
    }

    // The server did not answer at all (as opposed to answering "no such
    // session"): say so, and keep probing until it is back.
    function serverLost() {
      if (serverDown) return;
      serverDown = true;
      setState(statusEl, 'disconnected');
      banner(t('server_unreachable'), false);
      // While not finished the reconnect loop is already probing.
      if (finished) probeServer(0);
    }

    // The server answered; `exists` tells whether our session is still there.
    function serverBack(exists) {
      if (!serverDown) return;
      serverDown = false;
      if (finished) {
        // Ended (exit frame) and then the server went away: if the session
        // survived, keep showing why it ended; normally it is gone.
        banner(exists ? finishMessage : t('session_gone'));
        if (!exists) setState(statusEl, 'disconnected');
        return;
      }
      hideBanner();
      if (!exists) finish('disconnected', t('session_gone'));
      else setState(statusEl, 'reconnecting');
    }

    function lookUpSession() {
      if (!sessionId) return request('/healthz', { cache: 'no-store' }).then(() => true);
      return getSession(sessionId).then((s) => s !== null);
    }

    function probeServer(n) {
      clearTimeout(probeTimer);
      const delay = Math.min(BACKOFF_MAX_MS / 2, BACKOFF_MIN_MS * 2 ** n);
      probeTimer = setTimeout(() => {
        lookUpSession().then(serverBack, () => probeServer(n + 1));
      }, delay);
    }

    // ---- sending

    function sendBytes(bytes) {
      if (ws && ws.readyState === WebSocket.OPEN) ws.send(bytes);
    }

    function sendControl(obj) {
      if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(obj));
    }

    function sendResize() {
      sendControl({ type: 'resize', cols: term.cols, rows: term.rows });
    }

    term.onData((s) => sendBytes(encoder.encode(s)));
    // onBinary carries non-UTF-8 input (some mouse reports): one byte per char.
    term.onBinary((s) => sendBytes(Uint8Array.from(s, (c) => c.charCodeAt(0) & 0xff)));
    term.onResize(sendResize);

    // ---- connection

    function connect() {
      clearTimeout(reconnectTimer);
      if (finished) return;
      if (!serverDown) setState(statusEl, everConnected ? 'reconnecting' : 'connecting');
      const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
      const sock = new WebSocket(scheme + location.host + path);
      sock.binaryType = 'arraybuffer';
      ws = sock;
      let openedAt = 0;
      let sawExit = false;

      sock.onopen = () => {
        if (finished) { sock.close(1000); return; }
        openedAt = Date.now();
        // The server replays recent output on every connect; without a reset
        // the replay would be appended to what is already on screen.
        resetPending = everConnected;
        everConnected = true;
        if (serverDown) { serverDown = false; hideBanner(); }
        setState(statusEl, 'connected');
        fit();
        sendResize();
        for (const chunk of pending) sock.send(chunk);
        pending = [];
        pendingBytes = 0;
      };

      sock.onmessage = (ev) => {
        if (ws !== sock) return;
        if (typeof ev.data !== 'string') {
          if (resetPending) {
            resetPending = false;
            // Queued through write() so output still buffered from the old
            // connection is parsed before the reset, not after it.
            term.write('', () => term.reset());
          }
          term.write(new Uint8Array(ev.data));
          return;
        }
        let msg;
        try { msg = JSON.parse(ev.data); } catch (_) { return; }
        if (msg.type === 'exit') {
          sawExit = true;
          finish('ended', t('ended_exit_code', { code: msg.code }));
        } else if (msg.type === 'notice') {
          notice(msg.message);
        }
      };

      sock.onclose = (ev) => {
        if (ws !== sock) return;
        ws = null;
        if ((ev.code === 1008 || ev.code === 1009) && ev.reason) notice(ev.reason);
        if (finished || sawExit) {
          // A server shutting down ends every session (exit frame) and then
          // stops answering: tell the visitor, instead of offering a "New
          // session" button that leads nowhere.
          if (sawExit && !serverDown) lookUpSession().then(() => {}, serverLost);
          return;
        }
        if (openedAt && Date.now() - openedAt > STABLE_MS) attempt = 0;
        if (!serverDown) setState(statusEl, 'reconnecting');
        scheduleReconnect();
      };
    }

    function scheduleReconnect() {
      const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** attempt);
      attempt += 1;
      // "Equal jitter": a whole classroom losing Wi-Fi at once must not come
      // back in lockstep.
      const delay = base / 2 + Math.random() * (base / 2);
      reconnectTimer = setTimeout(connect, delay);
      // A refused upgrade (404: session gone) is invisible to WebSocket code,
      // so ask the REST endpoint. Network errors mean "server down": say so
      // and keep going.
      lookUpSession().then((exists) => {
        if (finished) return;
        if (serverDown) serverBack(exists);
        else if (!exists) finish('disconnected', t('session_gone'));
      }, () => { if (!finished) serverLost(); });
    }

    // Skip the wait once the OS reports the network is back.
    const onOnline = () => { if (!ws && !finished) connect(); };

    // ---- fitting

    function fit() {
      try { fitAddon.fit(); } catch (_) { /* container not laid out yet */ }
    }
    const debouncedFit = debounce(fit, 100);
    const ro = typeof ResizeObserver === 'function' ? new ResizeObserver(debouncedFit) : null;
    if (ro) ro.observe(container);
    window.addEventListener('resize', debouncedFit);
    window.addEventListener('online', onOnline);

    fit();
    connect();

    return {
      term,
      send(text) {
        const bytes = encoder.encode(text);
        if (ws && ws.readyState === WebSocket.OPEN) ws.send(bytes);
        else if (!finished && pendingBytes + bytes.length <= MAX_PENDING_BYTES) {
          // A "Run" click during (re)connect should not be silently lost.
          pending.push(bytes);
          pendingBytes += bytes.length;
        }
      },
      close() {
        finished = true;
        clearTimeout(reconnectTimer);
        clearTimeout(probeTimer);
        if (ro) ro.disconnect();
        window.removeEventListener('resize', debouncedFit);
        window.removeEventListener('online', onOnline);
        if (ws) { const s = ws; ws = null; s.close(1000); }
        setState(statusEl, 'disconnected');
      },
      fit,
    };
  }

  function runInTerminal(conn, command) {
    conn.send(command + '\r');
    conn.term.focus();
  }

  // ------------------------------------------------------------ inspector ---

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    if (attrs) for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    for (const c of children) if (c != null) node.append(c);
    return node;
  }

  function formatBytes(n) {
    if (n == null || !Number.isFinite(n)) return '–';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return (i === 0 ? n : n.toFixed(n < 10 ? 1 : 0)) + ' ' + units[i];
  }

  function meter(label, current, limit, format) {
    const hasLimit = typeof limit === 'number' && limit > 0;
    const ratio = hasLimit && typeof current === 'number' ? Math.min(1, current / limit) : 0;
    const fill = el('span', { class: 'meter-fill' });
    fill.style.width = (ratio * 100).toFixed(1) + '%';
    const level = ratio >= 0.9 ? 'high' : ratio >= 0.7 ? 'mid' : 'low';
    return el('div', { class: 'usage-row' },
      el('span', { class: 'usage-label' }, label),
      el('span', { class: 'meter', 'data-level': level }, fill),
      el('span', { class: 'usage-value' },
        format(current) + ' / ' + (hasLimit ? format(limit) : '∞')));
  }

  function renderInspector(root, s) {
    const limits = s.limits || {};
    const usage = s.usage || {};
    const num = (v) => (v == null ? '–' : String(v));

    const cpuSec = typeof usage.cpu_usec === 'number' ? (usage.cpu_usec / 1e6).toFixed(1) + ' s' : '–';
    const oom = usage.oom_kills || 0;
    const usageBox = el('div', { class: 'usage' },
      meter(t('memory'), usage.memory_bytes, limits.memory_bytes, formatBytes),
      meter(t('pids'), usage.pids, limits.pids, num),
      el('div', { class: 'usage-row' },
        el('span', { class: 'usage-label' }, t('cpu')),
        el('span', { class: 'usage-value' }, cpuSec)),
      el('div', { class: 'usage-row', 'data-alert': oom > 0 ? 'true' : 'false' },
        el('span', { class: 'usage-label' }, t('oom_kills')),
        el('span', { class: 'usage-value' }, String(oom))));

    const nsBody = el('tbody');
    for (const kind of Object.keys(s.namespaces || {}).sort()) {
      const ns = s.namespaces[kind] || {};
      const isolated = ns.session != null && ns.session !== ns.host;
      nsBody.append(el('tr', { 'data-isolated': String(isolated) },
        el('th', { scope: 'row' }, kind),
        el('td', null, num(ns.session)),
        el('td', null, num(ns.host)),
        el('td', null, isolated ? t('yes') : t('no'))));
    }
    const nsTable = el('table', { class: 'ns-table' },
      el('thead', null, el('tr', null,
        el('th', { scope: 'col' }, t('ns_kind')),
        el('th', { scope: 'col' }, t('ns_session')),
        el('th', { scope: 'col' }, t('ns_host')),
        el('th', { scope: 'col' }, t('ns_isolated')))),
      nsBody);

    const parts = [usageBox, nsTable];

    if (Array.isArray(s.nested) && s.nested.length) {
      const body = el('tbody');
      for (const n of s.nested) {
        body.append(el('tr', null,
          el('th', { scope: 'row' }, num(n.kind)), el('td', null, num(n.inode)), el('td', null, num(n.pid))));
      }
      parts.push(el('h3', null, t('nested_namespaces')),
        el('table', { class: 'ns-table nested' },
          el('thead', null, el('tr', null,
            el('th', { scope: 'col' }, t('ns_kind')),
            el('th', { scope: 'col' }, 'inode'),
            el('th', { scope: 'col' }, 'PID'))),
          body));
    }

    if (Array.isArray(s.events) && s.events.length) {
      const list = el('ul', { class: 'events' });
      for (const e of s.events.slice(-10)) list.append(el('li', null, num(e && e.message)));
      parts.push(el('h3', null, t('events')), list);
    }

    root.replaceChildren(...parts);
  }

  function startInspector(root, sessionId) {
    let last = '';
    const poll = async () => {
      // Hidden tabs need no live numbers; this also spares the server.
      if (!document.hidden) {
        try {
          const s = await getSession(sessionId);
          if (s === null) return; // session gone: attach() shows the banner
          const json = JSON.stringify(s);
          // Re-rendering identical data would kill any text selection.
          if (json !== last) { last = json; renderInspector(root, s); }
        } catch (_) { /* transient: try again next tick */ }
      }
      setTimeout(poll, 1000);
    };
    poll();
  }

  // ---------------------------------------------------------- page boots ---

  const $ = (sel) => document.querySelector(sel);

  function showClipboardHint() {
    const hint = $('#clip-hint');
    if (!hint) return;
    hint.textContent = IS_MAC
      ? `${t('copy')} ⌘C · ${t('paste')} ⌘V`
      : `${t('copy')} Ctrl+Shift+C · ${t('paste')} Ctrl+Shift+V`;
  }

  // A fatal page-level error (creation failed) shown in #banner with a retry.
  function showPageError(message) {
    const banner = $('#banner');
    if (!banner) { alert(message); return; }
    const button = el('button', { type: 'button' }, t('try_again'));
    button.addEventListener('click', () => location.reload());
    banner.replaceChildren(el('span', null, message), button);
    banner.hidden = false;
  }

  // Transient text such as the "full, retrying in N s" countdown.
  function showBannerText(message) {
    const banner = $('#banner');
    if (!banner) return;
    banner.textContent = message;
    banner.hidden = !message;
  }

  function attachPage(id, onNewSession) {
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

  async function bootPlay() {
    showClipboardHint();
    setState($('#conn-state'), 'connecting');
    // The id lives in the fragment so that a reload reattaches to the same
    // shell, while never being sent to the server in Referer or access logs.
    let id = '';
    try { id = decodeURIComponent(location.hash.slice(1)); } catch (_) { /* mangled: start over */ }
    if (!id) {
      try {
        const s = await createSessionPatiently(null, showBannerText);
        id = s.id;
      } catch (err) {
        setState($('#conn-state'), 'disconnected');
        showPageError(err.message);
        return;
      }
      history.replaceState(null, '', '#' + encodeURIComponent(id));
    }
    window.Nsplay.connection = attachPage(id, () => {
      history.replaceState(null, '', location.pathname + location.search);
      location.reload();
    });
  }

  function bootLanding() {
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
      });
    });
  }

  function storageGet(key) {
    try { return localStorage.getItem(key); } catch (_) { return null; }
  }
  function storageSet(key, value) {
    try {
      if (value == null) localStorage.removeItem(key); else localStorage.setItem(key, value);
    } catch (_) { /* private mode: the session just won't survive a reload */ }
  }

  async function bootLesson() {
    showClipboardHint();
    const topic = document.body.dataset.topic;
    const storeKey = 'nsplay.lesson.' + topic;
    setState($('#conn-state'), 'connecting');

    let id = storageGet(storeKey);
    try {
      if (id && (await getSession(id)) === null) id = null;
    } catch (_) { /* server unreachable: attach() will keep retrying */ }
    if (!id) {
      try {
        const s = await createSessionPatiently(topic, showBannerText);
        id = s.id;
        storageSet(storeKey, id);
      } catch (err) {
        setState($('#conn-state'), 'disconnected');
        showPageError(err.message);
        return;
      }
    }

    const conn = attachPage(id, () => { storageSet(storeKey, null); location.reload(); });
    window.Nsplay.connection = conn;

    const lang = document.documentElement.lang || 'en';
    for (const step of document.querySelectorAll('.step[data-step]')) {
      for (const run of step.querySelectorAll('.run[data-command]')) {
        run.addEventListener('click', () => runInTerminal(conn, run.dataset.command));
      }
      for (const check of step.querySelectorAll('.check')) {
        check.addEventListener('click', async () => {
          const result = step.querySelector('.check-result');
          check.disabled = true;
          if (result) result.textContent = t('checking');
          try {
            const url = sessionUrl(id) + '/checks/' + encodeURIComponent(topic) + '/' +
              encodeURIComponent(step.dataset.step);
            const res = await request(url, {
              method: 'POST',
              headers: { Accept: 'application/json', 'Accept-Language': lang },
            });
            if (!res.ok) throw await errorFromResponse(res);
            const r = await res.json();
            step.dataset.passed = r.passed ? 'true' : 'false';
            if (result) {
              result.textContent = (r.passed ? t('check_passed') : t('check_failed')) +
                (r.detail ? ' — ' + r.detail : '');
            }
          } catch (err) {
            if (result) result.textContent = err.message;
          } finally {
            check.disabled = false;
          }
        });
      }
    }

    const inspector = $('#inspector');
    if (inspector) startInspector(inspector, id);
  }

  function bootLanguageSwitch() {
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

  function boot() {
    bootLanguageSwitch();
    const page = document.body.dataset.page;
    if (page === 'play') bootPlay();
    else if (page === 'landing') bootLanding();
    else if (page === 'lesson') bootLesson();
  }

  window.Nsplay = {
    createSession, getSession, attach, runInTerminal,
    i18n: t,
    connection: null, // set by the play/lesson page boot (handy in devtools)
  };

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot);
  else boot();
})();
