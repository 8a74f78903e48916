/**
 * The console's operations and maintenance pages in chromium against the real agent and its
 * procedure runner: an operator starts a procedure from the page, sees its steps progress,
 * pauses, resumes, answers its confirm step and cancels it, each through Router.submit (the
 * command's statuses are the router's); a viewer sees neither the Run nor the Pause controls.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startBroker, type Broker } from '../helpers/broker.js';
import { freePort, tempDir, waitFor } from '../helpers/util.js';
import { agentConnected, REPO, startAgent, type AgentProcess } from '../helpers/agent.js';
import { pairCode } from '../helpers/console.js';

const CHROMIUM = '/usr/bin/chromium';
const OUT = join(REPO, 'dist', 'test-output', 'console');
const NODE = process.execPath;

describe('console: operations and maintenance pages', { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed` }, () => {
  let broker: Broker;
  let agent: AgentProcess;
  let browser: Browser;
  let page: Page;
  let base = '';

  before(async () => {
    mkdirSync(OUT, { recursive: true });
    broker = await startBroker();
    const root = tempDir('console-ops-');
    const procs = join(root, 'procedures');
    mkdirSync(procs, { mode: 0o755 });
    chmodSync(procs, 0o755);
    const f = join(procs, 'console-demo.yaml');
    writeFileSync(
      f,
      stringify({
        id: 'console-demo',
        name: 'console-demo',
        disruptive: false,
        steps: [
          { id: 'first', type: 'command', argv: [NODE, '-e', 'setTimeout(()=>{},4000)'] },
          { id: 'ask', type: 'confirm', message: 'Go on with the long step?', ttlSec: 300 },
          { id: 'long', type: 'command', timeoutSec: 300, argv: [NODE, '-e', 'setTimeout(()=>{},300000)'] },
          { id: 'last', type: 'log', message: 'done' },
        ],
      }),
    );
    chmodSync(f, 0o644);
    const port = await freePort();
    agent = startAgent({ dataDir: join(root, 'data'), gatewayId: 'gw-console-ops', config: { mqtt: { url: broker.url }, console: { listen: `127.0.0.1:${port}` }, maintenance: { proceduresDir: procs } } });
    await agentConnected(agent, 20_000);
    base = `http://127.0.0.1:${port}/`;
    browser = await chromium.launch({ executablePath: CHROMIUM });
    page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
    page.on('dialog', (d) => void d.accept());
    await page.goto((await pairCode(agent.configPath, 'operator')).url);
    await page.waitForSelector('main[data-page="overview"] .live h1');
  });

  after(async () => {
    await browser?.close();
    await agent?.stop();
    await broker?.stop();
  });

  const mainText = (): Promise<string> => page.locator('main').innerText();
  const until = (re: RegExp, what: string): Promise<void> => waitFor(async () => re.test(await mainText()), { timeoutMs: 30_000, what: `${what}\n${agent.logText().slice(-2000)}` });

  test('an operator runs a procedure from the page, pauses, resumes, confirms and cancels it', async () => {
    await page.goto(`${base}#maintenance`);
    await until(/console-demo/, 'the procedure on the maintenance page');
    await page.locator('tr', { hasText: 'console-demo' }).getByRole('button', { name: 'Run', exact: true }).click();
    await page.goto(`${base}#operations`);
    await until(/console-demo[\s\S]*first/, 'the run at its first step');
    await page.screenshot({ path: join(OUT, 'operations-desktop.png'), fullPage: true });
    await page.getByRole('button', { name: 'Pause' }).click();
    await until(/paused/, 'the run paused at the step boundary');
    await page.getByRole('button', { name: 'Resume' }).click();
    await until(/waiting: Go on with the long step\?/, 'the confirm step waiting');
    await page.getByRole('button', { name: 'Confirm: yes' }).click();
    await until(/long/, 'the long step running');
    const ops = (await agent.admin('operations')) as { operations: { id: string; op: string }[] };
    const id = ops.operations.find((o) => o.op === 'maintenance')?.id;
    assert.ok(id?.startsWith('console-'), String(id));
    await page.locator('tr', { hasText: id! }).getByRole('button', { name: 'Cancel' }).click();
    await until(/no operation running or waiting/, 'the queue empty after the cancel');
    const st = (await agent.admin('command-status', { id })) as { status: string };
    assert.equal(st.status, 'cancelled');
    await page.goto(`${base}#maintenance`);
    await until(/console-demo[\s\S]*(cancelled|interrupted)/, 'the report on the maintenance page');
    await page.screenshot({ path: join(OUT, 'maintenance-desktop.png'), fullPage: true });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.screenshot({ path: join(OUT, 'maintenance-phone.png'), fullPage: true });
  });

  test('a viewer has no Run, Pause or Cancel controls', async () => {
    const v = await (await browser.newContext()).newPage();
    await v.goto((await pairCode(agent.configPath, 'viewer')).url);
    await v.waitForSelector('main[data-page="overview"] .live h1');
    await v.goto(`${base}#maintenance`);
    await waitFor(async () => (await v.locator('main').innerText()).includes('console-demo'), { timeoutMs: 10_000, what: 'procedures for the viewer' });
    assert.equal(await v.getByRole('button', { name: 'Run', exact: true }).count(), 0);
    assert.equal(await v.getByRole('button', { name: 'Dry run' }).count(), 0);
  });
});
