// Request smuggling and response poisoning against real apps behind a real `warren relay` process,
// on keep-alive connections from the relay to each app: a stock Node `http` server, a WSGI app under
// Debian's gunicorn (gthread worker, keep-alive; it folds `_` and `-` in header names as CGI, PHP
// and Rack do), and a raw TCP app that answers more than it is asked (a second response, a body
// after a HEAD answer). Each case checks that nothing reaches the app beyond the one request the
// relay admitted, that the admitted request carries only the relay's own identity and address
// headers, and that a second client's requests, sent after the attack over the same pooled
// streams, get answers of their own.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type IncomingMessage } from 'node:http';
import { createServer as createNetServer, connect as netConnect, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import fc from 'fast-check';
import t, { type Test } from 'tap';
import { MAX_REQUEST_HEADERS } from '../../../relay/preview/guard.js';
import { freePort } from '../../helpers/apps.js';
import { startAgentProcess, startRelayProcess, previewRequest, TEST_DOMAIN } from '../../helpers/cluster.js';
import { makeTestIdentity } from '../../helpers/identity.js';
import { repoRoot } from '../../helpers/paths.js';

/** What the Node app parsed of one request. */
interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

// --- the apps ---------------------------------------------------------------------------------

/** A stock Node HTTP app (keep-alive on, its defaults): `/slow` answers after 50 ms, anything else echoes. */
async function startNodeApp(): Promise<{ port: number; seen: Seen[]; upgrades: Seen[]; close(): Promise<void> }> {
  const seen: Seen[] = [];
  const upgrades: Seen[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('latin1');
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      const answer = JSON.stringify({ url: req.url, bodyLength: body.length });
      if (req.url === '/slow') setTimeout(() => res.end('the answer for /slow'), 50);
      else res.end(answer);
    });
  });
  server.on('upgrade', (req: IncomingMessage, socket: Socket) => {
    upgrades.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: '' });
    socket.end('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    seen,
    upgrades,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** One whole HTTP/1.1 response with a length. */
const response = (body: string): string => `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
const POISON = response('POISON: an answer nobody asked for');

/**
 * A TCP app that reads request heads (no bodies) and answers each by its path: `/double` with two
 * responses in one write, `/idle` with one now and another when the test calls poisonIdle()
 * (while the stream is idle in the relay's pool), `HEAD
 * /head-body` with a body that is itself a response, `/many-headers` with 600 header lines,
 * `/bare-cr` with a bare CR inside a header; anything else with its own path as the body.
 */
async function startRawApp(): Promise<{ port: number; requests: string[]; poisonIdle(): Promise<boolean>; close(): Promise<void> }> {
  const requests: string[] = [];
  const sockets = new Set<Socket>();
  let idle: Socket | undefined;
  const server = createNetServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let buffered = '';
    socket.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('latin1');
      for (let end = buffered.indexOf('\r\n\r\n'); end !== -1; end = buffered.indexOf('\r\n\r\n')) {
        const [method, path] = buffered.slice(0, buffered.indexOf('\r\n')).split(' ');
        buffered = buffered.slice(end + 4);
        requests.push(`${method} ${path}`);
        if (path === '/double') socket.write(response('first') + POISON);
        else if (method === 'HEAD' && path === '/head-body') socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${POISON.length}\r\n\r\n${POISON}`);
        else if (path === '/many-headers') socket.write(`HTTP/1.1 200 OK\r\n${'X-A: 1\r\n'.repeat(600)}Content-Length: ${POISON.length}\r\n\r\n${POISON}`);
        else if (path === '/idle') {
          idle = socket;
          socket.write(response('first'));
        } else if (path === '/bare-cr') socket.write(`HTTP/1.1 200 OK\r\nX-A: a\rSet-Cookie: stolen=1\r\nContent-Length: 2\r\n\r\nok`);
        else socket.write(response(path ?? ''));
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    requests,
    // Sends a response nobody asked for on the connection that answered `/idle` (idle in the
    // relay's pool by now); resolves true once the relay has closed that connection, false if it
    // is still open 5 s later.
    poisonIdle: () =>
      new Promise((resolve) => {
        const socket = idle!;
        const timer = setTimeout(() => resolve(false), 5_000);
        socket.once('close', () => {
          clearTimeout(timer);
          resolve(true);
        });
        socket.write(POISON);
      }),
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** The WSGI app under gunicorn, one worker with threads, keep-alive 30 s. */
async function startWsgiApp(): Promise<{ port: number; proc: ChildProcess }> {
  const port = await freePort();
  const proc = spawn('gunicorn', ['-k', 'gthread', '-w', '1', '--threads', '4', '--keep-alive', '30', '-b', `127.0.0.1:${port}`, '--chdir', join(repoRoot, 'test/fixtures'), 'wsgi_echo:app'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  await new Promise<void>((resolve, reject) => {
    proc.stderr.on('data', (c: Buffer) => {
      log += c.toString();
      if (log.includes('Booting worker')) resolve();
    });
    proc.once('exit', (code) => reject(new Error(`gunicorn exited (${code}):\n${log}`)));
  });
  return { port, proc };
}

// --- the network ------------------------------------------------------------------------------

const id = await makeTestIdentity();
t.teardown(() => id.remove());
const relay = await startRelayProcess(id);
t.teardown(() => relay.proc.stop('SIGKILL'));
const node = await startNodeApp();
t.teardown(() => node.close());
const raw = await startRawApp();
t.teardown(() => raw.close());
const wsgi = await startWsgiApp();
t.teardown(() => {
  wsgi.proc.kill('SIGKILL');
});
const ports = [node.port, raw.port, wsgi.port];
const agent = await startAgentProcess(id, relay, id.token('agent', 't1', ports), ports.flatMap((p) => ['--port', String(p)]));
t.teardown(() => agent.stop());

const NODE_HOST = `${node.port}-t1.${TEST_DOMAIN}`;
const RAW_HOST = `${raw.port}-t1.${TEST_DOMAIN}`;
const WSGI_HOST = `${wsgi.port}-t1.${TEST_DOMAIN}`;

/** Sends `bytes` on a new connection to the relay (plain HTTP, or TLS with the host as SNI); resolves with all it read until close. */
function exchange(bytes: string, tls: false | string = false): Promise<string> {
  const socket = tls ? tlsConnect({ port: relay.port, host: '127.0.0.1', servername: tls, ca: id.caPem, minVersion: 'TLSv1.3' }) : netConnect({ port: relay.httpPort, host: '127.0.0.1' });
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' ? undefined : reject(err)));
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    socket.once(tls ? 'secureConnect' : 'connect', () => socket.write(bytes, 'latin1'));
  });
}

