/**
 * The mesh: the relays of one network linked pairwise, so that any relay can forward a stream one
 * hop to the relay that holds the tunnel. A link is a Warren session (the same mux as agents use)
 * over mutual TLS on a listener of its own (`--mesh-listen`), never the public one: a TLS server
 * asks every client for a certificate or none, and browsers must not be asked. ALPN is
 * `warren.v1.mesh`; the public listener does not offer it, so an agent or client that asks for it
 * there is refused in the TLS handshake.
 *
 * Links: each relay dials every live relay the directory knows (an outgoing link per peer, for the
 * streams it forwards) and accepts links from them (for the streams it holds). Trust comes from
 * the mesh CA alone (`--mesh-ca`): a peer without a certificate from it gets no TLS session, so
 * nothing it says is heard. The directory is not trusted for authorization: at worst a poisoned
 * entry makes a forwarded open fail.
 *
 * A forwarded open (PROTOCOL.md, "Mesh"): OPEN on an outgoing link with the stream's port and the
 * metadata `src` (preview, client or tcp), `fwd` = "1", `tunnel`, `epoch` (the agent session id
 * at the holder, from the directory) and `ip` (the client's address, when one client owns the
 * stream). The edge has already checked the token, viewer session, allowlist and Host; the holder
 * checks only that it holds the tunnel with that agent session and exposes the port, and opens the
 * stream to its own agent, never to another relay (one hop, no loops). A mismatch is refused with
 * ERR_WARREN_TUNNEL_MOVED.
 *
 * When a link breaks, the peer is marked down in the directory at once (DERP's
 * PeerGoneReasonMeshConnBroke): its tunnels are not routed to until its next heartbeat, when the
 * link is dialed again.
 */
