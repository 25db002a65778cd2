// The learner's page in Chromium (issue 17's remaining parts): the "instructor is viewing"
// badge beside the fresh-session button (never over it), terminal tabs (open, switch by
// mouse and keyboard, Run types into the active one, an ended tab says so and closes, "×"
// hangs up a running one, a reload brings back those still running, the limit's refusal in
// the page's language, on a phone too), the light theme (prefers-color-scheme by default, the
// toggle remembered, the terminal's colours follow), lesson text naming the server's real
// limits, and a join refused for the learner's own sessions offering to end them. Screenshots
// of each at 1280×800 and 390×844, English and Japanese, go to NSPLAY_SCREENSHOT_DIR.
// Run by tests/browser.rs (environment, servers and browser: harness.mjs).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DESK, JAPANESE, PHONE, Server, browser, eventually, instancesFor, localAssets, shot, sleep, terminalText, useBrowser,
} from './harness.mjs';

const INSTANCES = instancesFor(import.meta.url);
const TOKEN = 'learner-test-admin-token-0123456789';
// Its servers are stopped with SIGINT (no drain: nothing here tests one).
const STOP = 'SIGINT';
// This file's waits keep the 20 s they had before the shared harness (whose default is 15 s).
const until = (get, pred, what, timeout = 20000) => eventually(get, pred, what, timeout);

useBrowser({ stopSignal: STOP });

async function newPage(viewport, locale, colorScheme = 'dark') {
  const context = await browser.newContext({ viewport, locale, colorScheme, deviceScaleFactor: 1 });
  await localAssets(context);
  const page = await context.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(e.message));
  return page;
}

const tabs = (page) => page.evaluate(() => window.Nsplay.connection.tabs());
const atPrompt = (page) => until(() => terminalText(page), (s) => /#\s*$/.test(s.trimEnd() + ' ') && /#/.test(s),
  'a shell prompt', 45000).catch(async (e) => {
  throw new Error(`${e.message}\nbanner: ${await page.locator('#banner').innerText().catch(() => '')}`);
});

// Types into the active terminal and waits for `want` on its screen.
async function typeAndSee(page, text, want) {
  await page.evaluate(() => window.Nsplay.connection.term.focus());
  await page.keyboard.type(text);
  await page.keyboard.press('Enter');
  return until(() => terminalText(page), (s) => want.test(s), `${want} after \`${text}\``);
}

function overlaps(a, b) {
  return a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;
}

// Ends the page's session (the server's cap counts it until then) and closes its browser.
async function done(page) {
  const id = await page.evaluate(() => window.Nsplay && window.Nsplay.connection && window.Nsplay.connection.sessionId)
    .catch(() => null);
  if (id) await page.evaluate((sid) => fetch('/api/sessions/' + encodeURIComponent(sid), { method: 'DELETE' }), id);
  await page.context().close();
}

test('the instructor-viewing badge sits beside "fresh session", never over it', async () => {
  const server = await Server.start(INSTANCES[0], { extra: ['--admin-token', TOKEN, '--memory', '200M', '--warm-pool', '2'] });
  const auth = { Authorization: 'Bearer ' + TOKEN, 'Content-Type': 'application/json', Accept: 'application/json' };
  const res = await fetch(server.base + '/api/rooms', {
    method: 'POST', headers: auth, body: JSON.stringify({ title: 'Badge check', lessons: ['uts'], capacity: 4 }),
  });
  assert.equal(res.status, 201, await res.clone().text());
  const room = await res.json();
  const instructor = await browser.newContext();
  const login = await instructor.request.post(server.base + '/api/instructor/login', { data: { token: TOKEN } });
  assert.equal(login.status(), 204);
  const watcher = await instructor.newPage();
  await watcher.goto(server.base + '/learn');
  for (const [viewport, locale] of [[DESK, 'en-US'], [PHONE, 'ja-JP']]) {
    const page = await newPage(viewport, locale);
    await page.goto(`${server.base}/join/${room.code}`);
    await page.locator('#join').click();
    await page.waitForURL(/\/learn\/uts/);
    await atPrompt(page);
    const id = await page.evaluate(() => window.Nsplay.connection.sessionId);
    // A read-only view from the instructor's browser (cookie and Origin as the dashboard's).
    await watcher.evaluate(([sid]) => {
      window.views = window.views || [];
      window.views.push(new WebSocket(`ws://${location.host}/api/sessions/${encodeURIComponent(sid)}/terminals/0/view`));
    }, [id]);
    const badge = page.locator('.viewing:not([hidden])');
    await badge.waitFor({ timeout: 20000 });
    // Seen where the learner is, not at the end of the page (a phone's page is 4000 px long).
    const seen = await badge.boundingBox();
    assert.ok(seen && seen.y >= 0 && seen.y + seen.height <= viewport.height,
      `at ${viewport.width}×${viewport.height} the badge is on screen without scrolling: ${JSON.stringify(seen)}`);
    const fresh = page.locator('#fresh-session');
    await fresh.scrollIntoViewIfNeeded();
    const a = await badge.boundingBox();
    const b = await fresh.boundingBox();
    assert.ok(a && b && !overlaps(a, b), `at ${viewport.width}×${viewport.height} the badge ${JSON.stringify(a)} covers "fresh session" ${JSON.stringify(b)}`);
    assert.equal(await page.evaluate(() => { const r = document.querySelector('#fresh-session').getBoundingClientRect(); return document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2)?.id; }), 'fresh-session',
      'the button is the topmost element under its own centre');
    await shot(page, `lesson-viewing-${viewport.width}-${locale.slice(0, 2)}.png`);
    assert.deepEqual(page.errors, []);
    await done(page);
  }
  await instructor.close();

  // The same server runs with --memory 200M: the cgroups lesson says so, in both languages.
  const page = await newPage(DESK, 'en-US');
  for (const lang of ['en', 'ja']) {
    await page.goto(`${server.base}/learn/cgroups?lang=${lang}`);
    const text = await page.locator('.lesson-text').innerText();
    assert.ok(text.includes('200 MiB') && text.includes(String(200 * 1024 * 1024)), `${lang}: the lesson names the server's 200 MiB`);
    assert.ok(!text.includes('256 MiB') && !text.includes('{{'), `${lang}: no fixed 256 MiB, no placeholder left`);
    await page.locator('.step').nth(0).scrollIntoViewIfNeeded();
    await shot(page, `lesson-limits-1280-${lang}.png`);
  }
  await done(page);
  await server.stop(STOP);
});

