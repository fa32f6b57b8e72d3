/**
 * The relay network in the whole-system bench: two `warren relay` processes of one network on a
 * real nats-server (JetStream), with mesh links over mutual TLS. The holder has the bench's agent
 * (the Warren setup of bench/run-paths.ts, with the directory and mesh flags); the edge holds
 * nothing and forwards every stream one hop to the holder. Measured here, beside the other paths:
 *
 *   warren-connect-holder  `warren connect` → holder → agent → app
 *   warren-connect-fwd     `warren connect` → edge → mesh link → holder → agent → app
 *   preview-holder, preview-fwd   the preview (1 KiB, keep-alive) at the holder and at the edge
 *
 * and, in this process, the directory itself: a NatsDirectory pair on the same nats-server, one
 * registering N tunnel records, the other's cache answering holders() (docs/DIRECTORY.md).
 */
import { randomUUID } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createDevCa, issueCertificate, type CertificateAuthority } from '../certs/ca.js';
import type { RelayRecord } from '../relay/network/directory.js';
import { NatsDirectory } from '../relay/network/nats-directory.js';
import { previewRequest } from '../test/helpers/cluster.js';
import { startNatsServer, type NatsServer } from '../test/helpers/nats.js';
import { freePort } from '../test/helpers/peers.js';
import { BENCH_DOMAIN, BENCH_TUNNEL, startConnect, startRelay, startWarrenSetup, warrenCli, type NetworkPathName, type NetworkSetup, type PathHandle, type Stage } from './run-paths.js';
import type { DirectoryResult, HttpCase } from './run-types.js';
import { log, round, type Role } from './run-util.js';

/** How often each relay of the bench network puts its heartbeat (a new peer is seen within it). */
const HEARTBEAT = '500ms';
/** Longest wait for the edge to serve the holder's tunnel (directory record and mesh link). */
const ROUTE_TIMEOUT_MS = 20_000;
/** Longest wait for the store to acknowledge the directory measure's puts, and for a cache to hold them. */
const DIRECTORY_TIMEOUT_MS = 120_000;

/** Why the relay network cannot run here, or null when it can. */
export function natsMissing(): string | null {
  if (existsSync('/usr/sbin/nats-server')) return null;
  try {
    execFileSync('sh', ['-c', 'command -v nats-server'], { stdio: 'ignore' });
    return null;
  } catch {
    return 'nats-server not found on PATH or at /usr/sbin/nats-server: install the Debian package nats-server (scripts/ensure-system-deps.sh does)';
  }
}

/** The directory and mesh flags of one relay of the bench network; its mesh certificate is written into the identity folder. */
async function networkArgs(stage: Stage, nats: NatsServer, ca: { authority: CertificateAuthority; file: string }, name: string, port: number): Promise<string[]> {
  const cert = await issueCertificate(ca.authority, { hosts: ['127.0.0.1'], usage: 'both', validDays: 1 });
  const certFile = join(stage.id.dir, `${name}-mesh.pem`);
  const keyFile = join(stage.id.dir, `${name}-mesh.key`);
  writeFileSync(certFile, cert.certPem, { mode: 0o600 });
  writeFileSync(keyFile, cert.keyPem, { mode: 0o600 });
  return [
    '--directory', nats.url, '--directory-heartbeat', HEARTBEAT, '--id', name, '--region', name, '--advertise', `wss://127.0.0.1:${port}`,
    '--mesh-listen', '127.0.0.1:0', '--mesh-cert', certFile, '--mesh-key', keyFile, '--mesh-ca', ca.file,
  ];
}

/**
 * Starts nats-server, the holder (relay and agent) and the edge, and resolves once the edge
 * serves the holder's tunnel; every process is registered with stage.children. Throws with the
 * package to install when nats-server is missing.
 */
