/**
 * `--only console`: the web console's cost and speed (docs/console.md), one run, everything in
 * the same run as its reference:
 *   - idle RSS and CPU of an agent with the console enabled and one chromium tab on the PLC page
 *     (2,000 uint16 tags at 1 s, every one changing each poll), against an agent with the console
 *     disabled, both running at the same time on the same bridge (goal: +10 MB, +2 % of a core);
 *   - a value changed at the PLC -> the new value in the page's DOM, p50/p99 over `changes`
 *     changes, against the same change -> its receipt by a plain MQTT subscriber of the bridge's
 *     topic (the bridge's poll-to-subscriber latency), same changes (goal p99 <= 300 ms);
 *   - overview load to fully rendered (the agent's pid on the page), and the bytes transferred,
 *     against a static page of the same size from node:http in the same browser.
 */
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { startBroker } from '../test/helpers/broker.js';
import { agentReady, startAgent, type AgentProcess } from '../test/helpers/agent.js';
import { startBridge, writeBridgeConfig } from '../test/helpers/bridge.js';
import { startSimProcess } from '../test/helpers/plc-sim-process.js';
import { pairCode } from '../test/helpers/console.js';
import { freePort, mqttClient, tempDir, waitFor } from '../test/helpers/util.js';
import { rssOf, sleep } from './proc.js';
import { measurement, type Measurement } from './report.js';

const GW = 'gw-console-bench';
const TAGS = 2000;

export interface ConsolePhase {
  rss: { on: number[]; off: number[] };
  cpu: { on: number[]; off: number[] };
  dom: number[];
  sub: number[];
  load: number[];
  loadRef: number[];
  bytes: number[];
  bytesRef: number[];
}

function cpuSec(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(f[11]) + Number(f[12])) / 100;
}

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};

