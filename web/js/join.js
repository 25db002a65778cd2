// nsplay join pages (/join and /join/{code}): the code form, and the join form
// that makes this browser a learner of the room (POST /api/join/{code}). The
// learner id is kept in localStorage, so joining again from this browser is the
// same learner (progress kept) and, while it lives, the same session. The join
// makes the session as this browser's learner identity (the nsplay_learner
// cookie), so every lesson page attaches to it as to any learner's one session.

import { pageLang, t } from './i18n.js';
import { errorFromResponse, request } from './api.js';
import { refusalActions } from './page.js';
import { $, el } from './dom.js';

const ROOM_KEY = 'nsplay.room';

// The room this browser joined last: { code, title, lessons, learner, session }.
export function joinedRoom() {
  try { return JSON.parse(localStorage.getItem(ROOM_KEY) || 'null'); } catch (_) { return null; }
}

function remember(j) {
  try {
    localStorage.setItem(ROOM_KEY, JSON.stringify({
      code: j.room.code, title: j.room.title, lessons: j.lessons, learner: j.learner, session: j.session,
    }));
  } catch (_) { /* private mode: rejoining makes a new learner */ }
}

// Posts the join; resolves to the server's answer, or throws an API error.
export async function joinRoom(code, name, learner) {
  const body = { name };
  if (learner) body.learner = learner;
  const res = await request('/api/join/' + encodeURIComponent(code), {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json', 'Accept-Language': pageLang() },
    body: JSON.stringify(body),
  });
  if (!res.ok) throw await errorFromResponse(res);
  return res.json();
}

export function bootJoin() {
  const codeForm = $('#code-form');
  if (codeForm) {
    codeForm.addEventListener('submit', (e) => {
      e.preventDefault();
      const code = $('#code').value.replace(/[\s-]/g, '').toUpperCase();
      if (code) location.href = '/join/' + encodeURIComponent(code);
    });
  }
  const form = $('#join-form');
  if (!form) return;
  const code = document.body.dataset.code;
  const before = joinedRoom();
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const button = $('#join');
    const out = $('#join-error');
    button.disabled = true;
    out.textContent = t('join_joining');
    try {
      const learner = before && before.code === code ? before.learner : null;
      const j = await joinRoom(code, $('#name').value, learner);
      remember(j);
      location.href = j.next;
    } catch (err) {
      // The server's own words (in this page's language) say why: full, closed, name…; with
      // too many sessions of the learner's own open (a room joined earlier, the playground),
      // a button ends those and joins again.
      const text = el('span', null, err.detail || err.message);
      const retry = () => form.requestSubmit();
      out.replaceChildren(text, ...refusalActions(err, retry, (m) => { text.textContent = m; }));
      button.disabled = false;
    }
  });
}
