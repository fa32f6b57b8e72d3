/**
 * The relay daemon: one TLS listener for agents (`/v1/agent`), clients (`/v1/connect`) and HTTPS
 * previews, an optional plain-HTTP listener for previews only (local dev, or behind a
 * TLS-terminating load balancer), raw TCP endpoints, and an admin listener.
 *
 * Security defaults: the relay will not start without trusted token keys; sessions are
 * authenticated in the HELLO before any tunnel or stream state is created; tokens are never
 * logged.
 *
 * Drain (SIGTERM): stop accepting, GOAWAY every session with a reconnect hint so agents move
 * at once, let open streams finish within the grace period, then close.
 */
import { once } from 'node:events';
import { STATUS_CODES, createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Duplex } from 'node:stream';
import { Registry } from 'prom-client';
import { WebSocketServer } from 'ws';
import {
  acceptSession,
  ALPN_AGENT,
  ALPN_CONNECT,
  ConnectionError,
  socketTransport,
  WarrenError,
  errorCode,
  webSocketTransport,
  type ErrorCode,
  type Transport, WS_MAX_MESSAGE_BYTES, WS_SUBPROTOCOL, type MuxStream, type Session } from '../protocol/index.js';
import { formatHostPort, type HostPort } from '../cli/parse.js';
import { silentLogger, type Logger } from '../log/logger.js';
import { exposedPort, TunnelRegistry } from './registry.js';
import { acceptAgent, type AgentEndpointContext, type AgentWelcome, type TokenPolicy } from './agents.js';
import { acceptClient, serveClientSession } from './clients.js';
import { TcpEndpoints } from './tcp-endpoints.js';
import { PreviewProxy } from './preview.js';
import { parsePreviewHost } from './preview-host.js';
import { renderErrorAnswer } from './error-page.js';
import { flattenHeaders, serializeResponseHead } from './preview-headers.js';
import { onPreviewClientError, PREVIEW_SERVER_DEFAULTS, previewServerOptions } from './preview-server.js';
import { RelayMetrics, type SessionRole, type StreamKind } from './metrics.js';
import { AdminServer, type AdminBackend } from './admin.js';
import { PreviewAccessControl } from './preview-auth.js';
import { ViewerSessions } from './viewer-session.js';
import { JWKS_PATH, ViewerTokenSigner } from './viewer-token.js';
import { emitterListener } from './emitter-listener.js';
import type { DrainOptions, RelayOptions } from './relay-options.js';

export type { DrainOptions, RelayOptions, RelayTimeouts } from './relay-options.js';

/**
 * Connections the kernel may hold for the relay before it accepts them. Node's default (511)
 * overflows when thousands of agents reconnect at once: the kernel drops their handshakes and
 * they wait for SYN retransmits, seconds each, then time out and back off further. The kernel
 * caps this at net.core.somaxconn (docs/OPERATIONS.md).
 */
export const LISTEN_BACKLOG = 8192;

/** The relay endpoints that upgrade to WebSocket. */
const ENDPOINTS = new Map<string, SessionRole>([
  ['/v1/agent', 'agent'],
  ['/v1/connect', 'client'],
]);

/** The same endpoints over the raw TLS transport, selected by ALPN. */
const ALPN_ENDPOINTS = new Map<string, SessionRole>([
  [ALPN_AGENT, 'agent'],
  [ALPN_CONNECT, 'client'],
]);

/** The relay. start() opens the listeners; drain() or close() ends them. */
export class Relay {
  // Static after construction.
  readonly registry = new TunnelRegistry();
  /** Metrics on the injected registry. */
  readonly metrics: RelayMetrics;
  /** Raw TCP endpoints, when a port range is configured. */
  readonly tcp: TcpEndpoints | undefined;
  /** Signs the viewer identity private previews' apps receive; its keys are served at JWKS_PATH. */
  readonly viewerTokens: ViewerTokenSigner;
  private readonly options: RelayOptions;
  private readonly log: Logger;
  /** The logger of per-request access lines: fixed fields, no redaction pass. */
  private readonly accessLog: Logger;
  private readonly policy: TokenPolicy;
  private readonly revoked: Set<string>;
  private readonly preview: PreviewProxy;
  private readonly wss: WebSocketServer;
  private readonly tlsServer: HttpsServer;
  private readonly httpServer: HttpServer | null;
  private readonly admin: AdminServer | null;

