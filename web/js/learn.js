// nsplay lesson list (/learn): marks each lesson with the learner's progress:
// the steps passed in the learner's sessions (GET /api/learner/sessions, by the
// learner cookie the pages set). Without sessions there is nothing to mark.

import { t } from './i18n.js';
import { learnerSessions } from './api.js';

export async function bootLearn() {
  const passed = {};
  const sessions = await learnerSessions().catch(() => []);
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
