/**
 * The memory and scale parts of the whole-system bench.
 *
 * Memory: a fresh relay process, warmed up with 1,000 idle agent sessions; its RSS (and V8 heap,
 * from its /metrics) before and after each of three more batches of 1,000 (the median counts), then before and after 4,000 idle open streams
 * (client → relay → agent, four sessions of 1,000; after a first 1,000 to warm up); beside it, a bare server's RSS per
 * idle WebSocket-over-TLS and per idle TLS connection (three batches, the median), from the same
 * load generator, in the same run.
 *
 * Scale: N idle agents on one relay process (spread over several load-generator processes and
 * loopback source addresses), the relay's RSS, and the ping-pong latency of one busy tunnel (a
 * real agent process with a raw TCP endpoint) before and while they are connected.
 */
import { execFileSync } from 'node:child_process';
import { get } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TestIdentity } from '../test/helpers/identity.js';
import { startWarren, type Proc } from '../test/helpers/process.js';
import type { LoadConfig } from './run-loadgen.js';
import { newStream, pingPong } from './run-measure.js';
import { startRelay, startScript, type RelayInfo } from './run-paths.js';
import type { MemoryResult, ScaleResult, Settings, Snapshot } from './run-types.js';
import { cpuMeter, log, quantile, round, rssBytes, type Children } from './run-util.js';

function metric(text: string, name: string): number {
  const m = new RegExp(`^${name} ([0-9.e+]+)`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

function fetchText(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    get(url, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
      res.on('error', reject);
    }).on('error', reject);
  });
}

async function snapshot(relay: RelayInfo, settleMs: number): Promise<Snapshot> {
  await sleep(settleMs);
  const text = await fetchText(`http://127.0.0.1:${relay.adminPort}/metrics`);
  return { rss: rssBytes(relay.proc.child.pid!), heapUsed: metric(text, 'warren_nodejs_heap_size_used_bytes') };
}

/** A started load generator; `finished` resolves once it has opened everything and rejects when it fails outright. */
interface Loadgen {
  proc: Proc;
  finished: Promise<{ done: number; failed: number; firstError?: string }>;
}

