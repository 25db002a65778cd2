// The classroom in Chromium, end to end, taking the classroom screenshots of docs/screenshots:
// the instructor signs in (a wrong token first), creates a room with the form, an English
// learner joins on a desktop and passes a UTS step with the Run and Check buttons, a Japanese
// learner joins on a phone, an anonymous one joins; the dashboard (live) and the projector
// show the three of them, the dashboard live (a join appears without a reload); the instructor
// opens a read-only view of Ada's terminal (Ada's page says so, and what Ada types shows in the
// view) and broadcasts a notice (both learners' pages show it). Every wait fails loudly after 30 s.
//
// Not yet wired into `cargo test --test browser`: run it against a server you started with
// --admin-token (max_sessions 6 or more, per-client limits raised: every learner is 127.0.0.1):
//   (cd tests/browser && npm ci)
//   BASE=http://127.0.0.1:8080 TOKEN=... OUT=docs/screenshots node tests/browser/classroom.mjs
// LOCAL_ASSETS=1 serves web/js and web/nsplay.css from the work tree instead of the binary's.
import { chromium } from 'playwright-core';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
const BASE = process.env.BASE, TOKEN = process.env.TOKEN, OUT = process.env.OUT;
const WEB = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../web');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const browser = await chromium.launch({ executablePath: process.env.NSPLAY_CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox'] });
const desk = { viewport: { width: 1280, height: 800 } };
const phone = { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true };
// Serve the browser files from the worktree (the binary embeds the ones it was built with).
import { readFileSync } from 'node:fs';
async function local(ctx) {
  if (!process.env.LOCAL_ASSETS) return;
  await ctx.route(/\/assets\/(js\/[a-z]+\.js|nsplay\.css)(\?.*)?$/, (route) => {
    const m = route.request().url().match(/\/assets\/([^?]+)/);
    const type = m[1].endsWith('.css') ? 'text/css' : 'text/javascript';
    route.fulfill({ body: readFileSync(path.join(WEB, m[1])), contentType: type });
  });
}
const shot = async (page, name) => { await sleep(300); await page.screenshot({ path: `${OUT}/${name}.png` }); console.log('shot', name); };

const ins = await browser.newContext({ ...desk, locale: 'en-US' });
await local(ins);
const ip = await ins.newPage();
ip.on('console', (m) => console.log('[dash]', m.text()));
ip.on('pageerror', (e) => console.log('[dash error]', e.message));
await ip.goto(BASE + '/instructor');
await ip.waitForURL(/\/instructor\/login/);
await shot(ip, 'classroom-sign-in');
await ip.fill('#token', 'wrong-token');
await ip.click('#login-form button[type=submit]');
await ip.locator('#login-error').filter({ hasText: /admin token/ }).waitFor({ timeout: 30000 });
await ip.fill('#token', TOKEN);
await ip.click('#login-form button[type=submit]');
await ip.waitForURL(BASE + '/instructor');
await ip.click('#new-room-box summary');
await ip.fill('#room-title', 'Linux namespaces, Tuesday 10:00');
await ip.check('input[name=lessons][value=uts]');
await ip.check('input[name=lessons][value=pid]');
await ip.fill('input[name=capacity]', '6');
await shot(ip, 'classroom-new-room');
await ip.click('#new-room button[type=submit]');
await ip.locator('#room-code').filter({ hasText: /^[A-Z0-9]{6}$/ }).waitFor();
const code = (await ip.locator('#room-code').innerText()).trim();
console.log('code', code);

// Learners: one English desktop that does the UTS steps, one Japanese phone.
async function learner(opts, lang, name) {
  const ctx = await browser.newContext({ ...opts, locale: lang });
  await local(ctx);
  const p = await ctx.newPage();
  p.on('pageerror', (e) => console.log(`[${name} error]`, e.message));
  await p.goto(`${BASE}/join/${code}?lang=${lang}`);
  return { ctx, p };
}
const a = await learner(desk, 'en', 'Ada');
await shot(a.p, 'classroom-join');
await a.p.fill('#name', 'Ada <b>Lovelace</b>');
await a.p.click('#join');
await a.p.waitForURL(/\/learn\/uts/);
await a.p.locator('.room-bar').waitFor();
await a.p.locator('#terminal .xterm-screen').waitFor();
await sleep(2500);
for (const sel of ['.step[data-step=enter] button.run', '.step[data-step=set-hostname] button.run']) {
  await a.p.click(sel);
  await sleep(2000);
}
await a.p.click('.step[data-step=set-hostname] button.check');
await a.p.locator('.step[data-step=set-hostname][data-passed=true]').waitFor({ timeout: 15000 });
await a.p.evaluate(() => { for (const el of [document.querySelector('.lesson-text'), document.scrollingElement]) if (el) el.scrollTop = 0; });
await shot(a.p, 'classroom-lesson-room-bar');

