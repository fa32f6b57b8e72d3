/**
 * Raw TCP endpoints: for a port an agent marks `--tcp`, the relay listens on a public port from
 * its configured range (`--tcp-ports 20000-20999`), and each accepted connection becomes a
 * stream to that port in the sandbox: for databases, SSH and clients that cannot run Warren.
 *
 * Off unless the relay has a range and the agent asks. An endpoint may carry a CIDR allowlist;
 * other sources are closed before any stream is opened. Endpoints are sticky: an agent that
 * reconnects within the linger time gets the same public port back.
 */
import { once } from 'node:events';
import { BlockList, createServer, isIP, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WarrenError } from '../protocol/index.js';
import { silentLogger, type Logger } from '../log/logger.js';
import { joinSocket } from '../transport/join.js';
import { exposedPort, type TunnelRegistry } from './registry.js';

/** Settings of the raw TCP endpoints. */
export interface TcpEndpointOptions {
  range: { first: number; last: number };
  /** Address the endpoints listen on (the relay's --listen host). */
  bindHost: string;
  /** Host name printed in endpoints (`host:port`). */
  publicHost: string;
  registry: TunnelRegistry;
  logger?: Logger;
  /** How long an endpoint outlives its agent's session, waiting for a reconnect; default 60 s. */
  lingerMs?: number;
  /** Opens the stream for a connection from `ip` (throws the routing error): the relay's router. */
  openStream: (tunnelId: string, port: number, ip: string) => Duplex;
  /** Told the fate of every connection, for metrics. */
  onConnection?: (result: 'accepted' | 'denied' | 'offline') => void;
}

interface Endpoint {
  key: string;
  tunnelId: string;
  port: number;
  publicPort: number;
  server: Server;
  allow: BlockList | null;
  lingerTimer: NodeJS.Timeout | null;
  connections: Set<Socket>;
}


/** Builds a BlockList from CIDRs (already validated by the agent; checked again here). */
function allowList(cidrs: string[]): BlockList | null {
  if (cidrs.length === 0) return null;
  const list = new BlockList();
  for (const cidr of cidrs) {
    const m = /^([^/]+)\/(\d{1,3})$/.exec(cidr);
    const family = m ? isIP(m[1]!) : 0;
    if (!m || family === 0) throw new WarrenError('ERR_WARREN_HANDSHAKE', `"${cidr}" is not a CIDR block`);
    list.addSubnet(m[1]!, Number(m[2]), family === 4 ? 'ipv4' : 'ipv6');
  }
  return list;
}

/** Allocates, serves and frees raw TCP endpoints. */
export class TcpEndpoints {
  private readonly options: TcpEndpointOptions;
  private readonly log: Logger;
  private readonly byKey = new Map<string, Endpoint>();
  private readonly usedPorts = new Set<number>();
  private nextPort: number;
  private accepting = true;

  constructor(options: TcpEndpointOptions) {
    this.options = options;
    this.log = options.logger ?? silentLogger();
    this.nextPort = options.range.first;
  }

  /**
   * Gives `tunnelId`'s ports their endpoints (reusing lingering ones), or throws
   * ERR_WARREN_TCP_PORTS_EXHAUSTED. Endpoints start lingering when `session` closes.
   */
  async allocate(tunnelId: string, sessionClosed: Promise<unknown>, ports: { port: number; allow: string[] }[]): Promise<Map<number, string>> {
    const out = new Map<number, string>();
    const mine: Endpoint[] = [];
    for (const { port, allow } of ports) {
      const key = `${tunnelId}:${port}`;
      let ep = this.byKey.get(key);
      if (ep) {
        if (ep.lingerTimer) clearTimeout(ep.lingerTimer);
        ep.lingerTimer = null;
        ep.allow = allowList(allow);
      } else {
        ep = await this.listen(tunnelId, port, allowList(allow));
        this.byKey.set(key, ep);
      }
      mine.push(ep);
      out.set(port, `${this.options.publicHost}:${ep.publicPort}`);
    }
    void sessionClosed.then(() => {
      for (const ep of mine) this.linger(ep);
    });
    return out;
  }