test('terminal tabs: open, switch, Run into the active one, ended, reload, the limit, a phone', async () => {
  const server = await Server.start(INSTANCES[1], { extra: ['--warm-pool', '2'] });
  const page = await newPage(DESK, 'en-US');
  await page.goto(server.base + '/learn/uts');
  await atPrompt(page);
  assert.deepEqual((await tabs(page)).map((x) => x.terminal), [0]);
  await typeAndSee(page, 'tty', /\/dev\/pts\/0/);

  // "+": a second shell of the same session, in front.
  await page.getByRole('button', { name: 'Open another terminal in this session' }).click();
  await until(() => tabs(page), (v) => v.length === 2 && v[1].active && v[1].state === 'connected', 'the second tab');
  await atPrompt(page);
  await typeAndSee(page, 'tty', /\/dev\/pts\/1/);
  assert.equal(await page.getByRole('tab', { name: 'Terminal 2' }).getAttribute('aria-selected'), 'true');

  // A Run button types into the active tab.
  await page.locator('.step[data-step="enter"] button.run').first().click();
  await until(() => terminalText(page), (s) => /unshare/.test(s), 'the Run command in tab 2');
  await page.keyboard.type('exit');
  await page.keyboard.press('Enter'); // leave the nested namespace the Run started
  await sleep(300);

  // The keyboard: ←/→ on the tab strip switch tabs.
  await page.getByRole('tab', { name: 'Terminal 2' }).focus();
  await page.keyboard.press('ArrowLeft');
  await until(() => tabs(page), (v) => v[0].active, 'tab 1 after ←');
  assert.equal(await page.evaluate(() => document.activeElement.getAttribute('aria-label')), 'Terminal 1');
  assert.ok(!/unshare/.test(await terminalText(page)), 'tab 1 never saw the Run');
  await page.keyboard.press('ArrowRight');
  await until(() => tabs(page), (v) => v[1].active, 'tab 2 after →');
  await shot(page, 'lesson-tabs-1280-en.png');

  // A reload brings both back, the active one in front.
  await page.reload();
  await until(() => tabs(page).catch(() => []), (v) => v.length === 2 && v.every((x) => x.state === 'connected') && v[1].active,
    'both tabs after the reload');
  await until(() => terminalText(page), (s) => /\/dev\/pts\/1/.test(s), 'tab 2 replayed its output');

  // An ended tab says so and closes; the session lives on in the other.
  await typeAndSee(page, 'exit', /exit/);
  await until(() => tabs(page), (v) => v[1].state === 'ended', 'tab 2 ended');
  assert.equal(await page.getByRole('tab', { name: 'Terminal 2 · ended' }).getAttribute('aria-selected'), 'true');
  assert.equal(await page.locator('#conn-state').innerText(), 'Terminal ended', 'the session itself goes on');
  assert.match(await page.locator('#term-pane-1 .banner').innerText(), /the session goes on in the other tabs/);
  const banner = page.locator('#term-pane-1 .banner');
  await banner.getByRole('button', { name: 'Close this tab' }).waitFor();
  await shot(page, 'lesson-tab-ended-1280-en.png');
  await banner.getByRole('button', { name: 'Close this tab' }).click();
  await until(() => tabs(page), (v) => v.length === 1 && v[0].active, 'one tab left');
  await typeAndSee(page, 'echo still-$((40+2))', /still-42/);
  const id = await page.evaluate(() => window.Nsplay.connection.sessionId);
  assert.ok(await page.locator('.tab-close').first().isHidden(), 'the only tab has no ×');

  // "×" on a running tab hangs its shell up (a foreground job too): the server lists it no more.
  await page.locator('.tab-new').click();
  await until(() => tabs(page), (v) => v.length === 2 && v[1].active && v[1].state === 'connected', 'a new second tab');
  await atPrompt(page);
  await typeAndSee(page, 'sleep 1301', /sleep 1301/);
  const session = async () => (await fetch(server.base + '/api/sessions/' + encodeURIComponent(id))).json();
  assert.equal((await session()).terminals.length, 2);
  await shot(page, 'lesson-tab-close-1280-en.png');
  await page.getByRole('button', { name: /^Close terminal 2$/ }).click();
  await until(() => tabs(page), (v) => v.length === 1 && v[0].active, 'the running tab closed');
  assert.deepEqual((await session()).terminals, ['/api/sessions/' + id + '/terminals/0']);
  await typeAndSee(page, 'echo after-$((6*7))', /after-42/);
  assert.deepEqual(page.errors, []);
  await page.context().close();
  await fetch(server.base + '/api/sessions/' + encodeURIComponent(id), { method: 'DELETE' });

  // A Japanese phone: the strip fits, and the refusal past the limit is in Japanese.
  const phone = await newPage(PHONE, 'ja-JP');
  await phone.goto(server.base + '/learn/uts');
  await atPrompt(phone);
  const add = phone.getByRole('button', { name: 'このセッションでターミナルをもう 1 つ開く' });
  const error = phone.locator('.tabs-error');
  for (let i = 0; i < 10 && !(await error.innerText()); i++) {
    const before = (await tabs(phone)).length;
    await add.click();
    await until(async () => [(await tabs(phone)).length, await error.innerText()],
      ([n, e]) => n > before || e !== '', 'a new tab or a refusal');
  }
  const refusal = await error.innerText();
  assert.match(refusal, JAPANESE, `the refusal is Japanese: ${refusal}`);
  assert.match(refusal, /8 個|秒後/, refusal);
  assert.ok((await tabs(phone)).length <= 8);
  const strip = await phone.locator('.term-tabs').boundingBox();
  const box = await phone.locator('.terminal-box').boundingBox();
  assert.ok(strip.y >= box.y && strip.y + strip.height <= box.y + box.height && box.y + box.height <= PHONE.height,
    `the strip is inside the terminal box on screen: ${JSON.stringify({ strip, box })}`);
  assert.ok(strip.x >= 0 && strip.x + strip.width <= PHONE.width, 'and within the screen\'s width');
  await phone.evaluate(() => window.Nsplay.connection.select(0));
  await typeAndSee(phone, 'echo phone-$((1+1))', /phone-2/);
  await shot(phone, 'lesson-tabs-phone-ja.png');
  assert.deepEqual(phone.errors, []);
  await done(phone);
  await server.stop(STOP);
});

