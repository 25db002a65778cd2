// Embedding in Chromium (docs/embedding.md): an author's page served from a second origin
// (another port on 127.0.0.1, a tiny static server started here) includes /embed.js with a
// lesson and Run blocks. When nsplay lists that origin in embed_origins, the lesson iframe and
// the Run terminal work, nothing starts before the first click, and the page's own scripts may
// create a session (CORS) and open its socket; when it does not, the frame is refused
// (frame-ancestors) and so is a socket the page opens (Origin check). The frames take the
// author's default colours (data-nsplay-theme) and have a ☀ / ☾ of their own. Run with the rest of the
// browser suite by tests/browser.rs (environment, servers and browser: harness.mjs).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import path from 'node:path';
import {
  SHOTS, Server, browser, eventually, instancesFor, localAssets, sleep, terminalText, useBrowser,
} from './harness.mjs';

const INSTANCES = instancesFor(import.meta.url);
// Its servers are stopped with SIGINT (no drain: nothing here tests one).
const STOP = 'SIGINT';
// This file's waits keep the 45 s they had before the shared harness (whose default is 15 s).
const PATIENT = 45000;

// The author's site: one page that includes nsplay's embed script from `nsplay`.
function authorSite() {
  let nsplay = '';
  const http = createServer((req, res) => {
    if (!req.url.startsWith('/tutorial.html')) { res.writeHead(404); res.end(); return; }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>An author's tutorial</title>
<style>body{font:16px system-ui;margin:2rem auto;max-width:60rem} pre{background:#eee;padding:.5rem}</style></head>
<body><h1>Namespaces, on my own site</h1>
<p>The whole UTS lesson:</p>
<div data-nsplay-lesson="uts" data-nsplay-height="420px"></div>
<p>My own steps:</p>
<pre data-nsplay-run>echo from-the-aut''hor-page</pre>
<div data-nsplay-terminal data-nsplay-height="260px" data-nsplay-theme="dark"></div>
<script src="${nsplay}/embed.js"></script></body></html>`);
  });
  return new Promise((resolve) => http.listen(0, '127.0.0.1', () => {
    const origin = `http://127.0.0.1:${http.address().port}`;
    resolve({ http, origin, url: (base) => { nsplay = base; return origin + '/tutorial.html'; } });
  }));
}

useBrowser({ stopSignal: STOP });
let site;
before(async () => { site = await authorSite(); });
after(() => { if (site) site.http.close(); });

async function liveSessions(server) {
  const text = await (await fetch(server.base + '/metrics')).text();
  const m = /^nsplay_sessions_live (\d+)/m.exec(text);
  return m ? Number(m[1]) : 0;
}

// What the author page's own script gets when it creates a session (CORS) and opens its socket.
function directUse(page, base) {
  return page.evaluate(async (base) => {
    const out = {};
    let terminal = null;
    try {
      const r = await fetch(base + '/api/sessions', { method: 'POST' });
      out.create = r.status;
      terminal = (await r.json()).terminal;
    } catch (_) {
      out.create = 'blocked';
    }
    // A socket to a terminal path (a real one if the create worked): open, or refused.
    const p = terminal || '/api/sessions/none/terminals/0';
    out.socket = await new Promise((resolve) => {
      const ws = new WebSocket(base.replace('http', 'ws') + p);
      ws.onopen = () => { ws.close(); resolve('open'); };
      ws.onerror = () => resolve('refused');
    });
    return out;
  }, base);
}

