/**
 * RESULTS.md of the whole-system bench: tables with ratios to direct TCP, to the crypto-free Node
 * chain, to ssh2 and to `ssh -R`, the targets (met or missed, with the figure), and the charts.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { renderCharts } from './run-charts.js';
import { compareRows } from './run-compare.js';
import type { HttpCase, PathResult, Results } from './run-types.js';

const KIB = 1024;
const MIB = KIB * KIB;

type Row = (string | number)[];

function table(head: string[], rows: Row[]): string {
  const line = (cells: Row): string => `| ${cells.map(String).join(' | ')} |`;
  return [line(head), line(head.map((_, i) => (i === 0 ? '---' : '---:'))), ...rows.map(line)].join('\n');
}

const fmt = (x: number | undefined, digits = 0): string => (x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(digits));
const ratio = (a: number | undefined, b: number | undefined): string => (a && b ? `${(a / b).toFixed(2)}×` : '-');
const kib = (bytes: number): string => `${(bytes / KIB).toFixed(1)} KiB`;

/** One target: what, the figure, met or missed. */
interface Target {
  target: string;
  figure: string;
  met: boolean | null;
}

/**
 * Where bench/FINDINGS.md explains a missed target: the profile, what was changed for it, and
 * what was tried and dropped.
 */
function findingsFor(target: string): string {
  const section = target.startsWith('warren-connect') || target.includes('ping-pong')
    ? 'warren connect'
    : target.startsWith('preview')
      ? 'Preview'
      : target.includes('memory') || target.includes('agents ≤')
        ? 'Memory'
        : target.includes('new stream')
          ? 'New-stream latency'
          : 'Throughput';
  return `bench/FINDINGS.md, "${section}"`;
}

function targets(r: Results): Target[] {
  const out: Target[] = [];
  const path = (n: string): PathResult | undefined => r.paths.find((p) => p.name === n && !p.skipped);
  const mb = (n: string, s: string): number | undefined => path(n)?.bulk[s]?.mbPerSec;
  const add = (target: string, value: number | undefined, limit: number | undefined, cmp: 'ge' | 'le', show: (v: number, l: number) => string): void => {
    if (value === undefined || limit === undefined || !Number.isFinite(value) || !Number.isFinite(limit)) {
      out.push({ target, figure: 'not measured', met: null });
      return;
    }
    out.push({ target, figure: show(value, limit), met: cmp === 'ge' ? value >= limit : value <= limit });
  };
  for (const w of ['warren-tcp', 'warren-connect']) {
    for (const s of ['1', '64']) {
      const v = mb(w, s);
      const ssh2 = mb('ssh2', s);
      const chain = mb('node-chain', s);
      add(`${w}, ${s} stream(s): throughput ≥ 1.5× ssh2`, v, ssh2 === undefined ? undefined : 1.5 * ssh2, 'ge', (x) => `${fmt(x)} MB/s = ${ratio(x, ssh2)} ssh2 (${fmt(ssh2)})`);
      add(`${w}, ${s} stream(s): throughput ≥ 80% of the Node chain`, v, chain === undefined ? undefined : 0.8 * chain, 'ge', (x) => `${fmt(x)} MB/s = ${chain ? ((100 * x) / chain).toFixed(0) : '-'}% of ${fmt(chain)}`);
    }
    const ns = path(w)?.newStreamMs?.p50;
    add(`${w}: new stream p50 ≤ 1 ms`, ns, 1, 'le', (x) => `${fmt(x, 3)} ms`);
    const pp = path(w)?.pingPongUs;
    const direct = path('direct')?.pingPongUs;
    const added50 = pp && direct ? pp.p50 - direct.p50 : undefined;
    const added99 = pp && direct ? pp.p99 - direct.p99 : undefined;
    add(`${w}: added ping-pong latency p50 ≤ 150 µs`, added50, 150, 'le', (x) => `+${fmt(x)} µs (${fmt(pp?.p50)} vs ${fmt(direct?.p50)})`);
    add(`${w}: added ping-pong latency p99 ≤ 600 µs`, added99, 600, 'le', (x) => `+${fmt(x)} µs (${fmt(pp?.p99)} vs ${fmt(direct?.p99)})`);
  }
  for (const size of ['1k', '1m'] as const) {
    const direct = r.http?.cases.find((c) => c.size === size && c.path === 'direct')?.result;
    const preview = r.http?.cases.find((c) => c.size === size && c.path === 'warren-preview')?.result;
    add(`preview HTTP ${size}: ≥ 50% of direct requests/s`, preview?.requestsPerSec, direct ? 0.5 * direct.requestsPerSec : undefined, 'ge', (x) => `${fmt(x)} req/s = ${direct ? ((100 * x) / direct.requestsPerSec).toFixed(1) : '-'}% of ${fmt(direct?.requestsPerSec)}`);
    add(`preview HTTP ${size}: p99 ≤ 2× direct`, preview?.p99Ms, direct ? 2 * direct.p99Ms : undefined, 'le', (x) => `${fmt(x, 2)} ms = ${ratio(x, direct?.p99Ms)} direct (${fmt(direct?.p99Ms, 2)} ms)`);
  }
  const m = r.memory;
  add('relay memory per idle agent ≤ 2 KiB above a bare TLS connection (agents use raw TLS)', m?.perAgentAboveBareTlsBytes, 2 * KIB, 'le', (x) => `${kib(m!.relayPerAgentBytes.rss)} per agent − ${kib(m!.bare.perTlsBytes)} bare TLS = ${kib(x)}`);
  add('relay memory per idle open stream ≤ 4 KiB', m?.relayPerStreamBytes.rss, 4 * KIB, 'le', (x) => kib(x));
  const sc = r.scale;
  add('20,000 idle agents ≤ 1 GiB relay RSS', sc?.rssAt20kBytes, 1024 * MIB, 'le', (x) => `${fmt(x / MIB)} MiB${sc?.rssAt20kExtrapolated ? ` (extrapolated from ${sc.agents} agents)` : ''}`);
  return out;
}

