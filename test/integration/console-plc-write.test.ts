/**
 * PLC writes from the console's PLC page in chromium, against a real agent, Mosquitto, the real
 * PLC bridge and a pymodbus PLC: an operator writes a value with a confirmation step, the PLC
 * holds it (read straight from the PLC), the page shows the answer with the read-back and the
 * new value; the bridge's refusal (out of range) shows as such; a read-only tag has no control;
 * a viewer has no control and its direct POST is refused 403; the write is in the audit trail
 * with the session as actor.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startBroker, type Broker } from '../helpers/broker.js';
import { freePort, tempDir, waitFor } from '../helpers/util.js';
import { agentReady, REPO, runCli, startAgent, type AgentProcess } from '../helpers/agent.js';
import { bridgeActive, bridgeSocketOf, startBridge, writeBridgeConfig, type BridgeProcess } from '../helpers/bridge.js';
import { startPymodbus, type PymodbusServer } from '../helpers/pymodbus.js';
import { http, pairCode, pairSession } from '../helpers/console.js';
import { ModbusDriver } from '../../plc-bridge/modbus-driver.js';
import type { AuditEntry } from '../../core/audit.js';

const CHROMIUM = '/usr/bin/chromium';
const GW = 'gw-console-write';
const OUT = join(REPO, 'dist', 'test-output', 'console');

describe('console: PLC writes from the PLC page', { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed` }, () => {
  let broker: Broker;
  let plc: PymodbusServer;
  let bridge: BridgeProcess;
  let agent: AgentProcess;
  let browser: Browser;
  let page: Page;
  let base = '';

  before(async () => {
    mkdirSync(OUT, { recursive: true });
    broker = await startBroker();
    plc = await startPymodbus({ init: { holding: [7, 3] } });
    const dir = tempDir('console-plc-write-');
    const bridgeConfig = writeBridgeConfig(dir, {
      gatewayId: GW,
      mqtt: { url: broker.url },
      // The console subscribes after the bridge started: a full report every second shows it every value.
      fullEveryMs: 1000,
      devices: [
        {
          name: 'plc0',
          host: '127.0.0.1',
          port: plc.port,
          unitId: 1,
          timeoutMs: 500,
          groups: [
            {
              name: 'line',
              intervalMs: 200,
              tags: [
                { name: 'speed', area: 'holding', address: 0, type: 'uint16' },
                { name: 'setpoint', area: 'holding', address: 1, type: 'uint16', access: 'read-write', max: 1000 },
              ],
            },
          ],
        },
      ],
    });
    bridge = startBridge(bridgeConfig);
    await bridgeActive(bridgeSocketOf(dir), bridge);
    const port = await freePort();
    agent = startAgent({ dataDir: join(dir, 'agent'), gatewayId: GW, config: { mqtt: { url: broker.url }, console: { listen: `127.0.0.1:${port}` }, plcBridge: { config: bridgeConfig, launch: 'never' } } });
    await agentReady(agent, 20_000);
    base = `http://127.0.0.1:${port}/`;
    browser = await chromium.launch({ executablePath: CHROMIUM });
    page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
    await page.goto((await pairCode(agent.configPath, 'operator')).url.replace(/^http:\/\/[^/]+\//, base));
    await page.waitForSelector('main[data-page="overview"] .live h1');
  });

  after(async () => {
    await browser?.close();
    await agent?.stop();
    await bridge?.stop();
    await plc?.stop();
    await broker?.stop();
  });

  const row = (p: Page, tag: string) => p.locator(`tr[data-tag="${tag}"]`);
  const rowText = (p: Page, tag: string): Promise<string> => row(p, tag).innerText();
  const until = (cond: () => Promise<boolean>, what: string): Promise<void> => waitFor(cond, { timeoutMs: 20_000, what: `${what}\n${agent.logText().slice(-2000)}` });

  test('an operator writes a value after confirming it; the PLC holds it, the page shows it, the audit trail has it', async () => {
    await page.goto(`${base}#plc`);
    await until(async () => /\b3\b/.test(await rowText(page, 'setpoint').catch(() => '')), 'the setpoint row with its value');
    assert.equal(await row(page, 'speed').getByRole('button', { name: 'Write…' }).count(), 0, 'a read-only tag has no write control');

    await row(page, 'setpoint').getByRole('button', { name: 'Write…' }).click();
    await row(page, 'setpoint').getByLabel('new value for setpoint').fill('123');
    await row(page, 'setpoint').getByRole('button', { name: 'Write', exact: true }).click();
    await row(page, 'setpoint').getByText('Write 123 to plc0/setpoint?').waitFor();
    await page.screenshot({ path: join(OUT, 'plc-write-confirm-desktop.png'), fullPage: true });
    await row(page, 'setpoint').getByRole('button', { name: 'Confirm write' }).click();
    await row(page, 'setpoint').getByText('written; read back 123').waitFor({ timeout: 20_000 });

    const driver = new ModbusDriver({ name: 'check', host: '127.0.0.1', port: plc.port, unitId: 1, timeoutMs: 3000, connectTimeoutMs: 3000, addressing: 0, maxGap: 0, maxTimeouts: 3, skipAfterFailures: 5, skipMs: 1000, groups: [] });
    await driver.connect();
    try {
      assert.deepEqual(await driver.readRegisters('holding', 1, 1), [123], 'the PLC holds the written value');
    } finally {
      await driver.close();
    }
    // The live value cell follows the bridge's next poll.
    await until(async () => (await row(page, 'setpoint').locator('td.val').innerText()) === '123', 'the new value in the value cell');

    // The bridge's validation answers, not the page's: out of range.
    await row(page, 'setpoint').getByRole('button', { name: 'Write…' }).click();
    await row(page, 'setpoint').getByLabel('new value for setpoint').fill('5000');
    await row(page, 'setpoint').getByRole('button', { name: 'Write', exact: true }).click();
    await row(page, 'setpoint').getByRole('button', { name: 'Confirm write' }).click();
    await row(page, 'setpoint').getByText(/rejected \(out-of-range\)/).waitFor({ timeout: 20_000 });
    await page.screenshot({ path: join(OUT, 'plc-write-result-desktop.png'), fullPage: true });

    const label = await page.evaluate<string>(async () => ((await (await fetch('/api/session')).json()) as { label: string }).label);
    const r = await runCli(['audit', '--json', '--config', agent.configPath]);
    assert.equal(r.code, 0, r.stderr);
    const entries = (JSON.parse(r.stdout) as AuditEntry[]).filter((e) => e.action === 'plc-write');
    assert.deepEqual(
      entries.map((e) => [e.actor, e.target, e.outcome, e.details?.tags]),
      [
        [`console:${label}`, 'plc0', 'successful', { setpoint: 123 }],
        [`console:${label}`, 'plc0', 'rejected/out-of-range', { setpoint: 5000 }],
      ],
    );
    const v = await runCli(['audit', '--verify', '--config', agent.configPath]);
    assert.equal(v.code, 0, v.stdout + v.stderr);
  });

  test('a viewer has no write control, and its direct POST is refused 403 without touching the PLC', async () => {
    const viewer = await (await browser.newContext()).newPage();
    await viewer.goto((await pairCode(agent.configPath, 'viewer')).url.replace(/^http:\/\/[^/]+\//, base));
    await viewer.waitForSelector('main[data-page="overview"] .live h1');
    await viewer.goto(`${base}#plc`);
    await until(async () => /writable/.test(await rowText(viewer, 'setpoint').catch(() => '')), 'the setpoint row for the viewer');
    assert.equal(await viewer.getByRole('button', { name: 'Write…' }).count(), 0);

    const s = await pairSession(base, (await pairCode(agent.configPath, 'viewer')).code);
    const post = await http(base, '/api/plc/write', {
      method: 'POST',
      headers: { Origin: base.replace(/\/$/, ''), Cookie: s.cookie, 'X-CSRF-Token': s.csrf, 'Content-Type': 'application/json' },
      body: JSON.stringify({ device: 'plc0', tags: { setpoint: 999 } }),
    });
    assert.equal(post.status, 403, post.body);
    assert.equal(post.json().error, 'forbidden');
    const r = await runCli(['audit', '--json', '--config', agent.configPath]);
    assert.equal((JSON.parse(r.stdout) as AuditEntry[]).some((e) => e.action === 'plc-write' && e.actor === `console:${s.label}`), false);
  });
});