test('an allowed second origin embeds a lesson and Run blocks; nothing starts before a click', async () => {
  const server = await Server.start(INSTANCES[0], { extra: ['--embed-origin', site.origin, '--warm-pool', '1'] });
  const context = await browser.newContext({ viewport: { width: 1280, height: 1000 }, locale: 'en-US' });
  await localAssets(context);
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  const consoleLog = [];
  page.on('console', (m) => consoleLog.push(m.text()));
  await page.goto(site.url(server.base));
  const lesson = page.frameLocator('iframe[src*="/embed/uts"]');
  await lesson.locator('#embed-start').waitFor({ timeout: 15000 });
  await lesson.locator('.step[data-step] .run').first().waitFor();
  assert.equal(await page.locator('iframe[src*="/embed/play"]').count(), 0, 'no terminal before the first Run');
  await sleep(1000);
  assert.equal(await liveSessions(server), 0, 'page load started no session');

  // The author's Run block: the terminal appears, and its session starts, on the click.
  await page.click('button.nsplay-run');
  const play = page.frames().find((f) => f.url().startsWith(server.base + '/embed/play')) ||
    await eventually(() => page.frames().find((f) => f.url().startsWith(server.base + '/embed/play')), Boolean, 'the play frame', PATIENT);
  await eventually(() => terminalText(play), (s) => s.includes('from-the-author-page'), 'the Run command in the terminal', PATIENT)
    .catch(async (e) => {
      const banner = await play.locator('#banner').innerText().catch(() => '');
      throw new Error(`${e.message}\nbanner: ${banner}\nconsole: ${consoleLog.join('\n')}\n${server.log}`);
    });
  // The author asked for dark frames (data-nsplay-theme) on a light system: the terminal is dark.
  const colours = (f) => f.evaluate(() => [document.documentElement.dataset.theme || '',
    window.Nsplay.connection ? window.Nsplay.connection.term.options.theme.background : '']);
  assert.deepEqual(await colours(play), ['dark', '#15181d'], 'the author\'s data-nsplay-theme');
  // A second click types into the same shell.
  await page.click('button.nsplay-run');
  await eventually(() => terminalText(play), (s) => s.split('from-the-author-page').length >= 3, 'the second Run', PATIENT);

  // The lesson frame: Start, then a step's Run and Check.
  const lf = page.frames().find((f) => f.url().startsWith(server.base + '/embed/uts'));
  await lesson.locator('#embed-start').click();
  await lesson.locator('#conn-state[data-state="connected"]').waitFor({ timeout: 45000 });
  await lesson.locator('.step[data-step="enter"] .run').click();
  await eventually(() => terminalText(lf), (s) => /unshare/.test(s), 'the lesson Run', PATIENT);
  assert.equal(await lesson.locator('#download-cast').isVisible(), true, 'the Recording button');
  // No theme asked for: the system's (light here); the frame's own ☀ / ☾ switches it, terminal too.
  assert.deepEqual(await colours(lf), ['', '#ffffff']);
  await lesson.getByRole('button', { name: 'Dark theme' }).click();
  assert.deepEqual(await colours(lf), ['dark', '#15181d'], 'the toggle in the embed');

  // The page's own script may use the API (CORS) and open the socket (Origin allowed).
  assert.deepEqual(await directUse(page, server.base), { create: 201, socket: 'open' });
  await sleep(800);
  await page.screenshot({ path: path.join(SHOTS, 'embed-author-page.png'), fullPage: true });

  // A reload of the author page reattaches the lesson frame to its session (sessionStorage).
  const before = await liveSessions(server);
  await page.reload();
  const again = page.frameLocator('iframe[src*="/embed/uts"]');
  await again.locator('#conn-state[data-state="connected"]').waitFor({ timeout: 45000 });
  assert.equal(await liveSessions(server), before, 'the reload made no new session');
  assert.deepEqual(errors, []);
  await context.close();
  await server.stop(STOP);
});

test('a second origin that is not allowed is refused: frame-ancestors and the socket', async () => {
  const server = await Server.start(INSTANCES[1], { extra: ['--warm-pool', '1'] });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'en-US' });
  await localAssets(context);
  const page = await context.newPage();
  const csp = [];
  page.on('console', (m) => { if (/frame-ancestors/.test(m.text())) csp.push(m.text()); });
  const embedAnswer = page.waitForResponse((r) => r.url().startsWith(server.base + '/embed/uts'));
  await page.goto(site.url(server.base));
  const answer = await embedAnswer;
  assert.equal(answer.headers()['content-security-policy'], "frame-ancestors 'self'");
  await eventually(async () => csp.length, (n) => n > 0, 'Chromium refusing the frame (frame-ancestors)', PATIENT);
  // The frame shows no page of nsplay's.
  const frame = page.frames().find((f) => f !== page.mainFrame());
  const shown = frame ? await frame.locator('#embed-start').count().catch(() => 0) : 0;
  assert.equal(shown, 0, 'the refused frame has no nsplay page in it');
  // The author's own script: its create is refused (403, and no CORS answer to read), and a
  // socket to a real terminal it learned is refused by the Origin check.
  const r = await fetch(server.base + '/api/sessions', { method: 'POST' });
  const s = await r.json();
  assert.equal(r.status, 201, JSON.stringify(s));
  const out = await page.evaluate(async ({ base, terminal }) => {
    const o = {};
    try { o.create = (await fetch(base + '/api/sessions', { method: 'POST' })).status; } catch (_) { o.create = 'blocked'; }
    o.socket = await new Promise((resolve) => {
      const ws = new WebSocket(base.replace('http', 'ws') + terminal);
      ws.onopen = () => { ws.close(); resolve('open'); };
      ws.onerror = () => resolve('refused');
    });
    return o;
  }, { base: server.base, terminal: s.terminal });
  assert.deepEqual(out, { create: 'blocked', socket: 'refused' });
  await context.close();
  await server.stop(STOP);
});
