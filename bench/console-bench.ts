/**
 * `--only console`: the web console's cost and speed (docs/console.md), one run, everything in
 * the same run as its reference:
 *   - idle RSS and CPU of an agent with the console enabled and one chromium tab on the PLC page
 *     (2,000 uint16 tags at 1 s, every one changing each poll), against an agent with the console
 *     disabled, both running at the same time on the same bridge, both with the Node flags of the
 *     systemd unit (DEPLOYED_NODE_FLAGS: without `--max-semi-space-size=1` V8 grows and shrinks
 *     each agent's young generation between 1 and 32 MB on its own schedule, which swamps a
 *     10 MB budget either way) (goal: +10 MB, +2 % of a core);
 *   - a value changed at the PLC -> the new value in the page's DOM, p50/p99 over `changes`
 *     changes, against the same change -> its receipt by a plain MQTT subscriber of the bridge's
 *     topic (the bridge's poll-to-subscriber latency, up to its 1 s poll), same changes; the
 *     goal (p99 <= 300 ms) is on what the console adds: DOM minus subscriber, change by change.
 *     Where the rest goes is split at the page's EventSource (the event handed to the page);
 *   - overview load to fully rendered (the agent's pid and the last incident on the page), and
 *     the bytes received for it (every request's encoded length, and the stream's snapshot),
 *     against a static page of the same size from node:http in the same browser (goal: 500 ms).
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
import { DEPLOYED_NODE_FLAGS, rssOf, sleep } from './proc.js';
import { measurement, type Measurement } from './report.js';

const GW = 'gw-console-bench';
const TAGS = 2000;

export interface ConsolePhase {
  rss: { on: number[]; off: number[] };
  cpu: { on: number[]; off: number[] };
  dom: number[];
  sub: number[];
  /** The change -> the stream's event handed to the page (before the page's own handler). */
  arrive: number[];
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
    const a = startAgent({ dataDir: join(dir, name), gatewayId: GW, env: { NODE_OPTIONS: DEPLOYED_NODE_FLAGS.join(' ') }, config: { mqtt: { url: broker.url, clientId: `${GW}-${name}` }, console: { enabled, listen: `127.0.0.1:${enabled ? port : 0}` }, plcBridge: { config: bridgeConfig, launch: 'never' }, health: { enabled: false } } });
    agents.push(a);
    return a;
  };
  const on = mk('on', true);
  const off = mk('off', false);
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium' });
  const ref = createServer((req, res) => {
    // Only the page: the browser's /favicon.ico is a 404, as the console answers it.
    if (req.url !== '/') return void res.writeHead(404).end();
    res.writeHead(200, { 'Content-Type': 'text/html' });
    res.end(`<!doctype html><title>ref</title><body>${'x'.repeat(refBytes)}<p id=done>done</p></body>`);
  });
  let refBytes = 1000;
  const out: ConsolePhase = { rss: { on: [], off: [] }, cpu: { on: [], off: [] }, dom: [], sub: [], arrive: [], load: [], loadRef: [], bytes: [], bytesRef: [] };
  try {
    await agentReady(on, 20_000);
    await agentReady(off, 20_000);
    const base = `http://127.0.0.1:${port}/`;
    const ctx = await browser.newContext();
    // The probe's value as the page's EventSource hands it over, before the page's own handler.
    await ctx.addInitScript(() => {
      const w = window as unknown as { arrive: Record<string, number> };
      w.arrive = {};
      // eslint-disable-next-line @typescript-eslint/unbound-method -- called with .call(this) below
      const orig = EventSource.prototype.addEventListener;
      EventSource.prototype.addEventListener = function (this: EventSource, type: string, fn: EventListenerOrEventListenerObject, opts?: boolean | AddEventListenerOptions) {
        if (type !== 'plc') return orig.call(this, type, fn, opts);
        const wrapped = (e: Event): void => {
          const m = /"probe":\{"v":(\d+)/.exec((e as MessageEvent<string>).data);
          if (m?.[1]) w.arrive[m[1]] ??= Date.now();
          (fn as (e: Event) => void)(e);
        };
        return orig.call(this, type, wrapped, opts);
      } as typeof EventSource.prototype.addEventListener;
    });
    const page = await ctx.newPage();

    // Overview load: a fresh tab, goto -> the agent's pid and the last incident on the page. Bytes:
    // every finished request's encoded length (headers included) and the stream's snapshot.
    await page.goto((await pairCode(on.configPath, 'viewer')).url);
    await page.waitForSelector('main[data-page="overview"] .live');
    for (let i = 0; i < 5; i++) {
      const t = await ctx.newPage();
      const cdp = await ctx.newCDPSession(t);
      await cdp.send('Network.enable');
      let bytes = 0;
      cdp.on('Network.loadingFinished', (e: { encodedDataLength: number }) => (bytes += e.encodedDataLength));
      cdp.on('Network.eventSourceMessageReceived', (e: { eventName: string; data: string }) => {
        if (e.eventName === 'snapshot') bytes += Buffer.byteLength(e.data);
      });
      const t0 = Date.now();
      await t.goto(`${base}#overview`);
      await t.waitForFunction((pid) => {
        const text = document.querySelector('main')?.textContent ?? '';
        return text.includes(String(pid)) && !text.includes('loading…');
      }, on.pid, { polling: 'raf' });
      out.load.push(Date.now() - t0);
      out.bytes.push(bytes);
      await cdp.detach();
      await t.close();
    }
    refBytes = Math.round(pct(out.bytes, 50));
    await new Promise<void>((r) => ref.listen(0, '127.0.0.1', () => r()));
    const refUrl = `http://127.0.0.1:${(ref.address() as { port: number }).port}/`;
    for (let i = 0; i < 5; i++) {
      const t = await ctx.newPage();
      const cdp = await ctx.newCDPSession(t);
      await cdp.send('Network.enable');
      let bytes = 0;
      cdp.on('Network.loadingFinished', (e: { encodedDataLength: number }) => (bytes += e.encodedDataLength));
      const t0 = Date.now();
      await t.goto(refUrl);
      await t.waitForSelector('#done');
      out.loadRef.push(Date.now() - t0);
      await sleep(100);
      out.bytesRef.push(bytes);
      await cdp.detach();
      await t.close();
    }
    log(`console: overview load ${JSON.stringify(out.load)} ms, ${JSON.stringify(out.bytes)} bytes`);

    // The PLC page, then the idle window.
    // The page draws the rows in view: scrolled to the end of the list, where the probe is.
    await page.goto(`${base}#plc`);
    await page.waitForSelector('tr[data-tag="t0"]');
    await page.evaluate(() => window.scrollTo(0, document.documentElement.scrollHeight));
    await page.waitForSelector('tr[data-tag="probe"]');
    await waitFor(async () => (await page.locator('tr[data-tag="t1999"]').getAttribute('data-q')) === 'good', { timeoutMs: 20_000, what: 'values on the PLC page' });
    log(`console: ${await page.locator('tr[data-tag]').count()} rows in the PLC page's DOM`);
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
      const arriveAt = await page.evaluate((x) => (window as unknown as { arrive: Record<string, number> }).arrive[String(x)] ?? NaN, v);
      out.arrive.push(arriveAt - at);
      out.dom.push(domAt - at);
      out.sub.push(subAt - at);
      // A random phase against the 1 s poll, so the samples cover the whole cycle.
      await sleep(Math.floor(Math.random() * 1000));
    }
    sub.end(true);
    const added = out.dom.map((d, i) => d - out.sub[i]!);
    log(`console: dom p50 ${pct(out.dom, 50)} p99 ${pct(out.dom, 99)}; subscriber p50 ${pct(out.sub, 50)} p99 ${pct(out.sub, 99)}; added p50 ${pct(added, 50)} p99 ${pct(added, 99)}; handed to the page p99 ${pct(out.arrive, 99)}`);
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
  const added = p.dom.map((d, i) => d - p.sub[i]!);
  const page = p.dom.map((d, i) => d - p.arrive[i]!);
  const split = { 'handed to the page p50': [pct(p.arrive, 50)], 'handed to the page p99': [pct(p.arrive, 99)], 'page handler p99': [pct(page, 99)], 'DOM p50': [pct(p.dom, 50)], 'DOM p99': [pct(p.dom, 99)] };
  return [
    measurement({ id: 'console-idle-rss', title: 'agent RSS, console on + a tab on the PLC page (2,000 tags at 1 s)', unit: 'MB', samples: [mean(p.rss.on)], reference: { name: 'the same agent, console.enabled false, same bridge and time', samples: [mean(p.rss.off)] }, goal: { op: '<=', value: 10, of: 'delta' } }),
    measurement({ id: 'console-idle-cpu', title: 'agent CPU, console on + a tab on the PLC page', unit: '% of a core', samples: p.cpu.on, reference: { name: 'the same agent, console off', samples: p.cpu.off }, goal: { op: '<=', value: 2, of: 'delta' } }),
    measurement({ id: 'console-plc-dom-p50', title: 'value changed at the PLC -> new value in the page DOM, p50', unit: 'ms', samples: [pct(p.dom, 50)], reference: { name: 'the same change -> a plain MQTT subscriber of the bridge, p50', samples: [pct(p.sub, 50)] }, details: split }),
    measurement({ id: 'console-plc-dom-p99', title: 'value changed at the PLC -> new value in the page DOM, p99', unit: 'ms', samples: [pct(p.dom, 99)], reference: { name: 'the same change -> a plain MQTT subscriber, p99', samples: [pct(p.sub, 99)] }, details: split }),
    measurement({ id: 'console-plc-added-p50', title: 'what the console adds: DOM minus subscriber, same change, p50', unit: 'ms', samples: [pct(added, 50)], reference: { name: 'the subscriber itself (bridge poll -> subscriber), p50', samples: [pct(p.sub, 50)] } }),
    measurement({ id: 'console-plc-added-p99', title: 'what the console adds: DOM minus subscriber, same change, p99', unit: 'ms', samples: [pct(added, 99)], reference: { name: 'the subscriber itself, p99', samples: [pct(p.sub, 99)] }, goal: { op: '<=', value: 300 } }),
    measurement({ id: 'console-overview-load', title: 'overview: goto -> fully rendered (pid, last incident; fresh tab, paired)', unit: 'ms', samples: p.load, reference: { name: 'a static page of the same size from node:http, same browser', samples: p.loadRef }, goal: { op: '<=', value: 500 } }),
    measurement({ id: 'console-overview-bytes', title: 'overview: bytes received (every request, the stream\'s snapshot)', unit: 'bytes', samples: p.bytes, reference: { name: 'that static page', samples: p.bytesRef } }),
  ];
}
