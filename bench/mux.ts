/**
 * The multiplexer benchmark: bulk throughput over loopback TLS 1.3, with the receiver in its own
 * process (bench/mux-receiver.ts), side by side in one run:
 *
 *   tls-raw      one TLS connection, the application writes to it directly (the baseline)
 *   tls-mux-1    a Warren session over that kind of TLS socket, one stream
 *   tls-mux-64   the same, 64 streams in parallel sharing the bytes
 *   wss-raw      one WebSocket over TLS, the application sends binary messages directly
 *   wss-mux-1    a Warren session over wss (ws + bufferutil, warren.v1, no compression), one stream
 *   wss-mux-64   the same, 64 streams
 *
 * Usage: node dist/bench/mux.js [--quick] [--json FILE] [--size 1g] [--runs N] [--cases a,b]
 *        [--verify] [--session JSON] [--ws-zero-mask] [--results-dir DIR]
 *
 * Prints progress to stderr, a table to stdout, and the JSON to --json FILE (or to stdout after
 * the table); every run's JSON is also written to bench/results/ (or --results-dir).
 */
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { cpus } from 'node:os';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { SessionOptions } from '../protocol/index.js';
import { testTlsIdentity } from '../test/helpers/tls.js';
import { runCase, type RunOptions, type Target, type TransferResult } from './mux-cases.js';
import { log, median, parseSize, round } from './run-util.js';
import { BASELINE_CASE, CASES, CHUNK_BYTES, type BenchCase, type InitMessage, type ReceiverMessage, type Usage, usageNow } from './mux-shared.js';

const MIB = 1024 * 1024;
/** Default bytes per transfer: large enough for a few seconds per case at loopback speeds. */
const DEFAULT_BYTES = 1024 * MIB;
const DEFAULT_RUNS = 3;
const QUICK_BYTES = 16 * MIB;

/** One transfer in the JSON. */
type RunReport = TransferResult & { mbPerSec: number; senderCpu: number; receiverCpu: number; senderFaults: number; receiverFaults: number };

/** One case's results in the JSON. */
interface CaseReport {
  name: string;
  transport: string;
  mode: string;
  streams: number;
  /** Median over the runs. */
  mbPerSec: number;
  /** Best run: on a shared machine, interference only ever slows a run down. */
  bestMbPerSec: number;
  /** DATA frames per second (median run); null for raw cases. */
  framesPerSec: number | null;
  /** Throughput relative to tls-raw in this run. */
  ratioToRaw: number | null;
  /** Mean DATA payload bytes per frame; null for raw cases. */
  bytesPerFrame: number | null;
  /** Transport writes per MiB of payload; null for raw cases. */
  writesPerMiB: number | null;
  /** CPU time over wall time of each process during the median run (1.0 = one core busy). */
  senderCpu: number;
  receiverCpu: number;
  /** CPU seconds per GB moved, both processes together (median over the runs): steadier than MB/s on a busy machine. */
  cpuSecPerGB: number;
  /** Minor page faults per GB in each process (median run): allocation churn. */
  senderFaultsPerGB: number;
  receiverFaultsPerGB: number;
  runs: RunReport[];
}

