/**
 * The console's larger pages in chromium (Debian's, driven by playwright-core) against a real
 * agent, Mosquitto, the simulated PLC in its own process and the real PLC bridge with 2,000 tags
 * all changing every second: the PLC page keeps only the rows in view in the DOM and still
 * reaches every tag, live; the maintenance page shows the schedules, their next runs and the
 * windows the agent computes (as `edge-agent maintenance schedule` does), and the overview the
 * next window; the audit page lists the trail with its chain's state (holds, then broken after
 * an entry was changed in the store); an operator downloads a support bundle by an opaque id, a
 * viewer cannot; an expired session goes back to pairing. Screenshots of these pages at desktop
 * and phone size go to dist/test-output/console/.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { startBroker, type Broker } from '../helpers/broker.js';
import { freePort, tempDir, waitFor } from '../helpers/util.js';
import { agentReady, REPO, runAgent, runCli, startAgent, type AgentProcess } from '../helpers/agent.js';
import { startBridge, writeBridgeConfig, type BridgeProcess } from '../helpers/bridge.js';
import { startSimProcess, type SimProcess } from '../helpers/plc-sim-process.js';
import { pairCode } from '../helpers/console.js';

const CHROMIUM = '/usr/bin/chromium';
const GW = 'gw-console-pages';
const OUT = join(REPO, 'dist', 'test-output', 'console');
const TAGS = 2000;

describe('console pages against a real agent (2,000 PLC tags)', { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed` }, () => {
  let broker: Broker;
  let sim: SimProcess;
  let bridge: BridgeProcess;
  let agent: AgentProcess;
  let browser: Browser;
  let operator: BrowserContext;
  let page: Page;
  let dir = '';
  let base = '';

  const open = async (p: Page, name: string): Promise<void> => {
    await p.goto(`${base}#${name}`);
    await p.waitForSelector(`main[data-page="${name}"] h1`);
  };
  const mainText = (p: Page): Promise<string> => p.locator('main').innerText();
  const shoot = async (p: Page, name: string): Promise<void> => {
    for (const [size, viewport] of [
      ['desktop', { width: 1280, height: 900 }],
      ['phone', { width: 390, height: 844 }],
    ] as const) {
      await p.setViewportSize(viewport);
      await p.screenshot({ path: join(OUT, `${name}-${size}.png`), fullPage: name !== 'plc' });
    }
    await p.setViewportSize({ width: 1280, height: 900 });
  };

  before(async () => {
    mkdirSync(OUT, { recursive: true });
    broker = await startBroker();
    sim = await startSimProcess(['--size', String(TAGS + 10), '--churn', String(TAGS)]);
    dir = tempDir('console-pages-');
    const tags = Array.from({ length: TAGS }, (_, i) => ({ name: `t${i}`, area: 'holding', address: i, type: 'uint16' }));
    const bridgeConfig = writeBridgeConfig(dir, {
      gatewayId: GW,
      mqtt: { url: broker.url },
      devices: [{ name: 'plc0', host: '127.0.0.1', port: sim.ports[0], unitId: 1, timeoutMs: 1000, groups: [{ name: 'g', intervalMs: 1000, tags }] }],
    });
    bridge = startBridge(bridgeConfig);
    const port = await freePort();
    agent = startAgent({
      dataDir: join(dir, 'agent'),
      gatewayId: GW,
      config: {
        mqtt: { url: broker.url },
        console: { listen: `127.0.0.1:${port}` },
        plcBridge: { config: bridgeConfig, launch: 'never' },
        ota: { root: join(dir, 'ota') },
        maintenance: { windows: [{ id: 'nightly', cron: '30 1 * * *', durationSec: 3600 }], schedules: { 'store-check': { enabled: false }, 'store-backup': { enabled: false } } },
      },
    });
    await agentReady(agent, 20_000);
    base = `http://127.0.0.1:${port}/`;
    browser = await chromium.launch({ executablePath: CHROMIUM });
    operator = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
    page = await operator.newPage();
    page.on('dialog', (d) => void d.accept());
    await page.goto((await pairCode(agent.configPath, 'operator')).url);
    await page.waitForSelector('main[data-page="overview"] .live h1');
  });

  after(async () => {
    await browser?.close();
    await agent?.stop();
    await bridge?.stop();
    await sim?.stop();
    await broker?.stop();
  });

  test('PLC: only the rows in view are in the DOM; scrolling reaches every tag, live; the filter narrows the list', async () => {
    await open(page, 'plc');
    await page.waitForSelector('tr[data-tag="t0"]');
    await waitFor(async () => (await page.locator('tr[data-tag="t0"]').getAttribute('data-q')) === 'good', { timeoutMs: 20_000, what: 't0 good' });
    const drawn = await page.locator('tr[data-tag]').count();
    assert.ok(drawn < 200, `${drawn} rows in the DOM for ${TAGS} tags`);
    assert.match(await mainText(page), /2000 tags/);
    // The list is as tall as every row: the last tag is reached by scrolling, and is live.
    await page.evaluate(() => window.scrollTo(0, document.documentElement.scrollHeight));
    const last = page.locator('tr[data-tag="t1999"]');
    await last.waitFor();
    await waitFor(async () => (await last.getAttribute('data-q')) === 'good', { timeoutMs: 20_000, what: 't1999 good' });
    const v1 = await last.locator('td.val').innerText();
    await waitFor(async () => (await last.locator('td.val').innerText()) !== v1, { timeoutMs: 20_000, what: 't1999 changing' });
    assert.match(await last.locator('td.val').innerText(), /^\d+$/);
    assert.ok((await page.locator('tr[data-tag]').count()) < 200);
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.fill('input[name=filter]', 't1999');
    await waitFor(async () => (await page.locator('tr[data-tag]').count()) === 1, { timeoutMs: 5000, what: 'one row after the filter' });
    assert.match(await mainText(page), /1 of 2000 tags/);
    await page.fill('input[name=filter]', '');
    await page.waitForSelector('tr[data-tag="t0"]');
    await shoot(page, 'plc-2000');
  });

  test('maintenance: the schedules, their next runs and the next windows the agent computes; the next window on the overview', async () => {
    const r = await runCli(['maintenance', 'schedule', '--json', '--config', agent.configPath]);
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout) as { schedules: { procedure: string; cron: string; nextRun: string | null }[]; windows: { id: string; start: string; end: string }[] };
    assert.ok(s.schedules.length > 0, 'the built-in procedures have schedules');
    assert.ok(s.schedules.some((x) => x.nextRun), 'the daily, weekly and monthly schedules are on: they have next runs');
    assert.equal(s.windows[0]?.id, 'nightly');
    await open(page, 'maintenance');
    await waitFor(async () => (await mainText(page)).includes('Next maintenance windows') && (await mainText(page)).includes(s.windows[0]!.start), { timeoutMs: 10_000, what: 'the windows on the page' });
    const text = await mainText(page);
    for (const x of s.schedules) {
      assert.ok(text.includes(x.procedure), `${x.procedure} listed`);
      assert.ok(text.includes(x.cron), `${x.cron} listed`);
      if (x.nextRun) assert.ok(text.includes(x.nextRun), `next run ${x.nextRun} of ${x.procedure}`);
    }
    for (const w of s.windows) assert.ok(text.includes(w.start) && text.includes(w.end), `window ${w.id} ${w.start}`);
    await shoot(page, 'maintenance-schedules');
    await open(page, 'overview');
    await waitFor(async () => /Next maintenance window\s+\S+ to \S+/.test(await mainText(page)), { timeoutMs: 10_000, what: 'the next window on the overview' });
    assert.ok((await mainText(page)).includes(`${s.windows[0].start} to ${s.windows[0].end}`));
  });

  test('diagnostics: an operator downloads a support bundle by an opaque id; a viewer has no button and is refused', async () => {
    await open(page, 'diagnostics');
    const [download] = await Promise.all([page.waitForEvent('download', { timeout: 120_000 }), page.getByRole('button', { name: 'Download support bundle' }).click()]);
    assert.match(download.url(), /\/api\/download\/[A-Za-z0-9_-]{20,}$/, 'an opaque id, no path');
    const file = join(dir, 'bundle.tar.gz');
    await download.saveAs(file);
    assert.ok(statSync(file).size > 0);
    const list = spawnSync('tar', ['-tzf', file], { encoding: 'utf8' });
    assert.equal(list.status, 0, list.stderr);
    const names = list.stdout.split('\n').filter(Boolean);
    const find = (n: string): string | undefined => names.find((x) => x === n || x.endsWith(`/${n}`));
    for (const n of ['README.txt', 'diagnostics.json', 'config/effective.json', 'store/audit.json']) assert.ok(find(n), `${n} in ${names.join(', ')}`);
    const report = JSON.parse(spawnSync('tar', ['-xzOf', file, find('diagnostics.json')!], { encoding: 'utf8' }).stdout) as { gatewayId?: string; overall?: string };
    assert.equal(report.gatewayId, GW);
    assert.ok(['ok', 'warning', 'failure'].includes(String(report.overall)), String(report.overall));
    // A download id is for the session that asked for it, and a path is not an id.
    const again = await page.evaluate(async (u) => (await fetch(u)).status, download.url());
    assert.equal(again, 200);
    assert.equal(await page.evaluate(async () => (await fetch('/api/download/..%2F..%2Fetc%2Fpasswd')).status), 404);
    const audit = JSON.parse((await runCli(['audit', '--json', '--config', agent.configPath])).stdout) as { action: string; actor: string }[];
    assert.ok(audit.some((e) => e.action === 'support-bundle' && e.actor.startsWith('console:')), 'the download is in the audit trail');

    const viewerCtx = await browser.newContext();
    const viewer = await viewerCtx.newPage();
    await viewer.goto((await pairCode(agent.configPath, 'viewer')).url);
    await viewer.waitForSelector('main[data-page="overview"] .live h1');
    await open(viewer, 'diagnostics');
    await viewer.getByRole('button', { name: 'Run diagnostics' }).waitFor();
    assert.equal(await viewer.getByRole('button', { name: 'Download support bundle' }).count(), 0);
    const refused = await viewer.evaluate(async () => {
      const s = (await (await fetch('/api/session')).json()) as { csrf: string };
      const r = await fetch('/api/bundle', { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': s.csrf }, body: '{}' });
      return r.status;
    });
    assert.equal(refused, 403);
    const stolen = await viewer.evaluate(async (u) => (await fetch(u)).status, download.url());
    assert.equal(stolen, 404, "another session cannot use the operator's download id");
    await viewerCtx.close();
  });

  test('audit: the newest entries with the chain state; an entry changed in the store shows the chain broken', async () => {
    await open(page, 'audit');
    await page.locator('p.chain').waitFor();
    assert.equal(await page.locator('p.chain').getAttribute('data-chain'), 'ok');
    const verify = JSON.parse((await runCli(['audit', '--verify', '--json', '--config', agent.configPath])).stdout) as { ok: boolean; entries: number };
    assert.equal(verify.ok, true);
    const text = await mainText(page);
    assert.match(text, /The chain holds: \d+ entries/);
    for (const action of ['console-pair-code', 'console-pair', 'support-bundle']) assert.ok(text.includes(action), `${action} listed`);
    await shoot(page, 'audit');

    // Change an entry's outcome behind the agent's back (stopped), then open the page again.
    await agent.stop();
    const db = new Database(join(agent.dataDir, 'agent.db'));
    db.prepare("UPDATE audit_log SET outcome = 'failed' WHERE action = 'console-pair' AND seq = (SELECT MIN(seq) FROM audit_log WHERE action = 'console-pair')").run();
    const seq = (db.prepare("SELECT MIN(seq) AS s FROM audit_log WHERE action = 'console-pair'").get() as { s: number }).s;
    db.close();
    agent = runAgent(agent.configPath, agent.dataDir);
    await agentReady(agent, 20_000);
    await open(page, 'overview');
    await open(page, 'audit');
    await page.locator('p.chain').waitFor();
    assert.equal(await page.locator('p.chain').getAttribute('data-chain'), 'broken');
    assert.match(await mainText(page), new RegExp(`broken at entry ${seq}`));
    await shoot(page, 'audit-broken');
  });

  test('an expired session goes back to pairing by itself', async () => {
    await open(page, 'overview');
    await waitFor(async () => (await mainText(page)).includes(String(agent.pid)), { timeoutMs: 10_000, what: 'the pid' });
    // Time passing, as the agent keeps it: the session's pairing and last use moved past its limits.
    await agent.stop();
    const file = join(agent.dataDir, 'console-sessions.json');
    const sessions = JSON.parse(readFileSync(file, 'utf8')) as { createdAt: number; lastSeenAt: number }[];
    const old = Date.now() - 13 * 3_600_000;
    writeFileSync(file, JSON.stringify(sessions.map((x) => ({ ...x, createdAt: old, lastSeenAt: old }))));
    agent = runAgent(agent.configPath, agent.dataDir);
    await agentReady(agent, 20_000);
    await page.getByText('Pair this browser').waitFor({ timeout: 20_000 });
    assert.equal(await page.locator('nav').isHidden(), true);
    assert.equal(await page.evaluate(async () => (await fetch('/api/session')).status), 401);
  });
});
