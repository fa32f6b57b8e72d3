/**
 * The path benchmark: a real `warren relay` and `warren agent` (the built CLI, as separate
 * processes, dev identity, relay logs at info to a file) in front of apps in this process, measured
 * side by side with the same apps reached directly, in one run, on loopback:
 *
 *   preview     wrk with keep-alive against an HTTP app answering 1 KiB: direct, and through the
 *               relay's plain-HTTP preview listener (browser -> relay -> agent stream -> app)
 *   latency     connect to first byte (the app writes one byte on accept), sequential: direct,
 *               through the relay's raw TCP endpoint, and as a new client stream on an open
 *               client session (wss)
 *   throughput  one TCP connection carrying --size bytes into a sink: through the raw TCP endpoint
 *               (client -> relay -> wss session -> agent -> app), and through a crypto-free chain
 *               of two Node processes joining sockets with plain pipe()
 *
 * Usage: node dist/bench/path.js [--cases preview,latency,throughput] [--runs N] [--duration S]
 *        [--connections N] [--size 256m] [--count N] [--prof-dir DIR] [--json FILE] [--hold]
 *        [--compare OTHER/dist/bin/warren.js]
 *
 * Progress goes to stderr; the JSON (medians over the runs, and every run) to stdout or --json.
 * With --compare, a second build (another checkout's built CLI, or a copy of dist/ made before a
 * change) runs beside this one and every case measures both, interleaved, in the same run.
 * With --prof-dir, relay and agent write CPU profiles there when they exit. With --hold, the
 * setup stays up (its ports printed) until SIGINT, for probing by hand.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { connect as netConnect, createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { WarrenClient } from '../client/client.js';
import { makeTestIdentity, type TestIdentity } from '../test/helpers/identity.js';
import { warrenBin } from '../test/helpers/paths.js';
import { cpuSeconds, log, median, parseSize, quantile, round } from './run-util.js';

const MIB = 1024 * 1024;
const DOMAIN = 'preview.test';
const TUNNEL = 'bench';
const BODY = Buffer.alloc(1024, 'x');

async function listen<T extends HttpServer | NetServer>(server: T): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as { port: number }).port;
}

/** A child process whose output goes to a file; waitFor polls the file for a line. */
interface Child {
  child: ChildProcess;
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
  stop(): Promise<void>;
}

