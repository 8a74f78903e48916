/**
 * The Node flags the bridge runs with, wherever it is started: edge-plc-bridge.service's
 * ExecStart (test/integration/systemd-unit.test.ts checks they match), the agent's watchdog when
 * it starts the bridge itself (agent/recovery-wiring.ts), and bench/plc-bench.ts. A successor
 * started by a handover inherits them (process.execArgv).
 *
 * Measured with 20 simulated PLCs x 1,000 tags (bench/, `--only plc`), the bridge's largest RSS:
 * - `--max-semi-space-size=1` alone (as the agent): 100 MB at 1 s, 146 MB at 100 ms. With a 1 MB
 *   young generation the payloads that wait for their PUBACK outlive two scavenges, are promoted,
 *   and the old generation grows by ~35 MB between full collections;
 * - with a 2 MB young generation and `--optimize-for-size` (V8 grows the heap less eagerly and
 *   collects it sooner): 87-90 MB at 1 s, 95 MB at 100 ms, at no CPU cost we could separate from
 *   the run-to-run noise.
 */
export const BRIDGE_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2', '--optimize-for-size'];
