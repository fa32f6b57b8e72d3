/**
 * A relay's membership of a relay network: its directory (presence), its mesh (links and
 * forwarded opens) and the metrics of both. The relay's router asks the mesh for tunnels it does
 * not hold; the registry's tunnels are published in the directory as agents come and go.
 *
 * When the directory is unreachable the relay keeps serving the tunnels it holds, routes the
 * others from its last known view, says so in /readyz and `warren_directory_connected`, and
 * publishes every tunnel it holds again once the directory is back (the directory does that).
 */
import { randomBytes } from 'node:crypto';
import { Counter, Gauge, type Registry } from 'prom-client';
import { ERRORS } from '../../protocol/index.js';
import type { Logger } from '../../log/logger.js';
import type { HostPort } from '../../cli/parse.js';
import type { RemoteTunnelView } from '../admin.js';
import type { TunnelEntry, TunnelRegistry } from '../registry.js';
import type { Router } from '../router.js';
import type { Directory, RelayRecord, TunnelRecord } from './directory.js';
import { Mesh, type MeshIdentity } from './mesh.js';

const CODES = new Set(Object.keys(ERRORS));

/** How a relay joins a network of relays. */
export interface NetworkOptions {
  /** Presence: which relay holds which tunnel (NatsDirectory). */
  directory: Directory;
  /** Unique in the network. */
  id: string;
  region: string;
  /** wss://HOST:PORT: how agents and peers reach this relay; its host is also the mesh host peers dial. */
  advertise: string;
  /** The mesh listener (mutual TLS, ALPN warren.v1.mesh). */
  meshListen: HostPort;
  /** The mesh certificate (client and server use), its key and the mesh CA. */
  mesh: MeshIdentity;
}

/** What the network part needs of the relay. */
export interface NetworkDeps {
  registry: TunnelRegistry;
  /** Opens streams to this relay's own agents only. */
  local: Router;
  log: Logger;
  metrics: Registry;
  /** Told when a route key stops being valid (keep-alive pools let go). */
  onRouteGone(key: object): void;
}

/** The directory, the mesh and their metrics for one relay. */
export class RelayNetwork {
  readonly mesh: Mesh;
  private readonly options: NetworkOptions;
  private readonly deps: NetworkDeps;
  private readonly self: RelayRecord;
  private readonly forwarded: Counter<'direction'>;
  private readonly refused: Counter<'code'>;

  constructor(options: NetworkOptions, deps: NetworkDeps) {
    this.options = options;
    this.deps = deps;
    const advertise = new URL(options.advertise);
    this.self = { id: options.id, region: options.region, advertise: options.advertise, mesh: `${advertise.hostname}:${options.meshListen.port}`, epoch: randomBytes(8).toString('hex') };
    const registers = [deps.metrics];
    this.forwarded = new Counter({ name: 'warren_mesh_streams_total', help: 'Streams forwarded over mesh links: out (this relay is the edge) or in (this relay holds the tunnel).', labelNames: ['direction'], registers });
    this.refused = new Counter({ name: 'warren_mesh_refused_total', help: 'Forwarded opens this relay refused, by error code.', labelNames: ['code'], registers });
    const directory = options.directory;
    // Read at scrape time: nothing on the data path.
    const gauge = (name: string, help: string, read: () => number): void => {
      new Gauge({ name, help, registers, collect(this: Gauge) { this.set(read()); } });
    };
    gauge('warren_mesh_links', 'Outgoing mesh links up.', () => this.mesh.linkCount);
    gauge('warren_directory_connected', '1 while the directory (NATS) is reachable, 0 while the relay routes from its last known view.', () => (directory.state === 'connected' ? 1 : 0));
    gauge('warren_directory_relays', 'Other live relays the directory knows.', () => directory.stats().relays);
    gauge('warren_directory_tunnels', 'Tunnel records in the directory cache (every relay\'s).', () => directory.stats().tunnels);
    new Counter({ name: 'warren_directory_writes_total', help: 'Directory writes by this relay, by operation (put, delete) and failures (error).', labelNames: ['op'], registers, collect(this: Counter<'op'>) {
      const s = directory.stats();
      this.reset();
      this.inc({ op: 'put' }, s.puts);
      this.inc({ op: 'delete' }, s.deletes);
      this.inc({ op: 'error' }, s.errors);
    } });
    this.mesh = new Mesh({
      self: this.self,
      listen: options.meshListen,
      identity: options.mesh,
      directory,
      registry: deps.registry,
      local: deps.local,
      log: deps.log,
      onRouteGone: (key) => deps.onRouteGone(key),
      onEvent: (event, code) => {
        if (event === 'forwarded_out') this.forwarded.inc({ direction: 'out' });
        else if (event === 'forwarded_in' && code === undefined) this.forwarded.inc({ direction: 'in' });
        else if (event === 'forwarded_in') this.refused.inc({ code: code !== undefined && CODES.has(code) ? (code) : 'other' });
      },
    });
    // An agent registers while its HELLO is being answered, before its session has an id: the
    // record (which names the session) is published once the session is open.
    deps.registry.onRegistered = (entry) => {
      if (entry.session.id !== '') directory.register(this.recordOf(entry));
      else entry.session.once('open', () => deps.registry.get(entry.tunnelId) === entry && directory.register(this.recordOf(entry)));
    };
    deps.registry.onRemoved = (entry) => directory.unregister(entry.tunnelId, entry.session.id);
  }

  /** The directory record of a tunnel this relay holds. */
  private recordOf(entry: TunnelEntry): TunnelRecord {
    return {
      tunnelId: entry.tunnelId,
      relayId: this.self.id,
      relayEpoch: this.self.epoch,
      sessionEpoch: entry.session.id,
      ports: entry.ports.map((p) => ({ port: p.port, private: p.private, ...(p.tcpEndpoint !== undefined ? { tcpEndpoint: p.tcpEndpoint } : {}) })),
      since: entry.connectedAtMs,
    };
  }

  /** Binds the mesh listener, joins the directory and starts linking to peers. */
  async start(): Promise<void> {
    const bound = await this.mesh.listen();
    if (this.options.meshListen.port === 0) this.self.mesh = `${new URL(this.options.advertise).hostname}:${bound.port}`;
    await this.options.directory.start(this.self);
    this.mesh.start();
    this.deps.log.info({ event: 'network_joined', relayId: this.self.id, region: this.self.region, mesh: this.self.mesh, peers: this.options.directory.relays().length, directory: this.options.directory.state }, 'joined the relay network');
  }

  /** Why the relay serves from a degraded view, or undefined. */
  degraded(): string | undefined {
    return this.options.directory.state === 'connected' ? undefined : 'the directory is unreachable: held tunnels are served, others are routed from the last known view';
  }

  /** The record of a tunnel held by a reachable peer. */
  holder(tunnelId: string): TunnelRecord | undefined {
    return this.mesh.holder(tunnelId);
  }

  /** A tunnel a reachable peer holds, for the admin API. */
  elsewhere(tunnelId: string): RemoteTunnelView | undefined {
    const held = this.mesh.holder(tunnelId);
    if (!held) return undefined;
    const region = this.options.directory.relays().find((r) => r.id === held.relayId)?.region ?? '';
    return { tunnel: held.tunnelId, relay: held.relayId, region, ports: held.ports.map((p) => ({ ...p })), connectedAt: new Date(held.since).toISOString(), sessionId: held.sessionEpoch };
  }

  /** Leaves the network: the mesh closes, this relay's records are removed. */
  async close(): Promise<void> {
    await this.mesh.close();
    await this.options.directory.close();
  }
}