function startChild(args: string[], logFile: string, env: Record<string, string> = {}): Child {
  const fd = openSync(logFile, 'w');
  const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const exited = once(child, 'exit');
  return {
    child,
    async waitFor(pattern, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const line = readFileSync(logFile, 'utf8')
          .split('\n')
          .find((l) => pattern.test(l));
        if (line !== undefined) return line;
        if (child.exitCode !== null || Date.now() > deadline) throw new Error(`no line matching ${pattern} in ${logFile}:\n${readFileSync(logFile, 'utf8')}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/** Runs wrk against 127.0.0.1:port with Host `host`; requests/s and latency percentiles in ms. */
async function wrk(port: number, host: string, seconds: number, connections: number): Promise<{ rps: number; p50: number; p99: number }> {
  const child = spawn('wrk', ['-t1', `-c${connections}`, `-d${seconds}s`, '--latency', '-H', `Host: ${host}`, `http://127.0.0.1:${port}/`], { stdio: ['ignore', 'pipe', 'inherit'] });
  const out: Buffer[] = [];
  child.stdout.on('data', (c: Buffer) => out.push(c));
  await once(child, 'exit');
  const text = Buffer.concat(out).toString();
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(text);
  const ms = (p: string): number => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s)`, 'm').exec(text);
    if (!m) return NaN;
    return Number(m[1]) * { us: 0.001, ms: 1, s: 1000 }[m[2] as 'us' | 'ms' | 's'];
  };
  if (!rps) throw new Error(`wrk printed no rate:\n${text}`);
  const errors = /Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)/.exec(text);
  if (errors) log(`    wrk: ${errors[0]}`);
  return { rps: Number(rps[1]), p50: ms('50'), p99: ms('99') };
}

/** Connect to first byte, `count` times in a row; milliseconds. */
async function firstByteTimes(count: number, open: () => { stream: NodeJS.ReadableStream & { destroy(): void } }): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    const { stream } = open();
    await new Promise<void>((resolve, reject) => {
      stream.once('data', () => resolve());
      stream.once('error', reject);
    });
    times.push(performance.now() - t0);
    stream.destroy();
  }
  return times;
}

/** A sink that resolves `done(n)` once a connection has received n bytes. */
function sinkServer(): { server: NetServer; expect(bytes: number): Promise<void> } {
  let target = 0;
  let resolveDone: (() => void) | null = null;
  const server = createNetServer({ allowHalfOpen: true }, (socket) => {
    let got = 0;
    socket.on('data', (c: Buffer) => {
      got += c.length;
      if (got >= target && resolveDone) {
        const r = resolveDone;
        resolveDone = null;
        r();
      }
    });
    socket.on('end', () => socket.end());
    socket.on('error', () => socket.destroy());
  });
  return {
    server,
    expect(bytes) {
      target = bytes;
      return new Promise((resolve) => (resolveDone = resolve));
    },
  };
}

/** Sends `bytes` through a new connection to port; MB/s from connect to the sink's last byte. */
async function transfer(port: number, bytes: number, sink: ReturnType<typeof sinkServer>): Promise<number> {
  const chunk = Buffer.alloc(64 * 1024, 0x5a);
  const done = sink.expect(bytes);
  const t0 = performance.now();
  const socket: Socket = netConnect({ host: '127.0.0.1', port, noDelay: true });
  socket.on('error', (err) => log(`    transfer socket: ${err.message}`));
  await once(socket, 'connect');
  let sent = 0;
  while (sent < bytes) {
    const n = Math.min(chunk.length, bytes - sent);
    sent += n;
    if (!socket.write(n === chunk.length ? chunk : chunk.subarray(0, n))) await once(socket, 'drain');
  }
  await done;
  const seconds = (performance.now() - t0) / 1000;
  socket.destroy();
  return bytes / 1e6 / seconds;
}

interface Setup {
  id: TestIdentity;
  dir: string;
  relay: Child;
  agent: Child;
  httpPort: number;
  relayPort: number;
  endpoints: Map<number, number>;
}

async function freePorts(n: number): Promise<number> {
  // A range of n consecutive ports that are free right now, probed by listening.
  for (let attempt = 0; attempt < 50; attempt++) {
    const first = 20000 + Math.floor(Math.random() * 30000);
    const servers: NetServer[] = [];
    let ok = true;
    for (let p = first; p < first + n && ok; p++) {
      const s = createNetServer();
      try {
        s.listen(p, '127.0.0.1');
        await Promise.race([once(s, 'listening'), once(s, 'error').then(([e]) => Promise.reject(e as Error))]);
        servers.push(s);
      } catch {
        ok = false;
      }
    }
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    if (ok) return first;
  }
  throw new Error('no free port range');
}

async function start(id: TestIdentity, dir: string, apps: { http: number; first: number; sink: number }, profDir: string | undefined, bin: string): Promise<Setup> {
  mkdirSync(dir, { recursive: true });
  const nodeFlags = profDir ? ['--cpu-prof', '--cpu-prof-dir', profDir] : [];
  const tcpFirst = await freePorts(4);
  const relay = startChild(
    [
      ...nodeFlags,
      bin,
      'relay',
      '--listen',
      '127.0.0.1:0',
      '--http-listen',
      '127.0.0.1:0',
      '--cert',
      id.certFile,
      '--key',
      id.keyFile,
      '--domain',
      DOMAIN,
      '--trust-key',
      id.issuerPubFile,
      '--tcp-ports',
      `${tcpFirst}-${tcpFirst + 3}`,
      '--grace-period',
      '1s',
    ],
    join(dir, 'relay.log'),
  );
  const info = JSON.parse(await relay.waitFor(/"event":"listening"/)) as { listen: { port: number }; httpListen: { port: number } };
  const token = id.token('agent', TUNNEL, [apps.http, apps.first, apps.sink]);
  const agent = startChild(
    [...nodeFlags, bin, 'agent', '--relay', `wss://127.0.0.1:${info.listen.port}`, '--ca', id.caFile, '--port', String(apps.http), '--tcp', String(apps.first), '--tcp', String(apps.sink), '--json', '--status-socket', 'off'],
    join(dir, 'agent.log'),
    { WARREN_TOKEN: token },
  );
  const connected = JSON.parse(await agent.waitFor(/"event":"connected"/)) as { tcp: { port: number; endpoint: string }[] };
  const endpoints = new Map(connected.tcp.map((t) => [t.port, Number(t.endpoint.split(':').pop())]));
  return { id, dir, relay, agent, httpPort: info.httpListen.port, relayPort: info.listen.port, endpoints };
}

/** Summary of several wrk runs: medians. */
function wrkMedian(list: { rps: number; p50: number; p99: number }[]): { rps: number; p50: number; p99: number } {
  return { rps: median(list.map((x) => x.rps)), p50: median(list.map((x) => x.p50)), p99: median(list.map((x) => x.p99)) };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      cases: { type: 'string', default: 'preview,latency,throughput' },
      runs: { type: 'string', default: '3' },
      duration: { type: 'string', default: '5' },
      connections: { type: 'string', default: '10' },
      size: { type: 'string', default: '256m' },
      count: { type: 'string', default: '300' },
      'prof-dir': { type: 'string' },
      compare: { type: 'string' },
      hold: { type: 'boolean', default: false },
      json: { type: 'string' },
    },
  });
  const cases = new Set(values.cases.split(','));
  const runs = Number(values.runs);
  const duration = Number(values.duration);
  const connections = Number(values.connections);
  const size = parseSize(values.size);
  const count = Number(values.count);

  const id = await makeTestIdentity();
  const dir = mkdtempSync(join(tmpdir(), 'warren-path-'));
  const httpApp = createHttpServer({ keepAliveTimeout: 60_000 }, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': BODY.length });
    res.end(BODY);
  });
  const firstApp = createNetServer((s) => {
    s.on('error', () => s.destroy());
    s.end('x');
  });
  const sink = sinkServer();
  const apps = { http: await listen(httpApp), first: await listen(firstApp), sink: await listen(sink.server) };
  // "warren" is this checkout's build; with --compare, "other" is another build's CLI, measured
  // in the same run, interleaved, against the same apps.
  const builds: { name: string; bin: string }[] = [{ name: 'warren', bin: warrenBin }];
  if (values.compare) builds.push({ name: 'other', bin: values.compare });
  const setups: (Setup & { name: string })[] = [];
  for (const b of builds) setups.push({ name: b.name, ...(await start(id, join(dir, b.name), apps, values['prof-dir'], b.bin)) });
  const hop2 = fork(fileURLToPath(new URL('./pipe-hop.js', import.meta.url)), [`127.0.0.1:${apps.sink}`]);
  const hop2Port = ((await once(hop2, 'message')) as [{ port: number }])[0].port;
  const hop1 = fork(fileURLToPath(new URL('./pipe-hop.js', import.meta.url)), [`127.0.0.1:${hop2Port}`]);
  const hop1Port = ((await once(hop1, 'message')) as [{ port: number }])[0].port;
  const usage = (setup: Setup): { relay: number; agent: number } => ({ relay: cpuSeconds(setup.relay.child.pid), agent: cpuSeconds(setup.agent.child.pid) });
  const host = `${apps.http}-${TUNNEL}.${DOMAIN}`;
  log(`path bench: ${cpus().length} cpus, ${runs} run(s), builds ${builds.map((b) => `${b.name}=${b.bin}`).join(' ')}; logs in ${dir}`);
  if (values.hold) {
    // Keep everything up for manual probing until SIGINT.
    for (const s of setups) log(JSON.stringify({ build: s.name, apps, previewHost: host, relayHttpPort: s.httpPort, relayPort: s.relayPort, endpoints: Object.fromEntries(s.endpoints), chainPort: hop1Port }));
    await once(process, 'SIGINT');
    cases.clear();
  }

  const result: Record<string, unknown> = { bench: 'path', date: new Date().toISOString(), node: process.version, cpus: cpus().length, runs, builds };
  try {
    if (cases.has('preview')) {
      type Run = { rps: number; p50: number; p99: number; relayCpu?: number; agentCpu?: number };
      const all: Record<string, Run[]> = { direct: [] };
      await wrk(apps.http, host, 1, connections);
      for (const s of setups) {
        all[s.name] = [];
        await wrk(s.httpPort, host, 1, connections); // warm-up: JIT, windows
      }
      for (let r = 0; r < runs; r++) {
        all.direct!.push(await wrk(apps.http, host, duration, connections));
        const line = [`direct ${all.direct![r]!.rps.toFixed(0)} req/s p99 ${all.direct![r]!.p99} ms`];
        for (const s of setups) {
          const before = usage(s);
          const w = await wrk(s.httpPort, host, duration, connections);
          const after = usage(s);
          all[s.name]!.push({ ...w, relayCpu: round((after.relay - before.relay) / duration, 2), agentCpu: round((after.agent - before.agent) / duration, 2) });
          line.push(`${s.name} ${w.rps.toFixed(0)} req/s p99 ${w.p99} ms`);
        }
        log(`  preview run ${r + 1}: ${line.join('; ')}`);
      }
      const d = wrkMedian(all.direct!);
      const preview: Record<string, unknown> = { connections, durationSeconds: duration, direct: d };
      for (const s of setups) {
        const w = wrkMedian(all[s.name]!);
        preview[s.name] = {
          ...w,
          rpsRatio: round(w.rps / d.rps, 3),
          p99Ratio: round(w.p99 / d.p99, 2),
          relayCpu: median(all[s.name]!.map((x) => x.relayCpu!)),
          agentCpu: median(all[s.name]!.map((x) => x.agentCpu!)),
        };
      }
      preview.runs = all;
      result.preview = preview;
    }

    if (cases.has('latency')) {
      const tcp = (port: number) => () => ({ stream: netConnect({ host: '127.0.0.1', port, noDelay: true }) });
      const paths: { name: string; open: () => { stream: NodeJS.ReadableStream & { destroy(): void } } }[] = [{ name: 'direct', open: tcp(apps.first) }];
      const clients: WarrenClient[] = [];
      for (const s of setups) {
        const client = await WarrenClient.open({ relay: `wss://127.0.0.1:${s.relayPort}`, token: id.token('client', TUNNEL, [apps.first]), ca: id.caPem, tunnel: TUNNEL });
        clients.push(client);
        paths.push({ name: `${s.name}TcpEndpoint`, open: tcp(s.endpoints.get(apps.first)!) }, { name: `${s.name}ClientStream`, open: () => ({ stream: client.connect(apps.first) }) });
      }
      for (const p of paths) await firstByteTimes(50, p.open);
      const all: Record<string, number[]> = Object.fromEntries(paths.map((p) => [p.name, []]));
      for (let r = 0; r < runs; r++) {
        for (const p of paths) all[p.name]!.push(...(await firstByteTimes(count, p.open)));
        log(`  latency run ${r + 1}: p50 ${paths.map((p) => `${p.name} ${quantile(all[p.name]!, 0.5).toFixed(3)} ms`).join(', ')}`);
      }
      for (const c of clients) await c.close();
      result.latency = Object.fromEntries(Object.entries(all).map(([k, v]) => [k, { p50: round(quantile(v, 0.5), 3), p90: round(quantile(v, 0.9), 3), p99: round(quantile(v, 0.99), 3), n: v.length }]));
    }

    if (cases.has('throughput')) {
      type Run = { mbPerSec: number; relayCpuSecPerGB: number; agentCpuSecPerGB: number };
      await transfer(hop1Port, 32 * MIB, sink);
      for (const s of setups) await transfer(s.endpoints.get(apps.sink)!, 32 * MIB, sink);
      const chain: number[] = [];
      const all: Record<string, Run[]> = Object.fromEntries(setups.map((s) => [s.name, []]));
      for (let r = 0; r < runs; r++) {
        chain.push(round(await transfer(hop1Port, size, sink), 1));
        const line = [`chain ${chain[r]} MB/s`];
        for (const s of setups) {
          const before = usage(s);
          const mb = await transfer(s.endpoints.get(apps.sink)!, size, sink);
          const after = usage(s);
          all[s.name]!.push({ mbPerSec: round(mb, 1), relayCpuSecPerGB: round((after.relay - before.relay) / (size / 1e9), 2), agentCpuSecPerGB: round((after.agent - before.agent) / (size / 1e9), 2) });
          line.push(`${s.name} ${round(mb, 1)} MB/s`);
        }
        log(`  throughput run ${r + 1}: ${line.join(', ')}`);
      }
      const c = median(chain);
      const throughput: Record<string, unknown> = { bytes: size, chainMbPerSec: c };
      for (const s of setups) {
        const w = median(all[s.name]!.map((x) => x.mbPerSec));
        throughput[s.name] = {
          mbPerSec: w,
          ratio: round(w / c, 3),
          relayCpuSecPerGB: median(all[s.name]!.map((x) => x.relayCpuSecPerGB)),
          agentCpuSecPerGB: median(all[s.name]!.map((x) => x.agentCpuSecPerGB)),
        };
      }
      throughput.runs = { chain, ...all };
      result.throughput = throughput;
    }
  } finally {
    hop1.disconnect();
    hop2.disconnect();
    for (const s of setups) {
      await s.agent.stop();
      await s.relay.stop();
    }
    httpApp.closeAllConnections();
    httpApp.close();
    firstApp.close();
    sink.server.close();
    id.remove();
    rmSync(dir, { recursive: true, force: true });
  }
  const text = `${JSON.stringify(result, null, 2)}\n`;
  if (values.json) writeFileSync(values.json, text);
  process.stdout.write(text);
  process.exit(0);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exit(1);
});