/** Like exchange(), plain HTTP, writing each part once an answer to every part before it was read. */
function exchangeInSteps(parts: string[]): Promise<string> {
  const socket = netConnect({ port: relay.httpPort, host: '127.0.0.1' });
  return new Promise((resolve, reject) => {
    let text = '';
    let sent = 0;
    const next = (): void => {
      if (sent < parts.length && answers(text).length === sent) socket.write(parts[sent++]!, 'latin1');
    };
    socket.on('data', (c: Buffer) => {
      text += c.toString('latin1');
      // An answer is whole once its body (a length, every answer here has one) has arrived.
      const m = /Content-Length: (\d+)\r\n(?:[^\r\n]+\r\n)*\r\n/i.exec(text.slice(text.lastIndexOf('HTTP/1.1 ')));
      if (m && text.length - text.lastIndexOf('HTTP/1.1 ') >= m.index + m[0].length + Number(m[1])) next();
    });
    socket.on('error', reject);
    socket.on('close', () => resolve(text));
    socket.once('connect', next);
  });
}

/** Status and X-Warren-Error code of each answer in a raw exchange. */
function answers(text: string): { status: number; code: string | undefined }[] {
  return [...text.matchAll(/HTTP\/1\.1 (\d{3}) [^\r\n]*\r\n((?:[^\r\n]+\r\n)*)\r\n/g)].map((m) => ({ status: Number(m[1]), code: /^x-warren-error: (\S+)\r$/im.exec(m[2]!)?.[1] }));
}

let nonce = 0;

/**
 * A second client after an attack: `n` requests one after another (each on its own connection to
 * the relay; the relay's streams to the app are pooled and shared), each of which must be answered
 * for its own path. Returns the paths asked for.
 */