test('the light theme: the system\'s choice by default, the toggle remembered, the terminal follows', async () => {
  const server = await Server.start(INSTANCES[2], { extra: ['--warm-pool', '2'] });
  const termBg = (page) => page.evaluate(() => window.Nsplay.connection.term.options.theme.background);
  const pageBg = (page) => page.evaluate(() => getComputedStyle(document.querySelector('.lesson-text')).backgroundColor + '|' +
    getComputedStyle(document.body).backgroundColor);

  const light = await newPage(DESK, 'en-US', 'light');
  await light.goto(server.base + '/learn/uts');
  await atPrompt(light);
  assert.equal(await termBg(light), '#ffffff', 'a light system gets a light terminal');
  await shot(light, 'lesson-light-1280-en.png');
  await done(light);

  const page = await newPage(DESK, 'en-US', 'dark');
  await page.goto(server.base + '/learn/uts');
  await atPrompt(page);
  assert.equal(await termBg(page), '#15181d', 'a dark system gets a dark terminal');
  const darkBody = await pageBg(page);
  const toggle = page.getByRole('button', { name: 'Light theme' });
  await toggle.click();
  assert.equal(await termBg(page), '#ffffff');
  assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), 'light');
  assert.notEqual(await pageBg(page), darkBody, 'the page changed with the terminal');
  // A second tab opened now gets the light colours too.
  await page.getByRole('button', { name: 'Open another terminal in this session' }).click();
  await until(() => tabs(page), (v) => v.length === 2 && v[1].active, 'the second tab');
  assert.equal(await termBg(page), '#ffffff');
  // A+ is remembered as well, for every tab.
  await page.locator('#font-larger').click();
  await page.reload();
  await atPrompt(page);
  assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), 'light', 'the choice survives a reload');
  assert.equal(await termBg(page), '#ffffff');
  await until(() => tabs(page), (v) => v.length === 2, 'both tabs again');
  for (const n of [0, 1]) {
    await page.evaluate((k) => window.Nsplay.connection.select(k), n);
    assert.equal(await page.evaluate(() => window.Nsplay.connection.term.options.fontSize), 16, `tab ${n + 1} keeps A+`);
  }
  await page.locator('#font-smaller').click();
  await page.getByRole('button', { name: 'Dark theme' }).click();
  assert.equal(await termBg(page), '#15181d');
  assert.deepEqual(page.errors, []);
  await done(page);

  // Japanese, a phone, light: the toggle's name is Japanese and the layout holds.
  const phone = await newPage(PHONE, 'ja-JP', 'light');
  await phone.goto(server.base + '/learn/uts');
  await atPrompt(phone);
  await phone.getByRole('button', { name: 'ダークテーマに切り替え' }).waitFor();
  const lang = await phone.locator('.lang-switch').boundingBox();
  assert.ok(lang.x + lang.width <= PHONE.width, 'the language switch stays on screen');
  await shot(phone, 'lesson-light-phone-ja.png');
  await phone.goto(server.base + '/play');
  await atPrompt(phone);
  await shot(phone, 'play-light-phone-ja.png');
  assert.deepEqual(phone.errors, []);
  await done(phone);

  // The other combinations, for the screenshots: Japanese at 1280×800 (light, two tabs) and an
  // English phone (dark, two tabs).
  for (const [viewport, locale, scheme, name] of [[DESK, 'ja-JP', 'light', 'lesson-tabs-light-1280-ja.png'],
    [PHONE, 'en-US', 'dark', 'lesson-tabs-phone-en.png']]) {
    const p = await newPage(viewport, locale, scheme);
    await p.goto(server.base + '/learn/uts');
    await atPrompt(p);
    await p.locator('.tab-new').click();
    await until(() => tabs(p), (v) => v.length === 2 && v[1].state === 'connected', 'the second tab');
    await atPrompt(p);
    await typeAndSee(p, 'echo second-$((1+1))', /second-2/);
    // The pointer rests where "+" was, now over tab 1's "×" (its hover is not the page's state).
    await p.mouse.move(0, 0);
    await shot(p, name);
    assert.deepEqual(p.errors, []);
    await done(p);
  }
  await server.stop(STOP);
});

