/**
 * The relay daemon: one TLS listener for agents (`/v1/agent`), clients (`/v1/connect`) and HTTPS
 * previews, an optional plain-HTTP listener for previews only (local dev, or behind a
 * TLS-terminating load balancer), and the routing between them.
 *
 * Security defaults: the relay will not start without trusted token keys; sessions are
 * authenticated in the HELLO before any tunnel or stream state is created; tokens are never
 * logged.
 */
import { once } from 'node:events';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { acceptSession, WarrenError, webSocketTransport, WS_MAX_MESSAGE_BYTES, WS_SUBPROTOCOL, type Session, type SessionOptions } from '../protocol/index.js';
import { formatHostPort, type HostPort } from '../common/parse.js';
import { silentLogger, type Logger } from '../common/log.js';
import type { TrustedKeys } from '../certs/keys.js';
import { TunnelRegistry } from './registry.js';
import { acceptAgent, type AgentWelcome, type TokenPolicy } from './agents.js';
import { acceptClient, serveClientSession } from './clients.js';
import { TcpEndpoints } from './tcp-endpoints.js';
import { PreviewProxy } from './preview.js';
import { parsePreviewHost } from './preview-host.js';
import { sendError } from './error-page.js';

/** Relay settings (validated by relay/config.ts for the CLI). */
export interface RelayOptions {
  /** TLS listener: agents, clients and HTTPS previews. */
  listen: HostPort;
  /** Optional plain-HTTP listener, previews only. */
  httpListen?: HostPort;
  /** PEM certificate chain and key for the TLS listener. */
  tls: { cert: string; key: string };
  /** Preview domain: previews are `{port}-{tunnel}.{domain}`. */
  domain: string;
  /**
   * Base of the preview URLs given to agents, such as `https://preview.example.dev` or
   * `http://localhost:8080`; default https on the TLS listener's port.
   */
  publicUrl?: string | (() => string);
  /** Token verification keys by kid; at least one. */
  trustedKeys: TrustedKeys;
  /** Token audience this relay accepts; default "warren". */
  audience?: string;
  /** Revoked token ids. */
  revokedJtis?: Iterable<string>;
  logger?: Logger;
  session?: SessionOptions;
  /** Port range for raw TCP endpoints; none when unset. */
  tcpPorts?: { first: number; last: number };
  /** Host printed in raw TCP endpoints; default the listen host, or the domain when that is a wildcard address. */
  tcpHost?: string;
  /** How long a raw TCP endpoint outlives its agent's session; default 60 s. */
  tcpLingerMs?: number;
  /** Token clock in ms (tests). */
  now?: () => number;
}

/** The relay endpoints that upgrade to WebSocket. */
const ENDPOINTS = new Set(['/v1/agent', '/v1/connect']);

/** The relay. start() opens the listeners; close() ends everything. */
export class Relay {
  // Static after construction.
  readonly registry = new TunnelRegistry();
  private readonly options: RelayOptions;
  private readonly log: Logger;
  private readonly policy: TokenPolicy;
  private readonly revoked: Set<string>;
  private readonly preview: PreviewProxy;
  private readonly wss: WebSocketServer;
  private readonly tlsServer: HttpsServer;
  private readonly httpServer: HttpServer | null;
  /** Raw TCP endpoints, when a port range is configured. */
  readonly tcp: TcpEndpoints | undefined;

  // Owned by the event loop.
  /** Every authenticated session and its token id (for revocation). */
  private readonly sessions = new Map<Session, string | undefined>();
  private nextConnId = 1;