/** The receiver process and a way to ask it for its CPU time. */
async function startReceiver(init: InitMessage): Promise<{ ports: Target['ports']; usage(): Promise<Usage>; stop(): void }> {
  const child = fork(fileURLToPath(new URL('./mux-receiver.js', import.meta.url)), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const next = async (type: ReceiverMessage['type']): Promise<ReceiverMessage> => {
    for (;;) {
      const [message] = (await once(child, 'message')) as [ReceiverMessage];
      if (message.type === 'error') throw new Error(`receiver: ${message.message}`);
      if (message.type === type) return message;
    }
  };
  child.send(init);
  const ready = await next('ready');
  if (ready.type !== 'ready') throw new Error('unreachable');
  return {
    ports: ready.ports,
    async usage() {
      child.send({ type: 'usage' });
      const m = await next('usage');
      if (m.type !== 'usage') throw new Error('unreachable');
      return m.usage;
    },
    stop: () => child.disconnect(),
  };
}

function report(c: BenchCase, runs: RunReport[], baseline: number | null): CaseReport {
  const mid = runs.find((r) => r.mbPerSec === median(runs.map((x) => x.mbPerSec)))!;
  const mux = mid.dataFrames !== null;
  return {
    name: c.name,
    transport: c.transport,
    mode: c.mode,
    streams: c.streams,
    mbPerSec: round(mid.mbPerSec),
    bestMbPerSec: Math.max(...runs.map((r) => r.mbPerSec)),
    framesPerSec: mux ? Math.round(mid.dataFrames! / mid.seconds) : null,
    ratioToRaw: baseline ? round(mid.mbPerSec / baseline, 3) : null,
    bytesPerFrame: mux && mid.dataFrames ? Math.round(mid.bytes / mid.dataFrames) : null,
    writesPerMiB: mux ? round(mid.transportWrites! / (mid.bytes / MIB), 2) : null,
    senderCpu: round(mid.senderCpu, 2),
    receiverCpu: round(mid.receiverCpu, 2),
    cpuSecPerGB: round(median(runs.map((r) => ((r.senderCpu + r.receiverCpu) * r.seconds) / (r.bytes / 1e9))), 2),
    senderFaultsPerGB: Math.round(mid.senderFaults / (mid.bytes / 1e9)),
    receiverFaultsPerGB: Math.round(mid.receiverFaults / (mid.bytes / 1e9)),
    runs,
  };
}

function table(reports: CaseReport[]): string {
  const head = ['case', 'MB/s', 'best', 'vs raw', 'frames/s', 'KiB/frame', 'writes/MiB', 'cpu snd', 'cpu rcv', 'cpu s/GB'];
  const rows = reports.map((r) => [
    r.name,
    r.mbPerSec.toFixed(0),
    r.bestMbPerSec.toFixed(0),
    r.ratioToRaw === null ? '-' : `${(r.ratioToRaw * 100).toFixed(0)}%`,
    r.framesPerSec === null ? '-' : String(r.framesPerSec),
    r.bytesPerFrame === null ? '-' : (r.bytesPerFrame / 1024).toFixed(0),
    r.writesPerMiB === null ? '-' : r.writesPerMiB.toFixed(1),
    r.senderCpu.toFixed(2),
    r.receiverCpu.toFixed(2),
    r.cpuSecPerGB.toFixed(2),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ');
  return [line(head), ...rows.map(line)].join('\n');
}

async function main(): Promise<void> {
  process.title = 'mux-sender';
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      json: { type: 'string' },
      size: { type: 'string' },
      runs: { type: 'string' },
      cases: { type: 'string' },
      verify: { type: 'boolean' },
      session: { type: 'string' },
      'ws-zero-mask': { type: 'boolean', default: false },
      'results-dir': { type: 'string' },
    },
  });
  const bytes = values.size ? parseSize(values.size) : values.quick ? QUICK_BYTES : DEFAULT_BYTES;
  const runCount = values.runs ? Number(values.runs) : values.quick ? 1 : DEFAULT_RUNS;
  if (!Number.isInteger(runCount) || runCount < 1) throw new Error(`--runs: expected a positive integer; got ${values.runs}`);
  const verify = values.verify ?? values.quick;
  const sessionOptions = (values.session ? JSON.parse(values.session) : {}) as SessionOptions;
  const wanted = values.cases?.split(',');
  const cases = wanted ? CASES.filter((c) => wanted.includes(c.name)) : [...CASES];
  if (wanted && cases.length !== wanted.length) throw new Error(`--cases: known cases are ${CASES.map((c) => c.name).join(', ')}`);

  const identity = await testTlsIdentity();
  const receiver = await startReceiver({ type: 'init', ...identity, verify, sessionOptions });
  const target: Target = { caPem: identity.caPem, ports: receiver.ports };
  const options: RunOptions = { bytes, verify, sessionOptions, wsZeroMask: values['ws-zero-mask'] };
  log(`mux bench: ${(bytes / MIB).toFixed(0)} MiB per transfer, ${runCount} run(s), ${cpus().length} cpus${verify ? ', verifying' : ''}`);

  const results = new Map<string, RunReport[]>(cases.map((c) => [c.name, []]));
  try {
    // Runs interleave the cases, so drift on the machine spreads over all of them alike.
    for (let run = 1; run <= runCount; run++) {
      for (const c of cases) {
        const senderBefore = usageNow();
        const receiverBefore = await receiver.usage();
        const r = await runCase(c, target, options);
        const senderAfter = usageNow();
        const receiverAfter = await receiver.usage();
        const mbPerSec = r.bytes / 1e6 / r.seconds;
        results.get(c.name)!.push({
          ...r,
          mbPerSec: round(mbPerSec),
          senderCpu: round((senderAfter.cpuSeconds - senderBefore.cpuSeconds) / r.seconds, 2),
          receiverCpu: round((receiverAfter.cpuSeconds - receiverBefore.cpuSeconds) / r.seconds, 2),
          senderFaults: senderAfter.minorFaults - senderBefore.minorFaults,
          receiverFaults: receiverAfter.minorFaults - receiverBefore.minorFaults,
        });
        log(`  run ${run}/${runCount}  ${c.name.padEnd(11)} ${mbPerSec.toFixed(0).padStart(6)} MB/s  ${r.seconds.toFixed(2)} s`);
      }
    }
  } finally {
    receiver.stop();
  }

  const baselineRuns = results.get(BASELINE_CASE);
  const baseline = baselineRuns?.length ? median(baselineRuns.map((r) => r.mbPerSec)) : null;
  const reports = cases.map((c) => report(c, results.get(c.name)!, baseline));
  const json = {
    bench: 'mux',
    date: new Date().toISOString(),
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    quick: values.quick,
    bytesPerTransfer: bytes,
    chunkBytes: CHUNK_BYTES,
    runs: runCount,
    verify,
    sessionOptions,
    wsZeroMask: options.wsZeroMask,
    baseline: BASELINE_CASE,
    cases: reports,
  };
  const text = `${JSON.stringify(json, null, 2)}\n`;
  const resultsDir = values['results-dir'] ?? fileURLToPath(new URL('../../bench/results/', import.meta.url));
  mkdirSync(resultsDir, { recursive: true });
  writeFileSync(join(resultsDir, `mux-${json.date.replace(/[:.]/g, '-')}${values.quick ? '-quick' : ''}.json`), text);
  console.log(table(reports));
  if (values.json) writeFileSync(values.json, text);
  else process.stdout.write(`\n${text}`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exit(1);
});
