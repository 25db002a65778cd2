// The shared harness of the browser suite (the *.test.mjs files beside it, run by
// tests/browser.rs through `cargo test --release --test browser`). It owns what every test file
// needs and none should copy: the environment below, `nsplay serve` started on 127.0.0.1:0 and
// stopped again (`Server`), one headless Chromium per test file (`useBrowser`, `browser`),
// polling and waits that fail with what they waited for (`eventually`, `waitFor`), the steps of
// a scenario (`stepper`), a terminal's text (`terminalText`), screenshots (`shot`), and
// serving the work tree's browser files instead of the binary's (`localAssets`).
//
// Environment (tests/browser.rs sets the first three; the others are for runs by hand):
//   NSPLAY_BIN            the nsplay binary
//   NSPLAY_INSTANCES      JSON object: test file name → its array of isolated instance argument
//                         lists (state dir, cgroup parent, id range, data dir), one per server the
//                         file runs at a time; read with `instancesFor(import.meta.url)`
//   NSPLAY_SCREENSHOT_DIR where the PNG screenshots go (default docs/screenshots)
//   NSPLAY_CHROMIUM       the browser (default /usr/bin/chromium)
//   LOCAL_ASSETS=1        serve web/js and web/nsplay.css from the work tree (or from
//   LOCAL_ASSETS_DIR)     LOCAL_ASSETS_DIR: an older web/ to see a test fail) instead of the
//                         copies embedded in the binary, which need a rebuild to change

import { before, after } from 'node:test';
import { spawn, execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));

export function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run these tests with \`cargo test --release --test browser\``);
  return v;
}

export const BIN = env('NSPLAY_BIN');
export const SHOTS = process.env.NSPLAY_SCREENSHOT_DIR || path.resolve(HERE, '../../docs/screenshots');
export const CHROMIUM = process.env.NSPLAY_CHROMIUM || '/usr/bin/chromium';
export const DESK = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };
export const JAPANESE = /[\u3040-\u30ff\u4e00-\u9fff]/;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Each file has instances of its own, so that tests/browser.rs can say which file's servers
// left a session group behind.
export function instancesFor(moduleUrl) {
  const file = path.basename(fileURLToPath(moduleUrl));
  const all = JSON.parse(env('NSPLAY_INSTANCES'));
  const mine = all[file];
  if (!Array.isArray(mine) || mine.length === 0) {
    throw new Error(`NSPLAY_INSTANCES has no instances for ${file} (it has ${Object.keys(all).join(', ')}): ` +
      'list the file in tests/browser.rs');
  }
  return mine;
}

// ------------------------------------------------------------------ server ---

// Generous per-client limits: every request of this suite comes from 127.0.0.1. Flags this
// build does not know are left out (`serve --help` is asked once).
const SERVE_HELP = execFileSync(BIN, ['serve', '--help'], { encoding: 'utf8' });
const CLIENT_LIMITS = [
  ['--max-sessions-per-client', '16'],
  ['--create-burst', '50'],
  ['--create-per-minute', '120'],
  // SIGTERM drains this long before it ends the sessions (docs/scale-out.md).
  ['--drain-timeout', '1s'],
].filter(([flag]) => SERVE_HELP.includes(flag)).flat();

// `nsplay serve` on one instance: `base` (http://127.0.0.1:port), `port`, `log` (the last
// 20 000 characters of its stderr), `api()`, `stop()`.
export class Server {
  static start(instanceArgs, { listen = '127.0.0.1:0', extra = [], clientLimits = true } = {}) {
    const args = ['serve', '--listen', listen, ...instanceArgs, ...(clientLimits ? CLIENT_LIMITS : []), ...extra];
    const child = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const server = new Server(child);
    return new Promise((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => fail(new Error('no "listening" line within 30 s')), 30000);
      const fail = (err) => {
        clearTimeout(timer);
        child.kill('SIGKILL');
        reject(new Error(`nsplay serve ${args.join(' ')} did not start: ${err.message}\n${server.log}`));
      };
      const early = (code) => fail(new Error(`exited with ${code}`));
      child.on('error', fail);
      child.on('exit', early);
      child.stdout.on('data', (d) => {
        out += d;
        const m = /nsplay listening on http:\/\/(\S+)/.exec(out);
        if (!m) return;
        clearTimeout(timer);
        child.off('exit', early);
        server.addr = m[1];
        server.base = 'http://' + m[1];
        server.port = Number(m[1].split(':').pop());
        resolve(server);
      });
    });
  }

  constructor(child) {
    this.child = child;
    this.log = '';
    this.exited = new Promise((r) => child.on('exit', (code, signal) => r(code ?? signal)));
    child.stderr.on('data', (d) => { this.log = (this.log + d).slice(-20000); });
    Server.all.add(this);
  }

  // SIGTERM drains first (--drain-timeout); SIGINT ends the sessions at once; SIGKILL is a
  // crash. A server that has not exited 30 s after the signal is killed.
  async stop(signal = 'SIGTERM') {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    // The timer is cleared once the server has exited: a pending one would keep this file's
    // process (and so the suite) waiting out its 30 s.
    let timer;
    const late = new Promise((r) => { timer = setTimeout(() => r('timeout'), 30000); });
    const r = await Promise.race([this.exited, late]);
    clearTimeout(timer);
    if (r === 'timeout') this.child.kill('SIGKILL');
    Server.all.delete(this);
    return r;
  }

  async api(method, p) {
    const res = await fetch(this.base + p, { method, headers: { Accept: 'application/json' } });
    const text = await res.text();
    return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : null };
  }
}
// Servers not stopped yet: the `after` hook of useBrowser() stops them, so a failed test
// leaves no server (and no session) behind.
Server.all = new Set();

