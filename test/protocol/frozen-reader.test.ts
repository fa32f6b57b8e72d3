// A frozen reader, through real processes: a client session (the client library, in this
// process) reads streams from an app behind a `warren agent` process, through a `warren relay`
// process whose V8 heap is capped at 64 MiB (--max-old-space-size=64). One more stream of the same
// session is opened on an app that writes without end, and never read. Rounds with and without it
// alternate in the same run. The frozen stream must cost the others less than 10%: relay and agent
// CPU per byte moved for them (main threads, /proc/PID/schedstat, which counts nanoseconds and
// only this process's work, so the suite's other files running beside it hardly move it) stays
// within 10% of the round without it just before (median of the pairs); their throughput (wall clock, which the other files do
// move) must not collapse, which is what a stream blocking the session would do. And the relay
// must hold only that stream's window: it stays alive, its buffered bytes for the frozen stream
// stay within the window limit, its RSS stays bounded.
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import t from 'tap';
import { WarrenClient } from '../../client/client.js';
import type { MuxStream } from '../../protocol/index.js';
import { makeTestIdentity } from '../helpers/identity.js';
import { startAgentProcess, startRelayProcess } from '../helpers/cluster.js';

const ADMIN_TOKEN = 'admin-token-for-tests-0123456789';
/** Streams read at once in a round, and bytes each reads. */
const READERS = 3;
const BYTES_PER_READER = 32 * 1024 * 1024;
/** Rounds of each kind (baseline, frozen), alternating. */
const ROUNDS = 6;
/** Largest receive window a stream can grow to (protocol/config.ts), plus one send buffer. */
const WINDOW_LIMIT_BYTES = 16 * 1024 * 1024 + 1024 * 1024;
const RSS_LIMIT_BYTES = 256 * 1024 * 1024;

const id = await makeTestIdentity();
t.teardown(() => id.remove());

// An app that writes 64 KiB chunks without end, as fast as its reader takes them.
const sockets = new Set<Socket>();
const source = createServer((socket) => {
  sockets.add(socket);
  socket.on('error', () => {});
  socket.on('close', () => sockets.delete(socket));
  const chunk = Buffer.alloc(64 * 1024, 0x5a);
  const pump = (): void => {
    while (!socket.destroyed && socket.write(chunk));
  };
  socket.on('drain', pump);
  pump();
});
source.listen(0, '127.0.0.1');
await once(source, 'listening');
const port = (source.address() as AddressInfo).port;
t.teardown(
  () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      source.close(() => resolve());
    }),
);

const relay = await startRelayProcess(id, ['--admin', '127.0.0.1:0'], { NODE_OPTIONS: '--max-old-space-size=64', WARREN_ADMIN_TOKEN: ADMIN_TOKEN });
t.teardown(() => relay.proc.stop('SIGKILL'));
const adminPort = (JSON.parse(relay.proc.lines.find((l) => l.includes('"event":"listening"'))!) as { admin: { port: number } }).admin.port;
const agent = await startAgentProcess(id, relay, id.token('agent', 'frozen', [port]), ['--port', String(port)]);
t.teardown(() => agent.stop());
const client = await WarrenClient.open({ relay: relay.url, token: id.token('client', 'frozen', [port]), ca: id.caPem, ports: [port] });
t.teardown(() => client.close());

/** Reads `bytes` from a new stream, then resets it. */
async function readStream(bytes: number): Promise<void> {
  const stream = client.connect(port);
  let got = 0;
  await new Promise<void>((resolve, reject) => {
    stream.on('data', (c: Buffer) => {
      got += c.length;
      if (got >= bytes) {
        stream.destroy();
        resolve();
      }
    });
    stream.on('error', (err) => (got >= bytes ? resolve() : reject(err)));
  });
}

/** CPU nanoseconds the main threads of relay and agent have used so far. */
function pathCpuNs(): number {
  const ns = (pid: number): number => Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);
  return ns(relay.proc.child.pid!) + ns(agent.child.pid!);
}

/** READERS streams read at once: their MB/s, and relay + agent CPU nanoseconds per byte. */
async function round(): Promise<{ mbps: number; cpuNsPerByte: number }> {
  const start = performance.now();
  const cpu0 = pathCpuNs();
  await Promise.all(Array.from({ length: READERS }, () => readStream(BYTES_PER_READER)));
  const bytes = READERS * BYTES_PER_READER;
  return { mbps: bytes / 1e6 / ((performance.now() - start) / 1000), cpuNsPerByte: (pathCpuNs() - cpu0) / bytes };
}

