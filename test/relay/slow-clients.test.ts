// Slow and stalled clients against a real `warren relay` process, with its timeouts set to a few
// seconds: slowloris heads, trickled bodies, a reader that stops reading a large response, idle
// upgraded connections (a preview WebSocket, a session WebSocket that never sends its HELLO) and
// TLS handshakes that stall. Each connection must be closed by the relay after at least its
// timeout and well before three times it: seconds, not Node's defaults (minutes).
import { once } from 'node:events';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import t, { type Test } from 'tap';
import { WebSocket } from 'ws';
import { WS_SUBPROTOCOL } from '../../protocol/index.js';
import { makeTestIdentity } from '../helpers/identity.js';
import { startEchoApp, startTestApp } from '../helpers/apps.js';
import { startAgentProcess, startRelayProcess, TEST_DOMAIN } from '../helpers/cluster.js';

const HEADERS_MS = 2_000;
const REQUEST_MS = 4_000;
const IDLE_MS = 3_000;
/** How often a slow client sends one more piece: well inside every timeout, so only the timeout under test can fire. */
const TRICKLE_MS = 250;

const id = await makeTestIdentity();
t.teardown(() => id.remove());
const relay = await startRelayProcess(id, ['--headers-timeout', `${HEADERS_MS}ms`, '--request-timeout', `${REQUEST_MS}ms`, '--idle-timeout', `${IDLE_MS}ms`]);
t.teardown(() => relay.proc.stop('SIGKILL'));
const app = await startTestApp();
t.teardown(() => app.close());
const echo = await startEchoApp();
t.teardown(() => echo.close());
const agent = await startAgentProcess(id, relay, id.token('agent', 'slowbox', [app.port, echo.port]), ['--port', String(app.port), '--port', String(echo.port)]);
t.teardown(() => agent.stop());
const appHost = `${app.port}-slowbox.${TEST_DOMAIN}`;
const echoHost = `${echo.port}-slowbox.${TEST_DOMAIN}`;

/** Asserts that `ms` lies in [timeout, 3 × timeout). */
function withinTimeout(t: Test, ms: number, timeoutMs: number, what: string): void {
  t.ok(ms >= timeoutMs, `${what}: closed after ${Math.round(ms)} ms, not before the ${timeoutMs} ms timeout`);
  t.ok(ms < 3 * timeoutMs, `${what}: closed after ${Math.round(ms)} ms, before ${3 * timeoutMs} ms`);
}

/** Resolves with the ms from `start` until `socket` closes; bytes it received are collected when `collect`. */
function closedAfter(socket: Socket, start: number, collect = true): Promise<{ ms: number; received: string }> {
  const chunks: Buffer[] = [];
  if (collect) socket.on('data', (c: Buffer) => chunks.push(c));
  socket.on('error', () => {});
  return once(socket, 'close').then(() => ({ ms: performance.now() - start, received: Buffer.concat(chunks).toString('latin1') }));
}

/** A plain TCP connection to the relay's preview listener; resolves once connected. */
async function plainConnection(): Promise<{ socket: Socket; start: number }> {
  const start = performance.now();
  const socket = netConnect({ host: '127.0.0.1', port: relay.httpPort });
  await once(socket, 'connect');
  return { socket, start };
}

/** A TLS connection to the relay's TLS listener with a preview host's SNI; resolves once the handshake is done. */
async function tlsConnection(servername: string): Promise<{ socket: Socket; start: number }> {
  const start = performance.now();
  const socket = tlsConnect({ host: '127.0.0.1', port: relay.port, ca: id.caPem, servername });
  await once(socket, 'secureConnect');
  return { socket, start };
}

/** Writes `piece()` every TRICKLE_MS until the socket closes. */
function trickle(socket: Socket, piece: () => string): void {
  const timer = setInterval(() => {
    if (socket.destroyed || !socket.writable) clearInterval(timer);
    else socket.write(piece());
  }, TRICKLE_MS);
  socket.once('close', () => clearInterval(timer));
}

t.test('a slowloris head is closed after the headers timeout, with 408 ERR_WARREN_TIMEOUT', async (t) => {
  for (const [listener, open] of [
    ['plain HTTP', plainConnection],
    ['TLS', () => tlsConnection(appHost)],
  ] as const) {
    const { socket, start } = await open();
    const closed = closedAfter(socket, start);
    socket.write(`GET / HTTP/1.1\r\nHost: ${appHost}\r\n`);
    let n = 0;
    trickle(socket, () => `X-Slow-${++n}: x\r\n`);
    const { ms, received } = await closed;
    withinTimeout(t, ms, HEADERS_MS, `${listener} slowloris`);
    t.match(received, /^HTTP\/1\.1 408 /, `${listener}: answered 408`);
    t.match(received, /ERR_WARREN_TIMEOUT/, `${listener}: with its code`);
  }
  t.equal(app.requests.length, 0, 'no slow head reached the app');
});