test('too many sessions of the learner\'s own: the join page says so and ends them on request', async () => {
  // The default per-learner cap (3) and creation burst: no raised client limits here.
  const server = await Server.start(INSTANCES[0], { clientLimits: false, extra: ['--admin-token', TOKEN, '--warm-pool', '1'] });
  const auth = { Authorization: 'Bearer ' + TOKEN, 'Content-Type': 'application/json', Accept: 'application/json' };
  const res = await fetch(server.base + '/api/rooms', {
    method: 'POST', headers: auth, body: JSON.stringify({ title: 'Afternoon', lessons: ['uts'], capacity: 4 }),
  });
  assert.equal(res.status, 201, await res.clone().text());
  const room = await res.json();
  const page = await newPage(DESK, 'en-US');
  await page.goto(server.base + '/learn'); // the learner cookie
  // Three sessions of this browser's own (a script of the learner's, other rooms joined earlier).
  const ids = await page.evaluate(async () => {
    const out = [];
    for (let i = 0; i < 3; i++) out.push((await (await fetch('/api/sessions', { method: 'POST' })).json()).id);
    return out;
  });
  assert.equal(ids.filter(Boolean).length, 3, JSON.stringify(ids));
  await page.goto(`${server.base}/join/${room.code}`);
  await page.fill('#name', 'Busy');
  await page.locator('#join').click();
  const endOthers = page.getByRole('button', { name: 'End my other sessions' });
  await endOthers.waitFor({ timeout: 20000 });
  assert.match(await page.locator('#join-error').innerText(), /already have 3 sessions open/);
  await shot(page, 'classroom-join-too-many-1280-en.png');
  await endOthers.click();
  await page.waitForURL(/\/learn\/uts/, { timeout: 30000 });
  await atPrompt(page);
  for (const id of ids) {
    assert.equal((await fetch(server.base + '/api/sessions/' + encodeURIComponent(id))).status, 404, `session ${id} lives on`);
  }
  assert.deepEqual(page.errors, []);
  await done(page);
  await server.stop(STOP);
});
