/**
 * A hung agent: its event loop blocked (fault hook EDGE_AGENT_FAULT=block-loop, admin method
 * `fault-block-loop`) sends no WATCHDOG=1 while blocked, so systemd (WatchdogSec=1s here, played
 * by a real unix datagram socket, test/helpers/notify-socket.ts) would kill and restart it; the
 * first ping after the block is withheld too (the event-loop lag check). The agent's own stall is
 * not blamed on the services it supervises: a heartbeat service with a deadline shorter than the
 * block is not restarted.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, waitFor } from '../helpers/util.js';
import { REPO, startAgent, type AgentProcess } from '../helpers/agent.js';
import { notifySocket, type NotifySocket } from '../helpers/notify-socket.js';
import type { ComponentStatus } from '../../recovery/supervisor.js';

const SERVICE = join(REPO, 'dist', 'test', 'fixtures', 'service.js');
const BLOCK_MS = 3000;
const WATCHDOG_USEC = 1_000_000;

let agent: AgentProcess | undefined;
let ns: NotifySocket | undefined;
let dataDir = '';

after(async () => {
  await agent?.kill9();
  ns?.close();
  const piddir = join(dataDir, 'recovery');
  for (const f of readdirSync(piddir).filter((n) => n.endsWith('.pid'))) {
    try {
      process.kill(-(JSON.parse(readFileSync(join(piddir, f), 'utf8')) as { pid: number }).pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
});

test('an agent with a blocked event loop stops pinging the systemd watchdog; its stall is not blamed on its services', async () => {
  const dir = tempDir('hung-agent');
  dataDir = join(dir, 'data');
  ns = notifySocket();
  const sock = join(dir, 'svc.sock');
  agent = startAgent({
    dataDir,
    gatewayId: 'gw-hung',
    // No broker: the watchdog ping does not depend on one.
    config: {
      mqtt: { url: 'mqtt://127.0.0.1:1' },
      systemd: { maxEventLoopLagMs: 1000 },
      recovery: { intervalMs: 200, deadlineMs: 1500, services: [{ name: 'svc', command: [process.execPath, SERVICE, 'serve', sock], probe: { kind: 'heartbeat', socket: sock } }] },
    },
    env: { ...ns.env, WATCHDOG_USEC: String(WATCHDOG_USEC), EDGE_AGENT_FAULT: 'block-loop' },
  });
  await ns.waitFor('READY=1', 20_000);
  const pingTimes: number[] = [];
  const pings = (): number => ns!.messages.filter((m) => m.split('\n').includes('WATCHDOG=1')).length;
  const record = (): void => {
    while (pingTimes.length < pings()) pingTimes.push(Date.now());
  };
  const timer = setInterval(record, 10);
  try {
    await waitFor(async () => ((await agent!.admin('status').catch(() => undefined)) as { components?: ComponentStatus[] } | undefined)?.components?.[0]?.state === 'running', {
      timeoutMs: 15_000,
      what: `svc running\n${agent.logText().slice(-2000)}`,
    });
    await waitFor(() => pings() >= 3, { timeoutMs: 10_000, what: 'three watchdog pings' });
    const svcPid = ((await agent.admin('status')) as { components: ComponentStatus[] }).components[0]!.pid;

    const r = (await agent.admin('fault-block-loop', { ms: BLOCK_MS })) as { blockingMs: number };
    assert.equal(r.blockingMs, BLOCK_MS);
    const asked = Date.now();
    const before = pings();
    // Pings come back after the block: the agent was not killed here (no real systemd).
    await waitFor(() => pings() >= before + 2, { timeoutMs: BLOCK_MS + 15_000, what: 'pings after the block' });
    record();
    const gaps = pingTimes.slice(1).map((t, i) => ({ at: pingTimes[i]!, gap: t - pingTimes[i]! }));
    const longest = gaps.filter((g) => g.at >= asked - WATCHDOG_USEC / 1000).reduce((m, g) => Math.max(m, g.gap), 0);
    // systemd kills a unit that sends no WATCHDOG=1 for WatchdogSec (1 s here).
    assert.ok(longest >= BLOCK_MS, `the longest gap between pings around the block was ${longest} ms; expected at least the ${BLOCK_MS} ms block`);
    assert.ok(longest > WATCHDOG_USEC / 1000, 'systemd would have restarted it');
    assert.ok(
      agent.logs.some((l) => typeof l === 'object' && l.msg === 'withholding the systemd watchdog ping: a critical loop is unhealthy'),
      'the first ping after the block was withheld (event-loop lag)',
    );
    // The supervised service was not found "hung" because the agent itself stalled.
    assert.ok(agent.logs.some((l) => typeof l === 'object' && typeof l.msg === 'string' && l.msg.includes('the supervisor loop ran late')), 'the stall was noticed');
    const svc = ((await agent.admin('status')) as { components: ComponentStatus[] }).components[0]!;
    assert.equal(svc.pid, svcPid, 'svc kept its process');
    assert.equal(svc.restarts, 0);
    assert.equal(svc.lastFailure, undefined);
  } finally {
    clearInterval(timer);
  }
});
