/**
 * The web console in a real browser (Debian's chromium driven by playwright-core; no browser
 * download) against a real agent child process, a real Mosquitto, the simulated PLC in its own
 * process and the real PLC bridge: a person's session from pairing to each page, live PLC values,
 * a viewer without controls, cross-origin and foreign-Host requests refused, field data rendered
 * as text, the stream across an agent restart, and screenshots of every page at desktop and phone
 * size under dist/test-output/console/ for a person to look at.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { startBroker, type Broker } from '../helpers/broker.js';
import { freePort, mqttClient, tempDir, waitFor } from '../helpers/util.js';
import { agentReady, REPO, runAgent, runCli, startAgent, type AgentProcess } from '../helpers/agent.js';
import { startBridge, writeBridgeConfig, type BridgeProcess } from '../helpers/bridge.js';
import { startSimProcess, type SimProcess } from '../helpers/plc-sim-process.js';
import { pairCode } from '../helpers/console.js';

const CHROMIUM = '/usr/bin/chromium';
const GW = 'gw-browser';
const OUT = join(REPO, 'dist', 'test-output', 'console');
const XSS = '<img src=x onerror=alert(1)>';
/** Every page of the console (console/web/pages.ts PAGES), for the screenshots. */
const PAGES = ['overview', 'components', 'alerts', 'health', 'plc', 'operations', 'maintenance', 'updates', 'incidents', 'diagnostics', 'logs', 'audit'];

