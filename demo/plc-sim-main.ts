/**
 * The simulated PLC as a program, for the demo, the benches and tests that want it in its own
 * process:
 *
 *   node dist/demo/plc-sim.js [--port 0] [--devices N] [--units N] [--size N] [--animate] [--churn N]
 *
 * `--devices N` serves N independent PLCs on N ports (consecutive from --port when it is not 0).
 * `--churn N`: holding and input registers 0..N-1 change on every read (PlcSimOptions.churn).
 * Once listening it prints one JSON line, `{"port": FIRST, "ports": [...]}`, then reads JSON-line
 * commands on stdin and answers each with one JSON line, `{"ok": true, ...}` or
 * `{"ok": false, "error": "..."}`. `device` (an index into ports, default 0) picks the PLC:
 *
 *   {"fault": {"delayMs": 500}}            replace the faults (see SimFaults; {} clears)
 *   {"resume": true}                       clear the faults, listen again after refuse
 *   {"set": {"area": "holding", "address": 0, "values": [1, 2], "unit": 1}}
 *   {"get": {"area": "coil", "address": 0, "count": 8}}   -> {"ok": true, "values": [...]}
 *   {"stats": true}                        -> {"ok": true, "stats": {requests, connections, open}}
 *
 * SIGTERM and SIGINT stop every PLC and exit 0.
 */
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { PlcSim, type SimFaults } from './plc-sim.js';
import { getValues, setValues, type SimArea } from './plc-sim-pdu.js';

const AREAS: readonly SimArea[] = ['holding', 'input', 'coil', 'discrete'];

interface Command {
  device?: number;
  fault?: Omit<SimFaults, 'reset'> & { reset?: number | boolean };
  resume?: boolean;
  set?: { area: SimArea; address: number; values: (number | boolean)[]; unit?: number };
  get?: { area: SimArea; address: number; count: number; unit?: number };
  stats?: boolean;
}

function area(a: unknown): SimArea {
  if (!AREAS.includes(a as SimArea)) throw new Error(`area must be one of ${AREAS.join(', ')}`);
  return a as SimArea;
}

async function run(sims: PlcSim[], cmd: Command): Promise<Record<string, unknown>> {
  const sim = sims[cmd.device ?? 0];
  if (!sim) throw new Error(`no device ${String(cmd.device)}`);
  if (cmd.fault !== undefined) {
    const f = cmd.fault ?? {};
    await sim.setFault({ ...f, reset: f.reset === true ? 1 : f.reset === false ? 0 : f.reset });
    return {};
  }
  if (cmd.resume) {
    await sim.resume();
    return {};
  }
  if (cmd.set) {
    setValues(sim.unit(cmd.set.unit ?? 1), area(cmd.set.area), cmd.set.address, cmd.set.values);
    return {};
  }
  if (cmd.get) {
    const values = getValues(sim.unit(cmd.get.unit ?? 1), area(cmd.get.area), cmd.get.address, cmd.get.count);
    return { values: cmd.get.area === 'coil' || cmd.get.area === 'discrete' ? values.map((v) => v === 1) : values };
  }
  if (cmd.stats) return { stats: sim.stats() };
  throw new Error('unknown command');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '0' },
      host: { type: 'string', default: '127.0.0.1' },
      devices: { type: 'string', default: '1' },
      units: { type: 'string', default: '1' },
      size: { type: 'string', default: '65536' },
      animate: { type: 'boolean', default: false },
      churn: { type: 'string', default: '0' },
    },
  });
  const base = Number(values.port);
  const count = Number(values.devices);
  const churn = Number(values.churn);
  if (!Number.isInteger(churn) || churn < 0) throw new Error('--churn must be an integer >= 0');
  const sims: PlcSim[] = [];
  for (let i = 0; i < count; i++) {
    const sim = new PlcSim({ port: base === 0 ? 0 : base + i, host: values.host, units: Number(values.units), size: Number(values.size), animate: values.animate, churn });
    await sim.start();
    sims.push(sim);
  }
  const ports = sims.map((s) => s.port);
  process.stdout.write(`${JSON.stringify({ port: ports[0], ports })}\n`);

  const stop = (): void => {
    void Promise.all(sims.map((s) => s.stop())).then(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);

  const rl = createInterface({ input: process.stdin });
  // One command at a time, so a test's `fault` has taken effect before its answer is printed.
  let queue = Promise.resolve();
  rl.on('line', (line) => {
    if (line.trim() === '') return;
    queue = queue.then(async () => {
      let answer: Record<string, unknown>;
      try {
        answer = { ok: true, ...(await run(sims, JSON.parse(line) as Command)) };
      } catch (err) {
        answer = { ok: false, error: err instanceof Error ? err.message : String(err) };
      }
      process.stdout.write(`${JSON.stringify(answer)}\n`);
    });
  });
}

await main();
