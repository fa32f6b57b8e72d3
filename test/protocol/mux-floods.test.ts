// Hostile peers over real TLS: a raw socket writes frames made with protocol/encode.ts to a real
// acceptor session. Floods of frames that cost the receiver work but carry nothing end the
// session with ERR_WARREN_FLOOD once their budget is spent, and credit violations with
// ERR_WARREN_FLOW_CONTROL. The PINGs woven into some floods count how many frames the session
// processed: it answers each PING it reads, and reads nothing after it fails.
import { once } from 'node:events';
import { connect as tlsConnect, createServer as createTlsServer, type TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import {
  ERRORS,
  FrameDecoder,
  FrameType,
  MAX_FRAME_BYTES_LIMIT,
  MAX_WINDOW_BYTES_LIMIT,
  PROTOCOL_VERSION,
  acceptSession,
  encodeDataHeader,
  encodeHello,
  encodeOpen,
  encodePing,
  encodeRst,
  encodeWindow,
  socketTransport,
  type ControlFrame,
  type MuxStream,
  type Session,
  type SessionOptions,
  type WarrenError,
} from '../../protocol/index.js';
import { testTlsIdentity } from '../helpers/tls.js';

/** What the raw peer announces in its HELLO. */
const PEER_LIMITS = { maxFrameBytes: 256 * 1024, initialWindowBytes: 256 * 1024, maxMetadataBytes: 4096 };

/** A real acceptor session and the raw TLS socket that plays its dialer. */
interface RawPeer {
  session: Session;
  socket: TLSSocket;
  /** Control frames the session sent, in order. */
  frames: ControlFrame[];
  /** Resolves with the session's close reason. */
  closed: Promise<WarrenError | undefined>;
}

/** Waits until `check` is true, re-checking on every turn of the event loop (bounded). */
async function until(check: () => boolean, what: string, turns = 100_000): Promise<void> {
  for (let i = 0; i < turns; i++) {
    if (check()) return;
    await new Promise((r) => setImmediate(r));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Starts an acceptor session on a TLS connection whose other end is a raw socket that has sent HELLO. */
async function rawPeer(t: { teardown(fn: () => unknown): void }, options: SessionOptions): Promise<RawPeer> {
  const id = await testTlsIdentity();
  const server = createTlsServer({ cert: id.certPem, key: id.keyPem, minVersion: 'TLSv1.3' });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const accepted = once(server, 'secureConnection') as Promise<[TLSSocket]>;
  const socket = tlsConnect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, ca: id.caPem, servername: 'localhost' });
  await once(socket, 'secureConnect');
  const [serverSocket] = await accepted;
  server.close();
  t.teardown(() => {
    socket.destroy();
    serverSocket.destroy();
  });

  const sessionReady = acceptSession(socketTransport(serverSocket), { keepaliveIntervalMs: 0, ...options, authenticate: () => ({}) });
  const frames: ControlFrame[] = [];
  const decoder = new FrameDecoder({ onData: () => {}, onControl: (f) => frames.push(f) }, { maxFrameBytes: MAX_FRAME_BYTES_LIMIT, maxMetadataBytes: 0xffff });
  socket.on('data', (chunk: Buffer) => decoder.push(chunk));
  socket.on('error', () => {});
  socket.write(encodeHello({ v: PROTOCOL_VERSION, token: 'test', limits: PEER_LIMITS, app: {} }));
  const session = await sessionReady;
  await until(() => frames.some((f) => f.type === FrameType.HELLO), "the acceptor's HELLO");
  const closed = (once(session, 'close') as Promise<[WarrenError | undefined]>).then(([reason]) => reason);
  return { session, socket, frames, closed };
}

/** The GOAWAY the session sent, once it arrived. */
async function goAwayOf(peer: RawPeer): Promise<Extract<ControlFrame, { type: FrameType.GOAWAY }>> {
  await until(() => peer.frames.some((f) => f.type === FrameType.GOAWAY), 'GOAWAY');
  return peer.frames.find((f) => f.type === FrameType.GOAWAY) as Extract<ControlFrame, { type: FrameType.GOAWAY }>;
}

const pongs = (peer: RawPeer): number => peer.frames.filter((f) => f.type === FrameType.PONG).length;

/** A PING whose 8 bytes carry `n`. */
function ping(n: number): Buffer {
  const payload = Buffer.alloc(8);
  payload.writeUInt32BE(n, 4);
  return encodePing(payload);
}

/** Accepts every incoming stream and never reads from it. */
function acceptSilently(session: Session): MuxStream[] {
  const streams: MuxStream[] = [];
  session.on('stream', (s: MuxStream) => {
    s.accept();
    s.on('error', () => {});
    streams.push(s);
  });
  return streams;
}

/** Frames the session may process beyond a budget's burst: refill during the test, and the frame that finds it empty. */
const SLACK = 3;
const BURST = 50;
const FLOOD_FRAMES = 10_000;

t.test('a PING flood ends the session with ERR_WARREN_FLOOD after the burst is answered', async (t) => {
  const peer = await rawPeer(t, { pingRate: { perSecond: 1, burst: BURST } });
  peer.socket.write(Buffer.concat(Array.from({ length: FLOOD_FRAMES }, (_, i) => ping(i))));
  const goaway = await goAwayOf(peer);
  t.equal(goaway.code, ERRORS.ERR_WARREN_FLOOD.wire, 'GOAWAY carries ERR_WARREN_FLOOD');
  t.equal((await peer.closed)?.code, 'ERR_WARREN_FLOOD', 'the session closes with it');
  const answered = pongs(peer);
  t.ok(answered >= BURST && answered <= BURST + SLACK, `${answered} of ${FLOOD_FRAMES} PINGs answered (burst ${BURST})`);
  t.equal(peer.frames.at(-1)?.type, FrameType.GOAWAY, 'nothing follows the GOAWAY');
});

t.test('an empty-DATA flood ends the session with ERR_WARREN_FLOOD at bounded cost', async (t) => {
  const peer = await rawPeer(t, { idleFrameRate: { perSecond: 1, burst: BURST }, pingRate: { perSecond: 1, burst: 1_000_000 } });
  const streams = acceptSilently(peer.session);
  peer.socket.write(encodeOpen(1, 80, Buffer.alloc(0)));
  await until(() => streams.length === 1, 'the stream to be accepted');
  const flood = Array.from({ length: FLOOD_FRAMES }, (_, i) => [ping(i), encodeDataHeader(1, 0)]).flat();
  peer.socket.write(Buffer.concat(flood));
  const goaway = await goAwayOf(peer);
  t.equal(goaway.code, ERRORS.ERR_WARREN_FLOOD.wire, 'GOAWAY carries ERR_WARREN_FLOOD');
  t.equal(goaway.lastStreamId, 1, 'and names stream 1 as the last one processed');
  t.equal((await peer.closed)?.code, 'ERR_WARREN_FLOOD');
  const processed = pongs(peer);
  t.ok(processed >= BURST && processed <= BURST + SLACK, `${processed} of ${FLOOD_FRAMES} empty DATA frames processed (burst ${BURST})`);
});

t.test('a flood of WINDOW frames for a closed stream ends the session with ERR_WARREN_FLOOD at bounded cost', async (t) => {
  const peer = await rawPeer(t, { idleFrameRate: { perSecond: 1, burst: BURST }, pingRate: { perSecond: 1, burst: 1_000_000 } });
  const streams = acceptSilently(peer.session);
  peer.socket.write(encodeOpen(1, 80, Buffer.alloc(0)));
  await until(() => streams.length === 1, 'the stream to be accepted');
  peer.socket.write(encodeRst(1, ERRORS.ERR_WARREN_STREAM_CANCELLED.wire));
  await until(() => peer.session.streamCount === 0, 'the stream to close');
  const flood = Array.from({ length: FLOOD_FRAMES }, (_, i) => [ping(i), encodeWindow(1, 1)]).flat();
  peer.socket.write(Buffer.concat(flood));
  const goaway = await goAwayOf(peer);
  t.equal(goaway.code, ERRORS.ERR_WARREN_FLOOD.wire, 'GOAWAY carries ERR_WARREN_FLOOD');
  t.equal((await peer.closed)?.code, 'ERR_WARREN_FLOOD');
  const processed = pongs(peer);
  t.ok(processed >= BURST && processed <= BURST + SLACK, `${processed} of ${FLOOD_FRAMES} WINDOW frames processed (burst ${BURST})`);
});

t.test('a flood of streams opened and reset before any answer ends the session with ERR_WARREN_FLOOD', async (t) => {
  const peer = await rawPeer(t, { resetRate: { perSecond: 1, burst: BURST } });
  const streams = acceptSilently(peer.session);
  const flood = Array.from({ length: FLOOD_FRAMES }, (_, i) => [encodeOpen(2 * i + 1, 80, Buffer.alloc(0)), encodeRst(2 * i + 1, ERRORS.ERR_WARREN_STREAM_CANCELLED.wire)]).flat();
  peer.socket.write(Buffer.concat(flood));
  const goaway = await goAwayOf(peer);
  t.equal(goaway.code, ERRORS.ERR_WARREN_FLOOD.wire, 'GOAWAY carries ERR_WARREN_FLOOD');
  t.equal((await peer.closed)?.code, 'ERR_WARREN_FLOOD');
  t.ok(streams.length >= BURST && streams.length <= BURST + SLACK, `${streams.length} of ${FLOOD_FRAMES} streams were created (burst ${BURST})`);
});

t.test('WINDOW may raise the send window to 2^31-1 and no further: past it, ERR_WARREN_FLOW_CONTROL', async (t) => {
  const peer = await rawPeer(t, {});
  const streams = acceptSilently(peer.session);
  peer.socket.write(encodeOpen(1, 80, Buffer.alloc(0)));
  await until(() => streams.length === 1, 'the stream to be accepted');
  // The stream starts with the credit the peer announced; this brings it to exactly 2^31-1.
  peer.socket.write(Buffer.concat([encodeWindow(1, MAX_WINDOW_BYTES_LIMIT - PEER_LIMITS.initialWindowBytes), ping(1)]));
  await until(() => pongs(peer) === 1, 'the PING after the WINDOW to be answered');
  t.equal(streams[0]!.sendWindow, MAX_WINDOW_BYTES_LIMIT, 'a window of exactly 2^31-1 is accepted');
  t.notOk(peer.session.closed);
  peer.socket.write(encodeWindow(1, 1));
  const goaway = await goAwayOf(peer);
  t.equal(goaway.code, ERRORS.ERR_WARREN_FLOW_CONTROL.wire, 'one more byte of credit: GOAWAY with ERR_WARREN_FLOW_CONTROL');
  t.equal((await peer.closed)?.code, 'ERR_WARREN_FLOW_CONTROL');
});

t.test('DATA beyond the receive window ends the session with ERR_WARREN_FLOW_CONTROL', async (t) => {
  const WINDOW = 64 * 1024;
  const peer = await rawPeer(t, { initialWindowBytes: WINDOW });
  const streams = acceptSilently(peer.session);
  peer.socket.write(encodeOpen(1, 80, Buffer.alloc(0)));
  await until(() => streams.length === 1, 'the stream to be accepted');
  // The application does not read: the whole window may be sent, not one byte more.
  peer.socket.write(Buffer.concat([encodeDataHeader(1, WINDOW), Buffer.alloc(WINDOW, 1), ping(1)]));
  await until(() => pongs(peer) === 1, 'the PING after a full window of DATA to be answered');
  t.equal(streams[0]!.readableLength, WINDOW, 'a full window is accepted and buffered');
  t.notOk(peer.session.closed);
  peer.socket.write(Buffer.concat([encodeDataHeader(1, 1), Buffer.from([2])]));
  const goaway = await goAwayOf(peer);
  t.equal(goaway.code, ERRORS.ERR_WARREN_FLOW_CONTROL.wire, 'one byte over: GOAWAY with ERR_WARREN_FLOW_CONTROL');
  t.equal((await peer.closed)?.code, 'ERR_WARREN_FLOW_CONTROL');
  t.equal(peer.session.bufferedBytes, 0, 'the buffered window is released with the session');
});