  /** Endpoints currently allocated, for the admin API. */
  list(): { tunnelId: string; port: number; endpoint: string; connections: number }[] {
    return [...this.byKey.values()].map((e) => ({ tunnelId: e.tunnelId, port: e.port, endpoint: `${this.options.publicHost}:${e.publicPort}`, connections: e.connections.size }));
  }

  private linger(ep: Endpoint): void {
    // A newer session of the same tunnel may have taken the endpoint over already.
    const current = this.options.registry.get(ep.tunnelId);
    if (current && exposedPort(current, ep.port) && !current.session.closed) return;
    if (ep.lingerTimer) return;
    ep.lingerTimer = setTimeout(() => this.free(ep), this.options.lingerMs ?? 60_000);
    ep.lingerTimer.unref();
  }

  private free(ep: Endpoint): void {
    if (this.byKey.get(ep.key) !== ep) return;
    this.byKey.delete(ep.key);
    this.usedPorts.delete(ep.publicPort);
    for (const c of ep.connections) c.destroy();
    ep.server.close();
  }

  private async listen(tunnelId: string, port: number, allow: BlockList | null): Promise<Endpoint> {
    const { first, last } = this.options.range;
    const size = last - first + 1;
    for (let tried = 0; tried < size; tried++) {
      const candidate = this.nextPort;
      this.nextPort = candidate === last ? first : candidate + 1;
      if (this.usedPorts.has(candidate)) continue;
      const ep: Endpoint = { key: `${tunnelId}:${port}`, tunnelId, port, publicPort: candidate, server: createServer({ allowHalfOpen: true, noDelay: true }), allow, lingerTimer: null, connections: new Set() };
      ep.server.on('connection', (socket) => this.onConnection(ep, socket));
      ep.server.listen(candidate, this.options.bindHost);
      try {
        await Promise.race([once(ep.server, 'listening'), once(ep.server, 'error').then(([e]) => Promise.reject(e as Error))]);
      } catch {
        continue; // taken by something else on this host: try the next port
      }
      ep.server.on('error', (err) => this.log.warn({ event: 'tcp_endpoint_error', tunnelId, port, err: err.message }, 'raw TCP endpoint error'));
      this.usedPorts.add(candidate);
      return ep;
    }
    throw new WarrenError('ERR_WARREN_TCP_PORTS_EXHAUSTED', `no free port left in ${first}-${last} for a raw TCP endpoint`);
  }

  private onConnection(ep: Endpoint, socket: Socket): void {
    socket.on('error', () => socket.destroy());
    const remote = socket.remoteAddress ?? '';
    const family = isIP(remote) === 6 ? 'ipv6' : 'ipv4';
    if (!this.accepting) {
      socket.destroy();
      return;
    }
    if (ep.allow && !ep.allow.check(remote, family)) {
      this.options.onConnection?.('denied');
      this.log.info({ event: 'tcp_denied', tunnelId: ep.tunnelId, port: ep.port, remote, code: 'ERR_WARREN_SOURCE_DENIED' }, 'source not in allowlist');
      socket.destroy();
      return;
    }
    let stream: Duplex;
    try {
      stream = this.options.openStream(ep.tunnelId, ep.port, remote);
    } catch {
      this.options.onConnection?.('offline');
      socket.destroy();
      return;
    }
    this.options.onConnection?.('accepted');
    ep.connections.add(socket);
    socket.once('close', () => ep.connections.delete(socket));
    stream.on('error', () => {});
    joinSocket(socket, stream);
  }

  /** Stops accepting new connections (drain); open ones continue. */
  stopListening(): void {
    this.accepting = false;
    for (const ep of this.byKey.values()) ep.server.close();
  }

  /** Closes every endpoint. */
  close(): void {
    for (const ep of [...this.byKey.values()]) {
      if (ep.lingerTimer) clearTimeout(ep.lingerTimer);
      this.free(ep);
    }
  }
}
