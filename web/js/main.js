// nsplay browser entry point (<script type="module"> in templates/base.html):
// wires up the page named by <body data-page> and exposes window.Nsplay for
// devtools and the end-to-end tests (tests/browser/e2e.test.mjs).
//
// The modules: i18n.js (t() and the language switch), api.js (HTTP API
// client), terminal.js (the terminal's WebSocket client), inspector.js,
// page.js (what the terminal pages share), play.js (landing and /play),
// lesson.js (lesson pages), learn.js (progress on the lesson list), reset.js
// (the Reset button), fontsize.js (A− / A+), theme.js (light / dark), tabs.js
// (the terminal tabs), keys.js (the phone key bar),
// dom.js (DOM helpers), cast.js (the Recording download), embedded.js (the
// /embed/* pages; embed.js is the script authors include on their own pages);
// the classroom's join.js (/join pages), room.js (the
// room bar on lesson pages) and instructor.js (sign-in, dashboard, projector).
// No build step: the server
// embeds and serves these files as they are.

import { initLanguageSwitch, t } from './i18n.js';
import { createSession, getSession } from './api.js';
import { attach, runInTerminal } from './terminal.js';
import { bootLanding, bootPlay } from './play.js';
import { bootLesson } from './lesson.js';
import { wireReset } from './reset.js';
import { bootLearn } from './learn.js';
import { addKeyBar } from './keys.js';
import { wireFontSize } from './fontsize.js';
import { wireTheme } from './theme.js';
import { bootJoin } from './join.js';
import { showRoomBar } from './room.js';
import { bootDashboard, bootInstructorLogin, bootProjector } from './instructor.js';
import { wireCast } from './cast.js';
import { bootEmbedLesson, bootEmbedPlay } from './embedded.js';

const Nsplay = {
  createSession, getSession, attach, runInTerminal,
  i18n: t,
  connection: null, // set once the play or lesson page has attached its terminal
};
window.Nsplay = Nsplay;

const expose = (conn) => {
  if (!conn) return;
  Nsplay.connection = conn;
  wireReset(conn);
  wireFontSize(conn);
  wireTheme(conn);
  addKeyBar(conn);
  wireCast(conn);
};

function boot() {
  initLanguageSwitch();
  const page = document.body.dataset.page;
  if (page === 'play') bootPlay().then(expose);
  else if (page === 'landing') bootLanding();
  else if (page === 'lesson') bootLesson().then(expose);
  else if (page === 'learn') bootLearn();
  // Pages in another site's iframe (docs/embedding.md); the session starts on the first click.
  else if (page === 'embed-lesson') bootEmbedLesson();
  else if (page === 'embed-play') bootEmbedPlay();
  // The classroom's pages.
  if (page === 'lesson') showRoomBar();
  else if (page === 'join') bootJoin();
  else if (page === 'instructor-login') bootInstructorLogin();
  else if (page === 'instructor') bootDashboard();
  else if (page === 'projector') bootProjector();
}

// Module scripts run once the document is parsed; the check is for safety.
if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot);
else boot();
