/**
 * The admin listener (`--admin 127.0.0.1:9090`): `/metrics` (Prometheus text), `/healthz` (the
 * process is alive), `/readyz` (keys loaded, listening, not draining), and the admin API, which
 * needs `Authorization: Bearer <admin token>`:
 *
 *   GET    /v1/tunnels          every connected tunnel
 *   GET    /v1/tunnels/{id}     one tunnel with its open streams (in a relay network, a tunnel
 *                                another relay holds: that relay, its region and the ports)
 *   DELETE /v1/tunnels/{id}     disconnect the tunnel's agent (GOAWAY, then close)
 *   POST   /v1/revoke           {"jti": "..."}: refuse the token from now on and close its sessions
 *   POST   /v1/drain            start draining, as SIGTERM does; optional {"hint": "wss://other-relay"}
 *
 * Without an admin token the API answers 403 and only metrics and health are served.
 */
import { timingSafeEqual, createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import { WarrenError } from '../protocol/index.js';
import type { HostPort } from '../cli/parse.js';
import { listenOn } from './listen.js';
import type { Logger } from '../log/logger.js';

/** A tunnel as the admin API shows it. */
export interface TunnelView {
  tunnel: string;
  ports: { port: number; private: boolean; tcpEndpoint?: string }[];
  connectedAt: string;
  remoteAddress: string | undefined;
  sessionId: string;
  streams: number;
  rttMs: number | undefined;
  bytesIn: number;
  bytesOut: number;
}

/** A tunnel held by another relay of the network. */
export interface RemoteTunnelView {
  tunnel: string;
  /** The relay that holds it, and that relay's region. */
  relay: string;
  region: string;
  ports: { port: number; private: boolean; tcpEndpoint?: string }[];
  connectedAt: string;
  sessionId: string;
}

/** What the admin listener asks of the relay. */
export interface AdminBackend {
  registry: Registry;
  ready(): boolean;
  /** A word on what the relay serves from when it is ready but degraded (the directory unreachable); undefined when all is well. */
  degraded?(): string | undefined;
  tunnels(): TunnelView[];
  streams(tunnelId: string): { id: number; port: number; kind: string; bufferedSendBytes: number; readableBytes: number }[] | undefined;
  disconnect(tunnelId: string): boolean;
  /** In a relay network: a tunnel another relay holds, as the directory knows it. */
  elsewhere?(tunnelId: string): RemoteTunnelView | undefined;
  revoke(jti: string): number;
  drain(hint: string | undefined): void;
}

/** Constant-time comparison of two secrets of any length. */
function secretEquals(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

function fail(res: ServerResponse, err: WarrenError, status = err.status): void {
  json(res, status, { error: { code: err.code, message: err.message, status } });
}

/** Reads a small JSON body (at most 4 KiB). */
async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > 4096) throw new WarrenError('ERR_WARREN_BAD_REQUEST', 'request body over 4 KiB');
    chunks.push(c as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new WarrenError('ERR_WARREN_BAD_REQUEST', 'request body is not JSON');
  }
}

/** The admin HTTP listener. */
export class AdminServer {
  private readonly server: Server;

