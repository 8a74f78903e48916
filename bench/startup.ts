/**
 * Measurements 1 and 2: how long the agent takes from spawn to its retained `online` status
 * reaching a subscriber, and its resident memory once idle. The reference is ref-client.js, the
 * least a Node process with mqtt.js can do (connect, publish one retained QoS 1 message, idle).
 *
 * One sample spawns the process, times spawn -> `online` seen by an already-subscribed client,
 * waits `idleMs`, reads VmRSS, then stops the process and clears the retained message.
 *
 * The agent gets a config file of its own (as in production), so a developer's
 * /etc/edge-agent/config.yaml is never read; it only sets the MQTT version the broker speaks.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { MqttClient } from 'mqtt';
import { DEPLOYED_NODE_FLAGS, DIST, rssOf, sleep, spawnNode, type NodeChild, type Rss } from './proc.js';

export type StartupSubject = 'agent' | 'reference';

export interface StartupSample {
  startupMs: number;
  idleRss: Rss;
}

const ONLINE_TIMEOUT_MS = 30_000;

function isOnline(payload: Buffer): boolean {
  try {
    return (JSON.parse(payload.toString('utf8')) as { state?: unknown }).state === 'online';
  } catch {
    return false;
  }
}

/** Spawns via `start` once `sub` holds the subscription; resolves with the ms until `online`. */
async function timeToOnline(sub: MqttClient, topic: string, start: () => NodeChild): Promise<{ child: NodeChild; ms: number }> {
  let seen: (at: number) => void = () => undefined;
  const online = new Promise<number>((r) => (seen = r));
  const onMessage = (t: string, payload: Buffer): void => {
    if (t === topic && isOnline(payload)) seen(performance.now());
  };
  sub.on('message', onMessage);
  let child: NodeChild | undefined;
  let timer: NodeJS.Timeout | undefined;
  try {
    await sub.subscribeAsync(topic, { qos: 1 });
    const t0 = performance.now();
    child = start();
    const c = child;
    const failed = c.exited.then((code) => Promise.reject(new Error(`exited with ${code} before publishing online\n${c.tail()}`)));
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no online status on ${topic} after ${ONLINE_TIMEOUT_MS} ms\n${c.tail()}`)), ONLINE_TIMEOUT_MS);
    });
    const t1 = await Promise.race([online, failed, late]);
    return { child: c, ms: t1 - t0 };
  } catch (err) {
    await child?.stop(2000);
    throw err;
  } finally {
    clearTimeout(timer);
    sub.off('message', onMessage);
    await sub.unsubscribeAsync(topic);
  }
}

export interface StartupSampleOptions {
  url: string;
  protocolVersion: 4 | 5;
  /** Already connected; used to watch for `online` and to clear the retained message after. */
  sub: MqttClient;
  subject: StartupSubject;
  tag: string;
  idleMs: number;
}

export async function startupSample(opts: StartupSampleOptions): Promise<StartupSample> {
  const { url, sub, subject, tag } = opts;
  const gatewayId = `bench-${process.pid}-${tag}`;
  let dataDir: string | undefined;
  let topic: string;
  let start: () => NodeChild;
  if (subject === 'agent') {
    const dir = mkdtempSync(join(tmpdir(), 'bench-agent-'));
    dataDir = dir;
    const conf = join(dir, 'config.yaml');
    writeFileSync(conf, `mqtt:\n  protocolVersion: ${opts.protocolVersion}\n`);
    const data = join(dir, 'data');
    topic = `edge/${gatewayId}/status`;
    start = () => spawnNode(join(DIST, 'agent', 'cli', 'index.js'), ['run', '--config', conf, '--broker', url, '--gateway-id', gatewayId, '--data-dir', data], DEPLOYED_NODE_FLAGS);
  } else {
    topic = `bench/${gatewayId}/status`;
    start = () => spawnNode(join(DIST, 'bench', 'ref-client.js'), [url, topic, String(opts.protocolVersion)], DEPLOYED_NODE_FLAGS);
  }
  try {
    const { child, ms } = await timeToOnline(sub, topic, start);
    try {
      await sleep(opts.idleMs);
      if (child.hasExited()) throw new Error(`${subject} exited while idle\n${child.tail()}`);
      return { startupMs: ms, idleRss: rssOf(child.pid) };
    } finally {
      await child.stop();
    }
  } finally {
    // An empty retained payload deletes the retained message (MQTT 5.0, 3.3.1.3).
    await sub.publishAsync(topic, '', { qos: 1, retain: true });
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  }
}
