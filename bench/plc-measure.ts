/**
 * The PLC bridge bench's results as measurements (plc-bench.ts measures): per interval values/s,
 * CPU, values per CPU-second, RSS, poll -> subscriber latency, write latency, each next to its
 * reference from the same run; and the largest cycle gap across the handovers.
 */
import { intervalLabel, type PlcResults, type Side } from './plc-bench.js';
import { percentile } from './plc-stats.js';
import { measurement, type Measurement } from './report.js';

export function plcMeasurements(r: PlcResults): Measurement[] {
  const ms: Measurement[] = [];
  const REF = 'modbus-serial + mqtt.js raw arrays';
  for (const run of r.runs) {
    const s = intervalLabel(run.intervalMs);
    const load = `${r.sizes.devices}x${r.sizes.tags} tags @ ${s}`;
    const b = run.bridge;
    const ref = run.reference;
    const perCpu = (x: Side): number => x.stats.valuesPerSec / Math.max(x.cpuPct / 100, 0.001);
    const offered = (r.sizes.devices * r.sizes.tags * 1000) / run.intervalMs;
    ms.push(
      measurement({
        id: `plc-values-${s}`,
        title: `PLC values/s delivered, ${load}`,
        unit: 'values/s',
        samples: [b.stats.valuesPerSec],
        reference: { name: REF, samples: [ref.stats.valuesPerSec] },
        goal: { op: '>=', value: 20_000 },
        details: { offeredPerSec: [offered], messages: [b.stats.messages], expectedMessages: [(r.sizes.devices * b.windowMs) / run.intervalMs], overruns: [run.overruns], maxGapIntervals: [b.gap.maxGapIntervals] },
      }),
      measurement({
        id: `plc-cpu-${s}`,
        title: `PLC bridge CPU, ${load}`,
        unit: '% of a core',
        samples: [b.cpuPct],
        reference: { name: REF, samples: [ref.cpuPct] },
        goal: { op: '<=', value: 100 },
      }),
      measurement({
        id: `plc-values-per-cpu-${s}`,
        title: `PLC values per CPU-second, ${load}`,
        unit: 'values/cpu-s',
        samples: [perCpu(b)],
        reference: { name: REF, samples: [perCpu(ref)] },
      }),
      measurement({
        id: `plc-rss-${s}`,
        title: `PLC bridge VmRSS max over ${b.windowMs / 1000} s, ${load}`,
        unit: 'MB',
        samples: [b.rss.maxMB],
        reference: { name: REF, samples: [ref.rss.maxMB] },
        goal: { op: '<=', value: 80 },
        details: {
          startMB: [b.rss.startMB],
          endMB: [b.rss.endMB],
          slopeMBPerMin: [b.rss.slopeMBPerMin],
          rssAnonMaxMB: [b.anonMaxMB],
          rssFileMaxMB: [b.fileMaxMB],
          refRssAnonMaxMB: [ref.anonMaxMB],
          refStartMB: [ref.rss.startMB], refEndMB: [ref.rss.endMB], refSlopeMBPerMin: [ref.rss.slopeMBPerMin],
        },
      }),
      measurement({
        id: `plc-latency-p50-${s}`,
        title: `PLC poll start -> subscriber, p50, ${load}`,
        unit: 'ms',
        samples: [b.stats.latencyP50],
        reference: { name: 'plain publish -> subscriber, same load', samples: [percentile(run.probeMs, 50)] },
        details: { refPollerP50: [ref.stats.latencyP50] },
      }),
      measurement({
        id: `plc-latency-p99-${s}`,
        title: `PLC poll start -> subscriber, p99, ${load}`,
        unit: 'ms',
        samples: [b.stats.latencyP99],
        reference: { name: 'plain publish -> subscriber, same load', samples: [percentile(run.probeMs, 99)] },
        goal: { op: '<=', value: 50 },
        details: { max: [b.stats.latencyMax], refPollerP99: [ref.stats.latencyP99], probes: [run.probeMs.length] },
      }),
      measurement({
        id: `plc-write-p50-${s}`,
        title: `PLC set -> read-back status, p50, ${load}`,
        unit: 'ms',
        samples: [percentile(b.writeMs, 50)],
        reference: { name: 'FC6 + FC3 read-back + publish, NODELAY', samples: [percentile(ref.writeMs, 50)] },
        details: { writes: [b.writeMs.length], failed: [b.writesFailed], refFailed: [ref.writesFailed] },
      }),
      measurement({
        id: `plc-write-p99-${s}`,
        title: `PLC set -> read-back status, p99, ${load}`,
        unit: 'ms',
        samples: [percentile(b.writeMs, 99)],
        reference: { name: 'FC6 + FC3 read-back + publish, NODELAY', samples: [percentile(ref.writeMs, 99)] },
        goal: { op: '<=', value: 50 },
        details: { max: [Math.max(...b.writeMs)], refMax: [Math.max(...ref.writeMs)] },
      }),
    );
  }
  const h = r.handover;
  const fastest = r.runs.find((x) => x.intervalMs === Math.min(...r.sizes.intervals));
  if (h && fastest) {
    ms.push(
      measurement({
        id: 'plc-handover-gap',
        title: `PLC largest cycle gap over ${h.takeoverMs.length} handover(s) @ ${intervalLabel(fastest.intervalMs)}`,
        unit: 'intervals',
        samples: [h.gap.maxGapIntervals],
        reference: { name: 'the same bridge, no handover (its window)', samples: [fastest.bridge.gap.maxGapIntervals] },
        goal: { op: '<=', value: 1 },
        details: { seqGaps: [h.gap.seqGaps], duplicates: [h.gap.duplicates], takeoverMs: h.takeoverMs, oldExitedNonZero: [h.oldExitCodes.filter((c) => c !== 0).length] },
      }),
    );
  }
  return ms;
}