  constructor(
    private readonly backend: AdminBackend,
    private readonly token: string | undefined,
    private readonly log: Logger,
  ) {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) fail(res, err instanceof WarrenError ? err : new WarrenError('ERR_WARREN_INTERNAL', String(err)));
        else res.destroy();
      });
    });
    this.server.headersTimeout = 10_000;
    this.server.requestTimeout = 30_000;
  }

  /** Listens on `at`. */
  listen(at: HostPort): Promise<HostPort> {
    return listenOn(this.server, at, 'admin');
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin');
    const path = url.pathname;
    if (req.method === 'GET' && path === '/metrics') {
      const body = await this.backend.registry.metrics();
      res.writeHead(200, { 'content-type': this.backend.registry.contentType });
      res.end(body);
      return;
    }
    if (req.method === 'GET' && path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok\n');
      return;
    }
    if (req.method === 'GET' && path === '/readyz') {
      const ready = this.backend.ready();
      const degraded = ready ? this.backend.degraded?.() : undefined;
      res.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' });
      res.end(ready ? (degraded ? `ready, degraded: ${degraded}\n` : 'ready\n') : 'not ready: draining or not listening\n');
      return;
    }
    if (!path.startsWith('/v1/')) return fail(res, new WarrenError('ERR_WARREN_BAD_REQUEST', `no such endpoint: ${path}`), 404);
    if (!this.token) return fail(res, new WarrenError('ERR_WARREN_FORBIDDEN', 'the admin API is off: start the relay with --admin-token'), 403);
    const auth = req.headers.authorization ?? '';
    const presented = /^Bearer (.+)$/.exec(auth)?.[1];
    if (!presented || !secretEquals(presented, this.token)) {
      res.setHeader('www-authenticate', 'Bearer');
      return fail(res, new WarrenError('ERR_WARREN_UNAUTHORIZED', 'the admin API needs Authorization: Bearer <admin token>'));
    }
    const tunnelMatch = /^\/v1\/tunnels\/([a-z0-9-]{1,63})$/.exec(path);
    if (req.method === 'GET' && path === '/v1/tunnels') return json(res, 200, { tunnels: this.backend.tunnels() });
    if (req.method === 'GET' && tunnelMatch) {
      const tunnel = this.backend.tunnels().find((t) => t.tunnel === tunnelMatch[1]);
      const remote = tunnel ? undefined : this.backend.elsewhere?.(tunnelMatch[1]!);
      if (remote) return json(res, 200, { ...remote, heldHere: false });
      if (!tunnel) return fail(res, new WarrenError('ERR_WARREN_TUNNEL_OFFLINE', `tunnel ${tunnelMatch[1]} is not connected`), 404);
      return json(res, 200, { ...tunnel, openStreams: this.backend.streams(tunnelMatch[1]!) ?? [] });
    }
    if (req.method === 'DELETE' && tunnelMatch) {
      if (!this.backend.disconnect(tunnelMatch[1]!)) return fail(res, new WarrenError('ERR_WARREN_TUNNEL_OFFLINE', `tunnel ${tunnelMatch[1]} is not connected`), 404);
      this.log.info({ event: 'admin_disconnect', tunnelId: tunnelMatch[1] }, 'tunnel disconnected by the admin API');
      return json(res, 200, { disconnected: tunnelMatch[1] });
    }
    if (req.method === 'POST' && path === '/v1/revoke') {
      const body = (await readJson(req)) as { jti?: unknown };
      if (typeof body?.jti !== 'string' || body.jti.length === 0 || body.jti.length > 128) return fail(res, new WarrenError('ERR_WARREN_BAD_REQUEST', 'send {"jti": "<token id>"}'));
      const closed = this.backend.revoke(body.jti);
      this.log.info({ event: 'admin_revoke', jti: body.jti, closed }, 'token revoked');
      return json(res, 200, { revoked: body.jti, sessionsClosed: closed });
    }
    if (req.method === 'POST' && path === '/v1/drain') {
      const body = req.headers['content-length'] === '0' || req.headers['content-length'] === undefined ? {} : ((await readJson(req)) as { hint?: unknown });
      const hint = body?.hint;
      if (hint !== undefined && (typeof hint !== 'string' || !/^wss:\/\/[^\s]{1,500}$/.test(hint))) return fail(res, new WarrenError('ERR_WARREN_BAD_REQUEST', 'hint must be a wss:// relay URL'));
      this.log.info({ event: 'admin_drain', hint }, 'drain started by the admin API');
      this.backend.drain(hint);
      return json(res, 202, { draining: true });
    }
    return fail(res, new WarrenError('ERR_WARREN_BAD_REQUEST', `no such endpoint: ${req.method} ${path}`), 404);
  }
}
