/**
 * Real nats-server processes for tests: one JetStream server, or a three-node cluster, each on
 * free loopback ports with its own store folder, started and waited for by the "Server is ready"
 * log line, and stopped (SIGTERM or SIGKILL) and restarted on the same ports and store (or on an
 * empty store, as a server whose disk was lost).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { freePort } from './peers.js';
import { startProcess, type Proc } from './process.js';

/** The nats-server binary: `nats-server` on PATH, else Debian's /usr/sbin/nats-server (not on PATH for non-root users). */
export const NATS_SERVER_BIN = ((): string => {
  try {
    execFileSync('sh', ['-c', 'command -v nats-server'], { stdio: 'ignore' });
    return 'nats-server';
  } catch {
    return '/usr/sbin/nats-server';
  }
})();

/** How long a server may take to print "Server is ready". */
const NATS_READY_TIMEOUT_MS = 15_000;

/** Every server process of this test process that has not exited: killed when the test process exits, whatever its teardowns did. */
const RUNNING = new Set<Proc>();
process.once('exit', () => {
  for (const p of RUNNING) p.child.kill('SIGKILL');
});

/** Options of one server. */
export interface NatsServerOptions {
  name?: string;
  /** Client port; default a free one. */
  port?: number;
  /** Cluster listener port and the routes to the other nodes (host:port). */
  clusterPort?: number;
  routes?: string[];
  user?: string;
  password?: string;
  /** Start without -js (a server without JetStream). */
  noJetStream?: boolean;
}

/** One nats-server process that can be stopped and started again on the same port. */
export class NatsServer {
  readonly name: string;
  readonly port: number;
  /** Store folder (-sd); `wipe()` empties it. */
  readonly storeDir: string;
  /** The current process, undefined while stopped. */
  proc: Proc | undefined;

  constructor(private readonly options: NatsServerOptions & { port: number }) {
    this.name = options.name ?? `n${options.port}`;
    this.port = options.port;
    this.storeDir = mkdtempSync(join(tmpdir(), 'warren-nats-'));
  }

  /** `nats://127.0.0.1:PORT`. */
  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  /** Starts the process and resolves once it logs "Server is ready". */
  async start(): Promise<void> {
    if (this.proc) throw new Error(`nats-server ${this.name} is already running`);
    const o = this.options;
    const args = ['-a', '127.0.0.1', '-p', String(this.port), '-sd', this.storeDir, '--name', this.name];
    if (!o.noJetStream) args.unshift('-js');
    if (o.clusterPort !== undefined) args.push('--cluster_name', 'warren-test', '--cluster', `nats://127.0.0.1:${o.clusterPort}`);
    if (o.routes?.length) args.push('--routes', o.routes.map((r) => `nats://${r}`).join(','));
    if (o.user !== undefined) args.push('--user', o.user, '--pass', o.password ?? '');
    const proc = startProcess(NATS_SERVER_BIN, args);
    this.proc = proc;
    RUNNING.add(proc);
    void proc.exited.then(() => {
      RUNNING.delete(proc);
      if (this.proc === proc) this.proc = undefined;
    });
    await proc.waitFor(/Server is ready/, NATS_READY_TIMEOUT_MS);
  }

  /** Stops the process (SIGTERM: a clean shutdown; SIGKILL: a crash) and waits for its exit. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const proc = this.proc;
    if (!proc) return;
    await proc.stop(signal);
    this.proc = undefined;
  }

  /** Empties the store folder (call while stopped): the next start has no streams. */
  wipe(): void {
    if (this.proc) throw new Error('wipe() needs a stopped server');
    rmSync(this.storeDir, { recursive: true, force: true });
  }

  /** Stops the process and removes its store. */
  async destroy(): Promise<void> {
    await this.stop('SIGKILL');
    rmSync(this.storeDir, { recursive: true, force: true });
  }
}

/** Starts one JetStream server on a free port. */
export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServer> {
  const server = new NatsServer({ ...options, port: options.port ?? (await freePort()) });
  await server.start();
  return server;
}

/** A three-node JetStream cluster on loopback. */
export interface NatsCluster {
  nodes: NatsServer[];
  /** Every node's client URL. */
  urls: string[];
  /** The node that last became JetStream meta leader, from the nodes' logs. */
  metaLeader(): NatsServer | undefined;
  destroy(): Promise<void>;
}

/**
 * Starts three clustered JetStream servers and resolves once each logs "Server is ready" and a
 * stream with replicas 3 can be created.
 */
export async function startNatsCluster(): Promise<NatsCluster> {
  const ports = [await freePort(), await freePort(), await freePort()];
  const clusterPorts = [await freePort(), await freePort(), await freePort()];
  const nodes = ports.map(
    (port, i) =>
      new NatsServer({
        name: `c${i + 1}`,
        port,
        clusterPort: clusterPorts[i]!,
        routes: clusterPorts.filter((_, j) => j !== i).map((p) => `127.0.0.1:${p}`),
      }),
  );
  const destroy = async (): Promise<void> => {
    await Promise.all(nodes.map((n) => n.destroy()));
  };
  try {
    await Promise.all(nodes.map((n) => n.start()));
    await untilReplicasThree(nodes);
  } catch (err) {
    await destroy();
    throw err;
  }
  return {
    nodes,
    urls: nodes.map((n) => n.url),
    metaLeader() {
      let leader: NatsServer | undefined;
      let at = '';
      for (const n of nodes) {
        for (const line of n.proc?.lines ?? []) {
          const m = /^\[\d+\] (\S+ \S+) .*(Self is new JetStream cluster metadata leader|JetStream cluster new metadata leader: (\S+)\/)/.exec(line);
          if (!m || m[1]! < at) continue;
          at = m[1]!;
          leader = m[3] !== undefined ? nodes.find((x) => x.name === m[3]) : n;
        }
      }
      return leader;
    },
    destroy,
  };
}

/**
 * Resolves once a stream with replicas 3 can be created: until the meta leader knows all three
 * peers that fails ("no suitable peers for placement") or times out.
 */
async function untilReplicasThree(nodes: NatsServer[]): Promise<void> {
  const nc = await connect({ servers: nodes.map((n) => n.url) });
  try {
    const deadline = Date.now() + NATS_READY_TIMEOUT_MS;
    for (;;) {
      try {
        const jsm = await jetstreamManager(nc, { checkAPI: false, timeout: 1_000 });
        await jsm.streams.add({ name: 'warren_cluster_probe', subjects: ['warren.cluster.probe'], num_replicas: 3 });
        await jsm.streams.delete('warren_cluster_probe');
        return;
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`the cluster accepts no replicas-3 stream: ${(err as Error).message}`, { cause: err });
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  } finally {
    await nc.close();
  }
}