t.test('a connection that sends nothing is closed after the headers timeout', async (t) => {
  const { socket, start } = await plainConnection();
  const { ms } = await closedAfter(socket, start);
  withinTimeout(t, ms, HEADERS_MS, 'silent plain connection');
});

t.test('a trickled request body is closed after the request timeout', async (t) => {
  const before = app.requests.length;
  const { socket, start } = await plainConnection();
  const closed = closedAfter(socket, start);
  socket.write(`POST /sha256 HTTP/1.1\r\nHost: ${appHost}\r\nContent-Length: 1000000\r\n\r\n`);
  trickle(socket, () => 'x');
  const { ms, received } = await closed;
  withinTimeout(t, ms, REQUEST_MS, 'slow POST body');
  t.match(received, /^HTTP\/1\.1 408 /, 'answered 408');
  t.equal(app.requests.length, before + 1, 'the request reached the app once (its head was complete)');
});

t.test('a client that stops reading a large response is closed after the idle timeout', async (t) => {
  const size = 512 * 1024 * 1024;
  const path = `/bytes/${size}`;
  const { socket, start } = await plainConnection();
  let received = 0;
  socket.once('data', (c: Buffer) => {
    received += c.length;
    socket.pause(); // reads nothing more: the relay's writes stop completing
  });
  const closed = closedAfter(socket, start, false);
  const logged = relay.proc.waitFor(new RegExp(`"event":"access".*"path":"${path}"`), 30_000, relay.proc.lines.length);
  socket.write(`GET ${path} HTTP/1.1\r\nHost: ${appHost}\r\n\r\n`);
  const line = await logged;
  const ms = performance.now() - start;
  withinTimeout(t, ms, IDLE_MS, 'stalled reader');
  t.match(line, /"finished":false/, 'the response was cut short');
  socket.resume();
  socket.on('data', (c: Buffer) => (received += c.length));
  await closed;
  t.ok(received < size / 4, `the reader got ${received} of ${size} bytes: the rest was never produced`);
});

t.test('an idle preview WebSocket is closed after the idle timeout', async (t) => {
  const start = performance.now();
  const ws = new WebSocket(`ws://127.0.0.1:${relay.httpPort}/socket`, { headers: { host: echoHost }, perMessageDeflate: false });
  const [hello] = (await once(ws, 'message')) as [Buffer];
  t.equal(hello.toString(), 'hello nobody', 'the upgrade reached the app');
  await once(ws, 'close');
  withinTimeout(t, performance.now() - start, IDLE_MS, 'idle preview WebSocket');
});

t.test('a session WebSocket that never sends its HELLO is closed after the headers timeout', async (t) => {
  for (const path of ['/v1/agent', '/v1/connect']) {
    const start = performance.now();
    const ws = new WebSocket(`${relay.url}${path}`, [WS_SUBPROTOCOL], { ca: id.caPem, perMessageDeflate: false });
    ws.on('error', () => {});
    await once(ws, 'open');
    await once(ws, 'close');
    withinTimeout(t, performance.now() - start, HEADERS_MS, `silent ${path} session`);
  }
});

t.test('a stalled TLS handshake is closed after the headers timeout', async (t) => {
  // Nothing at all after the TCP handshake.
  const silentStart = performance.now();
  const silent = netConnect({ host: '127.0.0.1', port: relay.port });
  const silentClosed = closedAfter(silent, silentStart);
  await once(silent, 'connect');
  // A TLS record announcing a 512-byte ClientHello, of which only the first bytes come.
  const halfStart = performance.now();
  const half = netConnect({ host: '127.0.0.1', port: relay.port });
  await once(half, 'connect');
  const halfClosed = closedAfter(half, halfStart);
  half.write(Buffer.concat([Buffer.from('160301020001', 'hex'), Buffer.from('0001fc0303', 'hex'), Buffer.alloc(32, 7)]));
  withinTimeout(t, (await silentClosed).ms, HEADERS_MS, 'TLS connection that sends nothing');
  withinTimeout(t, (await halfClosed).ms, HEADERS_MS, 'half a ClientHello');
});

t.test('bytes that are not TLS on the TLS listener are closed at once', async (t) => {
  const socket = netConnect({ host: '127.0.0.1', port: relay.port });
  await once(socket, 'connect');
  const start = performance.now();
  const closed = closedAfter(socket, start);
  socket.write(`GET / HTTP/1.1\r\nHost: ${appHost}\r\n\r\n`);
  const { ms } = await closed;
  t.ok(ms < HEADERS_MS, `closed after ${Math.round(ms)} ms, without waiting for any timeout`);
});
