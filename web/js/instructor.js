// nsplay instructor pages: the sign-in form (/instructor/login), the dashboard
// (/instructor: rooms, the new-room form, one room's learner × step matrix,
// refreshed every few seconds) and the projector view. Every change is a POST
// with the page's CSRF token in X-CSRF-Token; the sign-in cookie is HttpOnly,
// so no script ever sees it. Names and titles are set as text, never as HTML.

import { pageLang, t } from './i18n.js';
import { errorFromResponse, request } from './api.js';
import { $, el } from './dom.js';
import { attach } from './terminal.js';

// How often the dashboard and the projector refresh (ms).
const REFRESH_MS = 3000;

function csrf() {
  return document.body.dataset.csrf || '';
}

async function api(method, url, body) {
  const init = { method, headers: { Accept: 'application/json', 'Accept-Language': pageLang() } };
  if (method !== 'GET') init.headers['X-CSRF-Token'] = csrf();
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await request(url, init);
  if (res.status === 401) {
    location.href = '/instructor/login';
    throw await errorFromResponse(res);
  }
  if (!res.ok) throw await errorFromResponse(res);
  return res.status === 204 ? null : res.json();
}

export function bootInstructorLogin() {
  const form = $('#login-form');
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const out = $('#login-error');
    out.textContent = '';
    const res = await request('/api/instructor/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Accept-Language': pageLang() },
      body: JSON.stringify({ token: $('#token').value }),
    }).catch((err) => err);
    if (res instanceof Error) { out.textContent = res.message; return; }
    if (res.ok) { location.href = '/instructor'; return; }
    const err = await errorFromResponse(res);
    out.textContent = err.detail || err.message;
  });
}

function stateText(state) {
  const names = {
    open: t('room_state_open'),
    scheduled: t('room_state_scheduled'),
    closed: t('room_state_closed'),
    ended: t('room_state_ended'),
  };
  return names[state] || state;
}

function timeText(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleTimeString(pageLang(), { hour: '2-digit', minute: '2-digit' });
}

function lessonTitle(topic) {
  const box = document.querySelector(`#new-room input[value="${CSS.escape(topic)}"]`);
  return box ? box.parentElement.textContent.trim() : topic;
}

function usageText(l) {
  if (!l.online || !l.memory_bytes) return '';
  return `${Math.round(l.memory_bytes / 1048576)} MiB · ${l.pids}`;
}

function learnerState(l, p) {
  const names = {
    online: t('learner_state_online'),
    stuck: t('learner_state_stuck'),
    offline: t('learner_offline'),
  };
  const badge = el('span', { class: 'learner-state', 'data-state': l.state }, names[l.state] || l.state);
  if (l.state === 'stuck') badge.title = t('learner_stuck_hint', { minutes: Math.round(p.stuck_after_seconds / 60) });
  return badge;
}

function stepTitle(p, lesson, step) {
  const s = p.steps.find((x) => x.lesson === lesson && x.step === step);
  if (!s) return t('lesson_all_passed');
  return pageLang() === 'ja' ? s.title_ja : s.title_en;
}

// The learner × step matrix of one room's progress; actions call back.
function renderMatrix(p, actions) {
  const table = $('#matrix');
  const head = table.tHead;
  const body = table.tBodies[0];
  const ja = pageLang() === 'ja';
  const cols = [t('col_learner'), t('col_state'), t('col_lesson'), t('col_passed')];
  const headRow = el('tr', null, ...cols.map((c) => el('th', { scope: 'col' }, c)));
  p.steps.forEach((s, i) => {
    const title = `${lessonTitle(s.lesson)}: ${ja ? s.title_ja : s.title_en}`;
    headRow.append(el('th', { scope: 'col', class: 'step-col', title }, String(i + 1)));
  });
  headRow.append(el('th', { scope: 'col' }, t('col_usage')));
  headRow.append(el('th', { scope: 'col' }, t('col_last_activity')));
  headRow.append(el('th', { scope: 'col' }, t('col_actions')));
  head.replaceChildren(headRow);
  body.replaceChildren(...p.learners.map((l) => {
    const name = el('th', { scope: 'row', class: 'learner-name' }, l.name || t('learner_anonymous'));
    const lesson = el('td', { class: 'lesson-cell' }, lessonTitle(l.current_lesson),
      el('span', { class: 'hint-text step-now' }, stepTitle(p, l.current_lesson, l.current_step)));
    const row = el('tr', { 'data-learner': l.id, 'data-state': l.state }, name,
      el('td', null, learnerState(l, p)),
      lesson,
      el('td', { class: 'num' }, `${l.passed_count}/${p.steps.length}`));
    l.passed.forEach((ok, i) => {
      const cell = el('td', { class: 'cell', 'data-passed': ok ? 'true' : 'false', title: p.steps[i].step }, ok ? '✓' : '·');
      row.append(cell);
    });
    row.append(el('td', { class: 'num usage-cell' }, usageText(l)));
    row.append(el('td', null, timeText(l.last_activity)));
    const act = el('td', { class: 'row-actions' });
    if (l.online && l.session) {
      const view = el('button', { type: 'button', class: 'quiet view-learner' }, t('learner_view'));
      view.addEventListener('click', () => actions.view(l));
      const end = el('button', { type: 'button', class: 'quiet danger end-learner' }, t('learner_end'));
      end.addEventListener('click', () => actions.end(l));
      act.append(view, ' ', end);
    }
    row.append(act);
    return row;
  }));
  $('#matrix-empty').hidden = p.learners.length > 0;
  table.hidden = p.learners.length === 0;
}