  // Owned by the event loop.
  private listening = false;
  private drainPromise: Promise<void> | null = null;
  /** Every authenticated session with what the relay keeps about it. */
  private readonly sessions = new Map<Session, SessionInfo>();
  /** Bytes of sessions that closed since the last scrape. */
  private closedBytes = { in: 0, out: 0 };
  private nextConnId = 1;

  // Listeners every session shares (the session is their `this`): closures made per session would
  // cost an idle relay a few hundred bytes per agent, for as long as the agent stays.
  private readonly onSessionRtt = (ms: number): void => this.metrics.keepaliveRttSeconds.observe(ms / 1000);
  private readonly onAgentGoAway = emitterListener((session: Session) => this.preview.releaseRoute(session));
  private readonly onSessionClose = emitterListener((session: Session, err?: WarrenError) => this.sessionClosed(session, err));
  private readonly streamListeners: Record<StreamKind, StreamListeners> = {
    preview: this.streamListenersFor('preview'),
    client: this.streamListenersFor('client'),
    tcp: this.streamListenersFor('tcp'),
  };
  /** What acceptAgent() needs, made once. */
  private readonly agentContext: AgentEndpointContext;

  constructor(options: RelayOptions) {
    if (options.trustedKeys.size === 0) throw new WarrenError('ERR_WARREN_NO_TRUST_KEYS', 'the relay needs at least one trusted token key (--trust-key); it will not accept unauthenticated agents');
    this.options = options;
    this.log = options.logger ?? silentLogger();
    // Access lines are written per request and carry only the fields listed in onRequest(), none of
    // them a secret (no query string, no header but Host): they skip the redaction pass, which
    // costs several times the rest of the line (wildcard paths).
    this.accessLog = (options.accessLogger ?? this.log).child({}, { redact: [] });
    this.revoked = new Set(options.revokedJtis ?? []);
    this.policy = {
      keys: options.trustedKeys,
      audience: options.audience ?? 'warren',
      now: options.now,
      isRevoked: (jti) => this.revoked.has(jti),
    };
    this.metrics = new RelayMetrics(options.metricsRegistry ?? new Registry(), { collectBytes: () => this.bytesSinceLastScrape() });
    this.admin = options.admin ? new AdminServer(this.adminBackend(), options.adminToken, this.log) : null;
    this.viewerTokens = new ViewerTokenSigner({ key: options.viewerTokenKey, issuer: options.viewerTokenIssuer });
    this.preview = new PreviewProxy({
      domain: options.domain,
      logger: this.log,
      upgradeIdleTimeoutMs: options.timeouts?.idleMs,
      tlsTerminatedInFront: options.tlsTerminatedInFront,
      access: new PreviewAccessControl({
        policy: this.policy,
        isPrivate: (target) => {
          const entry = this.registry.get(target.tunnelId);
          return entry !== undefined && exposedPort(entry, target.port)?.private === true;
        },
        sessions: new ViewerSessions(options.previewSessionKey),
        signer: this.viewerTokens,
        logger: this.log,
      }),
      backend: {
        // A pooled stream carries requests of many browsers: their addresses go in X-Forwarded-For.
        openStream: (target, info) => this.openToAgent('preview', target.tunnelId, target.port, info.shared ? { src: 'preview' } : { src: 'preview', ip: info.remoteAddress }),
        route: (target) => this.routeToAgent('preview', target.tunnelId, target.port),
      },
    });
    if (options.tcpPorts) {
      const wildcard = options.listen.host === '0.0.0.0' || options.listen.host === '::';
      this.tcp = new TcpEndpoints({
        range: options.tcpPorts,
        bindHost: options.listen.host,
        publicHost: options.tcpHost ?? (wildcard ? options.domain : options.listen.host),
        registry: this.registry,
        logger: this.log,
        lingerMs: options.tcpLingerMs,
        openStream: (tunnelId, port, ip) => this.openToAgent('tcp', tunnelId, port, { src: 'tcp', ip }),
        onConnection: (result) => this.metrics.tcpConnections.inc({ result }),
      });
    }
    this.agentContext = { policy: this.policy, registry: this.registry, tcp: this.tcp, previewUrl: (tunnelId, port) => this.previewUrl(tunnelId, port) };
    // Streams kept alive for previews must not hold a session that is going away.
    this.registry.onReplaced = (previous) => this.preview.releaseRoute(previous.session);
    this.wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: WS_MAX_MESSAGE_BYTES + 64 * 1024, skipUTF8Validation: true, clientTracking: false });
    // Timeouts in seconds, not Node's minutes: a slow client must not hold a socket for long.
    const t = options.timeouts ?? {};
    const serverOptions = previewServerOptions({ headersTimeoutMs: t.headersMs, requestTimeoutMs: t.requestMs, keepAliveTimeoutMs: t.keepAliveMs });
    // A client that opens TCP and stalls in the TLS handshake (nothing sent, half a ClientHello)
    // is closed after the headers timeout, not TLS's default of two minutes.
    const handshakeTimeout = t.headersMs ?? PREVIEW_SERVER_DEFAULTS.headersTimeoutMs;
    this.tlsServer = createHttpsServer({
      ...serverOptions,
      cert: options.tls.cert,
      key: options.tls.key,
      minVersion: 'TLSv1.3',
      handshakeTimeout,
      // Agents and clients that offer a Warren ALPN id get frames straight on TLS; browsers and
      // everything else get HTTP/1.1 (previews, and WebSocket sessions for agents behind proxies).
      // A callback rather than ALPNProtocols: Node copies an ALPNProtocols list into a pooled
      // buffer for every connection, which keeps a whole 8 KiB pool slab alive per connection.
      ALPNProtocols: undefined,
      ALPNCallback: selectAlpn,
    });
    this.takeRawTlsSessions(this.tlsServer);
    this.setUp(this.tlsServer, true);
    this.httpServer = options.httpListen ? createHttpServer(serverOptions) : null;
    if (this.httpServer) this.setUp(this.httpServer, false);
  }

  /**
   * Puts a dispatcher in front of the HTTPS server's connection handling: a connection that
   * negotiated a Warren ALPN id carries a session and never reaches the HTTP parser.
   */
  private takeRawTlsSessions(server: HttpsServer): void {
    const http = server.listeners('secureConnection') as ((socket: TLSSocket) => void)[];
    server.removeAllListeners('secureConnection');
    server.on('secureConnection', (socket: TLSSocket) => {
      const role = typeof socket.alpnProtocol === 'string' ? ALPN_ENDPOINTS.get(socket.alpnProtocol) : undefined;
      if (role === undefined) {
        for (const listener of http) listener.call(server, socket);
        return;
      }
      socket.setNoDelay(true);
      // The transport's error listener destroys the socket.
      this.onSession(role, socketTransport(socket), socket.remoteAddress, 'tls');
    });
  }

  private setUp(server: HttpServer | HttpsServer, secure: boolean): void {
    // A connection where nothing moves (a client that stopped reading) is closed after this.
    server.timeout = this.options.timeouts?.idleMs ?? 10 * 60_000;
    server.on('request', (req: IncomingMessage, res: ServerResponse) => this.onRequest(req, res, secure));
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head, secure));
    server.on('clientError', onPreviewClientError);
  }

  /** Opens the listeners; resolves once they accept connections. */
  async start(): Promise<void> {
    const listen = async (server: HttpServer | HttpsServer, at: HostPort, what: string): Promise<void> => {
      server.listen({ port: at.port, host: at.host, backlog: LISTEN_BACKLOG });
      try {
        await Promise.race([once(server, 'listening'), once(server, 'error').then(([err]) => Promise.reject(err as Error))]);
      } catch (err) {
        throw new WarrenError('ERR_WARREN_LISTEN', `cannot listen on ${formatHostPort(at)} (${what}): ${(err as Error).message}`, { cause: err });
      }
    };
    await listen(this.tlsServer, this.options.listen, 'TLS');
    if (this.httpServer && this.options.httpListen) await listen(this.httpServer, this.options.httpListen, 'HTTP');
    const admin = this.admin && this.options.admin ? await this.admin.listen(this.options.admin) : undefined;
    this.listening = true;
    const a = this.address();
    this.log.info({ event: 'listening', listen: a.listen, httpListen: a.httpListen, admin, domain: this.options.domain, tcpPorts: this.options.tcpPorts }, 'relay listening');
  }

  /** The bound addresses (ports resolved when 0 was asked for). */
  address(): { listen: HostPort; httpListen?: HostPort } {
    const a = this.tlsServer.address() as AddressInfo;
    const h = this.httpServer?.address() as AddressInfo | null | undefined;
    return { listen: { host: a.address, port: a.port }, httpListen: h ? { host: h.address, port: h.port } : undefined };
  }

  /**
   * Replaces the TLS certificate and key for new connections (a renewed certificate, on SIGHUP);
   * open connections keep theirs. Throws when the pair is unusable, leaving the old one in place.
   */
  setCertificate(cert: string, key: string): void {
    this.tlsServer.setSecureContext({ cert, key, minVersion: 'TLSv1.3' });
    this.log.info({ event: 'certificate_reloaded' }, 'TLS certificate reloaded');
  }

  /** Ready for traffic: listening and not draining. */
  get ready(): boolean {
    return this.listening && this.drainPromise === null;
  }

  /** The preview URL of a tunnel's port. */
  previewUrl(tunnelId: string, port: number): string {
    const configured = typeof this.options.publicUrl === 'function' ? this.options.publicUrl() : this.options.publicUrl;
    const base = new URL(configured ?? `https://${this.options.domain}:${this.address().listen.port}`);
    const host = `${port}-${tunnelId}.${this.options.domain}`;
    return `${base.protocol}//${host}${base.port ? `:${base.port}` : ''}/`;
  }

  /** Refuses a token id from now on and closes the sessions that used it; returns how many. */
  revoke(jti: string): number {
    this.revoked.add(jti);
    let closed = 0;
    for (const [session, info] of this.sessions) {
      if (info.jti === jti) {
        session.fail(new WarrenError('ERR_WARREN_TOKEN_REVOKED', 'the token was revoked'));
        closed++;
      }
    }
    return closed;
  }

  /** The session serving a tunnel's port (refusals counted in the metrics by kind); throws the routing error. */
  private routeToAgent(kind: StreamKind, tunnelId: string, port: number): Session {
    try {
      return this.registry.route(tunnelId, port);
    } catch (err) {
      this.metrics.refused(kind, errorCode(err));
      throw err;
    }
  }

  /** Opens a stream to an agent, counted in the metrics by kind; throws the routing error. */
  private openToAgent(kind: StreamKind, tunnelId: string, port: number, metadata: Record<string, string>): MuxStream {
    let stream: MuxStream;
    try {
      stream = this.registry.openStream(tunnelId, port, metadata);
    } catch (err) {
      this.metrics.refused(kind, errorCode(err));
      throw err;
    }
    const started = performance.now();
    this.metrics.streamsOpened.inc({ kind });
    this.metrics.streamsOpen.inc({ kind });
    // Gone once the agent answers: an idle open stream keeps only the shared listeners below.
    stream.once('firstByte', () => this.metrics.streamOpenSeconds.observe({ kind }, (performance.now() - started) / 1000));
    const listeners = this.streamListeners[kind];
    // 'error' and 'close' come once each: on(), as once() would wrap each listener per stream.
    stream.on('error', listeners.error);
    stream.on('close', listeners.close);
    return stream;
  }

  /** Metrics listeners of the streams of one kind, shared by all of them (the stream is their `this`). */
  private streamListenersFor(kind: StreamKind): StreamListeners {
    return {
      // Refused when the agent failed the stream before its first byte ('firstByte' comes with it).
      error: emitterListener((stream: MuxStream, err: WarrenError) => {
        if (stream.received === 0) this.metrics.refused(kind, errorCode(err));
      }),
      close: () => this.metrics.streamsOpen.dec({ kind }),
    };
  }

  /**
   * True when the TLS connection was opened for a preview host (its SNI names one): every request
   * on it belongs to the preview proxy, which answers 421 when Host names anything else, the
   * relay's own endpoints included.
   */
  private previewConnection(req: IncomingMessage): boolean {
    const servername = (req.socket as Partial<TLSSocket>).servername;
    return typeof servername === 'string' && parsePreviewHost(servername, this.options.domain) !== null;
  }

  private onRequest(req: IncomingMessage, res: ServerResponse, secure: boolean): void {
    if (this.drainPromise) res.setHeader('connection', 'close');
    const started = performance.now();
    const target = parsePreviewHost(req.headers.host ?? '', this.options.domain);
    res.once('close', () => {
      this.metrics.previewAnswered(res.statusCode);
      // One access line per request. The query string is never logged: it can carry a token.
      const url = req.url ?? '';
      const query = url.indexOf('?');
      this.accessLog.info(
        {
          event: 'access',
          method: req.method,
          host: req.headers.host,
          path: query === -1 ? url : url.slice(0, query),
          status: res.statusCode,
          code: res.getHeader('x-warren-error'),
          ms: Math.round((performance.now() - started) * 10) / 10,
          tunnelId: target?.tunnelId,
          port: target?.port,
          remote: req.socket.remoteAddress,
          finished: res.writableFinished,
        },
        'access',
      );
    });
    if (target || !secure || this.previewConnection(req)) {
      this.preview.handleRequest(req, res);
      return;
    }
    if (req.url === JWKS_PATH && (req.method === 'GET' || req.method === 'HEAD')) {
      const jwks = this.viewerTokens.jwksJson();
      res.writeHead(200, { 'content-type': 'application/jwk-set+json', 'content-length': jwks.length, 'cache-control': 'public, max-age=300' });
      res.end(req.method === 'HEAD' ? undefined : jwks);
      return;
    }
    if (req.url === '/' && (req.method === 'GET' || req.method === 'HEAD')) {
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
      res.end(`Warren relay for ${this.options.domain}\nAgents connect to wss://<this host>/v1/agent; previews are https://{port}-{tunnel}.${this.options.domain}\n`);
      return;
    }
    const answer = renderErrorAnswer('ERR_WARREN_BAD_REQUEST', req.headers.accept, { detail: 'no such endpoint on this relay', retry: false });
    res.writeHead(404, flattenHeaders(answer.headers));
    res.end(answer.body);
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, secure: boolean): void {
    socket.on('error', destroyOnError);
    if (parsePreviewHost(req.headers.host ?? '', this.options.domain) || !secure || this.previewConnection(req)) {
      this.preview.handleUpgrade(req, socket, head);
      return;
    }
    const path = new URL(req.url ?? '/', 'http://relay').pathname;
    const role = ENDPOINTS.get(path);
    if (!role) return rejectUpgrade(socket, 'ERR_WARREN_BAD_REQUEST', 'no such endpoint on this relay', 404);
    if (this.drainPromise) return rejectUpgrade(socket, 'ERR_WARREN_DRAINING', 'this relay is draining; connect to another one');
    const offered = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
    if (!offered.includes(WS_SUBPROTOCOL)) return rejectUpgrade(socket, 'ERR_WARREN_VERSION', `this relay speaks ${WS_SUBPROTOCOL}; offer it as the WebSocket subprotocol`);
    // The callback outlives the upgrade for the whole session: it must not hold the request.
    const remote = req.socket.remoteAddress;
    this.wss.handleUpgrade(req, socket, head, (ws) => this.onSession(role, webSocketTransport(ws, remote), remote, 'wss'));
  }

  /** A new agent or client connection (WebSocket, or raw TLS): authenticate in HELLO, then serve. */
  private onSession(role: SessionRole, transport: Transport, remote: string | undefined, kind: 'tls' | 'wss'): void {
    const connId = this.nextConnId++;
    const started = performance.now();
    let agentWelcome: AgentWelcome | undefined;
    let client: ReturnType<typeof acceptClient> | undefined;
    // Nothing made here outlives the handshake: what the relay keeps is the SessionInfo, and the
    // session's listeners are shared.
    acceptSession(transport, {
      ...this.options.session,
      authenticate: async (hello, session) => {
        // An upgrade is refused before this point; a raw TLS session learns it here, with a code.
        if (this.drainPromise) throw new ConnectionError('ERR_WARREN_DRAINING', 'this relay is draining; connect to another one');
        if (role === 'agent') return (agentWelcome = await acceptAgent(this.agentContext, hello, session));
        client = acceptClient(this.policy, this.registry, hello);
        return client.welcome;
      },
    }).then(
      (session) => {
        this.metrics.handshakeSeconds.observe({ role }, (performance.now() - started) / 1000);
        const tunnelId = agentWelcome?.tunnel ?? client?.claims.sub;
        const jti = role === 'agent' ? this.registry.get(tunnelId ?? '')?.jti : client?.claims.jti;
        const info: SessionInfo = { role, connId, remote, transport: kind, tunnelId, jti, countedIn: 0, countedOut: 0 };
        this.sessions.set(session, info);
        (role === 'agent' ? this.metrics.agentsConnected : this.metrics.clientSessions).inc();
        if (role === 'agent') {
          session.on('rtt', this.onSessionRtt);
          session.on('goaway', this.onAgentGoAway);
        } else serveClientSession(session, client!.claims, this.registry, remote, (tunnel, port, meta) => this.openToAgent('client', tunnel, port, meta));
        // 'close' is emitted once: on() rather than once(), which would wrap the listener per session.
        session.on('close', this.onSessionClose);
        this.log.info({ ...logFields(info), event: `${role}_connected`, tunnelId, sessionId: session.id, ports: agentWelcome?.previews.map((p) => p.port) }, `${role} connected`);
      },
      (err: WarrenError) => {
        this.metrics.handshakeFailed(role, errorCode(err));
        this.log.info({ connId, remote, peer: role, transport: kind, event: `${role}_refused`, code: err.code, reason: err.message }, `${role} refused`);
      },
    );
  }

  private sessionClosed(session: Session, err: WarrenError | undefined): void {
    const info = this.sessions.get(session);
    if (!info) return;
    this.sessions.delete(session);
    (info.role === 'agent' ? this.metrics.agentsConnected : this.metrics.clientSessions).dec();
    if (info.role === 'agent') this.preview.releaseRoute(session);
    this.closedBytes.in += session.bytesIn - info.countedIn;
    this.closedBytes.out += session.bytesOut - info.countedOut;
    this.log.info({ ...logFields(info), event: `${info.role}_disconnected`, tunnelId: info.tunnelId, code: err?.code }, `${info.role} disconnected`);
  }

  /** Bytes moved since the previous call, for warren_bytes_total. */
  private bytesSinceLastScrape(): { in: number; out: number } {
    const d = this.closedBytes;
    this.closedBytes = { in: 0, out: 0 };
    for (const [session, info] of this.sessions) {
      d.in += session.bytesIn - info.countedIn;
      d.out += session.bytesOut - info.countedOut;
      info.countedIn = session.bytesIn;
      info.countedOut = session.bytesOut;
    }
    return d;
  }

  private adminBackend(): AdminBackend {
    return {
      registry: this.metrics.registry,
      ready: () => this.ready,
      tunnels: () =>
        this.registry.list().map((e) => ({
          tunnel: e.tunnelId,
          ports: e.ports.map((p) => ({ port: p.port, private: p.private, tcpEndpoint: p.tcpEndpoint })),
          connectedAt: new Date(e.connectedAtMs).toISOString(),
          remoteAddress: e.remoteAddress,
          sessionId: e.session.id,
          streams: e.session.streamCount,
          rttMs: e.session.rttMs,
          bytesIn: e.session.bytesIn,
          bytesOut: e.session.bytesOut,
        })),
      streams: (tunnelId) =>
        this.registry
          .get(tunnelId)
          ?.session.listStreams()
          .map((s) => ({ id: s.id, port: s.port, kind: s.metadata.src ?? 'unknown', bufferedSendBytes: s.bufferedSendBytes, readableBytes: s.readableLength })),
      disconnect: (tunnelId) => {
        const entry = this.registry.get(tunnelId);
        if (!entry) return false;
        void entry.session.close({ message: 'disconnected by the relay operator' });
        return true;
      },
      revoke: (jti) => this.revoke(jti),
      drain: (hint) => void this.drain({ hint }),
    };
  }

  /**
   * Drains: stops accepting, sends every session GOAWAY (ERR_WARREN_DRAINING, with `hint`), lets
   * open streams finish within the grace period, then closes. Resolves when everything is closed.
   */
  drain(options: DrainOptions = {}): Promise<void> {
    this.drainPromise ??= this.runDrain(options.graceMs ?? this.options.gracePeriodMs ?? 30_000, options.hint ?? this.options.drainHint);
    return this.drainPromise;
  }

  private async runDrain(graceMs: number, hint: string | undefined): Promise<void> {
    this.metrics.drains.inc();
    this.log.info({ event: 'draining', graceMs, sessions: this.sessions.size }, 'draining');
    this.tlsServer.close();
    this.httpServer?.close();
    this.tlsServer.closeIdleConnections();
    this.httpServer?.closeIdleConnections();
    this.tcp?.stopListening();
    const sessions = [...this.sessions.keys()];
    for (const s of sessions) s.goAway('ERR_WARREN_DRAINING', { hint, message: 'the relay is draining' });
    this.preview.releaseRoute();
    const allClosed = Promise.all(sessions.filter((s) => !s.closed).map((s) => once(s, 'close')));
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<'expired'>((resolve) => {
      timer = setTimeout(() => resolve('expired'), graceMs);
    });
    const outcome = await Promise.race([allClosed.then(() => 'done' as const), expired]);
    clearTimeout(timer);
    this.log.info({ event: 'drained', outcome, remaining: this.sessions.size }, outcome === 'done' ? 'drained' : 'grace period over; closing what is left');
    await this.close();
  }

  /** Closes listeners and every session at once. */
  async close(): Promise<void> {
    this.listening = false;
    this.tcp?.close();
    this.preview.releaseRoute();
    for (const s of this.sessions.keys()) s.destroy();
    const closeServer = (server: HttpServer | HttpsServer | null): Promise<void> =>
      server
        ? new Promise((resolve) => {
            server.close(() => resolve());
            server.closeAllConnections();
          })
        : Promise.resolve();
    await Promise.all([closeServer(this.tlsServer), closeServer(this.httpServer), this.admin?.close()]);
  }
}

