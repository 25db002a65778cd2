// End-to-end tests of nsplay in Debian's Chromium, driven by playwright-core.
// Each scenario asserts what a person would see. Run through `cargo test`
// (tests/browser.rs), which builds the server, allocates isolated instance
// settings and passes them in (the environment: harness.mjs).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import {
  DESK, JAPANESE, SHOTS, Server, browser, eventually, instancesFor, localAssets, sleep, stepper, useBrowser, visibleText,
} from './harness.mjs';

// Four instances: the first two scenarios share INSTANCES[0]; a later scenario reuses one
// whose server has stopped.
const INSTANCES = instancesFor(import.meta.url);
const VIEWPORT = DESK;

useBrowser();

async function openPage(server, { locale = 'en-US', viewport = VIEWPORT } = {}) {
  const context = await browser.newContext({ viewport, locale, deviceScaleFactor: 1 });
  await localAssets(context);
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.base });
  const page = await context.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(e.message));
  return page;
}

// ---------------------------------------------------------------- terminal ---

// What xterm.js holds: every buffer line (scrollback included), where the
// cursor is, and the size. Read from the Terminal instance the page exposes.
function termSnapshot(page) {
  return page.evaluate(() => {
    const conn = window.Nsplay && window.Nsplay.connection;
    if (!conn) return null;
    const term = conn.term;
    const b = term.buffer.active;
    const lines = [];
    for (let i = 0; i < b.length; i++) {
      const l = b.getLine(i);
      lines.push({ text: l.translateToString(true), wrapped: l.isWrapped });
    }
    return { lines, cursor: b.baseY + b.cursorY, viewportY: b.viewportY, cols: term.cols, rows: term.rows };
  });
}

// Rows joined where xterm wrapped them: what the program printed, line by line.
function logical(lines) {
  const out = [];
  for (const l of lines) {
    if (l.wrapped && out.length) out[out.length - 1] += l.text;
    else out.push(l.text);
  }
  // A prompt's trailing space was written, so xterm does not trim it.
  return out.map((l) => l.trimEnd());
}

function screen(snap) {
  if (!snap) return '(no terminal)';
  let end = snap.lines.length;
  while (end > snap.cursor + 1 && !snap.lines[end - 1].text.trim()) end -= 1;
  return snap.lines.slice(Math.max(0, end - 30), end).map((l) => '| ' + l.text).join('\n');
}

async function waitTerm(page, pred, what, timeout = 15000) {
  const end = Date.now() + timeout;
  let snap = null;
  for (;;) {
    snap = await termSnapshot(page).catch(() => null);
    const r = snap && pred(snap);
    if (r) return r;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; the terminal shows:\n${screen(snap)}`);
    await sleep(100);
  }
}

// A shell prompt (bash's "root@nsplay:~# " or sh's "# ") under the cursor.
const atPrompt = (s) => /#\s*$/.test(s.lines[s.cursor]?.text ?? '');
const hasLine = (line) => (s) => logical(s.lines).includes(line);

// Types a command the way a person does, waits for the next prompt, and
// returns the lines the command printed.
async function run(page, command, { type = true } = {}) {
  const before = (await termSnapshot(page)).cursor;
  if (type) {
    await page.keyboard.type(command);
    await page.keyboard.press('Enter');
  }
  const snap = await waitTerm(page, (s) => s.cursor > before && atPrompt(s) && s, `the prompt after \`${command}\``);
  return logical(snap.lines.slice(before, snap.cursor)).slice(1);
}

async function focusTerminal(page) {
  await page.locator('#terminal .xterm-screen').click();
}

const clipboardText = (page) => page.evaluate(() => navigator.clipboard.readText());

// ------------------------------------------------------------- scenarios ---

let main;

