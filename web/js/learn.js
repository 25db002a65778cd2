// nsplay lesson list (/learn): marks each lesson with the learner's progress,
// read from the sessions this browser keeps for its lessons (each session's
// "passed" steps, GET /api/sessions/{id}). Sessions that ended are skipped.

import { t } from './i18n.js';
import { getSession } from './api.js';

// The session ids this browser remembers for lessons (lesson.js stores them).
function knownSessions() {
  const ids = new Set();
  try {
    for (let i = 0; i < localStorage.length; i++) {
      const key = localStorage.key(i);
      if (key && key.startsWith('nsplay.lesson.')) ids.add(localStorage.getItem(key));
    }
  } catch (_) { /* private mode: no progress to show */ }
  ids.delete(null);
  return [...ids].slice(0, 16);
}

export async function bootLearn() {
  const passed = {};
  const sessions = await Promise.all(knownSessions().map((id) => getSession(id).catch(() => null)));
  for (const s of sessions) {
    for (const [topic, steps] of Object.entries((s && s.passed) || {})) {
      passed[topic] = new Set([...(passed[topic] || []), ...steps]);
    }
  }
  for (const li of document.querySelectorAll('.lessons li[data-topic]')) {
    const checks = (li.dataset.checks || '').split(' ').filter(Boolean);
    const done = checks.filter((c) => passed[li.dataset.topic] && passed[li.dataset.topic].has(c)).length;
    const mark = li.querySelector('.progress');
    if (!mark || !checks.length || !done) continue;
    li.dataset.progress = done === checks.length ? 'done' : 'some';
    mark.textContent = done === checks.length
      ? t('progress_done') : t('progress_some', { passed: done, total: checks.length });
  }
}