export function bootDashboard() {
  let current = null;
  let timer = null;
  const ticked = []; // lessons in the order they were ticked
  for (const box of document.querySelectorAll('#new-room input[name="lessons"]')) {
    box.addEventListener('change', () => {
      const at = ticked.indexOf(box.value);
      if (box.checked && at < 0) ticked.push(box.value);
      if (!box.checked && at >= 0) ticked.splice(at, 1);
    });
  }

  async function loadRooms() {
    const { rooms } = await api('GET', '/api/rooms');
    const list = $('#rooms');
    list.replaceChildren(...rooms.map((r) => {
      const b = el('button', { type: 'button', class: 'room-item', 'data-room': r.id },
        el('strong', null, r.title), ' ', el('code', null, r.code), ' ',
        el('span', { class: 'room-state', 'data-state': r.state }, stateText(r.state)), ' ',
        el('span', { class: 'hint-text' }, t('room_learners', { n: r.learners, capacity: r.capacity })));
      if (current && current.id === r.id) b.setAttribute('aria-current', 'true');
      b.addEventListener('click', () => { location.hash = r.id; });
      return el('li', null, b);
    }));
    $('#rooms-empty').hidden = rooms.length > 0;
    return rooms;
  }

  let source = null;
  let viewer = null;
  function closeViewer() {
    if (viewer) { viewer.close(); viewer = null; }
    $('#viewer-term').replaceChildren();
    $('#viewer').hidden = true;
  }
  const actions = {
    // A read-only live view of the learner's first terminal (the instructor's cookie goes along).
    view(l) {
      closeViewer();
      $('#viewer').hidden = false;
      $('#viewer-h').textContent = t('viewer_title', { name: l.name || t('learner_anonymous') });
      viewer = attach($('#viewer-term'), `/api/sessions/${encodeURIComponent(l.session)}/terminals/0/view`, { readOnly: true });
      $('#viewer').scrollIntoView({ block: 'nearest' });
    },
    async end(l) {
      if (!current || !window.confirm(t('learner_end_confirm'))) return;
      await api('POST', `/api/rooms/${encodeURIComponent(current.id)}/learners/${encodeURIComponent(l.id)}/end`).catch(() => {});
    },
  };
  $('#viewer-close').addEventListener('click', closeViewer);
  function showProgress(p) {
    $('#room-count').textContent = t('room_learners', { n: p.learners.length, capacity: p.room.capacity });
    $('#room-closes').textContent = p.closes_at ? t('room_closes', { time: timeText(p.closes_at) }) : '';
    $('#room-extend').hidden = !p.closes_at || p.room.state === 'ended';
    renderMatrix(p, actions);
    // A join takes a prepared session (and the other nodes build theirs): the line follows.
    if ($('#room-prepared').textContent) followPrepare(p.room.id);
  }

  // Live: the room's event stream (a `progress` event at every join and check); where the
  // browser has no EventSource, polling.
  async function refresh() {
    clearTimeout(timer);
    if (source) { source.close(); source = null; }
    if (!current) return;
    const url = `/api/rooms/${encodeURIComponent(current.id)}`;
    if (window.EventSource) {
      source = new EventSource(`${url}/events`);
      source.addEventListener('progress', (e) => showProgress(JSON.parse(e.data)));
      return;
    }
    try {
      showProgress(await api('GET', `${url}/progress`));
    } catch (_) { /* shown again at the next refresh */ }
    timer = setTimeout(refresh, REFRESH_MS);
  }

  async function show(id) {
    const rooms = await loadRooms();
    current = rooms.find((r) => r.id === id) || null;
    $('#room').hidden = !current;
    $('#no-room').hidden = !!current;
    for (const b of document.querySelectorAll('.room-item')) b.toggleAttribute('aria-current', current && b.dataset.room === current.id);
    closeViewer();
    if (!current) return;
    const base = `/api/rooms/${encodeURIComponent(current.id)}`;
    $('#room-title-h').textContent = current.title;
    $('#room-code').textContent = current.code;
    const link = $('#room-join-url');
    link.textContent = current.join_url;
    link.href = current.join_url;
    $('#room-image-name').textContent = current.image || '';
    $('#room-image-line').hidden = !current.image;
    $('#room-qr').src = `${base}/qr.svg`;
    $('#room-csv').href = `${base}/progress.csv`;
    $('#room-projector').href = `/instructor/rooms/${encodeURIComponent(current.id)}/projector`;
    $('#room-end').hidden = current.state === 'ended';
    $('#room-prepare').hidden = current.state === 'ended' || current.state === 'closed';
    showPrepared(null);
    followPrepare(current.id);
    refresh();
  }

  $('#new-room').addEventListener('submit', async (e) => {
    e.preventDefault();
    const f = e.target.elements; // (form.title would be the form's own title attribute)
    const out = $('#new-room-error');
    out.textContent = '';
    const when = (v) => (v ? new Date(v).toISOString() : null);
    const limits = {};
    if (f.memory.value.trim()) limits.memory = f.memory.value.trim();
    if (f.pids.value) limits.pids = Number(f.pids.value);
    try {
      const r = await api('POST', '/api/rooms', {
        title: f.title.value,
        lessons: ticked,
        capacity: f.capacity.value ? Number(f.capacity.value) : null,
        limits,
        opens_at: when(f.opens_at.value),
        closes_at: when(f.closes_at.value),
        // The field exists only where the server has images to offer.
        image: f.image && f.image.value ? f.image.value : null,
      });
      e.target.reset();
      ticked.length = 0;
      $('#new-room-box').open = false;
      location.hash = r.id;
    } catch (err) {
      out.textContent = err.detail || err.message;
    }
  });

  // "Prepare": the server builds the room's sessions ahead; the line says how far it is until
  // it stops building.
  let preparing = null;
  // This node's count, or every node's where several share the room (as their sweeps last
  // reported, every 5 s).
  function showPrepared(p, all) {
    const line = $('#room-prepared');
    if (all && all.nodes > 1 && all.wanted) line.textContent = t('room_prepared_nodes', all);
    else line.textContent = p && p.wanted ? t('room_prepared', { ready: p.ready, wanted: p.wanted }) : '';
  }
  async function followPrepare(id) {
    clearTimeout(preparing);
    if (!current || current.id !== id) return;
    try {
      const r = await api('GET', `/api/rooms/${encodeURIComponent(id)}`);
      showPrepared(r.prepared, r.prepared_all);
      if (r.prepared && r.prepared.building) preparing = setTimeout(() => followPrepare(id), 1000);
    } catch (_) { /* shown again at the next press */ }
  }
  $('#room-prepare').addEventListener('click', async () => {
    if (!current) return;
    const out = $('#room-prepared');
    try {
      const r = await api('POST', `/api/rooms/${encodeURIComponent(current.id)}/prepare`, {});
      showPrepared(r.prepared);
      followPrepare(current.id);
    } catch (err) {
      out.textContent = err.detail || err.message;
    }
  });

  $('#room-extend').addEventListener('click', async () => {
    if (!current) return;
    await api('POST', `/api/rooms/${encodeURIComponent(current.id)}/extend`, { minutes: 15 }).catch(() => {});
  });

  $('#notice-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!current) return;
    const out = $('#notice-out');
    try {
      await api('POST', `/api/rooms/${encodeURIComponent(current.id)}/notices`, { text: $('#notice-text').value });
      $('#notice-text').value = '';
      out.textContent = t('notice_sent');
    } catch (err) {
      out.textContent = err.detail || err.message;
    }
  });

  $('#room-end').addEventListener('click', async () => {
    if (!current || !window.confirm(t('room_end_confirm'))) return;
    await api('POST', `/api/rooms/${encodeURIComponent(current.id)}/end`).catch(() => {});
    show(current.id);
  });

  $('#sign-out').addEventListener('click', async () => {
    await api('POST', '/api/instructor/logout').catch(() => {});
    location.href = '/instructor/login';
  });

  window.addEventListener('hashchange', () => show(location.hash.slice(1)));
  show(location.hash.slice(1));
}

// The projector: the live count and the class-wide share of steps passed.
export function bootProjector() {
  const id = document.body.dataset.room;
  async function tick() {
    try {
      const p = await api('GET', `/api/rooms/${encodeURIComponent(id)}/progress`);
      const total = p.steps.length * p.learners.length;
      const done = p.learners.reduce((n, l) => n + l.passed_count, 0);
      $('#projector-count').textContent = String(p.learners.length);
      $('#projector-progress').style.width = total ? `${Math.round((100 * done) / total)}%` : '0%';
      $('#projector-progress-label').textContent = t('projector_progress', { done, total });
    } catch (_) { /* next time */ }
    setTimeout(tick, REFRESH_MS);
  }
  tick();
}