function bulkSection(r: Results, streams: string): string {
  const get = (n: string): number | undefined => r.paths.find((p) => p.name === n && !p.skipped)?.bulk[streams]?.mbPerSec;
  const rows = r.paths
    .filter((p) => p.bulk[streams])
    .map((p) => {
      const b = p.bulk[streams]!;
      const cpu = Object.entries(b.cpuSecPerGiB)
        .filter(([k]) => k !== 'total')
        .map(([k, v]) => `${k} ${v.toFixed(2)}`)
        .join(', ');
      return [p.label, fmt(b.mbPerSec), ratio(b.mbPerSec, get('direct')), ratio(b.mbPerSec, get('node-chain')), ratio(b.mbPerSec, get('ssh2')), ratio(b.mbPerSec, get('ssh-aes')), b.cpuSecPerGiB.total.toFixed(2), cpu || '-'];
    });
  return table(['path', 'MB/s', '× direct', '× Node chain', '× ssh2', '× ssh -R (aes)', 'CPU s/GiB', 'by process (CPU s/GiB)'], rows);
}

/** The markdown; `charts` are the chart files, linked with `prefix`. */
/** CPU microseconds per request of one process of an HTTP case. */
function usPerRequest(c: HttpCase | undefined, role: string): number | undefined {
  const seconds = c?.cpuSeconds[role];
  return c && seconds !== undefined && c.result.requests > 0 ? (1e6 * seconds) / c.result.requests : undefined;
}

/**
 * The preview table, CPU per request of each process, and the CPU budget that 50% of direct
 * leaves the relay and the agent on this machine (its cores are shared by wrk, app and path).
 */
