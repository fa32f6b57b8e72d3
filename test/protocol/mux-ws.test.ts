// Sessions over the WebSocket transport: `ws` on a real https server on 127.0.0.1 (wss, TLS
// 1.3), subprotocol `warren.v1`, no compression. Both ends accept messages of at most
// WS_MAX_MESSAGE_BYTES, the size every sender must stay within.
import { once } from 'node:events';
import { createHash, randomBytes } from 'node:crypto';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { WebSocket, WebSocketServer } from 'ws';
import { WS_MAX_MESSAGE_BYTES, WS_SUBPROTOCOL, acceptSession, connectSession, webSocketTransport, type MuxStream, type Session, type WarrenError } from '../../protocol/index.js';
import { testTlsIdentity } from '../helpers/tls.js';

/** A dialer and an acceptor session over one wss connection, and the raw WebSockets under them. */
interface WsPair {
  dialer: Session;
  acceptor: Session;
  clientSocket: WebSocket;
  serverSocket: WebSocket;
}

async function wsSessionPair(t: { teardown(fn: () => unknown): void }): Promise<WsPair> {
  const id = await testTlsIdentity();
  const server = createHttpsServer({ cert: id.certPem, key: id.keyPem, minVersion: 'TLSv1.3' });
  const wss = new WebSocketServer({
    server,
    perMessageDeflate: false,
    maxPayload: WS_MAX_MESSAGE_BYTES,
    handleProtocols: (offered) => (offered.has(WS_SUBPROTOCOL) ? WS_SUBPROTOCOL : false),
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const accepted = new Promise<[Promise<Session>, WebSocket]>((resolve) =>
    wss.once('connection', (ws, req) => resolve([acceptSession(webSocketTransport(ws, req.socket.remoteAddress), { authenticate: () => ({}) }), ws])),
  );
  const clientSocket = new WebSocket(`wss://127.0.0.1:${(server.address() as AddressInfo).port}/v1/agent`, WS_SUBPROTOCOL, {
    ca: id.caPem, // the test certificate names IP 127.0.0.1
    perMessageDeflate: false,
    maxPayload: WS_MAX_MESSAGE_BYTES,
  });
  // The transport drops writes until the socket is open: start the session only then.
  await once(clientSocket, 'open');
  const dialer = await connectSession(webSocketTransport(clientSocket), { token: 'test' });
  const [acceptorReady, serverSocket] = await accepted;
  const acceptor = await acceptorReady;
  t.teardown(async () => {
    for (const s of [dialer, acceptor]) {
      for (const stream of s.listStreams()) stream.on('error', () => {});
      s.destroy();
    }
    wss.close();
    server.close();
    await once(server, 'close');
  });
  return { dialer, acceptor, clientSocket, serverSocket };
}

/** Echo server: every incoming stream is accepted and piped back to itself. */
function serveEcho(session: Session): void {
  session.on('stream', (s: MuxStream) => {
    s.accept();
    s.on('error', () => {});
    s.pipe(s);
  });
}

async function readAll(stream: MuxStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

t.test('over wss the session negotiates warren.v1 and echoes 10 MB intact in messages of at most 1 MiB', async (t) => {
  const pair = await wsSessionPair(t);
  t.equal(pair.clientSocket.protocol, WS_SUBPROTOCOL, 'the server selected the subprotocol');
  serveEcho(pair.acceptor);
  const data = randomBytes(10 * 1000 * 1000);
  const s = pair.dialer.open(3000);
  s.end(data);
  const echoed = await readAll(s);
  t.equal(echoed.length, data.length);
  t.equal(sha256(echoed), sha256(data), 'the echo is byte for byte the same');
  t.notOk(pair.dialer.closed || pair.acceptor.closed, 'no message exceeded either side\'s maxPayload');
});

t.test('over wss 100 concurrent streams each carry their own bytes both ways', async (t) => {
  const pair = await wsSessionPair(t);
  serveEcho(pair.acceptor);
  const sent = Array.from({ length: 100 }, () => randomBytes(64 * 1024));
  const echoed = await Promise.all(
    sent.map((data, i) => {
      const s = pair.dialer.open(1 + i);
      s.end(data);
      return readAll(s);
    }),
  );
  t.equal(echoed.filter((e, i) => e.equals(sent[i]!)).length, 100, 'every stream got exactly its own bytes back');
  t.equal(pair.dialer.streamCount, 0);
});

t.test('a text WebSocket message ends the receiving session with ERR_WARREN_PROTOCOL', async (t) => {
  const pair = await wsSessionPair(t);
  const acceptorClosed = once(pair.acceptor, 'close') as Promise<[WarrenError | undefined]>;
  const dialerClosed = once(pair.dialer, 'close') as Promise<[WarrenError | undefined]>;
  pair.clientSocket.send('{"type":"hello"}');
  const [reason] = await acceptorClosed;
  t.equal(reason?.code, 'ERR_WARREN_PROTOCOL', 'the session that got the text message closes with ERR_WARREN_PROTOCOL');
  // The transport drops the connection at once, without a GOAWAY: the sender sees it closed.
  const [dialerReason] = await dialerClosed;
  t.equal(dialerReason?.code, 'ERR_WARREN_SESSION_CLOSED', 'the sender sees its session closed');
});
