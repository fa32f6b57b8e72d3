/**
 * Request smuggling and host hygiene: every request below is refused with 400 or 421 before the
 * backend is asked for a stream, over plain TCP and over real TLS (a throwaway self-signed
 * ECDSA P-256 certificate made with openssl). Also the slow-client timeouts of the server.
 *
 * The backend is a stand-in for the multiplexer (built separately): it returns a real
 * net.connect() socket to a real app on loopback (see preview-helpers.ts).
 */
import { createServer } from 'node:http';
import { connect as tlsConnect } from 'node:tls';
import t from 'tap';
import { InvalidArgumentError } from '../../../protocol/errors.js';
import { PreviewProxy } from '../../../relay/preview/proxy.js';
import { PREVIEW_SERVER_DEFAULTS, previewServerOptions } from '../../../relay/preview/listener.js';
import { DOMAIN, LoopbackBackend, closeOnTeardown, listen, rawExchange, rawValues, selfSignedCert, startApp, startProxy } from '../../helpers/preview.js';

const HOST = '3000-ab12cd.preview.test';

/** Raw requests the proxy must refuse, with the status and code each gets. */
const CORPUS: { name: string; request: string; status: number; code: string }[] = [
  {
    name: 'Content-Length with Transfer-Encoding',
    request: `POST / HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
    status: 400,
    code: 'ERR_WARREN_BAD_REQUEST',
  },
  {
    name: 'two Content-Length headers',
    request: `POST / HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx`,
    status: 400,
    code: 'ERR_WARREN_BAD_REQUEST',
  },
  { name: 'duplicate Host', request: `GET / HTTP/1.1\r\nHost: ${HOST}\r\nHost: 3000-other.preview.test\r\n\r\n`, status: 400, code: 'ERR_WARREN_BAD_REQUEST' },
  { name: 'duplicate Host, same value, other case', request: `GET / HTTP/1.1\r\nHost: ${HOST}\r\nhost: ${HOST}\r\n\r\n`, status: 400, code: 'ERR_WARREN_BAD_REQUEST' },
  { name: 'no Host (HTTP/1.0)', request: 'GET / HTTP/1.0\r\n\r\n', status: 400, code: 'ERR_WARREN_BAD_REQUEST' },
  { name: 'absolute-form target for another host', request: `GET http://3000-other.preview.test/ HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`, status: 400, code: 'ERR_WARREN_BAD_REQUEST' },
  { name: 'absolute-form target for another port', request: `GET http://${HOST}:8080/ HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`, status: 400, code: 'ERR_WARREN_BAD_REQUEST' },
  { name: 'absolute-form target with user information', request: `GET http://user@${HOST}/ HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`, status: 400, code: 'ERR_WARREN_BAD_REQUEST' },
  { name: 'foreign Host', request: 'GET / HTTP/1.1\r\nHost: example.com\r\n\r\n', status: 421, code: 'ERR_WARREN_MISDIRECTED' },
  { name: 'preview label under another domain', request: `GET / HTTP/1.1\r\nHost: ${HOST}.evil.com\r\n\r\n`, status: 421, code: 'ERR_WARREN_MISDIRECTED' },
  { name: 'two labels', request: `GET / HTTP/1.1\r\nHost: x.${HOST}\r\n\r\n`, status: 421, code: 'ERR_WARREN_MISDIRECTED' },
  { name: 'the bare domain', request: `GET / HTTP/1.1\r\nHost: ${DOMAIN}\r\n\r\n`, status: 421, code: 'ERR_WARREN_MISDIRECTED' },
  {
    name: 'upgrade with a foreign Host',
    request: 'GET / HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    status: 421,
    code: 'ERR_WARREN_MISDIRECTED',
  },
  {
    name: 'upgrade with a duplicate Host',
    request: `GET / HTTP/1.1\r\nHost: ${HOST}\r\nHost: example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`,
    status: 400,
    code: 'ERR_WARREN_BAD_REQUEST',
  },
];

t.test('the smuggling and host corpus is refused before any stream is opened', async (t) => {
  const app = await startApp(t, (_req, res) => res.end('app'));
  const { backend, port } = await startProxy(t);
  backend.expose('ab12cd', 3000, app.port).expose('other', 3000, app.port);
  for (const { name, request, status, code } of CORPUS) {
    const raw = await rawExchange(port, request);
    t.match(raw, new RegExp(`^HTTP/1\\.1 ${status} `), `${name}: ${status}`);
    t.match(raw, new RegExp(`\\r\\nX-Warren-Error: ${code}\\r\\n`), `${name}: ${code}`);
  }
  t.equal(backend.calls.length, 0, 'openStream was never called');
});

t.test('the proxy makes its own checks even behind a lenient parser', async (t) => {
  // insecureHTTPParser lets Content-Length with Transfer-Encoding through Node's parser.
  const backend = new LoopbackBackend();
  const proxy = new PreviewProxy({ domain: DOMAIN, backend });
  const server = createServer({ insecureHTTPParser: true }, (req, res) => proxy.handleRequest(req, res));
  closeOnTeardown(t, server);
  const port = await listen(server);
  const raw = await rawExchange(port, `POST / HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`);
  t.match(raw, /^HTTP\/1\.1 400 /);
  t.match(raw, /X-Warren-Error: ERR_WARREN_BAD_REQUEST/);
  t.match(raw, /both Content-Length and Transfer-Encoding/);
  t.equal(backend.calls.length, 0);
});

t.test('an absolute-form target that agrees with Host is forwarded in origin-form', async (t) => {
  let url = '';
  const app = await startApp(t, (req, res) => {
    url = req.url ?? '';
    res.end('ok');
  });
  const { backend, port } = await startProxy(t);
  backend.expose('ab12cd', 3000, app.port);
  const raw = await rawExchange(port, `GET HTTP://${HOST.toUpperCase()}:80/a/b?c=d HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`);
  t.match(raw, /^HTTP\/1\.1 200 /);
  t.equal(url, '/a/b?c=d');
});

/** Sends one request over TLS with the given SNI name and Host header; returns the raw answer. */
function tlsExchange(port: number, ca: string, servername: string, host: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, servername, ca, minVersion: 'TLSv1.3' });
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', reject);
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    socket.on('secureConnect', () => socket.write(`GET / HTTP/1.1\r\nHost: ${host}\r\nAccept: application/json\r\nConnection: close\r\n\r\n`));
  });
}