  constructor(options: RelayOptions) {
    if (options.trustedKeys.size === 0) throw new WarrenError('ERR_WARREN_NO_TRUST_KEYS', 'the relay needs at least one trusted token key (--trust-key); it will not accept unauthenticated agents');
    this.options = options;
    this.log = options.logger ?? silentLogger();
    this.revoked = new Set(options.revokedJtis ?? []);
    this.policy = {
      keys: options.trustedKeys,
      audience: options.audience ?? 'warren',
      now: options.now,
      isRevoked: (jti) => this.revoked.has(jti),
    };
    this.preview = new PreviewProxy({
      domain: options.domain,
      logger: this.log,
      backend: {
        openStream: (target, info) => this.registry.openStream(target.tunnelId, target.port, { src: 'preview', ip: info.remoteAddress }),
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
      });
    }
    this.wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: WS_MAX_MESSAGE_BYTES + 64 * 1024, skipUTF8Validation: true, clientTracking: false });
    this.tlsServer = createHttpsServer({ cert: options.tls.cert, key: options.tls.key, minVersion: 'TLSv1.3' });
    this.setUp(this.tlsServer, true);
    this.httpServer = options.httpListen ? createHttpServer() : null;
    if (this.httpServer) this.setUp(this.httpServer, false);
  }

  private setUp(server: HttpServer | HttpsServer, secure: boolean): void {
    // Seconds, not Node's minutes: a slow client must not hold a socket for long.
    server.headersTimeout = 10_000;
    server.requestTimeout = 60_000;
    server.keepAliveTimeout = 5_000;
    server.on('request', (req: IncomingMessage, res: ServerResponse) => this.onRequest(req, res, secure));
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head, secure));
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
      if (socket.writable && err.code !== 'ECONNRESET') socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      else socket.destroy();
    });
  }

  /** Opens the listeners; resolves once both accept connections. */
  async start(): Promise<void> {
    const listen = async (server: HttpServer | HttpsServer, at: HostPort, what: string): Promise<void> => {
      server.listen(at.port, at.host);
      try {
        await Promise.race([once(server, 'listening'), once(server, 'error').then(([err]) => Promise.reject(err as Error))]);
      } catch (err) {
        throw new WarrenError('ERR_WARREN_LISTEN', `cannot listen on ${formatHostPort(at)} (${what}): ${(err as Error).message}`, { cause: err });
      }
    };
    await listen(this.tlsServer, this.options.listen, 'TLS');
    if (this.httpServer && this.options.httpListen) await listen(this.httpServer, this.options.httpListen, 'HTTP');
    this.log.info({ event: 'listening', listen: this.address().listen, httpListen: this.address().httpListen, domain: this.options.domain }, 'relay listening');
  }

  /** The bound addresses (ports resolved when 0 was asked for). */
  address(): { listen: HostPort; httpListen?: HostPort } {
    const a = this.tlsServer.address() as AddressInfo;
    const h = this.httpServer?.address() as AddressInfo | null | undefined;
    return { listen: { host: a.address, port: a.port }, httpListen: h ? { host: h.address, port: h.port } : undefined };
  }

  /** The preview URL of a tunnel's port. */
  previewUrl(tunnelId: string, port: number): string {
    const configured = typeof this.options.publicUrl === 'function' ? this.options.publicUrl() : this.options.publicUrl;
    const base = new URL(configured ?? `https://${this.options.domain}:${this.address().listen.port}`);
    const host = `${port}-${tunnelId}.${this.options.domain}`;
    return `${base.protocol}//${host}${base.port ? `:${base.port}` : ''}/`;
  }

  /** Adds a revoked token id; sessions using it are closed. */
  revoke(jti: string): number {
    this.revoked.add(jti);
    let closed = 0;
    for (const [session, sessionJti] of this.sessions) {
      if (sessionJti === jti) {
        session.fail(new WarrenError('ERR_WARREN_TOKEN_REVOKED', 'the token was revoked'));
        closed++;
      }
    }
    return closed;
  }

  private onRequest(req: IncomingMessage, res: ServerResponse, secure: boolean): void {
    if (parsePreviewHost(req.headers.host ?? '', this.options.domain) || !secure) {
      this.preview.handleRequest(req, res);
      return;
    }
    if (req.url === '/' && (req.method === 'GET' || req.method === 'HEAD')) {
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
      res.end(`Warren relay for ${this.options.domain}\nAgents connect to wss://<this host>/v1/agent; previews are https://{port}-{tunnel}.${this.options.domain}\n`);
      return;
    }
    sendError(req, res, new WarrenError('ERR_WARREN_BAD_REQUEST', `no such endpoint: ${req.method} ${new URL(req.url ?? '/', 'http://relay').pathname}`));
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, secure: boolean): void {
    socket.on('error', () => socket.destroy());
    if (parsePreviewHost(req.headers.host ?? '', this.options.domain) || !secure) {
      this.preview.handleUpgrade(req, socket, head);
      return;
    }
    const path = new URL(req.url ?? '/', 'http://relay').pathname;
    if (!ENDPOINTS.has(path)) return rejectUpgrade(socket, 404, 'ERR_WARREN_BAD_REQUEST', `no such endpoint: ${path}`);
    const offered = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
    if (!offered.includes(WS_SUBPROTOCOL)) return rejectUpgrade(socket, 400, 'ERR_WARREN_VERSION', `this relay speaks ${WS_SUBPROTOCOL}; offer it as the WebSocket subprotocol`);
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      if (path === '/v1/agent') this.onAgentSocket(ws, req);
      else this.onClientSocket(ws, req);
    });
  }

  private onAgentSocket(ws: WebSocket, req: IncomingMessage): void {
    const connId = this.nextConnId++;
    const remote = req.socket.remoteAddress;
    const log = this.log.child({ connId, remote });
    let welcome: AgentWelcome | undefined;
    const context = { policy: this.policy, registry: this.registry, tcp: this.tcp, previewUrl: (tunnelId: string, port: number) => this.previewUrl(tunnelId, port) };
    acceptSession(webSocketTransport(ws, remote), {
      ...this.options.session,
      authenticate: async (hello, session) => (welcome = await acceptAgent(context, hello, session)),
    }).then(
      (session) => {
        this.track(session, this.registry.list().find((e) => e.session === session)?.jti);
        const tunnelId = welcome?.tunnel;
        log.info({ event: 'agent_connected', tunnelId, sessionId: session.id, ports: welcome?.previews.map((p) => p.port) }, 'agent connected');
        session.once('close', (err?: WarrenError) => log.info({ event: 'agent_disconnected', tunnelId, code: err?.code }, 'agent disconnected'));
      },
      (err: WarrenError) => log.info({ event: 'agent_refused', code: err.code, reason: err.message }, 'agent refused'),
    );
  }

  private onClientSocket(ws: WebSocket, req: IncomingMessage): void {
    const connId = this.nextConnId++;
    const remote = req.socket.remoteAddress;
    const log = this.log.child({ connId, remote });
    let accepted: ReturnType<typeof acceptClient> | undefined;
    acceptSession(webSocketTransport(ws, remote), {
      ...this.options.session,
      authenticate: (hello) => (accepted = acceptClient(this.policy, this.registry, hello)).welcome,
    }).then(
      (session) => {
        this.track(session, accepted!.claims.jti);
        serveClientSession(session, accepted!.claims, this.registry, remote);
        log.info({ event: 'client_connected', tunnelId: accepted!.claims.sub, sessionId: session.id }, 'client connected');
        session.once('close', (err?: WarrenError) => log.info({ event: 'client_disconnected', tunnelId: accepted!.claims.sub, code: err?.code }, 'client disconnected'));
      },
      (err: WarrenError) => log.info({ event: 'client_refused', code: err.code, reason: err.message }, 'client refused'),
    );
  }

  private track(session: Session, jti: string | undefined): void {
    this.sessions.set(session, jti);
    session.once('close', () => this.sessions.delete(session));
  }

  /** Closes listeners and every session at once. */
  async close(): Promise<void> {
    this.tcp?.close();
    for (const s of this.sessions.keys()) s.destroy();
    const closeServer = (server: HttpServer | HttpsServer | null): Promise<void> =>
      server?.listening
        ? new Promise((resolve) => {
            server.close(() => resolve());
            server.closeAllConnections();
          })
        : Promise.resolve();
    await Promise.all([closeServer(this.tlsServer), closeServer(this.httpServer)]);
  }
}

/** Answers an upgrade request with an HTTP error and closes the socket. */
function rejectUpgrade(socket: Duplex, status: number, code: string, message: string): void {
  const body = JSON.stringify({ error: { code, message, status } });
  socket.end(`HTTP/1.1 ${status} ${status === 404 ? 'Not Found' : 'Bad Request'}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}
