/**
 * The receiving process of the multiplexer benchmark, forked by bench/mux.ts so that sender and
 * receiver each have their own event loop (and, on a multi-core machine, their own core).
 *
 * It listens on 127.0.0.1 with TLS 1.3: a raw TLS listener, a Warren mux listener over TLS, and
 * an HTTPS server with WebSocket endpoints for raw wss and for the mux over wss. Every transfer is
 * counted (and, when verifying, hashed) and answered with an acknowledgement once it is complete:
 * a raw transfer when its length prefix is reached, a mux stream at its FIN.
 */
import { once } from 'node:events';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import type { AddressInfo, Server } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { WS_MAX_MESSAGE_BYTES, WS_SUBPROTOCOL, acceptSession, socketTransport, webSocketTransport, type MuxStream, type Transport } from '../protocol/index.js';
import { ByteSink, LENGTH_PREFIX_BYTES, WS_MUX_PATH, WS_RAW_PATH, type InitMessage, type ReceiverMessage, type UsageRequest, usageNow } from './mux-shared.js';

// Named so that ps, top and perf tell the two benchmark processes apart.
process.title = 'mux-receiver';

function send(message: ReceiverMessage): void {
  process.send?.(message);
}

/** Counts a raw transfer: an 8-byte length prefix, then that many bytes. Calls `done` with the ack once complete. */
class RawReceiver {
  private readonly sink: ByteSink;
  private prefix = Buffer.alloc(0);
  private expected = -1;
  private finished = false;

  constructor(
    verify: boolean,
    private readonly done: (ack: Buffer) => void,
  ) {
    this.sink = new ByteSink(verify);
  }

  push(chunk: Buffer): void {
    if (this.expected < 0) {
      this.prefix = Buffer.concat([this.prefix, chunk]);
      if (this.prefix.length < LENGTH_PREFIX_BYTES) return;
      this.expected = Number(this.prefix.readBigUInt64BE(0));
      chunk = this.prefix.subarray(LENGTH_PREFIX_BYTES);
    }
    this.sink.add(chunk);
    if (!this.finished && this.sink.count >= this.expected) {
      this.finished = true;
      this.done(this.sink.ack());
    }
  }
}

/** Serves a Warren session: every stream is counted and answered with an ack at its FIN. */
function serveMux(transport: Transport, init: InitMessage): void {
  acceptSession(transport, { ...init.sessionOptions, authenticate: () => ({}) }).then(
    (session) => {
      session.on('stream', (stream: MuxStream) => {
        stream.accept();
        const sink = new ByteSink(init.verify);
        stream.on('data', (chunk: Buffer) => sink.add(chunk));
        stream.on('end', () => stream.end(sink.ack()));
        // The sender drops the session once every ack is in; late resets are expected.
        stream.on('error', () => {});
      });
    },
    () => transport.destroy(),
  );
}

async function listen(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

async function start(init: InitMessage): Promise<void> {
  const tlsOptions = { cert: init.certPem, key: init.keyPem, minVersion: 'TLSv1.3' as const };

  const rawServer = createTlsServer(tlsOptions, (socket: TLSSocket) => {
    socket.on('error', () => {});
    const receiver = new RawReceiver(init.verify, (ack) => socket.end(ack));
    socket.on('data', (chunk: Buffer) => receiver.push(chunk));
  });

  const muxServer = createTlsServer(tlsOptions, (socket: TLSSocket) => {
    socket.on('error', () => {});
    serveMux(socketTransport(socket), init);
  });

  const httpsServer = createHttpsServer(tlsOptions);
  const wss = new WebSocketServer({
    server: httpsServer,
    perMessageDeflate: false,
    maxPayload: WS_MAX_MESSAGE_BYTES,
    handleProtocols: (protocols) => (protocols.has(WS_SUBPROTOCOL) ? WS_SUBPROTOCOL : false),
  });
  wss.on('connection', (ws: WebSocket, req) => {
    ws.on('error', () => {});
    if (req.url === WS_MUX_PATH) {
      serveMux(webSocketTransport(ws), init);
    } else if (req.url === WS_RAW_PATH) {
      const receiver = new RawReceiver(init.verify, (ack) => ws.send(ack, { binary: true }, () => ws.close(1000)));
      ws.on('message', (data: Buffer) => receiver.push(data));
    } else {
      ws.close(1008, 'unknown path');
    }
  });

  const ports = { tlsRaw: await listen(rawServer), tlsMux: await listen(muxServer), wss: await listen(httpsServer) };
  send({ type: 'ready', ports });
}

process.on('message', (message: InitMessage | UsageRequest) => {
  if (message.type === 'init') {
    start(message).catch((err: unknown) => {
      send({ type: 'error', message: err instanceof Error ? err.message : String(err) });
      process.exit(1);
    });
  } else if (message.type === 'usage') {
    send({ type: 'usage', usage: usageNow() });
  }
});
// The benchmark is over when the parent goes away.
process.on('disconnect', () => process.exit(0));
