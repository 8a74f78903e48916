/**
 * After an update or a rollback, the PLC bridge still runs the other release's code. The agent
 * of the release now active asks it to hand over to a bridge started from this release
 * (plc-bridge/handover.ts: the bridge starts its own successor, so under systemd it stays in the
 * bridge's unit). The trial health gate waits for this: a release whose bridge does not take
 * over is not committed, and the old bridge keeps running meanwhile.
 */
import { realpathSync } from 'node:fs';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import { errorCode, errorMessage } from '../lib/errors.js';
import { rpcRequest } from '../lib/rpc.js';
import type { Component } from '../core/ports.js';

export type UpgradeState = 'none' | 'waiting' | 'upgrading' | 'ok' | 'failed';

export interface BridgeUpgradeOptions {
  /** The bridge's control socket; undefined when no bridge is configured. */
  socket: string | undefined;
  /** This release's entry point (process.argv[1]). */
  cli: string;
  /** How long the bridge has to answer at all (the supervisor may be starting it). */
  waitMs: number;
  /** The bridge's own handover deadline plus a margin. */
  handoverTimeoutMs: number;
  clock: Clock;
  logger: Logger;
}

function same(a: string, b: string): boolean {
  try {
    return realpathSync(a) === realpathSync(b);
  } catch {
    return a === b;
  }
}

export class BridgeUpgrade implements Component {
  readonly name = 'bridge-upgrade';
  state: UpgradeState = 'none';
  detail = '';
  private stopped = false;

  constructor(private readonly opts: BridgeUpgradeOptions) {}

  async start(): Promise<void> {
    if (!this.opts.socket) return;
    this.state = 'waiting';
    void this.run(this.opts.socket);
  }

  async stop(): Promise<void> {
    this.stopped = true;
  }

  /** For the trial gate: no bridge, or a bridge running this release's code. */
  health(): { ok: boolean; why?: string } {
    if (this.state === 'none' || this.state === 'ok') return { ok: true };
    return { ok: false, why: `PLC bridge ${this.state}${this.detail ? `: ${this.detail}` : ''}` };
  }

  private async run(socket: string): Promise<void> {
    const { clock, logger } = this.opts;
    const deadline = clock.now() + this.opts.waitMs;
    let ping: { cli?: string; pid?: number; role?: string } | undefined;
    while (!this.stopped) {
      try {
        ping = (await rpcRequest(socket, 'ping', {}, 2000)) as typeof ping;
        if (ping?.role === 'active') break;
      } catch {
        // not up yet
      }
      if (clock.now() > deadline) {
        this.state = 'failed';
        this.detail = `no bridge answered on ${socket} within ${this.opts.waitMs} ms`;
        logger.error({ socket }, 'the PLC bridge does not answer');
        return;
      }
      await new Promise<void>((r) => clock.setTimeout(() => r(), 200));
    }
    if (this.stopped || !ping) return;
    if (typeof ping.cli === 'string' && same(ping.cli, this.opts.cli)) {
      this.state = 'ok';
      return;
    }
    this.state = 'upgrading';
    logger.info({ from: ping.cli, to: this.opts.cli, pid: ping.pid }, 'handing the PLC bridge over to this release');
    // The old bridge answers once its successor has the role, but it also exits then, and its
    // answer may not make it out: what counts is who answers `ping` afterwards.
    let failure: unknown;
    const asked = rpcRequest(socket, 'upgrade', { cli: this.opts.cli }, this.opts.handoverTimeoutMs).then(
      () => undefined,
      (err: unknown) => {
        failure = err;
      },
    );
    const until = clock.now() + this.opts.handoverTimeoutMs;
    while (!this.stopped && clock.now() < until) {
      const now = await this.ping(socket);
      if (now?.role === 'active' && typeof now.cli === 'string' && same(now.cli, this.opts.cli)) {
        this.state = 'ok';
        logger.info({ pid: now.pid }, 'the PLC bridge runs this release');
        return;
      }
      if (failure !== undefined && errorCode(failure) !== 'internal') break;
      await new Promise<void>((r) => clock.setTimeout(() => r(), 100));
    }
    await Promise.race([asked, new Promise<void>((r) => clock.setTimeout(() => r(), 1000))]);
    this.state = 'failed';
    this.detail = failure === undefined ? `no bridge of this release within ${this.opts.handoverTimeoutMs} ms` : errorMessage(failure);
    logger.error({ err: failure, detail: this.detail }, 'the PLC bridge handover failed; the previous bridge keeps running');
  }

  private async ping(socket: string): Promise<{ cli?: string; pid?: number; role?: string } | undefined> {
    try {
      return (await rpcRequest(socket, 'ping', {}, 2000)) as { cli?: string; pid?: number; role?: string };
    } catch {
      return undefined;
    }
  }
}
