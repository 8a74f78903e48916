/**
 * A component that systemd runs as its own unit (the PLC bridge under systemd,
 * `edge-plc-bridge.service`, or a declared `unit:` service): liveness is `systemctl is-active`,
 * a restart is `systemctl restart` (systemd itself stops it: TERM, KILL after the unit's
 * TimeoutStopSec), a hung unit is killed first (`systemctl kill`, TERM then KILL after our grace).
 * The last log lines come from `journalctl -u UNIT`. Every call is execFile with an argument
 * array and a timeout; the binaries can be injected for tests.
 */
import { execFile } from 'node:child_process';
import { constants } from 'node:os';
import type { Logger } from '../lib/log.js';
import { RecoveryError } from './errors.js';
import type { AdoptResult, ExitInfo, Handle } from './process.js';
import { tailText } from './log-tail.js';

export interface SystemdUnitOptions {
  unit: string;
  logger: Logger;
  systemctl?: string;
  journalctl?: string;
  /** Bound of each systemctl call except restart, which waits for the unit to start. */
  timeoutMs?: number;
}

interface Run {
  code: number;
  stdout: string;
}

const ALIVE = new Set(['active', 'activating', 'reloading', 'deactivating']);

export class SystemdUnit implements Handle {
  readonly kind = 'systemd' as const;
  private mainPid: number | undefined;

  constructor(private readonly opts: SystemdUnitOptions) {}

  private run(bin: string, args: string[], timeoutMs = this.opts.timeoutMs ?? 10_000): Promise<Run> {
    return new Promise((resolve, reject) => {
      execFile(bin, args, { timeout: timeoutMs, maxBuffer: 256 * 1024 }, (err, stdout) => {
        if (err && typeof err.code !== 'number') {
          reject(new RecoveryError('systemctl-failed', `${bin} ${args.join(' ')}: ${err.message}`, { cause: err }));
          return;
        }
        resolve({ code: err ? (err.code as number) : 0, stdout: String(stdout) });
      });
    });
  }

  private systemctl(args: string[], timeoutMs?: number): Promise<Run> {
    return this.run(this.opts.systemctl ?? 'systemctl', args, timeoutMs);
  }

  pid(): number | undefined {
    return this.mainPid;
  }

  /** systemd notices exits itself; we see them on the next probe. */
  onExit(): void {}

  async start(): Promise<void> {
    const r = await this.systemctl(['restart', this.opts.unit], 120_000);
    if (r.code !== 0) throw new RecoveryError('systemctl-failed', `systemctl restart ${this.opts.unit} exited with ${r.code}`);
    await this.refreshPid();
  }

  async adopt(): Promise<AdoptResult> {
    return (await this.alive()) ? 'adopted' : 'none';
  }

  async alive(): Promise<boolean> {
    const r = await this.systemctl(['is-active', this.opts.unit]);
    const alive = ALIVE.has(r.stdout.trim());
    if (alive && this.mainPid === undefined) await this.refreshPid();
    return alive;
  }

  async kill(graceMs: number): Promise<void> {
    if (!(await this.alive())) return;
    await this.systemctl(['kill', '--signal=SIGTERM', this.opts.unit]);
    const deadline = Date.now() + graceMs;
    while (Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      if (!(await this.alive())) return;
    }
    this.opts.logger.warn({ unit: this.opts.unit, graceMs }, 'did not stop after SIGTERM: SIGKILL');
    await this.systemctl(['kill', '--signal=SIGKILL', this.opts.unit]);
  }

  async lastExit(): Promise<ExitInfo | undefined> {
    const r = await this.systemctl(['show', this.opts.unit, '--property=ExecMainCode', '--property=ExecMainStatus']).catch(() => undefined);
    if (!r || r.code !== 0) return undefined;
    const props = Object.fromEntries(r.stdout.split('\n').map((l) => l.split('=', 2) as [string, string]));
    const status = Number(props.ExecMainStatus);
    if (!Number.isFinite(status)) return undefined;
    // ExecMainCode is a CLD_* value (waitid(2)): 1 exited, 2 killed, 3 dumped.
    if (props.ExecMainCode === '1') return { exitCode: status };
    const name = Object.entries(constants.signals).find(([, n]) => n === status)?.[0];
    return { signal: name ?? String(status) };
  }

  async lastLog(lines: number): Promise<string[]> {
    const r = await this.run(this.opts.journalctl ?? 'journalctl', ['-u', this.opts.unit, '-n', String(lines), '--no-pager', '-o', 'cat']).catch(() => undefined);
    return r ? tailText(r.stdout, lines) : [];
  }

  maintain(): void {}

  private async refreshPid(): Promise<void> {
    const r = await this.systemctl(['show', this.opts.unit, '--property=MainPID', '--value']).catch(() => undefined);
    const pid = Number(r?.stdout.trim());
    this.mainPid = Number.isInteger(pid) && pid > 0 ? pid : undefined;
  }
}
