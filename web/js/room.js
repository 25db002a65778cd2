// nsplay room bar on lesson pages: when this browser joined a room whose
// lessons include this page's, a bar above the lesson names the class, links
// the room's next lesson, and shows the time left and the instructor's newest
// notices (GET /api/join/{code}/status, polled: any node answers it from the
// shared database). Everything shown is set as text.

import { pageLang, t } from './i18n.js';
import { joinedRoom } from './join.js';
import { el } from './dom.js';
import { request } from './api.js';

// How often the bar asks for the room's notices and time (ms).
const STATUS_MS = 5000;

function timeText(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleTimeString(pageLang(), { hour: '2-digit', minute: '2-digit' });
}

export function showRoomBar() {
  const room = joinedRoom();
  const topic = document.body.dataset.topic;
  const text = document.querySelector('.lesson-text');
  if (!room || !Array.isArray(room.lessons) || !text) return;
  const at = room.lessons.indexOf(topic);
  if (at < 0) return;
  const bar = el('nav', { class: 'room-bar', 'aria-label': t('room_banner', { title: room.title }) });
  bar.append(el('span', null, t('room_banner', { title: room.title })));
  const left = el('span', { class: 'room-time', hidden: '' });
  bar.append(left);
  const next = room.lessons[at + 1];
  if (next) bar.append(el('a', { href: '/learn/' + encodeURIComponent(next) }, t('room_next_lesson')));
  const notices = el('div', { class: 'room-notices', 'aria-live': 'polite' });
  text.prepend(bar, notices);
  if (!room.learner || !room.code) return;

  let shown = '';
  async function poll() {
    try {
      const url = `/api/join/${encodeURIComponent(room.code)}/status?learner=${encodeURIComponent(room.learner)}`;
      const res = await request(url, { cache: 'no-store', headers: { Accept: 'application/json' } });
      if (res.ok) {
        const s = await res.json();
        if (s.ended) left.textContent = t('room_time_over');
        else if (s.seconds_left != null) left.textContent = t('room_time_left', { minutes: Math.max(0, Math.ceil(s.seconds_left / 60)) });
        left.hidden = !(s.ended || s.seconds_left != null);
        const key = JSON.stringify(s.notices);
        if (key !== shown) {
          shown = key;
          notices.replaceChildren(...s.notices.map((n) => el('p', { class: 'room-notice' },
            el('strong', null, t('room_notice_from') + ' '), el('span', null, n.text), ' ',
            el('time', { datetime: n.at, class: 'hint-text' }, timeText(n.at)))));
        }
      }
    } catch (_) { /* the next poll */ }
    setTimeout(poll, STATUS_MS);
  }
  poll();
}