t.test('over TLS, a Host that differs from the SNI name gets 421 and no stream', async (t) => {
  const { cert, key } = selfSignedCert(t);
  let proto: string[] = [];
  const app = await startApp(t, (req, res) => {
    proto = rawValues(req.rawHeaders, 'x-forwarded-proto');
    res.end('secure app');
  });
  const { backend, port } = await startProxy(t, { tls: { cert, key } });
  backend.expose('ab12cd', 3000, app.port).expose('other', 3000, app.port);

  const mismatch = await tlsExchange(port, cert, '3000-other.preview.test', HOST);
  t.match(mismatch, /^HTTP\/1\.1 421 /);
  t.match(mismatch, /"code":"ERR_WARREN_MISDIRECTED"/);
  t.equal(backend.calls.length, 0, 'no stream for the mismatched request');

  const match = await tlsExchange(port, cert, HOST, `${HOST.toUpperCase()}:443`);
  t.match(match, /^HTTP\/1\.1 200 /);
  t.match(match, /secure app$/);
  t.equal(backend.calls.length, 1);
  t.equal(backend.calls[0]!.info.secure, true);
  t.same(proto, ['https']);
});

t.test('a client that sends its head too slowly is closed with 408 ERR_WARREN_TIMEOUT', async (t) => {
  const { backend, port } = await startProxy(t, { headersTimeoutMs: 200, requestTimeoutMs: 200, connectionsCheckingIntervalMs: 50 });
  const started = Date.now();
  const raw = await rawExchange(port, `GET / HTTP/1.1\r\nHost: ${HOST}\r\nX-Slow: `); // never finished
  const elapsed = Date.now() - started;
  t.match(raw, /^HTTP\/1\.1 408 /);
  t.match(raw, /X-Warren-Error: ERR_WARREN_TIMEOUT/);
  t.ok(elapsed < 2_000, `closed after ${elapsed} ms`);
  t.equal(backend.calls.length, 0);
});

t.test('server timeouts have seconds-level defaults and are validated', async (t) => {
  t.same(previewServerOptions(), { headersTimeout: 10_000, requestTimeout: 60_000, keepAliveTimeout: 5_000, connectionsCheckingInterval: 1_000 });
  t.equal(PREVIEW_SERVER_DEFAULTS.keepAliveTimeoutMs, 5_000);
  t.same(previewServerOptions({ keepAliveTimeoutMs: 1_000, requestTimeoutMs: 0 }).keepAliveTimeout, 1_000);
  t.throws(() => previewServerOptions({ headersTimeoutMs: -1 }), InvalidArgumentError);
  t.throws(() => previewServerOptions({ headersTimeoutMs: 20_000, requestTimeoutMs: 10_000 }), /requestTimeoutMs/);
  t.throws(() => previewServerOptions({ connectionsCheckingIntervalMs: 0 }), /connectionsCheckingIntervalMs/);
  t.throws(() => new PreviewProxy({ domain: 'not a domain', backend: new LoopbackBackend() }), /domain/);
});

t.test('a header block too large for Node gets 431 with a code', async (t) => {
  const { backend, port } = await startProxy(t);
  const raw = await rawExchange(port, `GET / HTTP/1.1\r\nHost: ${HOST}\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
  t.match(raw, /^HTTP\/1\.1 431 /);
  t.match(raw, /X-Warren-Error: ERR_WARREN_HEADERS_TOO_LARGE/);
  t.equal(backend.calls.length, 0);
});