function httpSection(r: Results): string[] {
  const http = r.http!;
  const lines = [`## HTTP through a preview URL (${http.tool}, keep-alive, ${r.settings.httpSeconds} s per case${r.settings.httpRuns > 1 ? `, median of ${r.settings.httpRuns} runs` : ''})`, ''];
  const rows: Row[] = [];
  const cpuRows: Row[] = [];
  const budget: string[] = [];
  for (const size of ['1k', '1m'] as const) {
    const dc = http.cases.find((c) => c.size === size && c.path === 'direct');
    const pc = http.cases.find((c) => c.size === size && c.path === 'warren-preview');
    if (!dc || !pc) continue;
    const [d, p] = [dc.result, pc.result];
    const label = size === '1k' ? '1 KiB' : '1 MiB';
    rows.push([label, d.connections, fmt(d.requestsPerSec), fmt(d.p99Ms, 2), fmt(p.requestsPerSec), fmt(p.p99Ms, 2), `${((100 * p.requestsPerSec) / d.requestsPerSec).toFixed(1)}%`, ratio(p.p99Ms, d.p99Ms), d.errors + p.errors]);
    const [relay, agent] = [usPerRequest(pc, 'relay'), usPerRequest(pc, 'agent')];
    cpuRows.push([label, fmt(usPerRequest(dc, 'app')), fmt(usPerRequest(pc, 'app')), fmt(relay), fmt(agent)]);
    // Every process shares the machine's cores: at half the direct rate, each request may cost
    // all of them together at most cores / (rate / 2); the load generator and the app take their
    // share of that first (the load generator's own CPU is not measured, so this is an upper bound).
    const cores = Number(r.machine.cpus) || 1;
    const allowed = (2 * 1e6 * cores) / d.requestsPerSec;
    const app = usPerRequest(pc, 'app') ?? 0;
    if (relay !== undefined && agent !== undefined) {
      budget.push(`${label}: at 50% of direct (${fmt(d.requestsPerSec / 2)} req/s) the ${cores} cores allow ${fmt(allowed)} µs of CPU per request for everything; the app uses ${fmt(app)}, leaving at most ${fmt(allowed - app)} µs for wrk, relay and agent together, which used ${fmt(relay + agent)} µs (relay ${fmt(relay)}, agent ${fmt(agent)}).`);
    }
  }
  lines.push(table(['body', 'connections', 'direct req/s', 'direct p99 ms', 'preview req/s', 'preview p99 ms', 'preview / direct', 'p99 ratio', 'errors'], rows), '');
  lines.push('CPU per request, by process (µs):', '');
  lines.push(table(['body', 'app, direct', 'app, preview', 'relay', 'agent'], cpuRows), '');
  if (budget.length > 0) lines.push('The budget that 50% of direct leaves:', '', ...budget.map((b) => `- ${b}`), '');
  lines.push('The preview keeps streams to the app alive per tunnel port (an HTTP keep-alive pool over mux streams); every request is still parsed and checked by the relay.', '');
  return lines;
}

/**
 * The relay network: `warren connect` and the preview at the holder beside the same through the
 * forwarding relay (the hop's ratio or added figure), and the directory lookups.
 */
