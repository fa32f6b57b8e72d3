/**
 * SVG charts of the whole-system bench, rendered in Node with vega-lite → vega (`View.toSVG()`
 * needs no browser): throughput per path, ping-pong latency per path, and HTTP requests per second.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import type { Results } from './run-types.js';

async function render(spec: TopLevelSpec, file: string): Promise<void> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  const svg = await view.toSVG();
  view.finalize();
  writeFileSync(file, svg);
}

const FONT = { font: 'sans-serif', labelFontSize: 11, titleFontSize: 12 };

/** Writes the charts into `dir`; returns their file names. */
export async function renderCharts(r: Results, dir: string, stem: string): Promise<string[]> {
  const files: string[] = [];
  const bulk = r.paths.flatMap((p) => Object.entries(p.bulk).map(([streams, b]) => ({ path: p.label, streams: `${streams} stream${streams === '1' ? '' : 's'}`, mbPerSec: b.mbPerSec })));
  if (bulk.length > 0) {
    const file = `${stem}-throughput.svg`;
    await render(
      {
        $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
        title: 'Bulk throughput on loopback (MB/s, higher is better)',
        data: { values: bulk },
        mark: 'bar',
        encoding: {
          y: { field: 'path', type: 'nominal', sort: null, title: null },
          yOffset: { field: 'streams', type: 'nominal' },
          x: { field: 'mbPerSec', type: 'quantitative', title: 'MB/s' },
          color: { field: 'streams', type: 'nominal', title: null },
        },
        width: 480,
        config: { axis: { ...FONT, labelLimit: 260 }, legend: FONT },
      },
      join(dir, file),
    );
    files.push(file);
  }
  const latency = r.paths.flatMap((p) =>
    p.pingPongUs
      ? [
          { path: p.label, quantile: 'p50', us: p.pingPongUs.p50 },
          { path: p.label, quantile: 'p99', us: p.pingPongUs.p99 },
        ]
      : [],
  );
  if (latency.length > 0) {
    const file = `${stem}-latency.svg`;
    await render(
      {
        $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
        title: '1-byte ping-pong round trip on an open stream (µs, log scale, lower is better)',
        data: { values: latency },
        mark: 'bar',
        encoding: {
          y: { field: 'path', type: 'nominal', sort: null, title: null },
          yOffset: { field: 'quantile', type: 'nominal' },
          x: { field: 'us', type: 'quantitative', title: 'µs', scale: { type: 'log' } },
          color: { field: 'quantile', type: 'nominal', title: null },
        },
        width: 480,
        config: { axis: { ...FONT, labelLimit: 260 }, legend: FONT },
      },
      join(dir, file),
    );
    files.push(file);
  }
  if (r.http) {
    const file = `${stem}-http.svg`;
    await render(
      {
        $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
        title: 'HTTP keep-alive: requests/s, direct vs preview URL',
        data: { values: r.http.cases.map((c) => ({ body: c.size === '1k' ? '1 KiB body' : '1 MiB body', path: c.path, rps: c.result.requestsPerSec })) },
        mark: 'bar',
        encoding: {
          y: { field: 'body', type: 'nominal', title: null },
          yOffset: { field: 'path', type: 'nominal' },
          x: { field: 'rps', type: 'quantitative', title: 'requests/s', scale: { type: 'log' } },
          color: { field: 'path', type: 'nominal', title: null },
        },
        width: 480,
        config: { axis: { ...FONT, labelLimit: 260 }, legend: FONT },
      },
      join(dir, file),
    );
    files.push(file);
  }
  return files;
}
