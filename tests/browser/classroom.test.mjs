// The classroom in Chromium, end to end, taking the classroom-*.png screenshots of
// docs/screenshots: the instructor signs in (a wrong token first) and creates a room with the
// form; an English learner joins on a desktop and passes a UTS step with the Run and Check
// buttons, a Japanese learner joins on a phone, an anonymous one joins; the dashboard, open all
// along, shows each join without a reload, and at 1280×800 its learner matrix fits, the
// actions column included; the instructor opens a read-only view of Ada's terminal (Ada's page
// says so, and what Ada types shows in the view) and broadcasts a notice (both learners' pages
// show it, each in its language); the projector counts the three, on a desktop and (with the
// dashboard) on a Japanese phone; a wrong code and the code form, in Japanese. Every wait fails
// after 30 s with what it waited for. Run by tests/browser.rs (environment, servers and
// browser: harness.mjs).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DESK, JAPANESE, PHONE, Server, browser, eventually, instancesFor, localAssets, shot, stepper, useBrowser,
  visibleText, waitFor,
} from './harness.mjs';

const [INSTANCE] = instancesFor(import.meta.url);
const TOKEN = 'classroom-test-admin-token-0123456789';
const TITLE = 'Linux namespaces, Tuesday 10:00';
const NOTICE = 'Break until 10:30 — back at step 2, please.';
const WAIT = 30000;
const DESKTOP = { viewport: DESK, deviceScaleFactor: 1 };
const MOBILE = { viewport: PHONE, deviceScaleFactor: 1, isMobile: true, hasTouch: true };

useBrowser();

const pages = [];
async function newPage(options, locale) {
  const context = await browser.newContext({ ...options, locale });
  await localAssets(context);
  const page = await context.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(e.message));
  pages.push(page);
  return page;
}

async function waitUrl(page, url, what) {
  try {
    await page.waitForURL(url, { timeout: WAIT });
  } catch (e) {
    throw new Error(`timed out after ${WAIT / 1000} s waiting for ${what} (${url}); the page is at ${page.url()}: ` +
      e.message.split('\n')[0]);
  }
}

// Joins the room from its join page (with `name`, or anonymously) and waits for the first
// lesson; a refusal shown on the join page is the failure's message.
async function join(page, name, who) {
  if (name) await page.fill('#name', name);
  await page.click('#join');
  await waitUrl(page, /\/learn\/uts/, `${who}'s first lesson`).catch(async (e) => {
    const refusal = await page.locator('#join-error').innerText().catch(() => '');
    throw new Error(`${e.message}\nthe join page says: ${JSON.stringify(refusal)}`);
  });
}

// The terminal's cursor row and the text on it.
const cursorLine = (page) => page.evaluate(() => {
  const b = window.Nsplay.connection.term.buffer.active;
  const row = b.baseY + b.cursorY;
  return { row, text: b.getLine(row).translateToString(true) };
});

