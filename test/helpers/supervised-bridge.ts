/**
 * An agent (no systemd, `plcBridge.launch: auto`) that starts the real PLC bridge detached and
 * supervises it through its control socket, reading one simulated PLC in its own process: the
 * setup of the watchdog's black-box tests over the bridge.
 *
 * Invariant: stop() stops the agent, then SIGKILLs whichever bridge still answers on the socket
 * (the bridge outlives the agent by design), then the PLC.
 */
import { join } from 'node:path';
import type { Broker } from './broker.js';
import { agentConnected, startAgent, type AgentProcess } from './agent.js';
import { bridgePing, writeBridgeConfig } from './bridge.js';
import { startSimProcess, type SimProcess } from './plc-sim-process.js';
import { tempDir, waitFor } from './util.js';

export interface SupervisedBridgeOptions {
  broker: Broker;
  /** Arguments of the simulated PLC (e.g. `['--churn', '1']`). */
  simArgs?: string[];
  /** The poll interval of the bridge's one group, `plc0/fast` (one uint16 tag `counter`). */
  intervalMs: number;
  /** The watchdog's escalation thresholds for the bridge's crashes. */
  escalation: { restoreConfigAfter: number; rollbackAfter: number; slowRetryAfter: number };
  /** Names the temp directory. */
  name: string;
}

export interface SupervisedBridge {
  agent: AgentProcess;
  sim: SimProcess;
  /** The bridge's control socket. */
  socket: string;
  /** The agent's data directory. */
  dataDir: string;
  /** The bridge's configuration file. */
  bridgeConfig: string;
  stop(): Promise<void>;
}

/** Signals a pid that may be gone already. */
export function killQuietly(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // gone already
  }
}

/** Starts the PLC, then the agent, and returns once the agent is connected and its bridge active. */
export async function startSupervisedBridge(o: SupervisedBridgeOptions): Promise<SupervisedBridge> {
  const sim = await startSimProcess(o.simArgs ?? []);
  const dir = tempDir(o.name);
  const bridgeConfig = writeBridgeConfig(join(dir, 'bridge'), {
    mqtt: { url: o.broker.url },
    devices: [{ name: 'plc0', host: '127.0.0.1', port: sim.ports[0], unitId: 1, timeoutMs: 500, groups: [{ name: 'fast', intervalMs: o.intervalMs, tags: [{ name: 'counter', area: 'holding', address: 0, type: 'uint16' }] }] }],
  });
  const socket = join(dir, 'bridge', 'data', 'plc-bridge.sock');
  const dataDir = join(dir, 'agent');
  const agent = startAgent({
    dataDir,
    config: {
      mqtt: { url: o.broker.url },
      plcBridge: { config: bridgeConfig, launch: 'auto' },
      recovery: { backoff: { initialMs: 100, maxMs: 400 }, escalation: o.escalation, plcBridge: { intervalMs: 500, deadlineMs: 2000 } },
    },
  });
  const stop = async (): Promise<void> => {
    await agent.stop();
    const p = await bridgePing(socket);
    if (p) killQuietly(p.pid, 'SIGKILL');
    await sim.stop();
  };
  try {
    await agentConnected(agent, 20_000);
    await waitFor(async () => (await bridgePing(socket))?.role === 'active', { timeoutMs: 20_000, what: 'the agent to start the bridge' });
  } catch (err) {
    await stop();
    throw err;
  }
  return { agent, sim, socket, dataDir, bridgeConfig, stop };
}
