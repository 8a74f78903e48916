/**
 * Fault injection for the crash tests: `EDGE_AGENT_FAULT=<point>` makes the process kill itself
 * with SIGKILL (no cleanup, like a power cut for everything not yet on disk) the first time it
 * reaches that point. "First time" is kept in a marker file, so the process the boot guard
 * starts next runs on. Without the variable every call is a no-op.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export function faultInjector(point: string | undefined, markerDir: string): (name: string) => void {
  if (!point) return () => undefined;
  return (name) => {
    if (name !== point) return;
    const marker = join(markerDir, `fault-${name.replace(/[^a-z0-9-]/gi, '_')}.done`);
    if (existsSync(marker)) return;
    writeFileSync(marker, `${process.pid}\n`);
    process.kill(process.pid, 'SIGKILL');
  };
}

/**
 * `EDGE_AGENT_FAULT=block-loop` (the hung-agent test): blocks this thread's event loop for `ms`,
 * as a bug stuck in a synchronous loop would. Atomics.wait on a buffer no one notifies sleeps
 * the whole thread without burning the CPU.
 */
export function blockEventLoop(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * A fault that misbehaves once per process, in place, instead of killing it: true the first
 * time `name` is asked for while `point` names it, false ever after (so the part restarted by the
 * watchdog works again). `EDGE_AGENT_FAULT=link-stall`: the WMS link loses its reconnect after the
 * first disconnect, as a lost wake-up would (the in-process watchdog test).
 */
export function faultOnce(point: string | undefined, name: string): () => boolean {
  let fired = false;
  return () => {
    if (point !== name || fired) return false;
    fired = true;
    return true;
  };
}