// The dashboard, open on the room before the others join, follows them live.
await ip.goto(BASE + '/instructor#' + (await ip.evaluate(() => location.hash.slice(1))));
await ip.locator('#matrix tbody tr').first().waitFor({ timeout: 15000 });
const b = await learner(phone, 'ja', '花子');
await shot(b.p, 'classroom-join-phone-ja');
await b.p.fill('#name', '山田 花子');
await b.p.click('#join');
await b.p.waitForURL(/\/learn\/uts/);
await sleep(1500);
const c = await learner(desk, 'en', 'anon');
await c.p.click('#join');
await c.p.waitForURL(/\/learn\/uts/);

await ip.locator('#matrix tbody tr').nth(2).waitFor({ timeout: 15000 });
await ip.locator('#matrix td.cell[data-passed=true]').first().waitFor({ timeout: 15000 });
const rows = await ip.locator('#matrix tbody tr').allInnerTexts();
console.log('rows', JSON.stringify(rows));
if (!rows[0].startsWith('Ada <b>Lovelace</b>') || !rows[0].includes('✓')) throw new Error('the dashboard lacks Ada\'s passed step: ' + rows[0]);
if (rows.slice(1).some((r) => r.includes('✓'))) throw new Error('a learner who did nothing has a passed step');
// A read-only view of Ada's terminal: her page says the instructor watches; her output shows.
await ip.locator('#matrix tbody tr').first().locator('button.view-learner').click();
await ip.locator('#viewer-term .xterm-screen').waitFor({ timeout: 15000 });
await a.p.locator('.viewing:not([hidden])').waitFor({ timeout: 15000 });
await a.p.locator('#terminal .xterm-helper-textarea').focus();
await a.p.keyboard.type('echo seen-by-the-instructor\n');
await ip.locator('#viewer-term').filter({ hasText: 'seen-by-the-instructor' }).first().waitFor({ timeout: 15000 });
await shot(a.p, 'classroom-learner-viewed');
// A notice to the room: both learners' pages show it, in their own chrome.
await ip.fill('#notice-text', 'Break until 10:30 — back at step 2, please.');
await ip.click('#notice-form button[type=submit]');
await ip.locator('#notice-out').filter({ hasText: /Sent/ }).waitFor();
await a.p.locator('.room-notice').filter({ hasText: 'Break until 10:30' }).waitFor({ timeout: 15000 });
await b.p.locator('.room-notice').filter({ hasText: 'Break until 10:30' }).waitFor({ timeout: 15000 });
await b.p.locator('.room-notice strong').filter({ hasText: '講師より' }).waitFor();
await shot(b.p, 'classroom-notice-phone-ja');
await ip.evaluate(() => { document.querySelector('.matrix-wrap').scrollLeft = 0; document.querySelector('#matrix').scrollIntoView(); });
await shot(ip, 'classroom-dashboard');
await ip.click('#viewer-close');
await a.p.locator('.viewing[hidden]').waitFor({ state: 'attached', timeout: 15000 });
const proj = await ip.locator('#room-projector').getAttribute('href');
await ip.goto(BASE + proj);
await ip.locator('#projector-count').filter({ hasText: '3' }).waitFor();
await shot(ip, 'classroom-projector');

const ph = await browser.newContext({ ...phone, locale: 'ja' });
await local(ph);
await ph.addCookies((await ins.cookies()).map((k) => ({ ...k })));
const pp = await ph.newPage();
await pp.goto(BASE + '/instructor?lang=ja' + '#' + proj.split('/')[3]);
await pp.locator('#matrix tbody tr').nth(2).waitFor({ timeout: 15000 });
await shot(pp, 'classroom-dashboard-phone-ja');
await pp.goto(BASE + proj + '?lang=ja');
await pp.locator('#projector-count').filter({ hasText: '3' }).waitFor();
await shot(pp, 'classroom-projector-phone-ja');
const bad = await browser.newContext({ ...phone, locale: 'ja' });
await local(bad);
const bp = await bad.newPage();
await bp.goto(BASE + '/join/ZZZZZZ?lang=ja');
await shot(bp, 'classroom-join-wrong-code-ja');
await bp.goto(BASE + '/join');
await shot(bp, 'classroom-enter-code-ja');
await browser.close();
console.log('done');