export async function startNetwork(stage: Stage): Promise<NetworkSetup> {
  const missing = natsMissing();
  if (missing) throw new Error(missing);
  const nats = await startNatsServer();
  stage.children.add(nats.proc!);
  stage.children.addDir(nats.storeDir);
  const authority = await createDevCa({ commonName: 'Warren bench mesh CA', validDays: 2 });
  const ca = { authority, file: join(stage.id.dir, 'mesh-ca.pem') };
  writeFileSync(ca.file, authority.certPem);
  // Above the 21,000-29,127 of the plain setups' raw TCP ranges (bench/run-paths.ts).
  const tcpFirst = 30_000 + 128 * Math.floor(Math.random() * 60);
  const holderPort = await freePort();
  const holder = await startWarrenSetup(stage, 'this', { relayArgs: await networkArgs(stage, nats, ca, 'holder', holderPort), port: holderPort, tcpFirst, prefix: 'holder' });
  const edgePort = await freePort();
  const grace = stage.profDir ? ['--grace-period', '1s'] : [];
  const edge = await startRelay(stage, [...grace, ...(await networkArgs(stage, nats, ca, 'edge', edgePort))], warrenCli(stage, 'this', 'edge-relay'), tcpFirst + 64, edgePort);
  await Promise.all([holder.relay.proc.waitFor(/"event":"network_joined"/), edge.proc.waitFor(/"event":"network_joined"/)]);
  const host = `${stage.appHttpPort}-${BENCH_TUNNEL}.${BENCH_DOMAIN}`;
  const deadline = Date.now() + ROUTE_TIMEOUT_MS;
  for (;;) {
    const res = await previewRequest(edge, host, '/1k');
    if (res.status === 200) break;
    if (Date.now() > deadline) throw new Error(`the edge relay does not serve ${host} within ${ROUTE_TIMEOUT_MS} ms: ${res.status} ${String(res.headers['x-warren-error'])}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  log(`network: holder ${holder.relay.url} and edge ${edge.url} on ${nats.url}; the edge serves the holder's tunnel`);
  return { nats, holder, edge };
}

/** The holder's relay and agent as roles; the edge as `edge` (the forwarded case's CPU counts all three). */
function roles(net: NetworkSetup, forwarded: boolean): Role[] {
  const holder: Role[] = [{ name: 'relay', pid: net.holder.relay.proc.child.pid! }, { name: 'agent', pid: net.holder.agent.child.pid! }];
  return forwarded ? [{ name: 'edge', pid: net.edge.proc.child.pid! }, ...holder] : holder;
}

/** Starts one network path: the network once into stage.network, then `warren connect` to the holder or to the edge. */
export async function startNetworkPath(stage: Stage, name: NetworkPathName): Promise<PathHandle> {
  const net = (stage.network ??= await startNetwork(stage));
  const forwarded = name === 'warren-connect-fwd';
  const connect = await startConnect(stage, 'this', forwarded ? net.edge.url : net.holder.relay.url, forwarded ? 'fwd-connect' : 'holder-connect');
  return { name, port: connect.port, roles: [connect.role, ...roles(net, forwarded)] };
}

/** The HTTP targets of the network: the preview at the holder and at the edge, with the app's role first. */
export async function networkHttpTargets(stage: Stage, app: Role): Promise<{ path: HttpCase['path']; port: number; roles: Role[] }[]> {
  const net = (stage.network ??= await startNetwork(stage));
  return [
    { path: 'preview-holder', port: net.holder.relay.httpPort, roles: [app, ...roles(net, false)] },
    { path: 'preview-fwd', port: net.edge.httpPort, roles: [app, ...roles(net, true)] },
  ];
}

/** Resolves once `cond()` holds, checking every 5 ms; rejects after `timeoutMs`. */
async function until(cond: () => boolean, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** `calls` holders() lookups of ids[i % ids.length] on `dir`; the calls per second and the records found. */
function timeHolders(dir: NatsDirectory, ids: string[], calls: number): { opsPerSec: number; found: number } {
  let found = 0;
  const start = performance.now();
  for (let i = 0; i < calls; i++) found += dir.holders(ids[i % ids.length]!).length;
  const seconds = (performance.now() - start) / 1000;
  return { opsPerSec: Math.round(calls / seconds), found };
}

/**
 * The directory measure, in this process: directory A registers `records` tunnel records on the
 * network's nats-server; the time until the store acknowledged them and until directory B's cache
 * holds them; a third directory's cold start with them in the store; then `calls` holders() calls
 * on B for held tunnels (one record each) and for tunnels nobody holds. The relays of the network
 * share the buckets and see the records too; they are measured before this.
 */
export async function measureDirectory(net: NetworkSetup, records: number, calls: number): Promise<DirectoryResult> {
  const self = (id: string): RelayRecord => ({ id, region: 'bench', advertise: `wss://${id}.bench.test:443`, mesh: `${id}.bench.test:7443`, epoch: randomUUID() });
  const open = async (record: RelayRecord): Promise<NatsDirectory> => {
    const dir = new NatsDirectory({ servers: [net.nats.url] });
    await dir.start(record);
    return dir;
  };
  const [ra, rb, rc] = [self('bench-dir-a'), self('bench-dir-b'), self('bench-dir-c')];
  const opened: NatsDirectory[] = [];
  try {
    const a = await open(ra);
    opened.push(a);
    const b = await open(rb);
    opened.push(b);
    await until(() => b.relays().some((r) => r.id === ra.id), 'directory B sees relay A', DIRECTORY_TIMEOUT_MS);
    // B's cache also holds the network's own tunnel; the counts below are above it.
    const before = b.stats().tunnels;
    const ids = Array.from({ length: records }, (_, i) => `bench-${i}`);
    const start = performance.now();
    for (const tunnelId of ids) a.register({ tunnelId, relayId: ra.id, relayEpoch: ra.epoch, sessionEpoch: randomUUID(), ports: [{ port: 3000, private: false }], since: Date.now() });
    await a.flushed(DIRECTORY_TIMEOUT_MS);
    const registerSeconds = (performance.now() - start) / 1000;
    await until(() => b.stats().tunnels >= before + records, `directory B holds ${records} records`, DIRECTORY_TIMEOUT_MS);
    const propagateSeconds = (performance.now() - start) / 1000;
    const coldStart = performance.now();
    const c = await open(rc);
    opened.push(c);
    const coldLoadSeconds = (performance.now() - coldStart) / 1000;
    if (c.stats().tunnels < before + records) throw new Error(`a cold directory holds ${c.stats().tunnels} records after start(), not ${before + records}`);
    const misses = Array.from({ length: 1_000 }, (_, i) => `nobody-${i}`);
    // A warm-up pass over every id, then the timed calls.
    timeHolders(b, ids, records);
    const hit = timeHolders(b, ids, calls);
    if (hit.found !== calls) throw new Error(`holders() found ${hit.found} records in ${calls} calls of held tunnels`);
    const miss = timeHolders(b, misses, calls);
    const result = { records, registerSeconds: round(registerSeconds, 3), propagateSeconds: round(propagateSeconds, 3), coldLoadSeconds: round(coldLoadSeconds, 3), calls, hitOpsPerSec: hit.opsPerSec, missOpsPerSec: miss.opsPerSec };
    log(`directory: ${records} records put in ${result.registerSeconds} s, in the other cache after ${result.propagateSeconds} s, loaded cold in ${result.coldLoadSeconds} s; holders() ${(hit.opsPerSec / 1e6).toFixed(1)} M/s held, ${(miss.opsPerSec / 1e6).toFixed(1)} M/s not held`);
    return result;
  } finally {
    await Promise.all(opened.map((d) => d.close()));
  }
}