import { once } from 'node:events';
import { isIP } from 'node:net';
import { connect as tlsConnect, createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import { acceptSession, connectSession, socketTransport, WarrenError, errorCode, type MuxStream, type Session, type SessionOptions } from '../../protocol/index.js';
import { TUNNEL_ID_PATTERN } from '../../certs/claims.js';
import { joinStreams } from '../../transport/join.js';
import type { Logger } from '../../log/logger.js';
import { parseHostPort, type HostPort } from '../../cli/parse.js';
import type { StreamKind } from '../metrics.js';
import type { TunnelRegistry } from '../registry.js';
import { listenOn } from '../listen.js';
import type { Route, RouteSource, Router } from '../router.js';
import type { Directory, RelayRecord, TunnelRecord } from './directory.js';

/** The ALPN id of mesh links. */
export const ALPN_MESH = 'warren.v1.mesh';

/** How long a mesh TLS handshake and HELLO may take. */
const MESH_HANDSHAKE_MS = 10_000;

/** Session settings of mesh links: one link carries the streams of many clients and tunnels. */
const MESH_SESSION: SessionOptions = { maxStreams: 100_000, maxPendingOpens: 10_000, maxBufferedBytes: 256 * 1024 * 1024 };

const KINDS: ReadonlySet<string> = new Set<StreamKind>(['preview', 'client', 'tcp']);

/** The mesh identity: a certificate for client and server use, its key, and the mesh CA (PEM). */
export interface MeshIdentity {
  cert: string;
  key: string;
  ca: string;
}

/** What the mesh needs. */
export interface MeshOptions {
  /** This relay (its `mesh` address is filled in once the listener is bound when its port was 0). */
  self: RelayRecord;
  listen: HostPort;
  identity: MeshIdentity;
  directory: Directory;
  /** The tunnels held here, for forwarded opens. */
  registry: TunnelRegistry;
  /** Opens streams to this relay's own agents only: a forwarded open never goes further. */
  local: Router;
  log: Logger;
  /** Told when a route key stops being valid (its peer's link broke, or the tunnel moved): keep-alive pools let go. */
  onRouteGone(key: object): void;
  /** Counts: a stream forwarded out or in, or refused; a link up or down. */
  onEvent?(event: 'forwarded_out' | 'forwarded_in' | 'link_up' | 'link_down', code?: string): void;
  session?: SessionOptions;
}

/** One outgoing link, to one peer. */
interface Link {
  record: RelayRecord;
  session: Session | null;
  dialing: boolean;
  /** Route keys handed out for this peer, by `${tunnelId}\n${sessionEpoch}`. */
  keys: Map<string, object>;
}

/** The mesh of one relay: its listener, its links, and the route source for tunnels held elsewhere. */
export class Mesh implements RouteSource {
  private readonly options: MeshOptions;
  private readonly server: TlsServer;
  // Owned by the event loop.
  private readonly links = new Map<string, Link>();
  private readonly incoming = new Set<Session>();
  /**
   * Holders that refused a forwarded open with ERR_WARREN_TUNNEL_MOVED, by
   * `${relayId}\n${tunnelId}\n${sessionEpoch}`: skipped by find() until the directory says
   * something new about that tunnel at that relay.
   */
  private readonly moved = new Set<string>();
  private closed = false;

  constructor(options: MeshOptions) {
    this.options = options;
    const { identity } = options;
    this.server = createTlsServer({
      cert: identity.cert,
      key: identity.key,
      ca: identity.ca,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.3',
      handshakeTimeout: MESH_HANDSHAKE_MS,
      ALPNCallback: ({ protocols }) => (protocols.includes(ALPN_MESH) ? ALPN_MESH : undefined),
    });
    this.server.on('secureConnection', (socket: TLSSocket) => this.accept(socket));
    this.server.on('tlsClientError', (err: Error, socket: TLSSocket) => {
      this.options.log.debug({ event: 'mesh_refused', code: 'ERR_WARREN_TLS', reason: err.message, remote: socket.remoteAddress }, 'mesh connection refused in the TLS handshake');
      socket.destroy();
    });
  }

  /** Binds the mesh listener; returns the bound address. Throws ERR_WARREN_LISTEN. */
  listen(): Promise<HostPort> {
    return listenOn(this.server, this.options.listen, 'mesh');
  }

  /** Starts linking to the peers the directory knows, now and as they come and go. */
  start(): void {
    const { directory } = this.options;
    directory.on('relay-up', (record: RelayRecord) => this.link(record));
    directory.on('relay-down', (relayId: string) => this.unlink(relayId, 'the directory lost its heartbeat'));
    directory.on('tunnel', (change: TunnelRecord | { tunnelId: string; relayId: string; gone: true }) => this.tunnelChanged(change));
    for (const record of directory.relays()) this.link(record);
  }

  /** Live peers with an open outgoing link. */
  get linkCount(): number {
    let n = 0;
    for (const link of this.links.values()) if (link.session && !link.session.closed) n++;
    return n;
  }

  /** The route to a tunnel held by a peer (see RouteSource). */
  find(tunnelId: string, port: number): Route {
    const reached = this.reachable(tunnelId, true);
    if (!reached) throw new WarrenError('ERR_WARREN_TUNNEL_OFFLINE', `tunnel ${tunnelId} is not connected to any relay of the network`);
    const { holder, link, session } = reached;
    if (!holder.ports.some((p) => p.port === port)) throw new WarrenError('ERR_WARREN_PORT_NOT_EXPOSED', `tunnel ${tunnelId} does not expose port ${port}`);
    return this.routeThrough(link, session, holder);
  }

  /** The record of a tunnel held by a peer that this relay can reach, if any. */
  holder(tunnelId: string): TunnelRecord | undefined {
    return this.reachable(tunnelId, false)?.holder;
  }

  /**
   * The newest holder of the tunnel whose outgoing link is open; for opening streams (`opening`),
   * also one whose link is not going away and that has not refused the tunnel as moved.
   */
  private reachable(tunnelId: string, opening: boolean): { holder: TunnelRecord; link: Link; session: Session } | undefined {
    for (const holder of this.options.directory.holders(tunnelId)) {
      const link = this.links.get(holder.relayId);
      const session = link?.session;
      if (!link || !session || session.closed) continue;
      if (opening && (session.goingAway || session.goAwayReceived)) continue;
      if (opening && this.moved.size > 0 && this.moved.has(`${holder.relayId}\n${holder.tunnelId}\n${holder.sessionEpoch}`)) continue;
      return { holder, link, session };
    }
    return undefined;
  }

  /** Closes the listener and every link. */
  async close(): Promise<void> {
    this.closed = true;
    for (const link of this.links.values()) link.session?.destroy();
    for (const session of this.incoming) session.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private routeThrough(link: Link, session: Session, holder: TunnelRecord): Route {
    const name = `${holder.tunnelId}\n${holder.sessionEpoch}`;
    let key = link.keys.get(name);
    if (key === undefined) {
      key = {};
      link.keys.set(name, key);
    }
    const onEvent = (event: 'forwarded_out'): void => this.options.onEvent?.(event);
    const onMoved = (err: unknown): void => {
      if (errorCode(err) !== 'ERR_WARREN_TUNNEL_MOVED') return;
      // The directory was behind: this holder no longer has the tunnel (the edge retries where it can).
      this.moved.add(`${holder.relayId}\n${holder.tunnelId}\n${holder.sessionEpoch}`);
      if (link.keys.get(name) === key) link.keys.delete(name);
      this.options.onRouteGone(key);
    };
    return {
      key,
      open(port, metadata) {
        const stream = session.open(port, { ...metadata, fwd: '1', tunnel: holder.tunnelId, epoch: holder.sessionEpoch });
        stream.once('error', onMoved);
        onEvent('forwarded_out');
        return stream;
      },
    };
  }

  /** Dials a peer unless a link to it is up or being dialed. */
  private link(record: RelayRecord): void {
    if (this.closed || record.id === this.options.self.id) return;
    let link = this.links.get(record.id);
    if (link && link.record.epoch !== record.epoch) {
      // The peer restarted: its old link (if any survives) and routes are of a process that is gone.
      this.unlink(record.id, 'the peer restarted');
      link = undefined;
    }
    if (!link) {
      link = { record, session: null, dialing: false, keys: new Map() };
      this.links.set(record.id, link);
    }
    if (link.dialing || (link.session && !link.session.closed)) return;
    link.dialing = true;
    this.options.log.debug({ event: 'mesh_dialing', peer: record.id, mesh: record.mesh }, 'dialing a mesh peer');
    const current = link;
    this.dial(record).then(
      (session) => {
        current.dialing = false;
        if (this.closed || this.links.get(record.id) !== current) {
          session.destroy();
          return;
        }
        current.session = session;
        this.options.onEvent?.('link_up');
        this.options.log.info({ event: 'mesh_link_up', peer: record.id, region: record.region }, 'mesh link up');
        session.on('stream', refuseStream);
        session.once('close', (err?: WarrenError) => {
          if (current.session !== session) return;
          current.session = null;
          this.options.onEvent?.('link_down', err?.code);
          this.linkBroke(record.id, err?.message ?? 'closed');
        });
      },
      (err: unknown) => {
        current.dialing = false;
        this.options.log.warn({ event: 'mesh_dial_failed', peer: record.id, code: errorCode(err), reason: (err as Error).message }, 'mesh link failed; retried at the peer\'s next heartbeat');
        if (this.links.get(record.id) === current) this.linkBroke(record.id, (err as Error).message);
      },
    );
  }

  /** A link broke or could not be made: the peer's tunnels are not routed to until its next heartbeat. */
  private linkBroke(relayId: string, reason: string): void {
    this.options.log.info({ event: 'mesh_link_down', peer: relayId, reason }, 'mesh link down; the peer\'s tunnels are not routed to until it is back');
    this.releaseKeys(this.links.get(relayId));
    this.options.directory.markDown(relayId);
  }

  private unlink(relayId: string, reason: string): void {
    const link = this.links.get(relayId);
    if (!link) return;
    this.links.delete(relayId);
    this.releaseKeys(link);
    if (link.session && !link.session.closed) {
      this.options.log.info({ event: 'mesh_link_down', peer: relayId, reason }, 'mesh link closed');
      link.session.destroy();
    }
  }

  private releaseKeys(link: Link | undefined): void {
    if (!link) return;
    const prefix = `${link.record.id}\n`;
    for (const k of this.moved) if (k.startsWith(prefix)) this.moved.delete(k);
    for (const key of link.keys.values()) this.options.onRouteGone(key);
    link.keys.clear();
  }

  /** A tunnel record changed: routes to its old agent session let go. */
  private tunnelChanged(change: TunnelRecord | { tunnelId: string; relayId: string; gone: true }): void {
    if (this.moved.size > 0) {
      const prefix = `${change.relayId}\n${change.tunnelId}\n`;
      for (const k of this.moved) if (k.startsWith(prefix)) this.moved.delete(k);
    }
    const link = this.links.get(change.relayId);
    if (!link) return;
    for (const [name, key] of link.keys) {
      if (!name.startsWith(`${change.tunnelId}\n`)) continue;
      if ('gone' in change || name !== `${change.tunnelId}\n${change.sessionEpoch}`) {
        link.keys.delete(name);
        this.options.onRouteGone(key);
      }
    }
  }

  /** Opens an outgoing link: mutual TLS against the mesh CA, then a session whose HELLO names both relays. */
  private async dial(record: RelayRecord): Promise<Session> {
    const at = parseHostPort(record.mesh, 'mesh');
    const { identity, self } = this.options;
    const socket = tlsConnect({
      host: at.host,
      port: at.port,
      cert: identity.cert,
      key: identity.key,
      ca: identity.ca,
      minVersion: 'TLSv1.3',
      ALPNProtocols: [ALPN_MESH],
      ...(isIP(at.host) === 0 ? { servername: at.host } : {}),
    });
    socket.setNoDelay(true);
    const timer = setTimeout(() => socket.destroy(new WarrenError('ERR_WARREN_HANDSHAKE_TIMEOUT', `no mesh handshake with ${record.id} within ${MESH_HANDSHAKE_MS} ms`)), MESH_HANDSHAKE_MS);
    try {
      await Promise.race([once(socket, 'secureConnect'), once(socket, 'error').then(([err]) => Promise.reject(err as Error))]);
      if (socket.alpnProtocol !== ALPN_MESH) throw new WarrenError('ERR_WARREN_TLS', `${record.mesh} did not select ${ALPN_MESH}`);
      const session = await connectSession(socketTransport(socket), { ...MESH_SESSION, ...this.options.session, token: '', software: 'warren-relay', app: { relay: self.id, epoch: self.epoch } });
      const answered = session.serverHello?.app ?? {};
      if (answered.relay !== record.id || answered.epoch !== record.epoch) {
        session.destroy();
        throw new WarrenError('ERR_WARREN_HANDSHAKE', `${record.mesh} answered as relay ${String(answered.relay)}, not ${record.id} of the directory`);
      }
      return session;
    } catch (err) {
      socket.destroy();
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  /** An incoming link: the TLS layer has verified the peer's certificate against the mesh CA. */
  private accept(socket: TLSSocket): void {
    if (socket.alpnProtocol !== ALPN_MESH || !socket.authorized) {
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    const { self, log } = this.options;
    let peer = '';
    acceptSession(socketTransport(socket), {
      ...MESH_SESSION,
      ...this.options.session,
      authenticate: (hello) => {
        const named = hello.app.relay;
        if (typeof named !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(named)) throw new WarrenError('ERR_WARREN_HANDSHAKE', 'a mesh HELLO names its relay id');
        peer = named;
        return { relay: self.id, epoch: self.epoch };
      },
    }).then(
      (session) => {
        this.incoming.add(session);
        session.once('close', () => this.incoming.delete(session));
        session.on('stream', (stream: MuxStream) => this.forwarded(stream, peer));
        log.info({ event: 'mesh_peer_connected', peer }, 'mesh peer connected');
      },
      (err: unknown) => log.info({ event: 'mesh_refused', code: errorCode(err), reason: (err as Error).message }, 'mesh peer refused'),
    );
  }

  /** A forwarded open from a peer: checked against what this relay holds, then joined to the agent. */
  private forwarded(stream: MuxStream, peer: string): void {
    stream.on('error', ignoreError);
    const m = stream.metadata;
    const refuse = (code: Parameters<MuxStream['reset']>[0], message: string): void => {
      this.options.onEvent?.('forwarded_in', code);
      this.options.log.debug({ event: 'mesh_open_refused', peer, tunnelId: m.tunnel, port: stream.port, code }, 'forwarded open refused');
      stream.reset(code, message);
    };
    if (m.fwd !== '1' || typeof m.tunnel !== 'string' || !TUNNEL_ID_PATTERN.test(m.tunnel) || !KINDS.has(m.src ?? '') || typeof m.epoch !== 'string') {
      return refuse('ERR_WARREN_BAD_REQUEST', 'a forwarded open names its kind, tunnel and agent session');
    }
    const entry = this.options.registry.get(m.tunnel);
    if (!entry || entry.session.id !== m.epoch) return refuse('ERR_WARREN_TUNNEL_MOVED', `tunnel ${m.tunnel} is not held here with that agent session`);
    let upstream: MuxStream;
    try {
      upstream = this.options.local.open({ tunnelId: m.tunnel, port: stream.port, kind: m.src as StreamKind, ...(m.ip !== undefined ? { clientAddress: m.ip } : {}) });
    } catch (err) {
      return refuse(errorCode(err), (err as Error).message);
    }
    this.options.onEvent?.('forwarded_in');
    stream.accept();
    joinStreams(stream, upstream);
  }
}

/** The edge never accepts streams on its outgoing links: only the dialer forwards. */
function refuseStream(stream: MuxStream): void {
  stream.on('error', ignoreError);
  stream.reset('ERR_WARREN_FORBIDDEN', 'mesh links carry forwarded opens from the dialer only');
}

function ignoreError(): void {}
