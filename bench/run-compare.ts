/**
 * The A/B table of a --compare run: each figure of the Warren paths and of the preview for this
 * build and for the --compare build, measured in the same run, and their ratio. Throughput and
 * requests/s are noisy on a shared machine; CPU per GiB and per request move less with outside
 * load and are the figures to judge a change by.
 */
import type { HttpCase, PathResult, Results } from './run-types.js';

/** One row: measure, this build, the --compare build, compare / this. */
export type CompareRow = [string, string, string, string];

const fmt = (x: number | undefined, digits: number): string => (x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(digits));

/** The rows of the table; none when the run had no --compare build. */
export function compareRows(r: Results): CompareRow[] {
  if (!r.compare) return [];
  const rows: CompareRow[] = [];
  const add = (measure: string, a: number | undefined, b: number | undefined, digits: number): void => {
    if (a === undefined && b === undefined) return;
    rows.push([measure, fmt(a, digits), fmt(b, digits), a && b !== undefined ? `${(b / a).toFixed(2)}×` : '-']);
  };
  const path = (n: string): PathResult | undefined => r.paths.find((p) => p.name === n && !p.skipped);
  for (const [mine, theirs, label] of [['warren-tcp', 'other-tcp', 'raw TCP endpoint'], ['warren-connect', 'other-connect', 'connect --listen']] as const) {
    const [a, b] = [path(mine), path(theirs)];
    if (!a && !b) continue;
    for (const s of r.settings.streams.map(String)) {
      add(`${label}, ${s} stream(s): MB/s`, a?.bulk[s]?.mbPerSec, b?.bulk[s]?.mbPerSec, 0);
      add(`${label}, ${s} stream(s): CPU s/GiB`, a?.bulk[s]?.cpuSecPerGiB.total, b?.bulk[s]?.cpuSecPerGiB.total, 2);
    }
    add(`${label}: ping-pong p50 µs`, a?.pingPongUs?.p50, b?.pingPongUs?.p50, 0);
    add(`${label}: ping-pong p99 µs`, a?.pingPongUs?.p99, b?.pingPongUs?.p99, 0);
    add(`${label}: new stream p50 ms`, a?.newStreamMs?.p50, b?.newStreamMs?.p50, 3);
  }
  const http = (path: HttpCase['path'], size: string): HttpCase | undefined => r.http?.cases.find((c) => c.path === path && c.size === size);
  const usPerRequest = (c: HttpCase | undefined): number | undefined => (c && c.result.requests > 0 ? 1000 * c.pathCpuMsPerRequest : undefined);
  for (const size of ['1k', '1m']) {
    const [a, b] = [http('warren-preview', size), http('other-preview', size)];
    if (!a && !b) continue;
    add(`preview ${size}: req/s`, a?.result.requestsPerSec, b?.result.requestsPerSec, 0);
    add(`preview ${size}: p99 ms`, a?.result.p99Ms, b?.result.p99Ms, 2);
    add(`preview ${size}: relay + agent CPU µs/request`, usPerRequest(a), usPerRequest(b), 0);
  }
  return rows;
}