async function secondClient(t: Test, host: string, n = 4): Promise<string[]> {
  const paths: string[] = [];
  for (let i = 0; i < n; i++) {
    const path = `/own/${++nonce}`;
    paths.push(path);
    const res = await previewRequest(relay, host, path);
    t.equal(res.status, 200, `the second client's ${path} is answered`);
    t.match(res.body.toString(), path, `the second client's ${path} gets its own answer`);
    t.notMatch(res.body.toString(), /POISON|\/slow/, 'and never an answer meant for another request');
  }
  return paths;
}

/** Headers an app must never get from outside, as Node lower-cases them. */
const FORGED = { viewer: 'x-warren-viewer', viewerToken: 'x-warren-viewer-token' };

// A request for the Node app whose framing header stands after `before` filler lines.
function withFiller(before: number, framing: 'length' | 'chunked' | 'none', body: string, path = '/innocent', host = NODE_HOST): string {
  const framingLine = framing === 'length' ? `Content-Length: ${body.length}\r\n` : framing === 'chunked' ? 'Transfer-Encoding: chunked\r\n' : '';
  const payload = framing === 'chunked' ? `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n` : framing === 'length' ? body : '';
  return `POST ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n${'a:1\r\n'.repeat(before)}${framingLine}\r\n${payload}`;
}

const SMUGGLED = `GET /slow HTTP/1.1\r\nHost: ${NODE_HOST}\r\nX-Warren-Viewer: ceo@example.com\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n`;

t.test('a framing header past the header-count limit: 431, nothing reaches the app, the next browser gets its own answers', async (t) => {
  for (const [name, tls] of [['plain HTTP', false], ['TLS', NODE_HOST]] as const) {
    for (const framing of ['length', 'chunked'] as const) {
      for (const before of [1_100, 998, MAX_REQUEST_HEADERS]) {
        const from = node.seen.length;
        const got = answers(await exchange(withFiller(before, framing, SMUGGLED), tls));
        t.same(got, [{ status: 431, code: 'ERR_WARREN_HEADERS_TOO_LARGE' }], `${name}, ${framing} after ${before} lines: 431`);
        t.equal(node.seen.length, from, 'the app saw no request');
        const paths = await secondClient(t, NODE_HOST, 2);
        t.same(node.seen.slice(from).map((s) => s.url), paths, 'the app saw exactly the second client\'s requests');
        t.notOk(node.seen.slice(from).some((s) => s.headers[FORGED.viewer] !== undefined), 'none with a forged viewer');
      }
    }
  }
});

t.test('header sets around the limits: refused whole, or one request with exactly its body (property)', async (t) => {
  const counts = fc.oneof(fc.integer({ min: MAX_REQUEST_HEADERS - 4, max: MAX_REQUEST_HEADERS + 2 }), fc.integer({ min: 990, max: 1_010 }));
  await fc.assert(
    fc.asyncProperty(counts, fc.constantFrom('length' as const, 'chunked' as const, 'none' as const), fc.nat(), async (filler, framing, at) => {
      // Host and Connection are two lines more; the framing line (if any) one more, placed among the filler.
      const lines = 2 + filler + (framing === 'none' ? 0 : 1);
      const pos = at % (filler + 1);
      const framingLine = framing === 'length' ? `Content-Length: ${SMUGGLED.length}\r\n` : framing === 'chunked' ? 'Transfer-Encoding: chunked\r\n' : '';
      const payload = framing === 'chunked' ? `${SMUGGLED.length.toString(16)}\r\n${SMUGGLED}\r\n0\r\n\r\n` : framing === 'length' ? SMUGGLED : '';
      const head = `POST /prop HTTP/1.1\r\nHost: ${NODE_HOST}\r\nConnection: close\r\n${'a:1\r\n'.repeat(pos)}${framingLine}${'a:1\r\n'.repeat(filler - pos)}\r\n`;
      const from = node.seen.length;
      const got = answers(await exchange(head + payload));
      const seen = node.seen.slice(from);
      if (lines > MAX_REQUEST_HEADERS) return got.length === 1 && got[0]!.status === 431 && seen.length === 0;
      const body = framing === 'none' ? '' : SMUGGLED;
      return got.length === 1 && got[0]!.status === 200 && seen.length === 1 && seen[0]!.url === '/prop' && seen[0]!.body === body;
    }),
    { numRuns: 40 },
  );
  await secondClient(t, NODE_HOST, 2);
});