/** Opens a stream that is never read; resolves once its first bytes have arrived (it is flowing, then stuck). */
async function frozenStream(): Promise<MuxStream> {
  const stream = client.connect(port);
  stream.on('error', () => {});
  await once(stream, 'readable');
  return stream;
}

/** The relay's largest per-stream buffer (unread plus unsent bytes) on the tunnel's agent session. */
async function relayStreamBuffers(): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${adminPort}/v1/tunnels/frozen`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  const body = (await res.json()) as { openStreams: { bufferedSendBytes: number; readableBytes: number }[] };
  return Math.max(0, ...body.openStreams.map((s) => s.bufferedSendBytes + s.readableBytes));
}

function relayRssBytes(): number {
  const status = readFileSync(`/proc/${relay.proc.child.pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

t.test('a frozen stream costs the other streams of its session less than 10%', async (t) => {
  for (let i = 0; i < 2; i++) await round(); // warm-up: windows grow, code is compiled
  const baseline: { mbps: number; cpuNsPerByte: number }[] = [];
  const frozen: { mbps: number; cpuNsPerByte: number }[] = [];
  let worstBuffer = 0;
  let worstRss = 0;
  for (let i = 0; i < ROUNDS; i++) {
    baseline.push(await round());
    const stuck = await frozenStream();
    frozen.push(await round());
    worstBuffer = Math.max(worstBuffer, await relayStreamBuffers());
    worstRss = Math.max(worstRss, relayRssBytes());
    stuck.destroy();
  }
  // Each frozen round against the baseline round just before it, so drift over the run cancels.
  const pairs = frozen.map((r, i) => r.cpuNsPerByte / baseline[i]!.cpuNsPerByte).sort((a, b) => a - b);
  const cost = (pairs[(pairs.length >> 1) - 1]! + pairs[pairs.length >> 1]!) / 2;
  const speed = Math.max(...frozen.map((r) => r.mbps)) / Math.max(...baseline.map((r) => r.mbps));
  t.comment(`baseline ${baseline.map((r) => r.mbps.toFixed(0)).join(', ')} MB/s; with a frozen stream ${frozen.map((r) => r.mbps.toFixed(0)).join(', ')} MB/s`);
  t.comment(`relay + agent CPU per byte: baseline ${baseline.map((r) => r.cpuNsPerByte.toFixed(2)).join(', ')} ns; frozen ${frozen.map((r) => r.cpuNsPerByte.toFixed(2)).join(', ')} ns`);
  t.ok(cost <= 1.1, `with a frozen stream, relay and agent spend ${(cost * 100).toFixed(1)}% of the CPU per byte of the others (median of the pairs, at most 110%)`);
  t.ok(speed >= 0.5, `with a frozen stream the others keep ${(speed * 100).toFixed(1)}% of their best throughput (no stall)`);
  t.ok(worstBuffer <= WINDOW_LIMIT_BYTES, `the relay buffers at most ${worstBuffer} bytes for one stream (window limit ${WINDOW_LIMIT_BYTES})`);
  t.ok(worstRss < RSS_LIMIT_BYTES, `relay RSS at most ${(worstRss / 1e6).toFixed(0)} MB (under ${RSS_LIMIT_BYTES / 1e6} MB)`);
});

t.test('a stream left frozen for a long transfer holds only its window, and the relay stays up', async (t) => {
  const stuck = await frozenStream();
  // About 200 MB through the other streams while the frozen one stays open.
  for (let i = 0; i < 2; i++) await round();
  const buffered = await relayStreamBuffers();
  t.ok(buffered <= WINDOW_LIMIT_BYTES, `the frozen stream holds ${buffered} bytes at the relay (window limit ${WINDOW_LIMIT_BYTES})`);
  t.equal(relay.proc.child.exitCode, null, 'the relay process is alive');
  t.ok(relayRssBytes() < RSS_LIMIT_BYTES, `relay RSS ${(relayRssBytes() / 1e6).toFixed(0)} MB`);
  // The frozen stream still works once read: it was held, not lost.
  let got = 0;
  stuck.on('data', (c: Buffer) => (got += c.length));
  await new Promise<void>((resolve) => {
    const check = (): void => {
      if (got >= 4 * 1024 * 1024) {
        stuck.off('data', check);
        resolve();
      }
    };
    stuck.on('data', check);
  });
  t.ok(got >= 4 * 1024 * 1024, 'the frozen stream delivers once its reader resumes');
  stuck.destroy();
  const health = await fetch(`http://127.0.0.1:${adminPort}/healthz`);
  t.equal(health.status, 200, 'the relay answers /healthz');
});