// ----------------------------------------------------------------- browser ---

// The file's Chromium, set by the `before` hook useBrowser() registers (a live binding: read
// it inside tests, not at import time).
export let browser = null;

// Registers the file's hooks: before, Chromium launched (and the screenshot dir made); after,
// Chromium closed and every server still running stopped with `stopSignal`.
export function useBrowser({ stopSignal = 'SIGTERM' } = {}) {
  before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      // launch() always starts from a fresh temporary profile (--user-data-dir).
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--disable-quic'],
    });
  });
  after(async () => {
    if (browser) await browser.close();
    await Promise.all([...Server.all].map((s) => s.stop(stopSignal)));
  });
}

const WEB = process.env.LOCAL_ASSETS_DIR || path.resolve(HERE, '../../web');

// With LOCAL_ASSETS set, `context` gets web/js and web/nsplay.css from WEB (see the header).
export async function localAssets(context) {
  if (!process.env.LOCAL_ASSETS) return;
  await context.route(/\/assets\/(js\/[a-z]+\.js|nsplay\.css)(\?.*)?$/, (route) => {
    const file = /\/assets\/([^?]+)/.exec(route.request().url())[1];
    route.fulfill({ body: readFileSync(path.join(WEB, file)), contentType: file.endsWith('.css') ? 'text/css' : 'text/javascript' });
  });
}

// ----------------------------------------------------------------- waiting ---

// A value for a failure message: long text by its end (a terminal's last lines), objects as
// JSON where they can be.
function describe(v) {
  if (typeof v === 'string') return JSON.stringify(v.length > 800 ? '…' + v.slice(-800) : v);
  try {
    return JSON.stringify(v) ?? String(v);
  } catch (_) {
    return String(v);
  }
}

// Polls `get` (sync or async; a throw counts as a value not yet right) until `pred` holds and
// returns that value; after `timeout` ms fails with `what` and the last value seen.
export async function eventually(get, pred, what, timeout = 15000) {
  const end = Date.now() + timeout;
  let v;
  for (;;) {
    v = await Promise.resolve().then(get).catch((e) => `(error: ${e.message})`);
    if (pred(v)) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeout / 1000} s waiting for ${what}; last seen: ${describe(v)}`);
    await sleep(100);
  }
}

// Runs the steps of one scenario in order; after a failure the rest are
// skipped instead of each timing out on a page in an unknown state.
export function stepper(t) {
  let broken = false;
  return (name, fn) => t.test(name, async (st) => {
    if (broken) { st.skip('an earlier step failed'); return; }
    try { await fn(); } catch (e) { broken = true; throw e; }
  });
}

// Waits for `locator` to reach `state`; fails with `what` (what a person would say they
// waited for) and the locator, instead of Playwright's bare timeout.
export async function waitFor(locator, what, { state = 'visible', timeout = 30000 } = {}) {
  try {
    await locator.waitFor({ state, timeout });
  } catch (e) {
    throw new Error(`timed out after ${timeout / 1000} s waiting for ${what} (${locator} to be ${state}): ` +
      e.message.split('\n')[0]);
  }
}

// The text of the active terminal in `target` (a page or a frame): every line of its
// xterm.js buffer, scrollback included; '' while the page has no terminal yet.
export function terminalText(target) {
  return target.evaluate(() => {
    const conn = window.Nsplay && window.Nsplay.connection;
    if (!conn) return '';
    const b = conn.term.buffer.active;
    const out = [];
    for (let i = 0; i < b.length; i++) out.push(b.getLine(i).translateToString(true));
    return out.join('\n');
  });
}

// A screenshot of `page` into SHOTS as `name` (a .png), once the last output has been painted.
export async function shot(page, name) {
  await sleep(400);
  await page.screenshot({ path: path.join(SHOTS, name) });
}

export async function visibleText(locator) {
  await locator.waitFor({ state: 'visible' });
  return (await locator.innerText()).trim();
}
