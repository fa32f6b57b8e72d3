import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import { startProcess, type Proc } from './process.js';

/** A sandbox app for tests: it answers what a test needs to check delivery. */
export interface TestApp {
  port: number;
  server: Server;
  /** Requests seen, by method and path. */
  requests: { method: string; url: string; headers: Record<string, string | string[] | undefined> }[];
  /**
   * Holds the next request for `path` open: resolves, once that request has arrived, with a
   * function that answers it with `body`.
   */
  hold(path: string): Promise<(body: string) => void>;
  close(): Promise<void>;
}

/**
 * A Node HTTP app on 127.0.0.1:0:
 * - `POST /sha256` answers the sha256 and length of the body it received;
 * - `GET /sse` sends one event, then holds the response open until `GET /sse-end`;
 * - `GET /bytes/N` sends N bytes (chunked);
 * - anything else answers `hello from the app`.
 */
export async function startTestApp(): Promise<TestApp> {
  const requests: TestApp['requests'] = [];
  const openSse = new Set<ServerResponse>();
  const holds = new Map<string, (release: (body: string) => void) => void>();
  const server = createServer((req, res) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    const url = req.url ?? '/';
    const hold = holds.get(url);
    if (hold) {
      holds.delete(url);
      hold((body) => res.end(body));
      return;
    }
    if (req.method === 'POST' && url === '/sha256') {
      const hash = createHash('sha256');
      let length = 0;
      req.on('data', (c: Buffer) => {
        hash.update(c);
        length += c.length;
      });
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ sha256: hash.digest('hex'), length }));
      });
      return;
    }
    if (url === '/sse') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.write('data: first\n\n');
      openSse.add(res);
      return;
    }
    if (url === '/sse-end') {
      for (const r of openSse) r.end('data: last\n\n');
      openSse.clear();
      res.end('ended\n');
      return;
    }
    const bytes = /^\/bytes\/(\d+)$/.exec(url);
    if (bytes) {
      let left = Number(bytes[1]);
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      const write = (): void => {
        while (left > 0) {
          const n = Math.min(left, chunk.length);
          left -= n;
          if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
            res.once('drain', write);
            return;
          }
        }
        res.end();
      };
      write();
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain', 'set-cookie': ['a=1; Path=/', 'b=2; Path=/'] });
    res.end('hello from the app\n');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    server,
    requests,
    hold: (path) => new Promise((resolve) => holds.set(path, resolve)),
    close: () =>
      new Promise((resolve) => {
        for (const r of openSse) r.destroy();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** A port on 127.0.0.1 where nothing listens now (bound, then released). */
export async function freePort(): Promise<number> {
  const probe = createServer();
  probe.listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const port = (probe.address() as AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

/** python3 -m http.server serving `dir` on 127.0.0.1 at a free port; resolves once it answers. */
export async function startPythonHttpServer(dir: string): Promise<{ port: number; proc: Proc }> {
  // A free port, released; python then binds it.
  const port = await freePort();
  const proc = startProcess('python3', ['-u', '-m', 'http.server', String(port), '--bind', '127.0.0.1', '--directory', dir]);
  await proc.waitFor(/Serving HTTP/);
  return { port, proc };
}

/** What an echo app saw of one request or WebSocket handshake. */
export interface SeenRequest {
  method: string;
  url: string;
  rawHeaders: string[];
}

/** An app that shows each request back and echoes WebSocket messages. */
export interface EchoApp {
  port: number;
  server: Server;
  /** Every HTTP request and WebSocket handshake, in order. */
  seen: SeenRequest[];
  close(): Promise<void>;
}

/**
 * An HTTP + WebSocket app on 127.0.0.1 (`port` 0: any free port):
 * - `GET /page...` answers an HTML page that shows the X-Warren-Viewer header it received
 *   (`<p id="viewer">`), the request target (`<p id="url">`) and sets the app's own cookie;
 * - anything else answers JSON `{ method, url, rawHeaders }`;
 * - a WebSocket on any path sends `hello <X-Warren-Viewer or "nobody">`, then echoes messages.
 */
export async function startEchoApp(port = 0): Promise<EchoApp> {
  const seen: SeenRequest[] = [];
  const escape = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  const server = createServer((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', rawHeaders: req.rawHeaders });
    if ((req.url ?? '').startsWith('/page')) {
      const viewer = req.headers['x-warren-viewer'];
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'set-cookie': 'app_cookie=kept; Path=/' });
      res.end(`<!doctype html><title>echo app</title><h1>echo app</h1><p id="viewer">${escape(typeof viewer === 'string' ? viewer : 'nobody')}</p><p id="url">${escape(req.url ?? '')}</p>`);
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ method: req.method, url: req.url, rawHeaders: req.rawHeaders }));
  });
  const wss = new WebSocketServer({ server, perMessageDeflate: false });
  wss.on('connection', (ws, req) => {
    seen.push({ method: 'UPGRADE', url: req.url ?? '', rawHeaders: req.rawHeaders });
    const viewer = req.headers['x-warren-viewer'];
    ws.send(`hello ${typeof viewer === 'string' ? viewer : 'nobody'}`);
    ws.on('message', (data, binary) => ws.send(data, { binary }));
  });
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    server,
    seen,
    close: () =>
      new Promise((resolve) => {
        for (const c of wss.clients) c.terminate();
        wss.close();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
