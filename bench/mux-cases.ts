/**
 * The sending side of each benchmark case. Each transfer runs on a fresh connection to the
 * receiver process: the clock starts before the first byte is written and stops when the last
 * acknowledgement is in (the receiver acknowledges only once it has every byte), so the time
 * covers sending, receiving and one round trip on loopback.
 */
import { once } from 'node:events';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import type { Writable } from 'node:stream';
import { WebSocket } from 'ws';
import { WS_MAX_MESSAGE_BYTES, WS_SUBPROTOCOL, connectSession, socketTransport, webSocketTransport, type Session, type SessionOptions, type Transport } from '../protocol/index.js';
import { BENCH_PORT, LENGTH_PREFIX_BYTES, Payload, WS_MUX_PATH, WS_RAW_PATH, decodeAck, type BenchCase } from './mux-shared.js';

/** Where the receiver listens and how to trust it. */
export interface Target {
  caPem: string;
  ports: { tlsRaw: number; tlsMux: number; wss: number };
}

/** How a case is run. */
export interface RunOptions {
  /** Payload bytes in total (split evenly over the streams). */
  bytes: number;
  verify: boolean;
  sessionOptions: SessionOptions;
  /** Client WebSocket masks of all zeros (ws then skips masking). Not what browsers or agents do. */
  wsZeroMask: boolean;
}

/** What one transfer measured on the sending side. */
export interface TransferResult {
  seconds: number;
  bytes: number;
  /** DATA frames sent (mux only). */
  dataFrames: number | null;
  /** Transport writes (mux only). */
  transportWrites: number | null;
}

const HOST = '127.0.0.1';

async function connectTls(port: number, caPem: string): Promise<TLSSocket> {
  const socket = tlsConnect({ host: HOST, port, ca: caPem, servername: 'localhost', minVersion: 'TLSv1.3' });
  await once(socket, 'secureConnect');
  return socket;
}

async function connectWs(port: number, path: string, caPem: string, zeroMask: boolean): Promise<WebSocket> {
  const ws = new WebSocket(`wss://${HOST}:${port}${path}`, [WS_SUBPROTOCOL], {
    ca: caPem,
    perMessageDeflate: false,
    maxPayload: WS_MAX_MESSAGE_BYTES,
    ...(zeroMask ? { generateMask: (mask: Buffer) => void mask.fill(0) } : {}),
  });
  await once(ws, 'open');
  return ws;
}

/** Writes the payload to `out` as fast as it takes it, then ends it. Resolves when everything was accepted. */
function pump(out: Writable, payload: Payload): void {
  const write = (): void => {
    for (let chunk = payload.next(); chunk; chunk = payload.next()) {
      if (!out.write(chunk)) {
        out.once('drain', write);
        return;
      }
    }
    out.end();
  };
  write();
}

/** Collects a readable side into one buffer until it ends. */
async function readToEnd(source: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  source.on('data', (c: Buffer) => chunks.push(c));
  await once(source, 'end');
  return Buffer.concat(chunks);
}

function checkAck(ack: Buffer, payload: Payload, expected: number, what: string): void {
  const { count, digest } = decodeAck(ack);
  if (count !== expected) throw new Error(`${what}: receiver got ${count} bytes, expected ${expected}`);
  const mine = payload.digest();
  if (mine && (!digest || !mine.equals(digest))) throw new Error(`${what}: the received bytes differ from the bytes sent`);
}

function lengthPrefix(bytes: number): Buffer {
  const prefix = Buffer.alloc(LENGTH_PREFIX_BYTES);
  prefix.writeBigUInt64BE(BigInt(bytes));
  return prefix;
}

async function runTlsRaw(target: Target, options: RunOptions): Promise<TransferResult> {
  const socket = await connectTls(target.ports.tlsRaw, target.caPem);
  const payload = new Payload(options.bytes, 0, options.verify);
  const acked = readToEnd(socket);
  const started = performance.now();
  // The receiver answers after the last byte; our end() is only a half-close it ignores.
  socket.write(lengthPrefix(options.bytes));
  pump(socket, payload);
  const ack = await acked;
  const seconds = (performance.now() - started) / 1000;
  socket.destroy();
  checkAck(ack, payload, options.bytes, 'tls-raw');
  return { seconds, bytes: options.bytes, dataFrames: null, transportWrites: null };
}

async function runWssRaw(target: Target, options: RunOptions): Promise<TransferResult> {
  const ws = await connectWs(target.ports.wss, WS_RAW_PATH, target.caPem, options.wsZeroMask);
  const payload = new Payload(options.bytes, 0, options.verify);
  const acked = once(ws, 'message') as Promise<[Buffer]>;
  const started = performance.now();
  ws.send(lengthPrefix(options.bytes), { binary: true });
  // ws has no 'drain': keep at most this many bytes waiting in its socket, refill on callbacks.
  const limit = 1024 * 1024;
  await new Promise<void>((resolve, reject) => {
    const fill = (err?: Error): void => {
      if (err) return reject(err);
      while (ws.bufferedAmount < limit) {
        const chunk = payload.next();
        if (!chunk) return resolve();
        ws.send(chunk, { binary: true, compress: false }, fill);
      }
    };
    fill();
  });
  const [ack] = await acked;
  const seconds = (performance.now() - started) / 1000;
  ws.terminate();
  checkAck(ack, payload, options.bytes, 'wss-raw');
  return { seconds, bytes: options.bytes, dataFrames: null, transportWrites: null };
}

async function openSession(c: BenchCase, target: Target, options: RunOptions): Promise<Session> {
  let transport: Transport;
  if (c.transport === 'tls') transport = socketTransport(await connectTls(target.ports.tlsMux, target.caPem));
  else transport = webSocketTransport(await connectWs(target.ports.wss, WS_MUX_PATH, target.caPem, options.wsZeroMask));
  return connectSession(transport, { ...options.sessionOptions, token: 'bench' });
}

async function runMux(c: BenchCase, target: Target, options: RunOptions): Promise<TransferResult> {
  const session = await openSession(c, target, options);
  const perStream = Math.floor(options.bytes / c.streams);
  const bytes = perStream * c.streams;
  const framesBefore = session.dataFramesOut;
  const writesBefore = session.transportWrites;
  const started = performance.now();
  const transfers = Array.from({ length: c.streams }, async (_, i) => {
    const stream = session.open(BENCH_PORT);
    const payload = new Payload(perStream, i, options.verify);
    const acked = readToEnd(stream);
    pump(stream, payload);
    checkAck(await acked, payload, perStream, `${c.name} stream ${i}`);
  });
  await Promise.all(transfers);
  const seconds = (performance.now() - started) / 1000;
  const result = { seconds, bytes, dataFrames: session.dataFramesOut - framesBefore, transportWrites: session.transportWrites - writesBefore };
  const closed = once(session, 'close');
  session.destroy();
  await closed;
  return result;
}

/** Runs one transfer of case `c` against the receiver. */
export function runCase(c: BenchCase, target: Target, options: RunOptions): Promise<TransferResult> {
  if (c.mode === 'mux') return runMux(c, target, options);
  return c.transport === 'tls' ? runTlsRaw(target, options) : runWssRaw(target, options);
}