/** The relay's ALPN ids, in its order of preference. */
const ALPN_IDS = [ALPN_AGENT, ALPN_CONNECT, 'http/1.1'];

/** The first of the relay's ids that the client offered; none is a no_application_protocol alert, as RFC 7301 asks. */
function selectAlpn({ protocols }: { protocols: string[] }): string | undefined {
  return ALPN_IDS.find((id) => protocols.includes(id));
}

/** Listeners the relay puts on each stream it opens to an agent. */
interface StreamListeners {
  error: (this: MuxStream, err: WarrenError) => void;
  close: () => void;
}

/** What the relay keeps about an authenticated session. */
interface SessionInfo {
  readonly role: SessionRole;
  /** Fields of every log line about the connection (not a child logger: one lives as long as the session). */
  readonly connId: number;
  readonly remote: string | undefined;
  readonly transport: 'tls' | 'wss';
  readonly tunnelId: string | undefined;
  /** The token's id, for revocation. */
  readonly jti: string | undefined;
  /** Bytes already counted in warren_bytes_total. */
  countedIn: number;
  countedOut: number;
}

function logFields(info: SessionInfo): { connId: number; remote: string | undefined; peer: SessionRole; transport: 'tls' | 'wss' } {
  return { connId: info.connId, remote: info.remote, peer: info.role, transport: info.transport };
}

function destroyOnError(this: Duplex): void {
  this.destroy();
}

/** Answers an upgrade request with a coded JSON error (what agents and clients read) and closes the socket. */
function rejectUpgrade(socket: Duplex, code: ErrorCode, detail: string, status?: number): void {
  const answer = renderErrorAnswer(code, 'application/json', { detail, retry: false });
  const headers = [...flattenHeaders(answer.headers), 'Connection', 'close'];
  const finalStatus = status ?? answer.status;
  socket.end(Buffer.concat([Buffer.from(serializeResponseHead(finalStatus, STATUS_CODES[finalStatus] ?? 'Error', headers), 'latin1'), answer.body]));
}