function networkSection(r: Results): string[] {
  const lines = ['## The relay network: one forwarding hop', ''];
  if (r.network?.skipped) return [...lines, `Skipped: ${r.network.skipped}.`, ''];
  const path = (n: string): PathResult | undefined => r.paths.find((p) => p.name === n && !p.skipped);
  const [h, f] = [path('warren-connect-holder'), path('warren-connect-fwd')];
  const http = (p: HttpCase['path']): HttpCase | undefined => r.http?.cases.find((c) => c.path === p && c.size === '1k');
  const [hc, fc] = [http('preview-holder'), http('preview-fwd')];
  const rows: Row[] = [];
  const added = (a: number | undefined, b: number | undefined, digits = 0): string => (a === undefined || b === undefined ? '-' : `${b - a >= 0 ? '+' : ''}${(b - a).toFixed(digits)}`);
  const both = (what: string, get: (p: PathResult) => number | undefined, hop: 'ratio' | 'added', digits = 0): void => {
    const [a, b] = [h ? get(h) : undefined, f ? get(f) : undefined];
    if (a !== undefined || b !== undefined) rows.push([what, fmt(a, digits), fmt(b, digits), hop === 'ratio' ? ratio(b, a) : added(a, b, digits)]);
  };
  for (const s of r.settings.streams) both(`connect, bulk ${s} stream(s), MB/s`, (p) => p.bulk[String(s)]?.mbPerSec, 'ratio');
  both('connect, CPU s/GiB, 1 stream (connect, relays, agent)', (p) => p.bulk['1']?.cpuSecPerGiB.total, 'added', 2);
  both('connect, ping-pong p50 µs', (p) => p.pingPongUs?.p50, 'added');
  both('connect, ping-pong p99 µs', (p) => p.pingPongUs?.p99, 'added');
  both('connect, new stream p50 ms', (p) => p.newStreamMs?.p50, 'added', 3);
  if (hc && fc) {
    rows.push(['preview 1 KiB, req/s', fmt(hc.result.requestsPerSec), fmt(fc.result.requestsPerSec), ratio(fc.result.requestsPerSec, hc.result.requestsPerSec)]);
    rows.push(['preview 1 KiB, p50 ms', fmt(hc.result.p50Ms, 2), fmt(fc.result.p50Ms, 2), added(hc.result.p50Ms, fc.result.p50Ms, 2)]);
    rows.push(['preview 1 KiB, p99 ms', fmt(hc.result.p99Ms, 2), fmt(fc.result.p99Ms, 2), added(hc.result.p99Ms, fc.result.p99Ms, 2)]);
    const us = (c: HttpCase): number => 1000 * c.pathCpuMsPerRequest;
    const by = (c: HttpCase): string => ['edge', 'relay', 'agent'].filter((k) => c.cpuSeconds[k] !== undefined).map((k) => `${k} ${fmt(usPerRequest(c, k))}`).join(', ');
    rows.push(['preview 1 KiB, CPU µs per request (relays and agent)', fmt(us(hc)), fmt(us(fc)), added(us(hc), us(fc))]);
    rows.push(['preview 1 KiB, CPU µs per request by process', by(hc), by(fc), '']);
  }
  if (rows.length > 0) {
    lines.push('Two relays of one network on a nats-server: the holder (the agent is connected to it) and the edge, which holds nothing and forwards each stream one hop over its mesh link (mutual TLS) to the holder. The same `warren connect` and preview at each; *hop* is edge / holder (ratios) or edge − holder (added). On a shared machine the CPU rows move least with outside load.', '');
    lines.push(table(['measure', 'at the holder', 'through the edge', 'hop'], rows), '');
  }
  const d = r.network?.directory;
  if (d) {
    const n = (x: number): string => x.toLocaleString('en-US');
    lines.push(`Directory lookups (NatsDirectory, relay/network/nats-directory.ts): one directory registers ${n(d.records)} tunnel records on the same nats-server, another answers \`holders()\` from its cache (no network round trip).`, '');
    lines.push(
      table(
        ['measure', 'value'],
        [
          [`${n(d.records)} records put, acknowledged by the store`, `${fmt(d.registerSeconds, 3)} s`],
          [`${n(d.records)} records in the other directory's cache`, `${fmt(d.propagateSeconds, 3)} s`],
          [`${n(d.records)} records loaded cold (a new directory's start())`, `${fmt(d.coldLoadSeconds, 3)} s`],
          [`holders() of a held tunnel (${n(d.calls)} calls)`, `${fmt(d.hitOpsPerSec / 1e6, 2)} M/s`],
          [`holders() of a tunnel nobody holds (${n(d.calls)} calls)`, `${fmt(d.missOpsPerSec / 1e6, 2)} M/s`],
        ],
      ),
      '',
    );
  }
  return lines;
}

