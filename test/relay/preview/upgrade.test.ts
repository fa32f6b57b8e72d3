/**
 * Upgrades through the preview proxy: WebSocket echo with the `ws` package on both ends, the
 * app's 101 headers passed back as they are, a refused upgrade relayed as a normal answer,
 * half-close of the upgraded byte pipe, and errors before the 101. Real sockets on 127.0.0.1.
 *
 * The backend is a stand-in for the multiplexer (built separately): it returns a real
 * net.connect() socket to a real app on loopback, or a plain Duplex around one (see
 * preview-helpers.ts).
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { connect } from 'node:net';
import t, { type Test } from 'tap';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { once, rawExchange, startApp, startProxy, unusedPort } from '../../helpers/preview.js';

const HOST = '3000-ab12cd.preview.test';

/** Opens a WebSocket to the proxy with the preview host in Host. */
function openWs(port: number, path = '/ws', protocols: string[] = []): WebSocket {
  return new WebSocket(`ws://127.0.0.1:${port}${path}`, protocols, { headers: { host: HOST }, perMessageDeflate: false });
}

/** Starts an echo WebSocket app that adds a header to its 101. */
async function startEchoApp(t: Test): Promise<{ port: number; closes: WebSocket[] }> {
  const closes: WebSocket[] = [];
  let wss: WebSocketServer | undefined;
  const app = await startApp(t, (_req, res) => res.end('not a websocket'), (server) => {
    wss = new WebSocketServer({ server, perMessageDeflate: false, handleProtocols: (protocols) => (protocols.has('chat') ? 'chat' : false) });
    wss.on('headers', (headers) => headers.push('X-App-101: yes'));
    wss.on('connection', (ws, req) => {
      closes.push(ws);
      ws.send(`hello ${req.headers.host} ${req.url}`);
      ws.on('message', (data: RawData, isBinary) => ws.send(data, { binary: isBinary }));
    });
  });
  t.teardown(() => wss?.close());
  return { port: app.port, closes };
}

for (const duplex of [false, true]) {
  t.test(`WebSocket echo through the proxy (${duplex ? 'Duplex' : 'net.Socket'} stream)`, async (t) => {
    const app = await startEchoApp(t);
    const { backend, port } = await startProxy(t);
    backend.expose('ab12cd', 3000, app.port, duplex);
    const ws = openWs(port, '/ws?room=1', ['chat']);
    const upgrade = once<IncomingMessage>(ws, 'upgrade');
    const messages: { data: Buffer; binary: boolean }[] = [];
    const waiters: (() => void)[] = [];
    ws.on('message', (data: RawData, binary) => {
      messages.push({ data: Buffer.isBuffer(data) ? data : Buffer.from(data as ArrayBuffer), binary });
      waiters.shift()?.();
    });
    const next = async (): Promise<{ data: Buffer; binary: boolean }> => {
      if (messages.length === 0) await new Promise<void>((resolve) => waiters.push(resolve));
      return messages.shift()!;
    };
    await once(ws, 'open');
    const res = await upgrade;
    t.equal(res.headers['x-app-101'], 'yes', 'the app\'s 101 headers come through');
    t.equal(ws.protocol, 'chat', 'the subprotocol is negotiated with the app');
    t.equal((await next()).data.toString(), `hello ${HOST} /ws?room=1`);
    ws.send('text message');
    t.same(await next(), { data: Buffer.from('text message'), binary: false });
    const big = randomBytes(1024 * 1024);
    ws.send(big);
    const echoed = await next();
    t.equal(echoed.binary, true);
    t.ok(echoed.data.equals(big), '1 MB binary message echoed intact');
    const closed = once<number>(ws, 'close');
    const streamClosed = once(backend.streams[0]!, 'close');
    ws.close(1000, 'bye');
    t.equal(await closed, 1000);
    await streamClosed;
    t.ok(backend.streams[0]!.destroyed, 'the stream is closed with the WebSocket');
  });
}

t.test('an upgrade the app refuses is relayed as a normal answer and the connection closes', async (t) => {
  const app = await startApp(t, (_req, res) => res.end(), (server) => {
    server.on('upgrade', (_req, socket) => {
      socket.end('HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nX-Reason: origin\r\n\r\n7\r\nno way.\r\n0\r\n\r\n');
    });
  });
  const { backend, port } = await startProxy(t);
  backend.expose('ab12cd', 3000, app.port);
  const ws = openWs(port);
  ws.on('error', () => undefined);
  const res = await new Promise<IncomingMessage>((resolve) => ws.once('unexpected-response', (_req, response) => resolve(response)));
  t.equal(res.statusCode, 403);
  t.equal(res.headers['x-reason'], 'origin');
  t.equal(res.headers.connection, 'close');
  t.equal(res.headers['transfer-encoding'], undefined, 'the body is sent close-delimited');
  let body = '';
  for await (const chunk of res) body += String(chunk);
  t.equal(body, 'no way.');
});

t.test('the upgraded pipe carries early bytes and half-closes each way', async (t) => {
  // A raw upgrade protocol: the app echoes, and when the client ends its side the app still
  // writes "bye" before ending its own.
  const app = await startApp(t, (_req, res) => res.end(), (server) => {
    server.on('upgrade', (_req, socket, head: Buffer) => {
      socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\nX-Raw: kept\r\n\r\n');
      if (head.length) socket.write(head);
      socket.on('data', (chunk: Buffer) => socket.write(chunk));
      socket.on('end', () => socket.end('bye'));
    });
  });
  const { backend, port } = await startProxy(t);
  backend.expose('ab12cd', 3000, app.port, true);
  const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  let received = '';
  socket.on('data', (chunk: Buffer) => {
    received += chunk.toString('latin1');
    if (received.includes('early') && received.includes('more') && !socket.writableEnded) socket.end(); // half-close
  });
  socket.write(`GET /pipe HTTP/1.1\r\nHost: ${HOST}\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nearly`);
  socket.write('more');
  await once(socket, 'end');
  t.match(received, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
  t.match(received, /\r\nX-Raw: kept\r\n/);
  t.match(received, /\r\n\r\nearlymorebye$/, 'bytes before the 101 reach the app; the app writes after our FIN');
  socket.destroy();
});

t.test('errors before the 101 get coded answers on the raw connection', async (t) => {
  const { backend, port } = await startProxy(t);
  backend.expose('ab12cd', 3000, await unusedPort(), true);
  const upgrade = (host: string): string => `GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nAccept: application/json\r\n\r\n`;
  const refused = await rawExchange(port, upgrade(HOST));
  t.match(refused, /^HTTP\/1\.1 502 Bad Gateway\r\n/);
  t.match(refused, /"code":"ERR_WARREN_APP_UNREACHABLE"/);
  t.match(refused, /\r\nConnection: close\r\n/);
  const offline = await rawExchange(port, upgrade('3000-gone.preview.test'));
  t.match(offline, /^HTTP\/1\.1 502 /);
  t.match(offline, /X-Warren-Error: ERR_WARREN_TUNNEL_OFFLINE/);
  const notExposed = await rawExchange(port, upgrade('9999-ab12cd.preview.test'));
  t.match(notExposed, /^HTTP\/1\.1 404 /);
  t.match(notExposed, /X-Warren-Error: ERR_WARREN_PORT_NOT_EXPOSED/);
});
