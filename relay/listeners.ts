/**
 * The relay's public listeners and what arrives on them: one TLS listener for agents and clients
 * (raw TLS by ALPN, or WebSocket upgrades to `/v1/agent` and `/v1/connect`) and HTTPS previews,
 * and an optional plain-HTTP listener for previews only (local dev, or behind a TLS-terminating
 * load balancer). Dispatch, in order:
 *
 *   TLS connection, ALPN warren.v1.agent / warren.v1.connect ──▶ sessions (no HTTP at all)
 *   request or upgrade whose Host is a preview host, on the plain listener, or on a TLS
 *   connection whose SNI names a preview host                ──▶ the preview proxy
 *   GET /.well-known/warren/jwks.json, GET /                 ──▶ the relay's own answers
 *   upgrade to /v1/agent, /v1/connect (subprotocol warren.v1) ──▶ sessions, over WebSocket
 *
 * Every preview request gets one access line (no query string, no header but Host).
 */
import type { IncomingMessage, Server as HttpServer, ServerResponse } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { WebSocketServer } from 'ws';
import { ALPN_AGENT, ALPN_CONNECT, socketTransport, webSocketTransport, WS_MAX_MESSAGE_BYTES, WS_SUBPROTOCOL, type ErrorCode } from '../protocol/index.js';
import type { HostPort } from '../cli/parse.js';
import type { Logger } from '../log/logger.js';
import { createPreviewListener, JWKS_PATH, parsePreviewHost, renderErrorAnswer, sendRawAnswer, type PreviewProxy, type PreviewTarget, type ViewerTokenSigner } from './preview/index.js';
import type { RelayMetrics, SessionRole } from './metrics.js';
import type { RelayOptions } from './relay-options.js';
import type { RelaySessions } from './sessions.js';
import { listenOn } from './listen.js';

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

/** The relay's ALPN ids, in its order of preference. */
const ALPN_IDS = [ALPN_AGENT, ALPN_CONNECT, 'http/1.1'];

/** What the listeners hand their traffic to. Static after construction. */
export interface ListenersContext {
  options: RelayOptions;
  log: Logger;
  /** Access lines, one per preview request. */
  accessLog: Logger;
  metrics: RelayMetrics;
  preview: PreviewProxy;
  sessions: RelaySessions;
  viewerTokens: ViewerTokenSigner;
  draining(): boolean;
}

/** The TLS listener and the optional plain-HTTP one. */
export class RelayListeners {
  private readonly ctx: ListenersContext;
  private readonly domain: string;
  private readonly wss: WebSocketServer;
  readonly tls: HttpsServer;
  readonly http: HttpServer | null;