export function renderMarkdown(r: Results, charts: string[], prefix: string): string {
  const m = r.machine as { cpus: number; cpuModel: string; node: string; loadavgStart: number[]; loadavgEnd?: number[]; openssh: string; kernel: string };
  const lines: string[] = [];
  lines.push(`# Whole-system bench results${r.settings.quick ? ' (quick run: sizes too small for conclusions)' : ''}`, '');
  lines.push(`${r.date} on \`${r.host}\`: ${m.cpus} × ${m.cpuModel}, Linux ${m.kernel}, Node ${m.node}, ${m.openssh}.`, '');
  lines.push(
    `**Noise:** this machine has ${m.cpus} cores shared with other work while the bench ran; the load average was ${m.loadavgStart.join(' / ')} at the start and ${(m.loadavgEnd ?? []).join(' / ')} at the end (1 / 5 / 15 min). Client, app and every process of a path share those cores, so absolute figures are low and vary run to run; the ratios within one run are the steadier part. Raw numbers: the JSON of the same name in bench/results/. How to read: bench/README.md.`,
    '',
  );
  if (r.compare) {
    lines.push('## This build against the --compare build', '');
    lines.push(`Measured in the same run, interleaved: this checkout's build and \`${r.compare.bin}\`. The targets and the tables below are this build's; the --compare build's paths are in the tables as well.`, '');
    lines.push(table(['measure', 'this build', '--compare build', 'compare / this'], compareRows(r)), '');
  }
  lines.push('## Targets', '');
  lines.push(table(['target', 'figure', 'result', 'profile and findings'], targets(r).map((t) => [t.target, t.figure, t.met === null ? 'n/a' : t.met ? 'met' : '**missed**', t.met === false ? findingsFor(t.target) : ''])), '');
  lines.push('Why a target is missed, from profiles and heap snapshots, what was changed for it and what was tried and dropped: bench/FINDINGS.md.', '');
  lines.push(`## Bulk throughput, 1 stream (${(r.settings.bulkBytes / MIB).toFixed(0)} MiB upload, median of ${r.settings.runs})`, '', bulkSection(r, '1'), '');
  lines.push(`## Bulk throughput, 64 parallel streams (the same bytes split over 64 connections)`, '', bulkSection(r, '64'), '');
  lines.push('CPU s/GiB counts only the processes of the path (relay, agent, sshd and its per-connection children, ssh, …), not the client or the app; lower is better.', '');
  const direct = r.paths.find((p) => p.name === 'direct')?.pingPongUs;
  lines.push('## Latency', '');
  lines.push(
    table(
      ['path', 'ping-pong p50 µs', 'p99 µs', 'p99.9 µs', 'added p50 µs', 'added p99 µs', 'new stream p50 ms', 'p99 ms', 'mean ms'],
      r.paths
        .filter((p) => p.pingPongUs && p.newStreamMs)
        .map((p) => [p.label, fmt(p.pingPongUs!.p50), fmt(p.pingPongUs!.p99), fmt(p.pingPongUs!.p999), direct ? fmt(p.pingPongUs!.p50 - direct.p50) : '-', direct ? fmt(p.pingPongUs!.p99 - direct.p99) : '-', fmt(p.newStreamMs!.p50, 3), fmt(p.newStreamMs!.p99, 3), fmt(p.newStreamMs!.mean, 3)]),
    ),
    '',
  );
  lines.push(`Ping-pong: ${r.settings.pingPongCount} round trips of 1 byte on one open stream. New stream: connect, send one byte, wait for the app's first byte; ${r.settings.newStreamCount} in a row.`, '');
  const skipped = r.paths.filter((p) => p.skipped);
  if (skipped.length > 0) lines.push('Skipped paths:', '', ...skipped.map((p) => `- ${p.label}: ${p.skipped}`), '');
  if (r.http?.cases.some((c) => c.path === 'warren-preview')) lines.push(...httpSection(r));
  if (r.network || r.paths.some((p) => p.name.startsWith('warren-connect-'))) lines.push(...networkSection(r));
  if (r.memory) {
    const mem = r.memory;
    lines.push('## Memory', '');
    lines.push(
      table(
        ['measure', 'RSS', 'V8 heap'],
        [
          [`relay, per idle agent (median of ${mem.agentBatches ?? 1} × ${mem.agents} agents${mem.relayPerAgentBatchesBytes ? `: ${mem.relayPerAgentBatchesBytes.map(kib).join(', ')}` : ''})`, kib(mem.relayPerAgentBytes.rss), kib(mem.relayPerAgentBytes.heap)],
          [`relay, per idle open stream (${mem.streams} streams)`, kib(mem.relayPerStreamBytes.rss), kib(mem.relayPerStreamBytes.heap)],
          ['bare server, per idle WebSocket over TLS', kib(mem.bare.perWssBytes), '-'],
          [`bare server, per idle TLS connection (the agents' transport${mem.bare.perTlsBatchesBytes ? `; median of ${mem.bare.perTlsBatchesBytes.map(kib).join(', ')}` : ''})`, kib(mem.bare.perTlsBytes), '-'],
          ['relay per agent above bare TLS', kib(mem.perAgentAboveBareTlsBytes), '-'],
        ],
      ),
      '',
    );
  }
  if (r.scale) {
    const s = r.scale;
    lines.push('## Scale', '');
    if (s.capped) lines.push(`Capped: ${s.capped}.`, '');
    lines.push(
      table(
        ['measure', 'value'],
        [
          ['idle agents connected', `${s.agents} of ${s.requested} (${s.failed} failed) in ${s.connectSeconds} s`],
          ['relay RSS before / with agents', `${fmt(s.relay.baseline.rss / MIB)} / ${fmt(s.relay.withAgents.rss / MIB)} MiB`],
          ['relay heap before / with agents', `${fmt(s.relay.baseline.heapUsed / MIB)} / ${fmt(s.relay.withAgents.heapUsed / MIB)} MiB`],
          ['relay RSS per agent', kib(s.rssPerAgentBytes)],
          ['relay CPU with the agents idle', `${fmt(s.relayIdleCpuPercent, 1)}% of a core`],
          ['relay RSS for 20,000 agents', `${fmt(s.rssAt20kBytes / MIB)} MiB${s.rssAt20kExtrapolated ? ' (extrapolated)' : ''}`],
          ['busy tunnel ping-pong p50 / p99, relay idle', `${fmt(s.busyTunnel.idlePingPongUs.p50)} / ${fmt(s.busyTunnel.idlePingPongUs.p99)} µs`],
          ['busy tunnel ping-pong p50 / p99, with the agents', `${fmt(s.busyTunnel.loadedPingPongUs.p50)} / ${fmt(s.busyTunnel.loadedPingPongUs.p99)} µs`],
          ['busy tunnel new stream p50 / p99, with the agents', `${fmt(s.busyTunnel.loadedNewStreamMs.p50, 3)} / ${fmt(s.busyTunnel.loadedNewStreamMs.p99, 3)} ms`],
        ],
      ),
      '',
    );
  }
  if (r.mux) {
    lines.push('## The multiplexer alone (bench/mux.ts)', '', `Sender and receiver processes, no relay: the Warren session over one TLS or wss connection. Its own JSON: \`${r.mux.file}\`.`, '');
    lines.push(table(['case', 'MB/s', 'vs tls-raw', 'CPU s/GB'], r.mux.cases.map((c) => [c.name, fmt(c.mbPerSec), c.ratioToRaw === null ? '-' : `${(100 * c.ratioToRaw).toFixed(0)}%`, c.cpuSecPerGB.toFixed(2)])), '');
  }
  if (r.errors.length > 0) lines.push('## Parts that failed', '', ...r.errors.map((e) => `- ${e.part}: ${e.message.split('\n')[0]}`), '');
  if (charts.length > 0) lines.push('## Charts', '', ...charts.map((c) => `![${c}](${prefix}${c})`), '');
  return `${lines.join('\n')}\n`;
}

/**
 * Writes STEM.md and the charts into `dir`, and the markdown to `alsoTo` (charts linked under
 * `results/`) when given; returns the file names written in `dir`.
 */
export async function renderReport(r: Results, dir: string, stem: string, alsoTo?: string): Promise<string[]> {
  const charts = await renderCharts(r, dir, stem);
  writeFileSync(join(dir, `${stem}.md`), renderMarkdown(r, charts, ''));
  if (alsoTo) writeFileSync(alsoTo, renderMarkdown(r, charts, 'results/'));
  return [`${stem}.md`, ...charts];
}
