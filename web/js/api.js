// nsplay HTTP API client (docs/api.md): sessions, checks, and the errors the
// server answers with, turned into plain-language messages (err.message) that
// pages can show as they are.

import { pageLang, t } from './i18n.js';

// Refusals of a new session whose server message (rendered in the page's
// language, which every call here sends as Accept-Language) says the real
// reason: the whole room is full, the server's memory for sessions is nearly
// used up, this learner has too many sessions, everyone behind this address
// together has, or sessions are started too fast; and a terminal tab refused (8 open, 64
// opened, opened too fast).
const REFUSALS = ['full', 'memory_full', 'too_many_sessions', 'too_many_from_address', 'rate_limited',
  'too_many_terminals', 'terminal_budget_spent', 'terminal_rate_limited'];

// An Error with the HTTP status (0: no answer at all), the API's error code and
// detail, and Retry-After in seconds (or null).
function apiError(status, body, retryAfter) {
  let message;
  const code = body && body.error;
  if (REFUSALS.includes(code) && body.message) message = body.message;
  else if (status === 503 && retryAfter != null) message = t('full_retry', { seconds: retryAfter });
  else if (status === 429 && retryAfter != null) message = t('rate_retry', { seconds: retryAfter });
  else message = t('error_generic');
  const err = new Error(message);
  err.status = status;
  err.code = body && body.error;
  err.detail = body && body.message;
  err.retryAfter = retryAfter;
  return err;
}

export async function errorFromResponse(res) {
  let body = null;
  try { body = await res.json(); } catch (_) { /* proxies may answer with HTML */ }
  const ra = parseInt(res.headers.get('Retry-After') || '', 10);
  return apiError(res.status, body, Number.isFinite(ra) && ra >= 0 ? ra : null);
}

// fetch(), but a network failure rejects with an API error of status 0.
export async function request(url, init) {
  try {
    return await fetch(url, init);
  } catch (_) {
    throw apiError(0, null, null);
  }
}

function headers() {
  return { Accept: 'application/json', 'Accept-Language': pageLang() };
}

async function postJson(url, body) {
  const init = { method: 'POST', headers: headers() };
  if (body != null) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await request(url, init);
  if (!res.ok) throw await errorFromResponse(res);
  return res.json();
}

// A new session of its own (API clients; pages use learnerSession).
export function createSession(lesson) {
  return postJson('/api/sessions', lesson != null ? { lesson } : null);
}

// The learner's one session (the browser's identity cookie says whose): the
// one it has, attached to its running terminal (`terminal` in the answer), or a
// new one; with `fresh`, the learner's sessions end first. A browser that sends
// no cookie (cookies blocked) gets a session of its own instead.
export async function learnerSession(lesson, fresh) {
  const body = {};
  if (lesson != null) body.lesson = lesson;
  if (fresh) body.fresh = true;
  try {
    return await postJson('/api/learner/session', body);
  } catch (err) {
    if (err.code !== 'no_identity') throw err;
    return createSession(lesson);
  }
}

// Ends the learner's sessions but `exceptId` (none: all of them); resolves to
// how many ended. Only ever the sessions of this browser's identity.
export async function endMySessions(exceptId) {
  const q = exceptId ? '?except=' + encodeURIComponent(exceptId) : '';
  const res = await request('/api/learner/sessions' + q, { method: 'DELETE', headers: headers() });
  if (!res.ok) throw await errorFromResponse(res);
  return (await res.json()).ended;
}

// The learner's sessions (by the learner cookie), each with its passed steps.
export async function learnerSessions() {
  const res = await request('/api/learner/sessions', { headers: headers() });
  if (!res.ok) throw await errorFromResponse(res);
  return (await res.json()).sessions || [];
}

// Resolves to the session JSON, or null when the session does not exist.
export async function getSession(id) {
  const res = await request(sessionUrl(id), { headers: { Accept: 'application/json' } });
  if (res.status === 404) return null;
  if (!res.ok) throw await errorFromResponse(res);
  return res.json();
}

export function sessionUrl(id) {
  return '/api/sessions/' + encodeURIComponent(id);
}

// Opens another shell in session `id` (a new tab); resolves to its terminal path.
export async function openTerminal(id) {
  return (await postJson(sessionUrl(id) + '/terminals', null)).terminal;
}

// Closes terminal `n` of session `id` as closing a terminal window does (its shell is hung
// up; what it left in the background runs on); resolves once it has ended.
export async function closeTerminal(id, n) {
  const res = await request(terminalPath(id, n), { method: 'DELETE', headers: headers() });
  if (!res.ok && res.status !== 404) throw await errorFromResponse(res);
}

export function terminalPath(id, n) {
  return sessionUrl(id) + '/terminals/' + (n == null ? 0 : n);
}

// Runs a lesson step's check in session `id`; resolves to { passed, detail },
// the detail in language `lang`.
export async function runCheck(id, topic, step, lang, answer) {
  const url = sessionUrl(id) + '/checks/' + encodeURIComponent(topic) + '/' + encodeURIComponent(step);
  // A quiz step sends what the learner typed; the server checks it.
  const quiz = answer === undefined ? {} : { 'Content-Type': 'application/json' };
  const res = await request(url, {
    method: 'POST',
    headers: { Accept: 'application/json', 'Accept-Language': lang, ...quiz },
    body: answer === undefined ? undefined : JSON.stringify({ answer }),
  });
  if (!res.ok) throw await errorFromResponse(res);
  return res.json();
}

// Creates a session, waiting out 503 ("full") answers with a visible
// countdown instead of making the visitor click again. 429 is not retried
// automatically: hammering a rate limiter only extends the penalty.
export function createSessionPatiently(lesson, showMessage, create) {
  const make = create || (() => learnerSession(lesson));
  let timer = null;
  let cancelled = false;
  let waiting = false;
  const promise = new Promise((resolve, reject) => {
    const attempt = () => {
      waiting = false;
      make().then((s) => { if (!cancelled) resolve(s); }, (err) => {
        if (cancelled) return;
        if (err.status !== 503 || err.retryAfter == null) { reject(err); return; }
        waiting = true;
        let left = Math.max(1, err.retryAfter);
        // The real reason: every slot taken, or the server's memory for
        // sessions nearly used up.
        const memory = err.code === 'memory_full';
        const tick = () => {
          if (cancelled) return;
          if (left <= 0) { showMessage(''); attempt(); return; }
          showMessage(memory ? t('memory_retry', { seconds: left }) : t('full_retry', { seconds: left }));
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
