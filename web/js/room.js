// nsplay room bar on lesson pages: when this browser joined a room whose
// lessons include this page's, a bar above the lesson names the class and
// links the room's next lesson. Everything shown is set as text.

import { t } from './i18n.js';
import { joinedRoom } from './join.js';
import { el } from './dom.js';

export function showRoomBar() {
  const room = joinedRoom();
  const topic = document.body.dataset.topic;
  const text = document.querySelector('.lesson-text');
  if (!room || !Array.isArray(room.lessons) || !text) return;
  const at = room.lessons.indexOf(topic);
  if (at < 0) return;
  const bar = el('nav', { class: 'room-bar', 'aria-label': t('room_banner', { title: room.title }) });
  bar.append(el('span', null, t('room_banner', { title: room.title })));
  const next = room.lessons[at + 1];
  if (next) bar.append(el('a', { href: '/learn/' + encodeURIComponent(next) }, t('room_next_lesson')));
  text.prepend(bar);
}
