/**
 * Shared parts of the preview proxy suites.
 *
 * The backend here stands in for the multiplexer, which is built separately: openStream()
 * returns a real `net.connect()` socket to a real app server on 127.0.0.1, so every byte crosses
 * real sockets. For ports marked `duplex` (and for the "app refused" case) it returns instead a
 * plain Duplex around the socket, as the multiplexer will: that Duplex turns a refused connection
 * into a WarrenError ERR_WARREN_APP_UNREACHABLE, which is what the agent reports.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, request, type IncomingMessage, type RequestListener, type Server } from 'node:http';
import { connect, createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import type { Test } from 'tap';
import { WarrenError } from '../../protocol/errors.js';
import type { PreviewBackend, PreviewStreamInfo, PreviewTarget } from '../../relay/preview/proxy.js';
import { PreviewProxy } from '../../relay/preview/proxy.js';
import { createPreviewListener, type PreviewListenerOptions } from '../../relay/preview/listener.js';

/** The preview domain every suite uses. */
export const DOMAIN = 'preview.test';

/** A socket to the app wrapped in a plain Duplex (not a net.Socket), like a multiplexed stream. */
export class DialedStream extends Duplex {
  private readonly socket: Socket;

  constructor(port: number) {
    super({ allowHalfOpen: true });
    this.socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    this.socket.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) this.socket.pause();
    });
    this.socket.on('end', () => this.push(null));
    this.socket.on('error', (err: Error & { code?: string }) => {
      this.destroy(err.code === 'ECONNREFUSED' ? new WarrenError('ERR_WARREN_APP_UNREACHABLE', `nothing listens on port ${port}`, { cause: err }) : err);
    });
    this.socket.on('close', (hadError) => {
      if (hadError) this.destroy();
    });
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.socket.write(chunk, callback);
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.socket.end(callback);
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.socket.destroy();
    callback(err);
  }
}

/** One exposed port of a fake tunnel: where its app listens and how streams are made. */
export interface ExposedPort {
  appPort: number;
  /** Wrap the socket in a DialedStream instead of returning the net.Socket itself. */
  duplex?: boolean;
}

/** A backend that dials apps on loopback and records every call. */
export class LoopbackBackend implements PreviewBackend {
  /** tunnelId -> exposed port -> app. Tunnels missing here are offline. */
  readonly tunnels = new Map<string, Map<number, ExposedPort>>();
  /** Every openStream call, in order. */
  readonly calls: { target: PreviewTarget; info: PreviewStreamInfo }[] = [];
  /** Every stream returned, in order. */
  readonly streams: Duplex[] = [];

  /** Exposes `port` of `tunnelId`, served by the app on `appPort`. */
  expose(tunnelId: string, port: number, appPort: number, duplex = false): this {
    if (!this.tunnels.has(tunnelId)) this.tunnels.set(tunnelId, new Map());
    this.tunnels.get(tunnelId)!.set(port, { appPort, duplex });
    return this;
  }

  openStream(target: PreviewTarget, info: PreviewStreamInfo): Duplex {
    this.calls.push({ target, info });
    const ports = this.tunnels.get(target.tunnelId);
    if (!ports) throw new WarrenError('ERR_WARREN_TUNNEL_OFFLINE');
    const exposed = ports.get(target.port);
    if (!exposed) throw new WarrenError('ERR_WARREN_PORT_NOT_EXPOSED');
    const stream = exposed.duplex ? new DialedStream(exposed.appPort) : connect({ port: exposed.appPort, host: '127.0.0.1', allowHalfOpen: true });
    this.streams.push(stream);
    return stream;
  }
}

/** Listens on 127.0.0.1:0 and returns the port. */
export async function listen(server: Server | ReturnType<typeof createNetServer>): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return (server.address() as AddressInfo).port;
}

/** Closes a server and every connection it still holds; registered with t.teardown. */
export function closeOnTeardown(t: Test, server: Server): void {
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  );
}

/** Starts an app server on 127.0.0.1:0 and returns its port. */
export async function startApp(t: Test, handler: RequestListener, configure?: (server: Server) => void): Promise<{ port: number; server: Server }> {
  const server = createServer(handler);
  configure?.(server);
  closeOnTeardown(t, server);
  return { port: await listen(server), server };
}

/** A port on 127.0.0.1 where nothing listens (bound, then released). */
export async function unusedPort(): Promise<number> {
  const server = createNetServer();
  const port = await listen(server);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A proxy on a preview server on 127.0.0.1:0, with its backend. */
export interface ProxyFixture {
  backend: LoopbackBackend;
  proxy: PreviewProxy;
  server: Server;
  port: number;
}

/** Starts the relay's preview listener (HTTP unless options.tls) for a proxy with a fresh LoopbackBackend. */
export async function startProxy(t: Test, options: PreviewListenerOptions = {}, proxyOptions: { tlsTerminatedInFront?: boolean } = {}): Promise<ProxyFixture> {
  const backend = new LoopbackBackend();
  const proxy = new PreviewProxy({ domain: DOMAIN, backend, ...proxyOptions });
  const server = createPreviewListener({ request: (req, res) => proxy.handleRequest(req, res), upgrade: (req, socket, head) => proxy.handleUpgrade(req, socket, head) }, options);
  closeOnTeardown(t, server);
  return { backend, proxy, server, port: await listen(server) };
}

/** A response read whole: status, raw headers and body. */
export interface FullResponse {
  status: number;
  rawHeaders: string[];
  headers: IncomingMessage['headers'];
  body: Buffer;
}

/** Sends one request to the proxy (Host set to `host`) and reads the whole response. */
export function fetchVia(port: number, host: string, options: { method?: string; path?: string; headers?: Record<string, string | string[]>; body?: Buffer } = {}): Promise<FullResponse> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: options.method ?? 'GET', path: options.path ?? '/', headers: { host, ...options.headers }, agent: false });
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => resolve({ status: res.statusCode ?? 0, rawHeaders: res.rawHeaders, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.end(options.body);
  });
}

/** Writes raw bytes to the proxy and reads until the server closes the connection. */
export function rawExchange(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1' });
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', reject);
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    socket.write(bytes);
  });
}

/** Header values named `name` (any case) in a raw header list. */
export function rawValues(raw: readonly string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) if (raw[i]!.toLowerCase() === name.toLowerCase()) out.push(raw[i + 1]!);
  return out;
}

/** A throwaway self-signed ECDSA P-256 certificate for `*.{DOMAIN}`, made with openssl. */
export function selfSignedCert(t: Test): { cert: string; key: string } {
  const dir = mkdtempSync(join(tmpdir(), 'warren-preview-cert-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1',
    '-subj', `/CN=${DOMAIN}`, '-addext', `subjectAltName=DNS:*.${DOMAIN}`,
  ], { stdio: 'ignore' });
  return { cert: readFileSync(join(dir, 'cert.pem'), 'utf8'), key: readFileSync(join(dir, 'key.pem'), 'utf8') };
}

/** Resolves on the first `event` of an emitter. */
export function once<T = void>(emitter: NodeJS.EventEmitter, event: string): Promise<T> {
  return new Promise((resolve) => emitter.once(event, (value: T) => resolve(value)));
}