function startLoadgen(children: Children, config: LoadConfig, timeoutMs: number): Loadgen {
  const proc = startScript(children, 'run-loadgen.js', [JSON.stringify(config)]);
  const finished = proc.waitFor(/^\{"(done|fatal)"/, timeoutMs).then((line) => {
    const r = JSON.parse(line) as { done?: number; failed?: number; firstError?: string; fatal?: string };
    if (r.fatal) throw new Error(`load generator: ${r.fatal}`);
    return { done: r.done ?? 0, failed: r.failed ?? 0, firstError: r.firstError };
  });
  return { proc, finished };
}

/** Connections a load generator has reported so far. */
function progressOf(g: Loadgen): number {
  for (let i = g.proc.lines.length - 1; i >= 0; i--) {
    const m = /^\{"(?:progress|done)":(\d+)/.exec(g.proc.lines[i]!);
    if (m) return Number(m[1]);
  }
  return 0;
}

async function loadgen(children: Children, config: LoadConfig, timeoutMs: number): Promise<{ proc: Proc; done: number; failed: number; firstError?: string }> {
  const g = startLoadgen(children, config, timeoutMs);
  return { proc: g.proc, ...(await g.finished) };
}

/** The memory part. */
export async function measureMemory(stage: { children: Children; id: TestIdentity }, settings: Settings): Promise<MemoryResult> {
  const { children, id } = stage;
  const settle = settings.quick ? 500 : 3_000;
  const n = settings.memoryAgents;
  const relay = await startRelay(stage);
  const appPort = 9; // Never dialed: idle agents and streams carry no bytes.
  const agentLoad = (tunnelPrefix: string): LoadConfig => ({ mode: 'agents', relayPort: relay.port, caFile: id.caFile, issuerKeyFile: id.issuerKeyFile, tunnelPrefix, first: 0, count: n, localAddresses: ['127.0.0.1'], concurrency: 32, appPort });
  // Warm-up: the first thousand sessions of a fresh process also pay for one-off growth (V8's
  // young generation grows to full size, code is compiled, malloc takes arenas): tens of MiB that
  // would count as 10-20 KiB per agent. The bare server's TLS figure below is taken warm too
  // (after its WebSocket connections), so both are what one more connection costs.
  const warm = await loadgen(children, agentLoad('memwarm'), 120_000);
  if (warm.failed > 0) throw new Error(`${warm.failed} of ${n} warm-up agents failed: ${warm.firstError}`);
  // RSS moves by a KiB or two per agent from one batch of a thousand to the next (pages the
  // allocator and V8 take or give back): several batches, and their median.
  const baseline = await snapshot(relay, settle);
  const batches = settings.quick ? 1 : MEASURED_BATCHES;
  const agentLoads: Proc[] = [];
  const rssPerAgent: number[] = [];
  const heapPerAgent: number[] = [];
  let withAgents = baseline;
  for (let b = 0; b < batches; b++) {
    const agents = await loadgen(children, agentLoad(`mem${b}`), 120_000);
    agentLoads.push(agents.proc);
    if (agents.failed > 0) throw new Error(`${agents.failed} of ${n} agents failed: ${agents.firstError}`);
    const next = await snapshot(relay, settle);
    rssPerAgent.push(round((next.rss - withAgents.rss) / n, 0));
    heapPerAgent.push(round((next.heapUsed - withAgents.heapUsed) / n, 0));
    withAgents = next;
  }
  log(`memory: ${batches} × ${n} idle agents: relay RSS +${rssPerAgent.map((x) => (x / 1024).toFixed(1)).join(', ')} KiB each`);
  // Streams are measured warm too, after a first batch, and in several batches (a session may
  // hold at most 1,024): right after the agents, the V8 heap has room their handshakes' garbage
  // freed, and a thousand streams fit in it without the RSS growing.
  const perBatch = settings.memoryStreams;
  const streamBatches = settings.quick ? 1 : STREAM_BATCHES;
  const streamLoad = (tunnel: string): LoadConfig => ({ mode: 'streams', relayPort: relay.port, caFile: id.caFile, issuerKeyFile: id.issuerKeyFile, tunnel, count: perBatch, appPort });
  const warmStreams = await loadgen(children, streamLoad('memstreamswarm'), 60_000);
  if (warmStreams.failed > 0) throw new Error(`${warmStreams.failed} of ${perBatch} warm-up streams did not open`);
  const beforeStreams = await snapshot(relay, settle);
  const streamLoads: Proc[] = [warmStreams.proc];
  for (let b = 0; b < streamBatches; b++) {
    const streams = await loadgen(children, streamLoad(`memstreams${b}`), 60_000);
    streamLoads.push(streams.proc);
    if (streams.failed > 0) throw new Error(`${streams.failed} of ${perBatch} streams did not open`);
  }
  const streamCount = perBatch * streamBatches;
  const withStreams = await snapshot(relay, settle);
  log(`memory: ${streamCount} idle streams: relay RSS +${((withStreams.rss - beforeStreams.rss) / streamCount / 1024).toFixed(1)} KiB each`);
  for (const p of streamLoads) await children.stop(p);
  for (const p of agentLoads) await children.stop(p);
  await children.stop(warm.proc);
  await children.stop(relay.proc);

  const bare = startScript(children, 'run-bare.js', [id.certFile, id.keyFile]);
  const ports = JSON.parse(await bare.waitFor(/wssPort/)) as { wssPort: number; tlsPort: number };
  const barePid = bare.child.pid!;
  await sleep(settle);
  const bareBaseline = rssBytes(barePid);
  const wss = await loadgen(children, { mode: 'bare', kind: 'wss', port: ports.wssPort, caFile: id.caFile, count: n, concurrency: 32 }, 120_000);
  await sleep(settle);
  const withWss = rssBytes(barePid);
  const tlsLoads: Proc[] = [];
  const perTls: number[] = [];
  let withTls = withWss;
  for (let b = 0; b < batches; b++) {
    const tls = await loadgen(children, { mode: 'bare', kind: 'tls', port: ports.tlsPort, caFile: id.caFile, count: n, concurrency: 32 }, 120_000);
    tlsLoads.push(tls.proc);
    if (tls.failed > 0) throw new Error(`bare TLS connections failed: ${tls.firstError}`);
    await sleep(settle);
    const next = rssBytes(barePid);
    perTls.push(round((next - withTls) / n, 0));
    withTls = next;
  }
  if (wss.failed > 0) throw new Error(`bare connections failed: ${wss.firstError}`);
  for (const p of tlsLoads) await children.stop(p);
  await children.stop(wss.proc);
  await children.stop(bare);
  const perWss = round((withWss - bareBaseline) / n, 0);
  const perAgentRss = quantile(rssPerAgent, 0.5);
  const perTlsRss = quantile(perTls, 0.5);
  log(`memory: bare server: +${(perWss / 1024).toFixed(1)} KiB per wss connection, +${perTls.map((x) => (x / 1024).toFixed(1)).join(', ')} KiB per TLS connection`);
  return {
    agents: n,
    agentBatches: batches,
    streams: streamCount,
    relay: { baseline, withAgents, beforeStreams, withStreams },
    relayPerAgentBytes: { rss: perAgentRss, heap: quantile(heapPerAgent, 0.5) },
    relayPerAgentBatchesBytes: rssPerAgent,
    relayPerStreamBytes: { rss: round((withStreams.rss - beforeStreams.rss) / streamCount, 0), heap: round((withStreams.heapUsed - beforeStreams.heapUsed) / streamCount, 0) },
    bare: { baselineRss: bareBaseline, withWssRss: withWss, withTlsRss: withTls, perWssBytes: perWss, perTlsBytes: perTlsRss, perTlsBatchesBytes: perTls },
    perAgentAboveBareTlsBytes: perAgentRss - perTlsRss,
  };
}

/** Batches of idle agents (and of bare TLS connections) measured; the figures are their medians. */
const MEASURED_BATCHES = 3;

/** Batches of idle streams measured (each its own client and agent session). */
const STREAM_BATCHES = 4;

/** Agents per load-generator process (each holds this many sockets). */
const AGENTS_PER_LOADGEN = 5_000;
/** File descriptors the relay keeps for itself beyond one per agent. */
const RELAY_SPARE_FDS = 400;

function fdHardLimit(): number {
  try {
    return Number(execFileSync('bash', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).trim()) || 1024;
  } catch {
    return 1024;
  }
}

/** The scale part; `app` is a fresh bench app process for the busy tunnel. */
export async function measureScale(stage: { children: Children; id: TestIdentity }, settings: Settings, app: Proc): Promise<ScaleResult> {
  const { children, id } = stage;
  const { tcpPort } = JSON.parse(await app.waitFor(/"ready"/)) as { tcpPort: number };
  const limit = fdHardLimit();
  const requested = settings.scaleRequested;
  const n = Math.min(requested, limit - RELAY_SPARE_FDS);
  const capped = n < requested ? `the relay process may open at most ${limit} files (hard limit, not raisable here): ${n} agents` : undefined;
  if (capped) log(`scale: ${capped}`);
  // Every process this bench starts inherits the hard limit as its soft limit.
  const relay = await startRelay(stage);
  const token = id.token('agent', 'busy', [tcpPort]);
  const busy = children.add(startWarren(['agent', '--relay', relay.url, '--ca', id.caFile, '--tcp', String(tcpPort), '--json'], { WARREN_TOKEN: token }));
  const connected = JSON.parse(await busy.waitFor(/"event":"connected"/)) as { tcp: { endpoint: string }[] };
  const endpointPort = Number(connected.tcp[0]!.endpoint.split(':').pop());
  const pings = settings.quick ? 300 : 5_000;
  const idlePingPongUs = await pingPong(endpointPort, pings);
  const baseline = await snapshot(relay, settings.quick ? 200 : 2_000);
  const start = Date.now();
  const procs = Math.ceil(n / AGENTS_PER_LOADGEN);
  const started = Array.from({ length: procs }, (_, k) => {
    const first = k * AGENTS_PER_LOADGEN;
    const count = Math.min(AGENTS_PER_LOADGEN, n - first);
    // Each load generator dials from its own loopback address, so ephemeral ports never run out.
    const config: LoadConfig = { mode: 'agents', relayPort: relay.port, caFile: id.caFile, issuerKeyFile: id.issuerKeyFile, tunnelPrefix: 'scale', first, count, localAddresses: [`127.0.${k + 1}.${k + 2}`], concurrency: 64, appPort: tcpPort };
    return startLoadgen(children, config, 900_000);
  });
  const ticker = setInterval(() => {
    log(`scale: ${started.reduce((a, g) => a + progressOf(g), 0)} of ${n} agents connected, relay RSS ${(rssBytes(relay.proc.child.pid!) / 1024 / 1024).toFixed(0)} MiB`);
  }, 5_000);
  let gens: { proc: Proc; done: number; failed: number; firstError?: string }[];
  try {
    gens = await Promise.all(started.map(async (g) => ({ proc: g.proc, ...(await g.finished) })));
  } finally {
    clearInterval(ticker);
  }
  const connectSeconds = round((Date.now() - start) / 1000, 1);
  const failed = gens.reduce((a, g) => a + g.failed, 0);
  const agents = gens.reduce((a, g) => a + g.done, 0);
  log(`scale: ${agents} agents connected in ${connectSeconds} s (${failed} failed)`);
  const withAgents = await snapshot(relay, settings.quick ? 500 : 5_000);
  // What the idle agents cost the relay in CPU (keepalives, timers) with nothing else going on.
  const idleSeconds = settings.quick ? 1 : 15;
  const idleMeter = cpuMeter([{ name: 'relay', pid: relay.proc.child.pid! }]);
  await sleep(idleSeconds * 1000);
  const relayIdleCpuPercent = round((100 * (idleMeter.finish().relay ?? 0)) / idleSeconds, 1);
  const loadedPingPongUs = await pingPong(endpointPort, pings);
  const loadedNewStreamMs = await newStream(endpointPort, settings.quick ? 30 : 500);
  log(`scale: relay RSS ${(withAgents.rss / 1024 / 1024).toFixed(0)} MiB; busy tunnel ping-pong p99 ${loadedPingPongUs.p99} µs (${idlePingPongUs.p99} µs before)`);
  for (const g of gens) await children.stop(g.proc);
  await children.stop(busy);
  await children.stop(relay.proc);
  await children.stop(app);
  const perAgent = agents > 0 ? (withAgents.rss - baseline.rss) / agents : 0;
  return {
    requested,
    agents,
    ...(capped ? { capped } : {}),
    connectSeconds,
    failed,
    firstError: gens.find((g) => g.firstError)?.firstError,
    relay: { baseline, withAgents },
    rssPerAgentBytes: round(perAgent, 0),
    relayIdleCpuPercent,
    rssAt20kBytes: agents >= 20_000 ? withAgents.rss : round(baseline.rss + perAgent * 20_000, 0),
    rssAt20kExtrapolated: agents < 20_000,
    busyTunnel: { idlePingPongUs, loadedPingPongUs, loadedNewStreamMs },
  };
}