/** Cases of duplicated and obfuscated framing: each is refused whole, or admitted as one request with exactly `body`. */
const FRAMING_CORPUS: { name: string; head: string; payload: string; expect: { status: number; body?: string } }[] = [
  { name: 'two Transfer-Encoding: chunked', head: 'Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n', payload: '5\r\nhello\r\n0\r\n\r\n', expect: { status: 400 } },
  { name: 'Transfer-Encoding chunked then identity', head: 'Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n', payload: '5\r\nhello\r\n0\r\n\r\n', expect: { status: 400 } },
  { name: 'Transfer-Encoding: gzip, chunked', head: 'Transfer-Encoding: gzip, chunked\r\n', payload: '5\r\nhello\r\n0\r\n\r\n', expect: { status: 400 } },
  { name: 'Transfer-Encoding: xchunked', head: 'Transfer-Encoding: xchunked\r\n', payload: '5\r\nhello\r\n0\r\n\r\n', expect: { status: 400 } },
  { name: 'Transfer-Encoding folded onto the next line', head: 'Transfer-Encoding: identity\r\n chunked\r\n', payload: '5\r\nhello\r\n0\r\n\r\n', expect: { status: 400 } },
  { name: 'Transfer-Encoding with a tab before the colon', head: 'Transfer-Encoding\t: chunked\r\n', payload: '5\r\nhello\r\n0\r\n\r\n', expect: { status: 400 } },
  { name: 'Transfer-Encoding: CHUNKED (case is not meaning)', head: 'Transfer-Encoding: CHUNKED\r\n', payload: '5\r\nhello\r\n0\r\n\r\n', expect: { status: 200, body: 'hello' } },
  { name: 'chunk extensions', head: 'Transfer-Encoding: chunked\r\n', payload: '5;a=b\r\nhello\r\n0\r\n\r\n', expect: { status: 200, body: 'hello' } },
  { name: 'a trailer that names a viewer (trailers are not forwarded)', head: 'Transfer-Encoding: chunked\r\n', payload: '5\r\nhello\r\n0\r\nX-Warren-Viewer: ceo@example.com\r\n\r\n', expect: { status: 200, body: 'hello' } },
  { name: 'a trailer that names a length', head: 'Transfer-Encoding: chunked\r\n', payload: '5\r\nhello\r\n0\r\nContent-Length: 99\r\n\r\n', expect: { status: 400 } },
  { name: 'two equal Content-Length headers', head: 'Content-Length: 5\r\nContent-Length: 5\r\n', payload: 'hello', expect: { status: 400 } },
  { name: 'Content-Length: 5, 5', head: 'Content-Length: 5, 5\r\n', payload: 'hello', expect: { status: 400 } },
  { name: 'Content-Length: +5', head: 'Content-Length: +5\r\n', payload: 'hello', expect: { status: 400 } },
  { name: 'Content-Length in hex', head: 'Content-Length: 0x5\r\n', payload: 'hello', expect: { status: 400 } },
  { name: 'Content-Length with leading zeros', head: 'Content-Length: 005\r\n', payload: 'hello', expect: { status: 200, body: 'hello' } },
  { name: 'Content-Length and Transfer-Encoding', head: 'Content-Length: 5\r\nTransfer-Encoding: chunked\r\n', payload: '0\r\n\r\n', expect: { status: 400 } },
  { name: 'Expect: 100-continue', head: 'Expect: 100-continue\r\nContent-Length: 5\r\n', payload: 'hello', expect: { status: 200, body: 'hello' } },
];

t.test('duplicated and obfuscated framing: refused whole, or one request with exactly its body', async (t) => {
  for (const { name, head, payload, expect } of FRAMING_CORPUS) {
    const from = node.seen.length;
    const text = await exchange(`POST /framing HTTP/1.1\r\nHost: ${NODE_HOST}\r\nConnection: close\r\n${head}\r\n${payload}`);
    const got = answers(text).filter((a) => a.status !== 100);
    t.equal(got[0]?.status, expect.status, `${name}: ${expect.status}`);
    t.equal(got.length, 1, `${name}: one answer`);
    const seen = node.seen.slice(from);
    if (expect.body === undefined) t.equal(seen.length, 0, `${name}: the app saw nothing`);
    else {
      t.same(seen.map((s) => [s.url, s.body]), [['/framing', expect.body]], `${name}: the app saw one request with its body`);
      t.notOk(seen[0]!.headers.expect ?? seen[0]!.headers[FORGED.viewer], `${name}: no Expect and no viewer from outside reached the app`);
    }
  }
  await secondClient(t, NODE_HOST, 2);
});