// A shell prompt ("root@nsplay:~# ", or the nested sh's "# ") under the cursor, below row `after`.
const prompt = (page, what, after = -1) => eventually(() => cursorLine(page),
  (v) => typeof v === 'object' && v.row > after && /#\s*$/.test(v.text), what, WAIT);

async function runStep(page, id) {
  const before = (await cursorLine(page)).row;
  await page.locator(`.step[data-step="${id}"] button.run`).click();
  await prompt(page, `the prompt after Run in step ${id}`, before);
}

// The matrix's rows as the instructor reads them.
const matrixRows = (page) => page.locator('#matrix tbody tr').allInnerTexts();
const rowCount = (page, n, what) => eventually(() => matrixRows(page), (r) => Array.isArray(r) && r.length === n, what, WAIT);

test('a classroom: sign-in, a room, three learners, the live dashboard, a view, a notice, the projector', async (t) => {
  const server = await Server.start(INSTANCE, { extra: ['--admin-token', TOKEN, '--max-sessions-per-address', '32'] });
  const base = server.base;
  const step = stepper(t);
  const ip = await newPage(DESKTOP, 'en-US');
  let code = '';
  let roomId = '';
  let ada; // the English desktop learner
  let hanako; // the Japanese phone learner

  await step('a wrong admin token is refused; the right one signs in', async () => {
    await ip.goto(base + '/instructor');
    await waitUrl(ip, /\/instructor\/login/, 'the redirect to the sign-in page');
    await shot(ip, 'classroom-sign-in.png');
    await ip.fill('#token', 'wrong-token');
    await ip.click('#login-form button[type=submit]');
    await waitFor(ip.locator('#login-error').filter({ hasText: /admin token/ }), 'the wrong token\'s refusal');
    assert.equal(await visibleText(ip.locator('#login-error')), 'That is not the admin token (or it has been replaced).');
    await ip.fill('#token', TOKEN);
    await ip.click('#login-form button[type=submit]');
    await waitUrl(ip, base + '/instructor', 'the dashboard after signing in');
    assert.equal(await visibleText(ip.locator('h1')), 'Classroom');
  });

  await step('the form creates a room with a six-character join code', async () => {
    await ip.click('#new-room-box summary');
    await ip.fill('#room-title', TITLE);
    await ip.check('input[name=lessons][value=uts]');
    await ip.check('input[name=lessons][value=pid]');
    // The server's session cap (4: the instance's id ranges) bounds a room's capacity.
    await ip.fill('input[name=capacity]', '4');
    // The open form's column is wide enough for a room's title (it used to scroll at 17rem).
    const title = await ip.locator('#room-title').evaluate((el) => [el.scrollWidth, el.clientWidth]);
    assert.ok(title[0] <= title[1], `the title field shows ${title[1]} of ${title[0]} px of "${TITLE}"`);
    await shot(ip, 'classroom-new-room.png');
    await ip.click('#new-room button[type=submit]');
    await waitFor(ip.locator('#room-code').filter({ hasText: /^[A-Z0-9]{6}$/ }), 'the new room\'s join code');
    code = (await ip.locator('#room-code').innerText()).trim();
    assert.match(code, /^[A-Z0-9]{6}$/);
    roomId = await ip.evaluate(() => location.hash.slice(1));
    assert.ok(roomId, 'the dashboard shows the new room (its id in the address)');
    assert.equal(await visibleText(ip.locator('#room-title-h')), TITLE);
    // Marks this document: still there after the joins, the dashboard never reloaded.
    await ip.evaluate(() => { window.openAllAlong = true; });
  });

  await step('an English learner joins on a desktop and passes a UTS step with Run and Check', async () => {
    ada = await newPage(DESKTOP, 'en');
    await ada.goto(`${base}/join/${code}?lang=en`);
    assert.equal(await visibleText(ada.locator('h1')), TITLE);
    assert.equal(await visibleText(ada.locator('.room-code code')), code);
    await shot(ada, 'classroom-join.png');
    await join(ada, 'Ada <b>Lovelace</b>', 'Ada');
    await waitFor(ada.locator('.room-bar'), 'the room bar on Ada\'s lesson');
    assert.equal(await visibleText(ada.locator('.room-bar > span').first()), `Class: ${TITLE}`);
    await prompt(ada, 'Ada\'s shell prompt');
    await runStep(ada, 'enter');
    await runStep(ada, 'set-hostname');
    await ada.click('.step[data-step=set-hostname] button.check');
    await waitFor(ada.locator('.step[data-step=set-hostname][data-passed=true]'), 'the check of set-hostname to pass');
    assert.match(await visibleText(ada.locator('.step[data-step=set-hostname] .check-result')), /^Passed — /);
    await ada.evaluate(() => {
      for (const el of [document.querySelector('.lesson-text'), document.scrollingElement]) if (el) el.scrollTop = 0;
    });
    await shot(ada, 'classroom-lesson-room-bar.png');
  });

  await step('the dashboard shows each join without a reload: a Japanese phone, an anonymous desktop', async () => {
    await rowCount(ip, 1, 'Ada on the dashboard');
    hanako = await newPage(MOBILE, 'ja');
    await hanako.goto(`${base}/join/${code}?lang=ja`);
    assert.equal(await visibleText(hanako.locator('#join')), '参加して始める');
    await shot(hanako, 'classroom-join-phone-ja.png');
    await join(hanako, '山田 花子', 'Hanako');
    await prompt(hanako, 'Hanako\'s shell prompt');
    // Waited for before the next join, so the rows are in join order.
    await rowCount(ip, 2, 'Hanako on the dashboard');
    const anon = await newPage(DESKTOP, 'en');
    await anon.goto(`${base}/join/${code}?lang=en`);
    await join(anon, '', 'the anonymous learner');
    await prompt(anon, 'the anonymous learner\'s shell prompt');
    await rowCount(ip, 3, 'the anonymous learner on the dashboard');
    await waitFor(ip.locator('#matrix td.cell[data-passed=true]').first(), 'Ada\'s passed step on the dashboard');
    assert.equal(await ip.evaluate(() => window.openAllAlong), true, 'the dashboard was not reloaded');
    const rows = await matrixRows(ip);
    assert.ok(rows[0].startsWith('Ada <b>Lovelace</b>'), `Ada's name, as text: ${rows[0]}`);
    assert.equal(await ip.locator('#matrix b').count(), 0, 'her name is not markup');
    assert.ok(rows[0].includes('✓'), `Ada's passed step: ${rows[0]}`);
    assert.ok(rows[1].startsWith('山田 花子'), rows[1]);
    assert.ok(rows[2].startsWith('(no name)'), rows[2]);
    for (const r of rows.slice(1)) assert.ok(!r.includes('✓'), `a learner who did nothing has a passed step: ${r}`);
  });

  await step('at 1280×800 the learner matrix fits: no sideways scroll, View and End in view', async () => {
    // Every learner is online with a session: each row has its actions.
    await eventually(() => ip.locator('#matrix tbody tr .row-actions button').count(), (n) => n === 6,
      'View and End on each of the three rows', WAIT);
    const fit = await ip.evaluate(() => {
      const wrap = document.querySelector('.matrix-wrap');
      const box = (el) => { const r = el.getBoundingClientRect(); return { left: r.left, right: r.right }; };
      return {
        scrollWidth: wrap.scrollWidth,
        clientWidth: wrap.clientWidth,
        page: document.documentElement.scrollWidth,
        viewport: window.innerWidth,
        lastHead: box(document.querySelector('#matrix thead th:last-child')),
        actions: [...document.querySelectorAll('#matrix tbody tr td:last-child')].map((td) => ({
          cell: box(td),
          buttons: [...td.querySelectorAll('button')].map((b) => ({ text: b.innerText, ...box(b) })),
        })),
      };
    });
    const detail = JSON.stringify(fit);
    assert.ok(fit.scrollWidth <= fit.clientWidth + 1,
      `the matrix scrolls sideways: ${fit.scrollWidth} px of content in ${fit.clientWidth} px; ${detail}`);
    assert.ok(fit.page <= fit.viewport, `the page itself is wider than the window: ${detail}`);
    const inView = (b) => b.left >= 0 && b.right <= fit.viewport;
    assert.ok(inView(fit.lastHead), `the Actions heading is cut off: ${detail}`);
    assert.equal(fit.actions.length, 3);
    for (const a of fit.actions) {
      assert.deepEqual(a.buttons.map((b) => b.text), ['View', 'End session']);
      assert.ok(inView(a.cell) && a.buttons.every(inView), `a row's actions are cut off: ${detail}`);
    }
  });

  await step('a read-only view of Ada\'s terminal: her page says so, what she types shows', async () => {
    await ip.locator('#matrix tbody tr').first().locator('button.view-learner').click();
    await waitFor(ip.locator('#viewer-term .xterm-screen'), 'the viewer\'s terminal');
    assert.equal(await visibleText(ip.locator('#viewer-h')), 'Ada <b>Lovelace</b>: terminal, read-only');
    await waitFor(ada.locator('.viewing:not([hidden])'), 'the "instructor is viewing" badge on Ada\'s page');
    assert.equal(await visibleText(ada.locator('.viewing:not([hidden])')), 'The instructor is viewing your terminal (read-only).');
    await ada.evaluate(() => window.Nsplay.connection.term.focus());
    await ada.keyboard.type('echo seen-by-the-$((6*7))-instructor');
    await ada.keyboard.press('Enter');
    await waitFor(ip.locator('#viewer-term').filter({ hasText: 'seen-by-the-42-instructor' }), 'Ada\'s output in the view');
    await shot(ada, 'classroom-learner-viewed.png');
  });

  await step('a notice reaches both learners, each in its language', async () => {
    await ip.fill('#notice-text', NOTICE);
    await ip.click('#notice-form button[type=submit]');
    await waitFor(ip.locator('#notice-out').filter({ hasText: 'Sent.' }), '"Sent." under the notice form');
    for (const [page, from, who] of [[ada, 'From the instructor:', 'Ada'], [hanako, '講師より:', 'Hanako']]) {
      const notice = page.locator('.room-notice').filter({ hasText: NOTICE });
      await waitFor(notice, `the notice on ${who}'s page`);
      assert.equal(await visibleText(notice.locator('strong')), from);
    }
    await shot(hanako, 'classroom-notice-phone-ja.png');
    await ip.evaluate(() => {
      document.querySelector('.matrix-wrap').scrollLeft = 0;
      document.querySelector('#matrix').scrollIntoView();
    });
    await shot(ip, 'classroom-dashboard.png');
  });

  await step('closing the view takes the badge off Ada\'s page', async () => {
    await ip.click('#viewer-close');
    await waitFor(ada.locator('.viewing[hidden]'), 'the badge to go', { state: 'attached' });
  });

  await step('the projector counts the three learners', async () => {
    const projector = await ip.locator('#room-projector').getAttribute('href');
    assert.equal(projector, `/instructor/rooms/${roomId}/projector`);
    await ip.goto(base + projector);
    await waitFor(ip.locator('#projector-count').filter({ hasText: /^3$/ }), 'the projector\'s count of 3');
    assert.equal(await visibleText(ip.locator('h1')), TITLE);
    assert.equal(await visibleText(ip.locator('.projector-code')), code);
    await shot(ip, 'classroom-projector.png');
  });

  await step('on the instructor\'s Japanese phone: the dashboard and the projector', async () => {
    const phone = await newPage(MOBILE, 'ja');
    await phone.context().addCookies(await ip.context().cookies());
    await phone.goto(`${base}/instructor?lang=ja#${roomId}`);
    await rowCount(phone, 3, 'the three learners on the phone\'s dashboard');
    assert.equal(await visibleText(phone.locator('h1')), 'クラスルーム');
    await shot(phone, 'classroom-dashboard-phone-ja.png');
    await phone.goto(`${base}/instructor/rooms/${roomId}/projector?lang=ja`);
    await waitFor(phone.locator('#projector-count').filter({ hasText: /^3$/ }), 'the phone projector\'s count of 3');
    assert.match(await visibleText(phone.locator('.projector-count')), /^3 人が参加$/);
    await shot(phone, 'classroom-projector-phone-ja.png');
  });

  await step('a wrong code, then the code form, in Japanese', async () => {
    const phone = await newPage(MOBILE, 'ja');
    await phone.goto(`${base}/join/ZZZZZZ?lang=ja`);
    assert.equal(await visibleText(phone.locator('.refusal')), 'このコードのクラスはありません。');
    await shot(phone, 'classroom-join-wrong-code-ja.png');
    await phone.goto(base + '/join');
    await waitFor(phone.locator('#code'), 'the code field');
    assert.equal(await visibleText(phone.locator('h1')), 'クラスに参加');
    assert.match(await visibleText(phone.locator('#code-form button')), JAPANESE);
    await shot(phone, 'classroom-enter-code-ja.png');
  });

  for (const page of pages) assert.deepEqual(page.errors, [], `no uncaught errors on ${page.url()}`);
  for (const page of pages) await page.context().close();
  await server.stop();
});
