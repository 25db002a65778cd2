// nsplay HTTP API client (docs/api.md): sessions, checks, and the errors the
// server answers with, turned into plain-language messages (err.message) that
// pages can show as they are.

import { t } from './i18n.js';

// An Error with the HTTP status (0: no answer at all), the API's error code and
// detail, and Retry-After in seconds (or null).
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

export async function createSession(lesson) {
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
export async function getSession(id) {
  const res = await request(sessionUrl(id), { headers: { Accept: 'application/json' } });
  if (res.status === 404) return null;
  if (!res.ok) throw await errorFromResponse(res);
  return res.json();
}

export function sessionUrl(id) {
  return '/api/sessions/' + encodeURIComponent(id);
}

export function terminalPath(id) {
  return sessionUrl(id) + '/terminals/0';
}

// Runs a lesson step's check in session `id`; resolves to { passed, detail },
// the detail in language `lang`.
export async function runCheck(id, topic, step, lang) {
  const url = sessionUrl(id) + '/checks/' + encodeURIComponent(topic) + '/' + encodeURIComponent(step);
  const res = await request(url, {
    method: 'POST',
    headers: { Accept: 'application/json', 'Accept-Language': lang },
  });
  if (!res.ok) throw await errorFromResponse(res);
  return res.json();
}

// Creates a session, waiting out 503 ("full") answers with a visible
// countdown instead of making the visitor click again. 429 is not retried
// automatically: hammering a rate limiter only extends the penalty.
export function createSessionPatiently(lesson, showMessage) {
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