t.test('bodies on requests without framing, and pipelined requests, are each checked as a request of their own', async (t) => {
  let from = node.seen.length;
  // Bytes after a bodiless request are the next request, parsed and checked as one: here not HTTP.
  let got = answers(await exchangeInSteps([`GET /first HTTP/1.1\r\nHost: ${NODE_HOST}\r\n\r\n`, 'this is no request\r\n\r\n']));
  t.same(got.map((a) => a.status), [200, 400], 'the first is answered, the bytes after it refused');
  t.same(node.seen.slice(from).map((s) => s.url), ['/first'], 'the app saw only the first');

  from = node.seen.length;
  const forged = 'X-Warren-Viewer: ceo@example.com\r\nX_Warren_Viewer: ceo@example.com\r\nX-Forwarded-For: 6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\n';
  got = answers(await exchange(`GET /one HTTP/1.1\r\nHost: ${NODE_HOST}\r\n\r\nGET /two HTTP/1.1\r\nHost: ${NODE_HOST}\r\n${forged}Connection: close\r\n\r\n`));
  t.same(got.map((a) => a.status), [200, 200], 'two pipelined requests, two answers');
  const seen = node.seen.slice(from);
  t.same(seen.map((s) => s.url), ['/one', '/two'], 'the app saw both, in order');
  t.equal(seen[1]!.headers[FORGED.viewer], undefined, 'the second request lost its forged viewer');
  t.equal(seen[1]!.headers['x-forwarded-for'], '127.0.0.1', 'and got the relay\'s own X-Forwarded-For');
  t.equal(seen[1]!.headers['x-real-ip'], '127.0.0.1', 'and X-Real-IP');

  // A pipelined request for another tunnel's host is refused on its own; the first is served.
  from = node.seen.length;
  got = answers(await exchange(`GET /mine HTTP/1.1\r\nHost: ${NODE_HOST}\r\n\r\nGET /theirs HTTP/1.1\r\nHost: 1-other.${TEST_DOMAIN}\r\nConnection: close\r\n\r\n`));
  t.same(got.map((a) => a.status), [200, 502], 'the second (a tunnel that is offline) gets its own answer');
  t.same(node.seen.slice(from).map((s) => s.url), ['/mine']);
});

t.test('upgrade requests with a body are refused before any stream', async (t) => {
  const upgrade = 'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n';
  const from = node.upgrades.length;
  for (const [name, head, payload] of [
    ['Content-Length', 'Content-Length: 5\r\n', 'hello'],
    ['Transfer-Encoding', 'Transfer-Encoding: chunked\r\n', '5\r\nhello\r\n0\r\n\r\n'],
  ] as const) {
    t.same(answers(await exchange(`GET /ws HTTP/1.1\r\nHost: ${NODE_HOST}\r\n${upgrade}${head}\r\n${payload}`)), [{ status: 400, code: 'ERR_WARREN_BAD_REQUEST' }], `an upgrade with ${name}: 400`);
  }
  t.equal(node.upgrades.length, from, 'the app saw no upgrade');
});

/** Every client-address and identity header, dashed and with underscores, that a client might forge. */
const FORGED_HEADERS =
  'X-Warren-Viewer: ceo@example.com\r\nX_Warren_Viewer: ceo@example.com\r\nX_Warren_Viewer_Token: forged\r\nX-Warren-Viewer-Token: forged\r\n' +
  'X_Forwarded_For: 6.6.6.6\r\nX-Forwarded-For: 6.6.6.6\r\nX_Forwarded_Proto: forged\r\nX-Forwarded-Proto: forged\r\nX_Forwarded_Host: evil.example\r\nForwarded: for=6.6.6.6\r\n' +
  'X-Real-IP: 6.6.6.6\r\nX_Real_IP: 6.6.6.6\r\nClient-IP: 6.6.6.6\r\nClient_IP: 6.6.6.6\r\nTrue-Client-IP: 6.6.6.6\r\nTrue_Client_IP: 6.6.6.6\r\nX-Client-IP: 6.6.6.6\r\nCF-Connecting-IP: 6.6.6.6\r\n';