describe('web console in a real browser', { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed (apt-get install chromium)` }, () => {
  let broker: Broker;
  let sim: SimProcess;
  let bridge: BridgeProcess;
  let agent: AgentProcess;
  let browser: Browser;
  let operator: BrowserContext;
  let page: Page;
  let wms: MqttClient;
  let evil: Server;
  let base = '';
  const dialogs: string[] = [];
  const pageErrors: string[] = [];

  const watch = (p: Page): void => {
    p.on('dialog', (d) => {
      if (d.type() === 'alert' || d.message().includes('onerror') || d.message() === '1') dialogs.push(d.message());
      void d.accept();
    });
    p.on('pageerror', (e) => pageErrors.push(e.message));
  };
  const open = async (p: Page, name: string): Promise<void> => {
    await p.goto(`${base}#${name}`);
    await p.waitForSelector(`main[data-page="${name}"] h1`);
  };
  const shoot = async (p: Page, name: string, size: string): Promise<void> => {
    await p.screenshot({ path: join(OUT, `${name}-${size}.png`), fullPage: true });
  };

  before(async () => {
    mkdirSync(OUT, { recursive: true });
    broker = await startBroker();
    wms = await mqttClient(broker.url);
    sim = await startSimProcess();
    const dir = tempDir('console-browser-');
    const bridgeConfig = writeBridgeConfig(dir, {
      gatewayId: GW,
      mqtt: { url: broker.url },
      devices: [
        {
          name: 'plc0',
          host: '127.0.0.1',
          port: sim.ports[0],
          unitId: 1,
          timeoutMs: 300,
          groups: [
            {
              name: 'fast',
              intervalMs: 200,
              tags: [
                { name: 'speed', area: 'holding', address: 0, type: 'uint16' },
                { name: 'level', area: 'holding', address: 1, type: 'uint16' },
                { name: 'setpoint', area: 'holding', address: 2, type: 'uint16', access: 'read-write' },
              ],
            },
          ],
        },
      ],
    });
    bridge = startBridge(bridgeConfig);
    const port = await freePort();
    agent = startAgent({
      dataDir: join(dir, 'agent'),
      gatewayId: GW,
      config: { mqtt: { url: broker.url }, console: { listen: `127.0.0.1:${port}` }, plcBridge: { config: bridgeConfig, launch: 'never' }, ota: { root: join(dir, 'ota') } },
    });
    await agentReady(agent, 20_000);
    base = `http://127.0.0.1:${port}/`;
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--host-resolver-rules=MAP evil.test 127.0.0.1'] });
    operator = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    page = await operator.newPage();
    watch(page);
    // A page on another origin (same site: only the Origin check stands between it and the console).
    evil = createServer((req, res) => {
      const target = `${base}api/command`;
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end(
        req.url === '/form'
          ? `<form id=f method=POST action="${target}" enctype="text/plain"><input name='{"op":"restart","params":{"component":"agent"},"x":"' value='"}'></form><script>f.submit()</script>`
          : `<script>fetch(${JSON.stringify(target)},{method:'POST',credentials:'include',headers:{'Content-Type':'text/plain'},body:JSON.stringify({op:'restart',params:{component:'agent'}})}).then(()=>document.title='sent',()=>document.title='failed')</script>`,
      );
    });
    await new Promise<void>((r) => evil.listen(0, '127.0.0.1', () => r()));
  });

  after(async () => {
    await browser?.close();
    evil?.close();
    wms?.end(true);
    await agent?.stop();
    await bridge?.stop();
    await sim?.stop();
    await broker?.stop();
  });

  test('a fresh browser sees only the pairing page; a wrong code is refused; the URL code opens the overview', async () => {
    await page.goto(base);
    await page.getByText('Pair this browser').waitFor();
    assert.equal(await page.locator('nav').isHidden(), true);
    await page.fill('input[name=code]', 'WRONGCODE1');
    await page.click('button[type=submit]');
    await page.getByText('wrong or expired pairing code').waitFor();
    await shoot(page, 'pairing', 'desktop');
    const p = await pairCode(agent.configPath, 'operator');
    await page.goto(p.url.replace(/^http:\/\/127\.0\.0\.1:\d+\//, base));
    await page.waitForSelector('main[data-page="overview"] .live');
    await page.getByText('Agent pid').waitFor();
    await waitFor(async () => (await page.locator('main').innerText()).includes(String(agent.pid)), { timeoutMs: 10_000, what: 'the agent pid on the overview' });
    assert.doesNotMatch(page.url(), /pair=/, 'the code leaves the address bar');
    const cookies = await operator.cookies();
    assert.equal(cookies[0]?.httpOnly, true);
    assert.equal(cookies[0]?.sameSite, 'Strict');
    assert.equal(await page.evaluate(() => document.cookie), '', 'the session is not readable by script');
    assert.equal(await page.evaluate(() => localStorage.length), 0);
  });

  test('every page renders the real agent\'s data', async () => {
    await open(page, 'overview');
    const overview = await page.locator('main').innerText();
    const status = (await agent.admin('status')) as { version: string; slot: string };
    assert.ok(overview.includes(status.version), overview);
    assert.match(overview, /Broker\s+connected/);
    await waitFor(async () => /PLC links\s+plc0: up/.test(await page.locator('main').innerText()), { timeoutMs: 15_000, what: 'the PLC link on the overview' });

    await open(page, 'components');
    await page.getByRole('cell', { name: 'wms-link' }).or(page.getByText('no supervised components')).first().waitFor();

    await open(page, 'alerts');
    await page.getByText('History (since the agent started)').waitFor();

    await open(page, 'health');
    await page.locator('.chart, .live p').first().waitFor();

    await open(page, 'updates');
    await waitFor(async () => /not installed|slots\.json/i.test(await page.locator('main').innerText()), { timeoutMs: 10_000, what: 'the slots state on the updates page' });

    await open(page, 'incidents');
    await page.locator('main table, main p.muted').first().waitFor();

    await open(page, 'diagnostics');
    await page.getByRole('button', { name: 'Run diagnostics' }).click();
    await waitFor(async () => /command console-\S+: (successful|failed)/.test(await page.locator('main').innerText()), { timeoutMs: 30_000, what: 'the diagnostics result' });

    await open(page, 'logs');
    await waitFor(async () => (await page.locator('main').innerText()).includes('agent ready'), { timeoutMs: 10_000, what: 'the agent ready line on the logs page' });
  });

  test('PLC: values live with quality; a change at the PLC shows up; a stopped PLC shows bad', async () => {
    await sim.send({ set: { area: 'holding', address: 0, values: [1111] } });
    await open(page, 'plc');
    const speed = page.locator('tr[data-tag="speed"]');
    await waitFor(async () => (await speed.innerText()).includes('1111'), { timeoutMs: 10_000, what: 'speed 1111 in the page' });
    assert.equal(await speed.getAttribute('data-q'), 'good');
    assert.match(await page.locator('tr[data-tag="setpoint"]').innerText(), /writable/);
    await sim.send({ set: { area: 'holding', address: 0, values: [2222] } });
    await waitFor(async () => (await speed.innerText()).includes('2222'), { timeoutMs: 10_000, what: 'speed 2222 in the page' });
    await shoot(page, 'plc', 'desktop');
    await sim.stop();
    await waitFor(async () => (await speed.getAttribute('data-q')) === 'bad', { timeoutMs: 20_000, what: 'speed shown bad after the PLC stopped' });
    assert.match(await speed.innerText(), /bad/);
    await shoot(page, 'plc-bad', 'desktop');
  });

  test('field data renders as text: a tag name and a log line holding markup run no script', async () => {
    wms.publish(`edge/${GW}/plc/plc0/rogue`, JSON.stringify({ seq: 1, ts: new Date().toISOString(), values: { [XSS]: { v: XSS, q: 'good', ts: new Date().toISOString() } } }));
    await page.getByText(XSS).first().waitFor();
    assert.equal(await page.locator('main img').count(), 0);
    wms.publish(`edge/${GW}/cmd/${XSS}`, JSON.stringify({ id: 'xss-1' }));
    await waitFor(() => agent.logText().includes('onerror'), { timeoutMs: 10_000, what: 'the rejected command in the log' });
    await open(page, 'logs');
    await page.fill('input[name=q]', 'onerror');
    await page.click('form.filters button');
    await page.getByText(XSS, { exact: false }).first().waitFor();
    assert.equal(await page.locator('main img').count(), 0);
    await shoot(page, 'logs-xss', 'desktop');
    assert.deepEqual(dialogs, []);
    assert.deepEqual(pageErrors, []);
  });

  test('a viewer has no controls, and its direct POST is refused 403', async () => {
    const ctx = await browser.newContext();
    const v = await ctx.newPage();
    watch(v);
    const p = await pairCode(agent.configPath, 'viewer');
    await v.goto(p.url.replace(/^http:\/\/127\.0\.0\.1:\d+\//, base));
    await v.waitForSelector('main[data-page="overview"] .live');
    await open(v, 'components');
    await v.getByRole('cell', { name: 'wms-link' }).or(v.getByText('no supervised components')).first().waitFor();
    assert.equal(await v.getByRole('button', { name: 'Restart' }).count(), 0);
    await open(v, 'updates');
    assert.equal(await v.getByRole('button', { name: 'Roll back' }).count(), 0);
    const status = await v.evaluate(async () => {
      const s = (await (await fetch('/api/session')).json()) as { csrf: string };
      const r = await fetch('/api/command', { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': s.csrf }, body: JSON.stringify({ op: 'restart', params: { component: 'agent' } }) });
      return r.status;
    });
    assert.equal(status, 403);
    // The operator has the controls the viewer lacks.
    await open(page, 'components');
    await page.getByRole('button', { name: 'Restart' }).first().waitFor();
    await ctx.close();
  });

  test('a cross-origin form POST and fetch are refused; a foreign Host is refused', async () => {
    const evilBase = `http://127.0.0.1:${(evil.address() as { port: number }).port}`;
    const statuses: number[] = [];
    const onResponse = (r: { url(): string; status(): number }): void => {
      if (r.url().endsWith('/api/command')) statuses.push(r.status());
    };
    page.on('response', onResponse);
    page.on('requestfailed', (r) => {
      if (r.url().endsWith('/api/command')) statuses.push(-1);
    });
    await page.goto(`${evilBase}/form`);
    await waitFor(() => statuses.length >= 1, { timeoutMs: 10_000, what: 'the form POST' });
    await page.goto(`${evilBase}/fetch`);
    await waitFor(() => statuses.length >= 2, { timeoutMs: 10_000, what: 'the fetch' });
    page.off('response', onResponse);
    // The form's answer is the console's 403; the fetch's answer (403, without CORS headers) is
    // also kept from the script by the browser, which reports the request failed.
    assert.equal(statuses[0], 403);
    assert.ok(statuses[1] === 403 || statuses[1] === -1, String(statuses[1]));
    const st = (await agent.admin('status')) as { pid: number };
    assert.equal(st.pid, agent.pid, 'the agent was not restarted');
    const r = await page.goto(base.replace('127.0.0.1', 'evil.test'));
    assert.equal(r?.status(), 421);
  });

  test('the stream survives an agent restart: the page reconnects by itself and shows the new pid', async () => {
    await open(page, 'overview');
    const oldPid = agent.pid;
    await waitFor(async () => (await page.locator('main').innerText()).includes(String(oldPid)), { timeoutMs: 10_000, what: 'the old pid' });
    await agent.stop();
    await page.locator('#conn', { hasText: 'reconnecting' }).waitFor();
    agent = runAgent(agent.configPath, agent.dataDir);
    await agentReady(agent, 20_000);
    await waitFor(async () => (await page.locator('main').innerText()).includes(String(agent.pid)), { timeoutMs: 20_000, what: `the new pid ${agent.pid} on the page` });
    assert.equal(await page.locator('#conn').innerText(), 'live');
  });

  test('screenshots of every page at desktop and phone size', async () => {
    for (const [size, viewport] of [
      ['desktop', { width: 1280, height: 900 }],
      ['phone', { width: 390, height: 844 }],
    ] as const) {
      await page.setViewportSize(viewport);
      for (const name of PAGES) {
        await open(page, name);
        await page.waitForTimeout(300);
        await shoot(page, name, size);
      }
    }
    for (const name of PAGES) for (const size of ['desktop', 'phone']) assert.ok(existsSync(join(OUT, `${name}-${size}.png`)), `${name}-${size}.png`);
    // The list is the app's: a page added there without a screenshot here fails this test.
    const nav = await page.locator('nav a').evaluateAll((as) => as.map((a) => (a.getAttribute('href') ?? '').slice(1)));
    assert.deepEqual(nav, PAGES);
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  test('a revoked session goes back to pairing by itself; wrong codes get rate-limited', async () => {
    await open(page, 'overview');
    const list = JSON.parse((await runCli(['console', 'sessions', '--json', '--config', agent.configPath])).stdout) as { sessions: { label: string; role: string }[] };
    for (const s of list.sessions) await runCli(['console', 'sessions', '--revoke', s.label, '--config', agent.configPath]);
    await page
      .getByText('Pair this browser')
      .waitFor({ timeout: 15_000 })
      .catch(async (e: unknown) => {
        const now = await page.evaluate(async () => (await fetch('/api/session')).status).catch((x: unknown) => String(x) + agent.logText().slice(-3000));
        const after = (await runCli(['console', 'sessions', '--json', '--config', agent.configPath])).stdout;
        throw new Error(`${String(e)}\nsessions: ${JSON.stringify(list)}\nafter: ${after} ${now}\npage: ${await page.locator('body').innerText()}`);
      });
    assert.equal(await page.locator('nav').isHidden(), true, 'no page links on the pairing form');
    let limited = false;
    for (let i = 0; i < 7 && !limited; i++) {
      await page.fill('input[name=code]', `WRONG${i}`);
      await page.click('button[type=submit]');
      await waitFor(async () => /wrong or expired|too many attempts/.test(await page.locator('.error').innerText()), { timeoutMs: 5000, what: 'an answer' });
      limited = (await page.locator('.error').innerText()).includes('too many attempts');
      await page.evaluate(() => (document.querySelector('.error')!.textContent = ''));
    }
    assert.ok(limited, 'rate-limited within 7 wrong codes');
    await shoot(page, 'pairing-limited', 'desktop');
  });
});
