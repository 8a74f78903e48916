/**
 * Health charts with the vendored uPlot 1.6.32 (dist/uPlot.esm.js, MIT): one chart per metric,
 * min/avg/max of the stored history's buckets.
 */
import { h, text } from './dom.js';

interface Point {
  t: number;
  min: number;
  avg: number;
  max: number;
}

type UPlotCtor = new (opts: Record<string, unknown>, data: number[][], target: HTMLElement) => unknown;
const uplotPath = '/vendor/uPlot.esm.js';

export function drawCharts(el: HTMLElement, metrics: Record<string, unknown>): void {
  const names = Object.keys(metrics).sort();
  if (names.length === 0) {
    el.append(h('p', { class: 'muted' }, 'no stored health history for this range yet'));
    return;
  }
  void (import(uplotPath) as Promise<{ default: UPlotCtor }>).then(({ default: UPlot }) => {
    const width = Math.max(260, Math.min(el.clientWidth || 600, 1100) - 12);
    for (const name of names) {
      const pts = (Array.isArray(metrics[name]) ? metrics[name] : []) as Point[];
      const box = h('div', { class: 'chart', 'data-metric': name }, h('div', { class: 'k' }, text(name)));
      el.append(box);
      const data = [pts.map((p) => p.t / 1000), pts.map((p) => p.min), pts.map((p) => p.avg), pts.map((p) => p.max)];
      new UPlot(
        {
          width,
          height: 160,
          legend: { show: true },
          series: [{}, { label: 'min', stroke: '#9aa4b5' }, { label: 'avg', stroke: '#0b5cad', width: 2 }, { label: 'max', stroke: '#cf222e' }],
        },
        data,
        box,
      );
    }
  });
}