  constructor(ctx: ListenersContext) {
    this.ctx = ctx;
    const options = ctx.options;
    this.domain = options.domain;
    this.wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: WS_MAX_MESSAGE_BYTES + 64 * 1024, skipUTF8Validation: true, clientTracking: false });
    // Timeouts in seconds, not Node's minutes: a slow client must not hold a socket for long.
    const t = options.timeouts ?? {};
    const listenerOptions = { headersTimeoutMs: t.headersMs, requestTimeoutMs: t.requestMs, keepAliveTimeoutMs: t.keepAliveMs, idleTimeoutMs: t.idleMs };
    this.tls = createPreviewListener(this.handlers(true), {
      ...listenerOptions,
      tls: {
        cert: options.tls.cert,
        key: options.tls.key,
        minVersion: 'TLSv1.3',
        // Agents and clients that offer a Warren ALPN id get frames straight on TLS; browsers and
        // everything else get HTTP/1.1 (previews, and WebSocket sessions for agents behind proxies).
        // A callback rather than ALPNProtocols: Node copies an ALPNProtocols list into a pooled
        // buffer for every connection, which keeps a whole 8 KiB pool slab alive per connection.
        ALPNProtocols: undefined,
        ALPNCallback: selectAlpn,
      },
    }) as HttpsServer;
    this.takeRawTlsSessions(this.tls);
    this.http = options.httpListen ? (createPreviewListener(this.handlers(false), listenerOptions)) : null;
  }

  /** Opens the listeners; resolves once they accept connections. Throws ERR_WARREN_LISTEN. */
  async listen(): Promise<void> {
    await listenOn(this.tls, this.ctx.options.listen, 'TLS', { backlog: LISTEN_BACKLOG });
    if (this.http && this.ctx.options.httpListen) await listenOn(this.http, this.ctx.options.httpListen, 'HTTP', { backlog: LISTEN_BACKLOG });
  }

  /** The bound addresses (ports resolved when 0 was asked for). */
  address(): { listen: HostPort; httpListen?: HostPort } {
    const a = this.tls.address() as AddressInfo;
    const h = this.http?.address() as AddressInfo | null | undefined;
    return { listen: { host: a.address, port: a.port }, httpListen: h ? { host: h.address, port: h.port } : undefined };
  }

  /** Replaces the TLS certificate and key for new connections; throws when the pair is unusable. */
  setCertificate(cert: string, key: string): void {
    this.tls.setSecureContext({ cert, key, minVersion: 'TLSv1.3' });
  }

  /** Stops accepting and closes idle keep-alive connections (a drain); open ones go on. */
  stopAccepting(): void {
    for (const server of [this.tls, this.http]) {
      server?.close();
      server?.closeIdleConnections();
    }
  }

  /** Closes the listeners and every connection on them. */
  async close(): Promise<void> {
    const closeServer = (server: HttpServer | HttpsServer | null): Promise<void> =>
      server
        ? new Promise((resolve) => {
            server.close(() => resolve());
            server.closeAllConnections();
          })
        : Promise.resolve();
    await Promise.all([closeServer(this.tls), closeServer(this.http)]);
  }

  private handlers(secure: boolean): { request(req: IncomingMessage, res: ServerResponse): void; upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void } {
    return {
      request: (req, res) => this.onRequest(req, res, secure),
      upgrade: (req, socket, head) => this.onUpgrade(req, socket, head, secure),
    };
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
      this.ctx.sessions.accept(role, socketTransport(socket), socket.remoteAddress, 'tls');
    });
  }

  /**
   * True when the request belongs to the preview proxy: its Host is a preview host (`target`), it
   * came on the plain listener (previews only), or its TLS connection was opened for a preview host
   * (SNI), in which case the proxy answers 421 when Host names anything else, the relay's own
   * endpoints included.
   */
  private isPreview(req: IncomingMessage, secure: boolean, target: PreviewTarget | null): boolean {
    if (!secure || target !== null) return true;
    const servername = (req.socket as Partial<TLSSocket>).servername;
    return typeof servername === 'string' && parsePreviewHost(servername, this.domain) !== null;
  }

  private onRequest(req: IncomingMessage, res: ServerResponse, secure: boolean): void {
    if (this.ctx.draining()) res.setHeader('connection', 'close');
    const target = parsePreviewHost(req.headers.host ?? '', this.domain);
    this.logAccess(req, res, target);
    if (this.isPreview(req, secure, target)) {
      this.ctx.preview.handleRequest(req, res);
      return;
    }
    if (req.url === JWKS_PATH && (req.method === 'GET' || req.method === 'HEAD')) {
      const jwks = this.ctx.viewerTokens.jwksJson();
      res.writeHead(200, { 'content-type': 'application/jwk-set+json', 'content-length': jwks.length, 'cache-control': 'public, max-age=300' });
      res.end(req.method === 'HEAD' ? undefined : jwks);
      return;
    }
    if (req.url === '/' && (req.method === 'GET' || req.method === 'HEAD')) {
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
      res.end(`Warren relay for ${this.domain}\nAgents connect to wss://<this host>/v1/agent; previews are https://{port}-{tunnel}.${this.domain}\n`);
      return;
    }
    const answer = renderErrorAnswer('ERR_WARREN_BAD_REQUEST', req.headers.accept, { detail: 'no such endpoint on this relay', retry: false });
    res.writeHead(404, answer.headers.flat());
    res.end(answer.body);
  }

  /** One access line when the answer is done. The query string is never logged: it can carry a token. */
  private logAccess(req: IncomingMessage, res: ServerResponse, target: PreviewTarget | null): void {
    const started = performance.now();
    res.once('close', () => {
      this.ctx.metrics.previewAnswered(res.statusCode);
      const url = req.url ?? '';
      const query = url.indexOf('?');
      this.ctx.accessLog.info(
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
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, secure: boolean): void {
    socket.on('error', destroyOnError);
    if (this.isPreview(req, secure, parsePreviewHost(req.headers.host ?? '', this.domain))) {
      this.ctx.preview.handleUpgrade(req, socket, head);
      return;
    }
    const path = new URL(req.url ?? '/', 'http://relay').pathname;
    const role = ENDPOINTS.get(path);
    if (!role) return rejectUpgrade(socket, 'ERR_WARREN_BAD_REQUEST', 'no such endpoint on this relay', 404);
    if (this.ctx.draining()) return rejectUpgrade(socket, 'ERR_WARREN_DRAINING', 'this relay is draining; connect to another one');
    const offered = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
    if (!offered.includes(WS_SUBPROTOCOL)) return rejectUpgrade(socket, 'ERR_WARREN_VERSION', `this relay speaks ${WS_SUBPROTOCOL}; offer it as the WebSocket subprotocol`);
    // The callback outlives the upgrade for the whole session: it must not hold the request.
    const remote = req.socket.remoteAddress;
    this.wss.handleUpgrade(req, socket, head, (ws) => this.ctx.sessions.accept(role, webSocketTransport(ws, remote), remote, 'wss'));
  }
}

/** The first of the relay's ids that the client offered; none is a no_application_protocol alert, as RFC 7301 asks. */
function selectAlpn({ protocols }: { protocols: string[] }): string | undefined {
  return ALPN_IDS.find((id) => protocols.includes(id));
}

function destroyOnError(this: Duplex): void {
  this.destroy();
}

/** Answers an upgrade request with a coded JSON error (what agents and clients read) and closes the socket. */
function rejectUpgrade(socket: Duplex, code: ErrorCode, detail: string, status?: number): void {
  const answer = renderErrorAnswer(code, 'application/json', { detail, retry: false });
  sendRawAnswer(socket, status === undefined ? answer : { ...answer, status });
}
