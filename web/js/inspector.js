// nsplay inspector (lesson pages): the session's resource use against its
// limits, its namespaces next to the host's, the namespaces the learner
// created, and recent events; polled once a second from GET /api/sessions/{id}.

import { t } from './i18n.js';
import { getSession } from './api.js';
import { el } from './dom.js';

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

  // What the learner created comes right after the usage, above the eight rows of the
  // session's own namespaces: it is what a lesson step is about (and at 1280×800 the
  // table would push it below the fold).
  const parts = [usageBox];

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

  parts.push(nsTable);

  if (Array.isArray(s.events) && s.events.length) {
    const list = el('ul', { class: 'events' });
    for (const e of s.events.slice(-10)) list.append(el('li', null, num(e && e.message)));
    parts.push(el('h3', null, t('events')), list);
  }

  root.replaceChildren(...parts);
}

// Keeps `root` showing session `sessionId` until the page goes away.
export function startInspector(root, sessionId) {
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
