/**
 * The Node flags the bridge runs with, wherever it is started: edge-plc-bridge.service's
 * ExecStart (test/integration/systemd-unit.test.ts checks they match), the agent's watchdog when
 * it starts the bridge itself (agent/recovery-wiring.ts), and bench/plc-bench.ts. A successor
 * started by a handover inherits them (process.execArgv).
 *
 * Measured with 20 simulated PLCs x 1,000 tags, every value changing every cycle (one 40 s window
 * each, the bridge's largest RSS and its CPU in % of a core):
 *
 * | flags                                        | at 1 s        | at 100 ms      |
 * |----------------------------------------------|---------------|----------------|
 * | `--max-semi-space-size=1` (as the agent)      | 100 MB, 7 %   | 143-149 MB, 40-46 % |
 * | `--max-semi-space-size=4`                     | 101 MB, 7 %   | 102 MB, 43 %   |
 * | `--max-semi-space-size=2 --optimize-for-size` | 85 MB, 10 %   | 93-98 MB, 47-50 % |
 *
 * With a 1 MB young generation the payloads waiting for their PUBACK outlive two scavenges, are
 * promoted, and the old generation grows by ~35 MB between full collections. A larger young
 * generation keeps them out of it; `--optimize-for-size` makes V8 grow the heap less eagerly and
 * collect it sooner, for some CPU. Memory is what a gateway runs out of (issue #4's goal is
 * 80 MB, its CPU goal one core), so the last row.
 */
export const BRIDGE_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2', '--optimize-for-size'];