t.test('a WSGI app (which folds _ into -) sees only the relay\'s identity and address headers', async (t) => {
  for (const [name, tls] of [['plain HTTP', false], ['TLS', WSGI_HOST]] as const) {
    const text = await exchange(`GET /whoami HTTP/1.1\r\nHost: ${WSGI_HOST}\r\n${FORGED_HEADERS}Connection: close\r\n\r\n`, tls);
    t.same(answers(text).map((a) => a.status), [200], `${name}: answered`);
    const seen = JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)) as { env: Record<string, string> };
    t.same(
      { xff: seen.env.HTTP_X_FORWARDED_FOR, realIp: seen.env.HTTP_X_REAL_IP, proto: seen.env.HTTP_X_FORWARDED_PROTO, host: seen.env.HTTP_X_FORWARDED_HOST },
      // The test relay's plain listener stands behind TLS terminated in front (no http: public URL).
      { xff: '127.0.0.1', realIp: '127.0.0.1', proto: 'https', host: WSGI_HOST },
      `${name}: the address headers are the relay's own, one value each`,
    );
    for (const v of ['HTTP_X_WARREN_VIEWER', 'HTTP_X_WARREN_VIEWER_TOKEN', 'HTTP_CLIENT_IP', 'HTTP_TRUE_CLIENT_IP', 'HTTP_X_CLIENT_IP', 'HTTP_CF_CONNECTING_IP', 'HTTP_FORWARDED']) {
      t.equal(seen.env[v], undefined, `${name}: no ${v}`);
    }
  }
});

t.test('a WebSocket upgrade carries only the relay\'s identity and address headers', async (t) => {
  const upgrade = 'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n';
  for (const [name, tls] of [['plain HTTP', false], ['TLS', NODE_HOST]] as const) {
    const from = node.upgrades.length;
    const text = await exchange(`GET /ws HTTP/1.1\r\nHost: ${NODE_HOST}\r\n${FORGED_HEADERS}${upgrade}\r\n`, tls);
    t.match(text, /^HTTP\/1\.1 101 /, `${name}: switched`);
    const seen = node.upgrades.slice(from);
    t.equal(seen.length, 1);
    const h = seen[0]!.headers;
    t.same([h['x-forwarded-for'], h['x-real-ip'], h[FORGED.viewer], h[FORGED.viewerToken], h['client-ip'], h['true-client-ip'], h.forwarded], ['127.0.0.1', '127.0.0.1', undefined, undefined, undefined, undefined, undefined], `${name}: the relay's own address, no forged identity`);
    t.notOk(Object.keys(h).some((k) => k.includes('_')), `${name}: no header name with an underscore`);
  }
});

// (An app that writes an unasked-for response at the moment the relay sends the next request on that
// stream answers that request with it: no proxy that reuses connections can tell. Only the app's
// own viewers see the app's own bytes; docs/SECURITY.md says so.)
t.test('an app that answers more than it was asked poisons no other request', async (t) => {
  const cases: { path: string; method?: string; status: number }[] = [
    { path: '/double', status: 200 },
    { path: '/head-body', method: 'HEAD', status: 200 },
    { path: '/many-headers', status: 502 },
    { path: '/bare-cr', status: 502 },
  ];
  for (const { path, method, status } of cases) {
    const res = await previewRequest(relay, RAW_HOST, path, { method: method ?? 'GET' });
    t.equal(res.status, status, `${method ?? 'GET'} ${path}: ${status}`);
    t.notMatch(res.body.toString(), /POISON/, `${path}: the answer is not the extra one`);
    t.equal(res.headers['set-cookie'], undefined, `${path}: no header smuggled in by a bare CR`);
    await secondClient(t, RAW_HOST, 4);
  }
});

t.test('a pooled stream on which the app sends bytes while idle is closed, never handed to the next request', async (t) => {
  const first = await previewRequest(relay, RAW_HOST, '/idle');
  t.equal(first.body.toString(), 'first');
  t.ok(await raw.poisonIdle(), 'the relay closed the stream (and the agent the app connection) that carried the extra bytes');
  await secondClient(t, RAW_HOST, 3);
});