test('playground: start, type, Unicode, wrapping, resize, clipboard, reload', async (t) => {
  main = await Server.start(INSTANCES[0]);
  const page = await openPage(main);
  const step = stepper(t);
  let sessionId = '';

  await step('the landing page offers "Start a playground"', async () => {
    await page.goto(main.base + '/');
    assert.equal(await visibleText(page.locator('h1')), 'Your own Linux root shell, right in the browser');
    assert.equal(await visibleText(page.locator('#start')), 'Start a playground');
    await page.screenshot({ path: path.join(SHOTS, 'landing.png') });
  });

  await step('clicking it opens a terminal with a prompt', async () => {
    await page.getByRole('button', { name: 'Start a playground' }).click();
    await page.waitForURL(/\/play#.+/);
    sessionId = decodeURIComponent(new URL(page.url()).hash.slice(1));
    await waitTerm(page, atPrompt, 'a shell prompt');
    assert.equal(await page.locator('#conn-state').getAttribute('data-state'), 'connected');
    assert.equal(await visibleText(page.locator('#conn-state')), 'Connected');
  });

  await step('`uname -n` prints the session hostname', async () => {
    await focusTerminal(page);
    const out = await run(page, 'uname -n');
    assert.deepEqual(out, ['nsplay']);
  });

  await step('Japanese text renders', async () => {
    const out = await run(page, 'echo 日本語テスト');
    assert.deepEqual(out, ['日本語テスト']);
    // What is painted (DOM renderer rows), not only what the buffer holds.
    // (The renderer paints on its next animation frame: wait for it.)
    const rows = page.locator('#terminal .xterm-rows');
    await eventually(() => rows.innerText(), (v) => v.replace(/\s/g, '').includes('日本語テスト'), 'the Japanese text painted');
  });

  await step('a line wider than the terminal wraps', async () => {
    const { cols } = await termSnapshot(page);
    const n = cols + 17;
    const before = (await termSnapshot(page)).cursor;
    await run(page, `printf 'W%.0s' $(seq 1 ${n}); echo`);
    const snap = await termSnapshot(page);
    const rows = snap.lines.slice(before, snap.cursor);
    const i = rows.findIndex((l) => /^W+$/.test(l.text));
    assert.ok(i >= 0, screen(snap));
    assert.equal(rows[i].text.length, cols, 'the first row is full');
    assert.equal(rows[i + 1].wrapped, true, 'the rest continues on a wrapped row');
    assert.equal(rows[i + 1].text, 'W'.repeat(17));
  });

  await step('resizing the window changes `stty size`', async () => {
    const stty = async () => {
      const out = await run(page, 'stty size');
      const s = await termSnapshot(page);
      return { said: out[0], term: `${s.rows} ${s.cols}` };
    };
    const first = await stty();
    assert.equal(first.said, first.term);
    await page.setViewportSize({ width: 900, height: 560 });
    await eventually(() => termSnapshot(page), (s) => `${s.rows} ${s.cols}` !== first.term, 'the terminal to refit');
    const second = await stty();
    assert.equal(second.said, second.term);
    assert.notEqual(second.said, first.said);
    await page.setViewportSize(VIEWPORT);
    await eventually(() => termSnapshot(page), (s) => `${s.rows} ${s.cols}` === first.term, 'the terminal to refit');
    assert.equal((await stty()).said, first.said);
  });

  await step('pasting (Ctrl+Shift+V and Ctrl+V) reaches the shell', async () => {
    await focusTerminal(page);
    const before = (await termSnapshot(page)).cursor;
    await page.evaluate(() => navigator.clipboard.writeText('echo pasted-'));
    await page.keyboard.press('Control+Shift+V');
    await page.evaluate(() => navigator.clipboard.writeText('$((6*7))'));
    await page.keyboard.press('Control+V');
    await waitTerm(page, (s) => s.lines[s.cursor].text.trimEnd().endsWith('# echo pasted-$((6*7))'), 'the pasted text');
    await page.keyboard.press('Enter');
    const snap = await waitTerm(page, (s) => s.cursor > before && atPrompt(s) && s, 'the prompt');
    assert.deepEqual(logical(snap.lines.slice(before, snap.cursor)).slice(1), ['pasted-42']);
  });

  await step('a selection can be copied with Ctrl+Shift+C', async () => {
    await run(page, 'echo copy-me-$((1000+234))');
    const snap = await termSnapshot(page);
    const row = snap.lines.findLastIndex((l) => l.text === 'copy-me-1234');
    assert.ok(row >= snap.viewportY, 'the line is on screen');
    const box = await page.locator('#terminal .xterm-screen').boundingBox();
    const cw = box.width / snap.cols;
    const ch = box.height / snap.rows;
    await page.mouse.dblclick(box.x + 3.5 * cw, box.y + (row - snap.viewportY + 0.5) * ch);
    assert.equal(await page.evaluate(() => window.Nsplay.connection.term.getSelection()), 'copy-me-1234');
    await page.evaluate(() => navigator.clipboard.writeText('something else'));
    await page.keyboard.press('Control+Shift+C');
    await eventually(() => clipboardText(page), (v) => v === 'copy-me-1234', 'the clipboard');
    // Copying must not have sent ^C to the shell (which would print "^C").
    const after = await termSnapshot(page);
    assert.ok(!after.lines[after.cursor].text.includes('^C'), screen(after));
  });

  await step('a reload reattaches to the same shell with its output', async () => {
    await focusTerminal(page);
    await run(page, 'cd /tmp');
    assert.deepEqual(await run(page, 'echo before-reload-$((40+2))'), ['before-reload-42']);
    await page.reload();
    await waitTerm(page, (s) => hasLine('before-reload-42')(s) && atPrompt(s), 'the earlier output after reload');
    assert.equal(decodeURIComponent(new URL(page.url()).hash.slice(1)), sessionId, 'same session id');
    await focusTerminal(page);
    assert.deepEqual(await run(page, 'pwd'), ['/tmp']);
  });

  await step('terminal queries in the replayed output are not answered into the shell', async () => {
    // A program that asks the terminal what it is (device attributes) and for a
    // mode (DECRQM), and reads the answers, as vi does. Live, xterm.js answers
    // and the program consumes the answers; after a reload the same queries come
    // back in the replay, and an answer then would be typed into the shell.
    await focusTerminal(page);
    const probe = "printf '\\033[c'; read -rs -d c -t 3 _; printf '\\033[?2004$p'; read -rs -d y -t 3 _; echo queries-answered";
    assert.deepEqual(await run(page, probe), ['queries-answered']);
    await page.reload();
    await waitTerm(page, (s) => hasLine('queries-answered')(s) && atPrompt(s), 'the replay after reload');
    await sleep(500);
    await focusTerminal(page);
    assert.deepEqual(await run(page, 'echo after-replay'), ['after-replay']);
  });

  assert.deepEqual(page.errors, [], 'no uncaught errors in the page');
  await page.context().close();
  if (sessionId) await main.api('DELETE', '/api/sessions/' + encodeURIComponent(sessionId));
});

test('UTS lesson: run, check, inspector, Japanese', async (t) => {
  assert.ok(main, 'the server of the first scenario runs');
  const page = await openPage(main, { viewport: { width: 1440, height: 900 } });
  const step = stepper(t);
  const steps = page.locator('.step[data-step]');

  // Clicks each step's Run buttons (waiting for the prompt after each) and its
  // Check button; returns the check results by step id.
  async function walkThrough() {
    const results = {};
    for (let i = 0; i < (await steps.count()); i++) {
      const s = steps.nth(i);
      const id = await s.getAttribute('data-step');
      for (const button of await s.locator('button.run').all()) {
        const command = await button.getAttribute('data-command');
        const before = (await termSnapshot(page)).cursor;
        await button.click();
        await waitTerm(page, (sn) => sn.cursor > before && atPrompt(sn), `the prompt after Run \`${command}\``);
      }
      if (await s.locator('button.check').count()) {
        await s.evaluate((el) => el.removeAttribute('data-passed'));
        await s.locator('button.check').click();
        await eventually(() => s.getAttribute('data-passed'), (v) => v !== null, `the check of ${id}`);
        results[id] = { passed: await s.getAttribute('data-passed'), text: await visibleText(s.locator('.check-result')) };
      }
    }
    return results;
  }

  await step('the lesson page opens with a terminal', async () => {
    await page.goto(main.base + '/learn/uts');
    assert.equal(await visibleText(page.locator('h1')), 'UTS namespace: your own hostname');
    await waitTerm(page, atPrompt, 'a shell prompt');
  });

  await step('Run every step, then Check: the checked steps pass', async () => {
    const results = await walkThrough();
    assert.deepEqual(Object.keys(results).sort(), ['exit', 'set-hostname']);
    for (const [id, r] of Object.entries(results)) {
      assert.equal(r.passed, 'true', `${id}: ${r.text}`);
      assert.match(r.text, /^Passed — /, id);
    }
    const out = logical((await termSnapshot(page)).lines);
    assert.ok(out.includes('my-new-hostname'), 'the nested shell printed the new name');
    assert.equal(out.filter((l) => l === 'nsplay').length >= 1, true, 'and the session kept its own');
  });

  await step('the inspector shows a UTS namespace other than the host\'s', async () => {
    const uts = await eventually(() => page.locator('#inspector .ns-table:not(.nested) tbody tr').evaluateAll((rows) => rows
      .map((r) => ({ kind: r.querySelector('th')?.textContent, cells: [...r.querySelectorAll('td')].map((c) => c.textContent), isolated: r.dataset.isolated }))
      .find((r) => r.kind === 'uts')), (v) => v && typeof v === 'object', 'the uts row of the inspector');
    const [session, host, isolated] = uts.cells;
    assert.match(session, /^\d+$/);
    assert.match(host, /^\d+$/);
    assert.notEqual(session, host);
    assert.equal(isolated, 'yes');
    assert.equal(uts.isolated, 'true');
    await page.locator('.step[data-step="exit"]').scrollIntoViewIfNeeded();
    await page.screenshot({ path: path.join(SHOTS, 'lesson-uts.png') });
  });

  await step('a reload shows every passed step and scrolls to where the learner left off', async () => {
    await page.reload();
    await waitTerm(page, atPrompt, 'the same shell after the reload');
    for (const id of ['set-hostname', 'exit']) {
      const s = page.locator(`.step[data-step="${id}"]`);
      await eventually(() => s.getAttribute('data-passed'), (v) => v === 'true', `${id} shown as passed`);
      assert.equal(await visibleText(s.locator('.check-result')), 'Passed — already done earlier in this session.');
    }
    assert.equal(await page.locator('.step[data-step="enter"]').getAttribute('data-passed'), null);
    // The step after the last passed one is in view: the text column scrolled to it.
    const next = page.locator('.step[data-step="uname-outside"]');
    await eventually(() => page.locator('.lesson-text').evaluate((el) => el.scrollTop), (v) => v > 0, 'the text to scroll');
    const box = await next.boundingBox();
    const vp = page.viewportSize();
    assert.ok(box.y >= 0 && box.y + box.height <= vp.height, `uname-outside is in view: ${JSON.stringify(box)}`);
  });

  await step('switching to Japanese translates the page and the check messages', async () => {
    await page.locator('.lang-switch').getByText('日本語').click();
    await page.waitForFunction(() => document.documentElement.lang === 'ja');
    assert.equal(await visibleText(page.locator('h1')), 'UTS 名前空間: 自分だけのホスト名');
    assert.equal(await visibleText(page.locator('button.run').first()), '実行');
    assert.equal(await visibleText(page.locator('button.check').first()), '確認');
    await waitTerm(page, atPrompt, 'the same shell after switching');
    await eventually(() => page.locator('#conn-state').innerText(), (v) => v === '接続済み', 'the Japanese state');
    await eventually(() => page.locator('#inspector thead').first().innerText(), (v) => v.includes('名前空間'),
      'the Japanese inspector');
    const results = await walkThrough();
    for (const [id, r] of Object.entries(results)) {
      assert.equal(r.passed, 'true', `${id}: ${r.text}`);
      assert.match(r.text, /^合格 — /, id);
      assert.ok(!/[A-Za-z]{4,} [A-Za-z]{4,}/.test(r.text.replace(/`[^`]*`/g, '')), `${id} is Japanese: ${r.text}`);
      assert.match(r.text, JAPANESE);
    }
    await page.locator('.step[data-step="exit"]').scrollIntoViewIfNeeded();
    await page.screenshot({ path: path.join(SHOTS, 'lesson-uts-ja.png') });
  });

  assert.deepEqual(page.errors, [], 'no uncaught errors in the page');
  // The learner's sessions, by the page's own identity cookie.
  await page.evaluate(() => fetch('/api/learner/sessions', { method: 'DELETE' })).catch(() => null);
  await page.context().close();
  await main.stop();
});

test('lesson pages at 1280×800 and on a phone: inspector, text size, next lesson, progress, key bar', async (t) => {
  const server = await Server.start(INSTANCES[2]);
  const step = stepper(t);
  const wide = await openPage(server, { viewport: { width: 1280, height: 800 } });
  const ids = [];
  const runStep = async (page, id) => {
    for (const button of await page.locator(`.step[data-step="${id}"] button.run`).all()) {
      const before = (await termSnapshot(page)).cursor;
      await button.click();
      await waitTerm(page, (sn) => sn.cursor > before && atPrompt(sn), `the prompt after Run in ${id}`);
    }
  };

  await step('at 1280×800 the namespaces the learner created are in view', async () => {
    await wide.goto(server.base + '/learn/uts');
    await waitTerm(wide, atPrompt, 'a shell prompt');
    ids.push(await wide.evaluate(() => window.Nsplay.connection.sessionId));
    await runStep(wide, 'enter');
    const nested = wide.locator('#inspector .ns-table.nested');
    await nested.waitFor({ state: 'visible' });
    const box = await nested.boundingBox();
    assert.ok(box.y + box.height <= 800, `the nested table ends at ${box.y + box.height} px, below the fold`);
    await runStep(wide, 'set-hostname');
    const s = wide.locator('.step[data-step="set-hostname"]');
    await s.locator('button.check').click();
    await eventually(() => s.getAttribute('data-passed'), (v) => v === 'true', 'the check of set-hostname');
    await wide.screenshot({ path: path.join(SHOTS, 'lesson-1280.png') });
  });

  await step('A+ enlarges the terminal and the text, and a reload remembers it', async () => {
    const size = () => wide.evaluate(() => window.Nsplay.connection.term.options.fontSize);
    assert.equal(await size(), 14);
    await wide.locator('#font-larger').click();
    assert.equal(await size(), 16);
    await wide.reload();
    await waitTerm(wide, atPrompt, 'the shell after the reload');
    assert.equal(await size(), 16);
    await wide.locator('#font-smaller').click();
    assert.equal(await size(), 14);
  });

  await step('the end of a lesson links to the next one', async () => {
    const next = wide.locator('.next-lesson a');
    assert.equal(await next.getAttribute('href'), '/learn/pid');
    assert.match(await visibleText(next), /^Next lesson: PID namespace/);
  });

  await step('/learn marks the lessons with the learner\'s progress', async () => {
    await wide.goto(server.base + '/learn');
    const uts = wide.locator('.lessons li[data-topic="uts"] .progress');
    await eventually(() => uts.innerText(), (v) => v === '1 of 2 checks passed', 'the progress of uts');
    assert.equal(await wide.locator('.lessons li[data-topic="pid"] .progress').innerText(), '');
    await wide.screenshot({ path: path.join(SHOTS, 'learn.png') });
    await wide.locator('.lang-switch').getByText('日本語').click();
    await wide.waitForFunction(() => document.documentElement.lang === 'ja');
    await eventually(() => uts.innerText(), (v) => v === '確認 2 件中 1 件に合格', 'the Japanese progress');
    await wide.screenshot({ path: path.join(SHOTS, 'learn-ja.png') });
    await wide.goto(server.base + '/learn/uts');
    await waitTerm(wide, atPrompt, 'a shell prompt');
    await wide.screenshot({ path: path.join(SHOTS, 'lesson-1280-ja.png') });
  });

  for (const locale of ['en-US', 'ja-JP']) {
    const phone = await openPage(server, { viewport: { width: 390, height: 844 }, locale });
    await step(`on a phone (${locale}) the terminal stays in view after Run and commands fit`, async () => {
      await phone.goto(server.base + '/learn/uts');
      await waitTerm(phone, atPrompt, 'a shell prompt');
      ids.push(await phone.evaluate(() => window.Nsplay.connection.sessionId));
      const last = phone.locator('.step[data-step="uname-outside"]');
      await last.scrollIntoViewIfNeeded();
      await runStep(phone, 'uname-outside');
      const box = await phone.locator('.terminal-box').boundingBox();
      assert.ok(box.y >= 0 && box.y + box.height <= 844, `the terminal is off-screen: ${JSON.stringify(box)}`);
      assert.ok((await last.boundingBox()).y < box.y, 'and the step is still above it');
      for (const pre of await phone.locator('.step .command pre').all()) {
        const r = await pre.boundingBox();
        assert.ok(r.x >= 0 && r.x + r.width <= 390, `a command box is cut off: ${JSON.stringify(r)}`);
      }
      await phone.screenshot({ path: path.join(SHOTS, locale === 'en-US' ? 'lesson-phone.png' : 'lesson-phone-ja.png') });
    });
    await step(`on a phone (${locale}) the key bar sends Tab and Ctrl+C`, async () => {
      const bar = phone.locator('.keybar');
      await bar.waitFor({ state: 'visible' });
      await focusTerminal(phone);
      await phone.keyboard.type('unam');
      await bar.getByRole('button', { name: 'Tab' }).click();
      await waitTerm(phone, (s) => s.lines[s.cursor].text.trimEnd().endsWith('# uname'), 'Tab completion');
      await phone.keyboard.press('Enter');
      await waitTerm(phone, (s) => atPrompt(s) && hasLine('Linux')(s), 'what uname printed');
      const before = (await termSnapshot(phone)).cursor;
      await phone.keyboard.type('sleep 300');
      await phone.keyboard.press('Enter');
      await sleep(300);
      await bar.getByRole('button', { name: 'Ctrl' }).click();
      await phone.keyboard.type('c');
      await waitTerm(phone, (s) => s.cursor > before && atPrompt(s) && s.lines.slice(before).some((l) => l.text.includes('^C')),
        'Ctrl+C to end the sleep');
      assert.equal(await bar.getByRole('button', { name: 'Ctrl' }).getAttribute('aria-pressed'), 'false');
    });
    assert.deepEqual(phone.errors, [], 'no uncaught errors on the phone');
    await phone.context().close();
  }

  assert.deepEqual(wide.errors, [], 'no uncaught errors in the page');
  await wide.context().close();
  for (const id of ids) if (id) await server.api('DELETE', '/api/sessions/' + encodeURIComponent(id));
  await server.stop();
});

test('server stopped and back: the page says so, then offers a new session', async (t) => {
  let server = await Server.start(INSTANCES[1]);
  const port = server.port;
  const page = await openPage(server);
  const step = stepper(t);
  const banner = page.locator('#banner');
  const state = () => page.locator('#conn-state').getAttribute('data-state');
  let firstId = '';

  const stopAndRestart = async (signal) => {
    await server.stop(signal);
    await eventually(state, (v) => v === 'disconnected', 'the page to show "Disconnected"');
    assert.equal(await visibleText(page.locator('#conn-state')), 'Disconnected');
    assert.equal(await visibleText(banner), 'Lost the connection to the server. Waiting for it to come back…');
    assert.equal(await banner.getByRole('button').count(), 0, 'no button that would lead nowhere');
    await sleep(1000);
    server = await Server.start(INSTANCES[1], { listen: `127.0.0.1:${port}` });
    // Sessions do not survive a restart: the page says so in plain words.
    await eventually(() => banner.innerText(), (v) => v.includes('This session no longer exists.'),
      'the "session no longer exists" banner', 20000);
    assert.equal(await state(), 'disconnected');
    const oldId = decodeURIComponent(new URL(page.url()).hash.slice(1));
    await banner.getByRole('button', { name: 'New session' }).click();
    await page.waitForURL((u) => u.hash.length > 1 && decodeURIComponent(u.hash.slice(1)) !== oldId);
    await waitTerm(page, atPrompt, 'the prompt of the new session');
    assert.equal(await state(), 'connected');
    assert.equal(await banner.isVisible(), false);
    await focusTerminal(page);
    assert.deepEqual(await run(page, 'uname -n'), ['nsplay']);
  };

  await step('a playground is running', async () => {
    await page.goto(server.base + '/play');
    await waitTerm(page, atPrompt, 'a shell prompt');
    firstId = decodeURIComponent(new URL(page.url()).hash.slice(1));
    assert.ok(firstId);
  });

  await step('graceful stop (SIGTERM) and restart on the same port', () => stopAndRestart('SIGTERM'));
  await step('crash (SIGKILL) and restart on the same port', () => stopAndRestart('SIGKILL'));

  assert.deepEqual(page.errors, [], 'no uncaught errors in the page');
  await page.context().close();
  await server.stop();
});

test('a full playground says "try again in N s" on the landing page', async (t) => {
  const server = await Server.start(INSTANCES[2], { extra: ['--max-sessions', '1'] });
  const page = await openPage(server);
  const step = stepper(t);
  let held = null;

  await step('another visitor holds the only session', async () => {
    const r = await server.api('POST', '/api/sessions');
    assert.equal(r.status, 201);
    held = r.body.id;
    const again = await server.api('POST', '/api/sessions');
    assert.equal(again.status, 503);
  });

  await step('Start shows the plain-language message and stays on the page', async () => {
    await page.goto(server.base + '/');
    await page.getByRole('button', { name: 'Start a playground' }).click();
    const msg = await eventually(() => page.locator('#start-error').innerText(), (v) => v.length > 0, 'a message');
    assert.match(msg, /^The playground is full\. Try again in \d+ s\.$/);
    assert.equal(new URL(page.url()).pathname, '/');
    assert.ok(await page.locator('#start-error').isVisible());
    assert.equal(await visibleText(page.locator('#start')), 'Try again');
  });

  await step('once a place is free, "Try again" gets a playground', async () => {
    assert.equal((await server.api('DELETE', '/api/sessions/' + encodeURIComponent(held))).status, 204);
    held = null;
    await page.locator('#start', { hasText: 'Try again' }).click();
    await page.waitForURL(/\/play#.+/);
    await waitTerm(page, atPrompt, 'a shell prompt');
  });

  assert.deepEqual(page.errors, [], 'no uncaught errors in the page');
  await page.context().close();
  if (held) await server.api('DELETE', '/api/sessions/' + encodeURIComponent(held));
  await server.stop();
});

test('one learner, four lessons in a row: the same session and shell throughout', async (t) => {
  // The default per-client cap (3): four lesson pages must not need four sessions.
  const server = await Server.start(INSTANCES[3], { clientLimits: false });
  const page = await openPage(server);
  const step = stepper(t);
  const topics = ['uts', 'pid', 'mnt', 'ipc'];

  await step('the first lesson writes a file in its shell', async () => {
    await page.goto(server.base + '/learn/' + topics[0]);
    await waitTerm(page, atPrompt, 'a shell prompt');
    await focusTerminal(page);
    assert.deepEqual(await run(page, 'echo kept-$((6*7)) > /tmp/learner-mark; echo written'), ['written']);
    const cookies = await page.context().cookies();
    const learner = cookies.find((c) => c.name === 'nsplay_learner');
    assert.ok(learner, 'the page set the identity cookie');
    assert.equal(learner.httpOnly, true);
    assert.equal(learner.sameSite, 'Lax');
  });

  for (const topic of topics.slice(1)) {
    await step(`/learn/${topic} attaches to the same shell`, async () => {
      await page.goto(server.base + '/learn/' + topic);
      await waitTerm(page, atPrompt, `a shell prompt on /learn/${topic}`);
      assert.equal(await page.locator('#banner').isVisible(), false, 'no refusal');
    });
  }

  await step('the fourth lesson finds the file of the first', async () => {
    await focusTerminal(page);
    assert.deepEqual(await run(page, 'cat /tmp/learner-mark'), ['kept-42']);
  });

  await step('"start this lesson on a fresh session" gives a new shell without the file', async () => {
    page.once('dialog', (d) => d.accept());
    await Promise.all([page.waitForEvent('load'), page.locator('#fresh-session').click()]);
    await waitTerm(page, atPrompt, 'a shell prompt in the fresh session');
    await focusTerminal(page);
    assert.deepEqual(await run(page, 'cat /tmp/learner-mark 2>/dev/null || echo gone'), ['gone']);
  });

  assert.deepEqual(page.errors, [], 'no uncaught errors in the page');
  await page.evaluate(() => fetch('/api/learner/sessions', { method: 'DELETE' })).catch(() => null);
  await page.context().close();
  await server.stop();
});
