// nsplay terminal tabs (the play and lesson pages): several shells of one session side by
// side. "+" opens another (POST …/terminals; the server allows 8 open and says why it
// refuses, in the page's language), "×" closes one (DELETE …/terminals/{n}: its shell is hung
// up as when a terminal window closes; the session's last running shell has no "×", since
// closing it would end the session), a tab whose shell ended says so and can be closed, a
// reload reopens every terminal still running (GET /api/sessions/{id} lists them), and the
// connection the page hands to Run buttons, Reset, the key bar and the text size acts on the
// active tab (or, for terminal options, on all of them).
//
// The tab strip is a WAI-ARIA tablist: ←/→, Home and End move between tabs, Delete closes the
// focused one (as its "×" does); the terminal areas are its tabpanels.

import { t } from './i18n.js';
import { closeTerminal, getSession, openTerminal, terminalPath } from './api.js';
import { attach, setState } from './terminal.js';
import { $, el } from './dom.js';

const ERROR_MS = 10000;
const LIVE = ['connecting', 'connected', 'reconnecting'];

function terminalNumber(path) {
  const m = /\/terminals\/(\d+)$/.exec(path);
  return m ? Number(m[1]) : 0;
}

// Opens the tabs of session `id` in #terminal (the first on `firstPath`) and returns the
// page's connection (the active tab's).
export function attachTabs(id, firstPath, onNewSession) {
  const area = $('#terminal');
  const box = area.parentElement;
  const statusEl = $('#conn-state');
  let viewingEl = $('#viewing');
  const tabs = [];
  const termOptions = {};
  let inputFilter = null;
  let active = null;

  const list = el('div', { class: 'term-tablist', role: 'tablist', 'aria-label': t('tabs_label') });
  const add = el('button', { type: 'button', class: 'tab-new', title: t('tab_new'), 'aria-label': t('tab_new') }, '+');
  const error = el('span', { class: 'tabs-error', role: 'alert' });
  const strip = el('div', { class: 'term-tabs' }, list, add, error);
  box.prepend(strip);
  box.classList.add('has-tabs');

  let errorTimer = null;
  function showError(message) {
    error.textContent = message || '';
    error.title = message || '';
    clearTimeout(errorTimer);
    if (message) errorTimer = setTimeout(() => showError(''), ERROR_MS);
  }

  // "Terminal 2 · ended"; a phone shows only "2 · ended" (the name stays the tab's label).
  function label(tab) {
    const n = tabs.indexOf(tab) + 1;
    const name = t('tab_label', { n });
    const ended = tab.state === 'ended' ? ' · ' + t('tab_ended') : '';
    tab.tabEl.setAttribute('aria-label', name + ended);
    tab.tabEl.replaceChildren(el('span', { class: 'tab-name' }, name + ended),
      el('span', { class: 'tab-num', 'aria-hidden': 'true' }, String(n) + ended));
    const closeName = t('tab_close_n', { n });
    tab.closeEl.setAttribute('aria-label', closeName);
    tab.closeEl.title = closeName;
  }

  const othersLive = (tab) => tabs.some((x) => x !== tab && LIVE.includes(x.state));

  // "×" on every tab that may close: an ended one beside others, a running one while another
  // shell runs (the last running shell is the session's: its end is the page's end button).
  const closable = (tab) => tabs.length > 1 && (!LIVE.includes(tab.state) || othersLive(tab));
  function relabel() {
    tabs.forEach(label);
    for (const x of tabs) x.closeEl.hidden = !closable(x);
  }

  // The pill says the active tab's state; a tab that ended while others run is no ended session.
  function showState(tab) {
    setState(statusEl, tab.state);
    if (statusEl && tab.state === 'ended' && othersLive(tab)) statusEl.textContent = t('state_tab_ended');
  }

  function showViewing() {
    const on = tabs.some((tab) => tab.viewers > 0);
    if (!viewingEl && on) {
      // A page without a place for it (the playground): a badge of its own.
      viewingEl = el('div', { class: 'viewing', role: 'status' }, t('instructor_viewing'));
      document.body.append(viewingEl);
    }
    if (viewingEl) viewingEl.hidden = !on;
  }

  function remember() {
    try { sessionStorage.setItem('nsplay.tab.' + id, String(active.n)); } catch (_) { /* private mode */ }
  }

  function activate(tab, focus = true) {
    active = tab;
    for (const x of tabs) {
      const on = x === tab;
      x.tabEl.setAttribute('aria-selected', String(on));
      x.tabEl.tabIndex = on ? 0 : -1;
      x.pane.classList.toggle('active', on);
    }
    showState(tab);
    tab.conn.fit();
    if (focus) tab.conn.term.focus();
    remember();
  }

  // Drops an ended tab from the page.
  function remove(tab) {
    const i = tabs.indexOf(tab);
    if (i < 0) return;
    tab.conn.close();
    tab.wrap.remove();
    tab.pane.remove();
    tabs.splice(i, 1);
    relabel();
    if (active === tab) activate(tabs[Math.min(i, tabs.length - 1)]);
    showViewing();
  }

  // Closes a tab: a running shell is hung up first (the server answers once it has ended).
  async function close(tab) {
    if (!closable(tab) || tab.closing) return;
    if (!LIVE.includes(tab.state)) { remove(tab); return; }
    tab.closing = true;
    tab.closeEl.disabled = true;
    try {
      await closeTerminal(id, tab.n);
      remove(tab);
      showError('');
    } catch (err) {
      showError(err.message);
    } finally {
      tab.closing = false;
      tab.closeEl.disabled = false;
    }
  }

  function open(path, focus) {
    const n = terminalNumber(path);
    const paneId = 'term-pane-' + n;
    const tabEl = el('button', {
      type: 'button', role: 'tab', id: 'term-tab-' + n, class: 'term-tab',
      'aria-controls': paneId, 'aria-selected': 'false', tabindex: '-1', 'data-terminal': String(n),
    });
    // Beside the tab, not in it (a button holds no other button); out of the tab order: the
    // Delete key closes the focused tab.
    const closeEl = el('button', { type: 'button', class: 'tab-close', tabindex: '-1', hidden: '' }, '×');
    const wrap = el('span', { class: 'term-tab-wrap', role: 'presentation' }, tabEl, closeEl);
    // The first tab keeps the page's #banner (it held the page's errors until now).
    const banner = (!tabs.length && $('#banner')) || el('div', { class: 'banner', role: 'alert', hidden: '' });
    const host = el('div', { class: 'term-host' });
    const pane = el('div', { class: 'term-pane', id: paneId, role: 'tabpanel', 'aria-labelledby': tabEl.id }, banner, host);
    list.append(wrap);
    area.append(pane);
    const tab = { n, path, tabEl, closeEl, wrap, pane, state: 'connecting', viewers: 0, conn: null, closing: false };
    tabs.push(tab);
    relabel();
    tab.conn = attach(host, path, {
      sessionId: id,
      noticesEl: $('#notices'),
      bannerEl: banner,
      onNewSession,
      termOptions,
      onState(state) {
        tab.state = state;
        tab.tabEl.dataset.state = state;
        relabel();
        if (active === tab) showState(tab);
      },
      onViewers(count) { tab.viewers = count; showViewing(); },
      // While another tab's shell runs, an ended one only closes: the session lives on.
      endAction(state) {
        if (state !== 'ended' || !othersLive(tab)) return null;
        return { label: t('tab_close'), run: () => remove(tab), message: t('tab_ended_exit') };
      },
    });
    if (inputFilter) tab.conn.setInputFilter(inputFilter);
    tabEl.addEventListener('click', () => activate(tab));
    closeEl.addEventListener('click', () => close(tab));
    if (focus || !active) activate(tab, focus);
    return tab;
  }

  list.addEventListener('keydown', (ev) => {
    const i = tabs.findIndex((x) => x.tabEl === document.activeElement);
    if (i < 0) return;
    let to = null;
    if (ev.key === 'ArrowRight') to = (i + 1) % tabs.length;
    else if (ev.key === 'ArrowLeft') to = (i - 1 + tabs.length) % tabs.length;
    else if (ev.key === 'Home') to = 0;
    else if (ev.key === 'End') to = tabs.length - 1;
    else if (ev.key === 'Delete') { ev.preventDefault(); close(tabs[i]); return; }
    if (to === null) return;
    ev.preventDefault();
    activate(tabs[to], false);
    tabs[to].tabEl.focus();
  });

  add.addEventListener('click', async () => {
    add.disabled = true;
    try {
      open(await openTerminal(id), true);
      showError('');
    } catch (err) {
      showError(err.message);
    } finally {
      add.disabled = false;
    }
  });

  // The tab in front before a reload (read before the first tab overwrites it).
  let want = NaN;
  try { want = Number(sessionStorage.getItem('nsplay.tab.' + id) ?? NaN); } catch (_) { /* private mode */ }
  open(firstPath || terminalPath(id), true);

  // A reload: the other terminals still running come back as tabs, the last active one in front.
  getSession(id).then((s) => {
    if (!s || !Array.isArray(s.terminals)) return;
    for (const path of s.terminals) {
      if (!tabs.some((x) => x.n === terminalNumber(path))) open(path, false);
    }
    tabs.sort((a, b) => a.n - b.n);
    for (const x of tabs) list.append(x.wrap);
    relabel();
    const again = tabs.find((x) => x.n === want);
    if (again && again !== active) activate(again);
  }, () => { /* the first tab's own reconnect loop reports a lost server */ });

  // The page's connection: what acts on a terminal acts on the active tab.
  return {
    sessionId: id,
    get term() { return active.conn.term; },
    get path() { return active.conn.path; },
    get state() { return active.state; },
    notice(message) { active.conn.notice(message); },
    send(text) { active.conn.send(text); },
    fit() { active.conn.fit(); },
    setInputFilter(fn) { inputFilter = fn; for (const x of tabs) x.conn.setInputFilter(fn); },
    setTermOption(name, value) { termOptions[name] = value; for (const x of tabs) x.conn.setTermOption(name, value); },
    // For the tests and devtools: the tabs in order, with their terminal and state.
    tabs() { return tabs.map((x) => ({ terminal: x.n, state: x.state, active: x === active })); },
    select(n) { const x = tabs.find((y) => y.n === n); if (x) activate(x); },
  };
}