export async function consolePhase(o: { windowMs: number; changes: number }, log: (s: string) => void): Promise<ConsolePhase> {
  const broker = await startBroker();
  const sim = await startSimProcess(['--size', String(TAGS + 10), '--churn', String(TAGS)]);
  const dir = tempDir('console-bench-');
  const tags = Array.from({ length: TAGS }, (_, i) => ({ name: `t${i}`, area: 'holding', address: i, type: 'uint16' }));
  tags.push({ name: 'probe', area: 'holding', address: TAGS + 1, type: 'uint16' });
  const bridgeConfig = writeBridgeConfig(dir, {
    gatewayId: GW,
    mqtt: { url: broker.url },
    devices: [{ name: 'plc0', host: '127.0.0.1', port: sim.ports[0], unitId: 1, timeoutMs: 1000, groups: [{ name: 'g', intervalMs: 1000, tags }] }],
  });
  const bridge = startBridge(bridgeConfig);
  const port = await freePort();
  const agents: AgentProcess[] = [];
  const mk = (name: string, enabled: boolean): AgentProcess => {
    const a = startAgent({ dataDir: join(dir, name), gatewayId: GW, config: { mqtt: { url: broker.url, clientId: `${GW}-${name}` }, console: { enabled, listen: `127.0.0.1:${enabled ? port : 0}` }, plcBridge: { config: bridgeConfig, launch: 'never' }, health: { enabled: false } } });
    agents.push(a);
    return a;
  };
  const on = mk('on', true);
  const off = mk('off', false);
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium' });
  const ref = createServer((_req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html' });
    res.end(`<!doctype html><title>ref</title><body>${'x'.repeat(refBytes)}<p id=done>done</p></body>`);
  });
  let refBytes = 1000;
  const out: ConsolePhase = { rss: { on: [], off: [] }, cpu: { on: [], off: [] }, dom: [], sub: [], load: [], loadRef: [], bytes: [], bytesRef: [] };
  try {
    await agentReady(on, 20_000);
    await agentReady(off, 20_000);
    const base = `http://127.0.0.1:${port}/`;
    const ctx = await browser.newContext();
    const page = await ctx.newPage();

    // Overview load: a fresh tab, goto -> the agent's pid on the page; bytes are the bodies received.
    await page.goto((await pairCode(on.configPath, 'viewer')).url);
    await page.waitForSelector('main[data-page="overview"] .live');
    for (let i = 0; i < 5; i++) {
      const t = await ctx.newPage();
      let bytes = 0;
      t.on('response', (r) => {
        if (!r.url().includes('/api/stream')) void r.body().then((b) => (bytes += b.length)).catch(() => undefined);
      });
      const t0 = Date.now();
      await t.goto(`${base}#overview`);
      await t.waitForFunction((pid) => document.querySelector('main')?.textContent?.includes(String(pid)) ?? false, on.pid, { polling: 'raf' });
      out.load.push(Date.now() - t0);
      await sleep(200);
      out.bytes.push(bytes);
      await t.close();
    }
    refBytes = Math.round(pct(out.bytes, 50));
    await new Promise<void>((r) => ref.listen(0, '127.0.0.1', () => r()));
    const refUrl = `http://127.0.0.1:${(ref.address() as { port: number }).port}/`;
    for (let i = 0; i < 5; i++) {
      const t = await ctx.newPage();
      let bytes = 0;
      t.on('response', (r) => void r.body().then((b) => (bytes += b.length)).catch(() => undefined));
      const t0 = Date.now();
      await t.goto(refUrl);
      await t.waitForSelector('#done');
      out.loadRef.push(Date.now() - t0);
      await sleep(100);
      out.bytesRef.push(bytes);
      await t.close();
    }
    log(`console: overview load ${JSON.stringify(out.load)} ms, ${JSON.stringify(out.bytes)} bytes`);

    // The PLC page, then the idle window.
    await page.goto(`${base}#plc`);
    await page.waitForSelector('tr[data-tag="t1999"]');
    await waitFor(async () => (await page.locator('tr[data-tag="t0"]').getAttribute('data-q')) === 'good', { timeoutMs: 20_000, what: 'values on the PLC page' });
    await sleep(3000);
    const c0 = { on: cpuSec(on.pid), off: cpuSec(off.pid) };
    const t0 = Date.now();
    for (let t = 0; t < o.windowMs; t += 1000) {
      await sleep(1000);
      out.rss.on.push(rssOf(on.pid).total / 1048576);
      out.rss.off.push(rssOf(off.pid).total / 1048576);
    }
    const sec = (Date.now() - t0) / 1000;
    out.cpu.on.push(((cpuSec(on.pid) - c0.on) / sec) * 100);
    out.cpu.off.push(((cpuSec(off.pid) - c0.off) / sec) * 100);
    log(`console: cpu on ${out.cpu.on[0]?.toFixed(2)} % off ${out.cpu.off[0]?.toFixed(2)} %`);

    // Change -> DOM, and the same change -> a plain subscriber.
    const sub = await mqttClient(broker.url);
    let want = -1;
    let subAt = 0;
    sub.on('message', (_t, p) => {
      const v = (JSON.parse(p.toString()) as { values?: Record<string, { v?: unknown }> }).values?.probe?.v;
      if (v === want && subAt === 0) subAt = Date.now();
    });
    await sub.subscribeAsync(`edge/${GW}/plc/plc0/g`);
    await page.evaluate(() => {
      const w = window as unknown as { seen: Record<string, number> };
      w.seen = {};
      const cell = document.querySelector('tr[data-tag="probe"] td.val')!;
      new MutationObserver(() => (w.seen[cell.textContent ?? ''] ??= Date.now())).observe(cell, { childList: true, characterData: true, subtree: true });
    });
    for (let i = 0; i < o.changes; i++) {
      want = 10_000 + i;
      subAt = 0;
      const at = Date.now();
      await sim.send({ set: { area: 'holding', address: TAGS + 1, values: [want] } });
      const v = want;
      await page.waitForFunction((x) => (window as unknown as { seen: Record<string, number> }).seen[String(x)] !== undefined, v, { timeout: 10_000 });
      const domAt = await page.evaluate((x) => (window as unknown as { seen: Record<string, number> }).seen[String(x)]!, v);
      await waitFor(() => subAt > 0, { timeoutMs: 10_000, what: 'the subscriber' });
      out.dom.push(domAt - at);
      out.sub.push(subAt - at);
      // A random phase against the 1 s poll, so the samples cover the whole cycle.
      await sleep(Math.floor(Math.random() * 1000));
    }
    sub.end(true);
    log(`console: dom p50 ${pct(out.dom, 50)} p99 ${pct(out.dom, 99)}; subscriber p50 ${pct(out.sub, 50)} p99 ${pct(out.sub, 99)}`);
  } finally {
    await browser.close();
    ref.close();
    for (const a of agents) await a.stop();
    await bridge.stop();
    await sim.stop();
    await broker.stop();
  }
  return out;
}

export function consoleMeasurements(p: ConsolePhase): Measurement[] {
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  return [
    measurement({ id: 'console-idle-rss', title: 'agent RSS, console on + a tab on the PLC page (2,000 tags at 1 s)', unit: 'MB', samples: [mean(p.rss.on)], reference: { name: 'the same agent, console.enabled false, same bridge and time', samples: [mean(p.rss.off)] } }),
    measurement({ id: 'console-idle-cpu', title: 'agent CPU, console on + a tab on the PLC page', unit: '% of a core', samples: p.cpu.on, reference: { name: 'the same agent, console off', samples: p.cpu.off } }),
    measurement({ id: 'console-plc-dom-p50', title: 'value changed at the PLC -> new value in the page DOM, p50', unit: 'ms', samples: [pct(p.dom, 50)], reference: { name: 'the same change -> a plain MQTT subscriber of the bridge, p50', samples: [pct(p.sub, 50)] } }),
    measurement({ id: 'console-plc-dom-p99', title: 'value changed at the PLC -> new value in the page DOM, p99', unit: 'ms', samples: [pct(p.dom, 99)], reference: { name: 'the same change -> a plain MQTT subscriber, p99', samples: [pct(p.sub, 99)] } }),
    measurement({ id: 'console-overview-load', title: 'overview: goto -> rendered with the pid (fresh tab, paired)', unit: 'ms', samples: p.load, reference: { name: 'a static page of the same size from node:http, same browser', samples: p.loadRef } }),
    measurement({ id: 'console-overview-bytes', title: 'overview: bytes received (bodies, stream excluded)', unit: 'bytes', samples: p.bytes, reference: { name: 'that static page', samples: p.bytesRef } }),
  ];
}
