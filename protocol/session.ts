/**
 * A session: many streams over one transport (docs/PROTOCOL.md). Create one with
 * connectSession() (the dialer: agent, client) or acceptSession() (the relay); both resolve once
 * the HELLO exchange is done.
 *
 * Events: 'stream' (an incoming MuxStream: call accept() once it is being served), 'goaway'
 * ({ code, lastStreamId, hint, message }), 'rtt' (ms), and 'close' (err?: WarrenError), emitted
 * once. A session never emits 'error': a broken peer ends only its own session.
 */
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { ERRORS, ConnectionError, ProtocolError, StreamResetError, WarrenError, errorFromWire, type ErrorCode } from './errors.js';
import { verifySessionConfig, TokenBucket, type SessionConfig, type SessionOptions } from './config.js';
import { FrameDecoder, type FrameSink } from './decode.js';
import { encodeGoAway, encodeHello, encodeMetadata, encodeOpen, encodePing, encodeRst, encodeWindow, encodeFin } from './encode.js';
import { FrameType, MAX_STREAM_ID, MAX_WINDOW_BYTES_LIMIT, PROTOCOL_VERSION, type ControlFrame } from './frame.js';
import { parseClientHello, parseServerHello, type ClientHello, type HelloLimits, type ServerHello } from './handshake.js';
import { MuxStream, type StreamOwner } from './stream.js';
import type { Transport, TransportHandlers } from './transport.js';
import { FrameWriter } from './writer.js';
import { Keepalive, type KeepaliveOwner } from './keepalive.js';

/** Frames for a stream this side reset that the peer may send before it learns of the reset. */
const EXCUSED_FRAMES_PER_RESET = 16;
/** Most excused frames held at once. */
const MAX_EXCUSED_FRAMES = 65_536;

/** What the peer said in GOAWAY. */
export interface GoAwayInfo {
  code: number;
  /** The code's name, when this version knows it. */
  error: WarrenError | null;
  lastStreamId: number;
  /** Reconnect hint (a relay URL), or ''. */
  hint: string;
  message: string;
}

type Phase = 'handshake' | 'open' | 'closed';

/** Smallest RTT used for window auto-tuning, so loopback links still grow windows under load. */
const MIN_TUNING_RTT_MS = 2;
/** RTT assumed before the first PONG. */
const INITIAL_RTT_MS = 50;
/** How long a failed session waits for its GOAWAY to leave before dropping the transport. */
const CLOSE_LINGER_MS = 1000;
/** The peer's limits assumed until its HELLO arrives. */
const LIMITS_BEFORE_HELLO: Readonly<HelloLimits> = Object.freeze({ maxFrameBytes: 16 * 1024, initialWindowBytes: 64 * 1024, maxMetadataBytes: 0 });

/** The peer limits a session took last. */
let lastPeerLimits = LIMITS_BEFORE_HELLO;

/** `limits`, as the object a session took last when equal: the peers of a relay nearly all announce the same limits. */
function sharedLimits(limits: HelloLimits): Readonly<HelloLimits> {
  const last = lastPeerLimits;
  if (limits.maxFrameBytes === last.maxFrameBytes && limits.initialWindowBytes === last.initialWindowBytes && limits.maxMetadataBytes === last.maxMetadataBytes) return last;
  lastPeerLimits = Object.freeze({ maxFrameBytes: limits.maxFrameBytes, initialWindowBytes: limits.initialWindowBytes, maxMetadataBytes: limits.maxMetadataBytes });
  return lastPeerLimits;
}

/**
 * What the transport reports, passed on to its session: one small object rather than two
 * closures (an idle relay holds one per session).
 */
class TransportLink implements TransportHandlers {
  constructor(private readonly session: Session) {}

  data(chunk: Buffer): void {
    this.session.onTransportData(chunk);
  }

  close(err?: Error): void {
    this.session.onTransportClose(err);
  }
}

/**
 * A multiplexed session.
 *
 * An idle relay holds one per agent, so a session is built to be small while idle: it is itself
 * the sink of its decoder, the owner of its keepalive and writer (prototype methods, no per-session
 * closures), and its stream map and token buckets are made on first use.
 */
export class Session extends EventEmitter implements StreamOwner, FrameSink, KeepaliveOwner {
  // Static after construction.
  readonly role: 'dialer' | 'acceptor';
  readonly config: SessionConfig;
  readonly transport: Transport;
  private readonly writer: FrameWriter;
  private readonly decoder: FrameDecoder;
  private readonly keepalive: Keepalive;

  // Set by the handshake.
  /** Session id chosen by the acceptor. */
  id = '';
  /** The peer's announced receive limits. */
  peerLimits: Readonly<HelloLimits> = LIMITS_BEFORE_HELLO;
  /** The acceptor's HELLO (on the dialer side). */
  serverHello: ServerHello | null = null;

  // Owned by the event loop (no locks in Node, but one owner each).
  private phase: Phase = 'handshake';
  /** The acceptor has read the dialer's HELLO (which goes to the 'hello' listener, not kept). */
  private helloReceived = false;
  /** Open streams by id; made with the first stream. */
  private streams: Map<number, MuxStream> | null = null;
  // Token buckets, made when first spent: a bucket made then starts full, exactly as one made
  // with the session would be by that time (a full bucket stays full).
  private pingBucket: TokenBucket | null = null;
  private idleBucket: TokenBucket | null = null;
  private resetBucket: TokenBucket | null = null;
  private nextStreamId: number;
  private lastPeerStreamId = 0;
  private pendingCount = 0;
  private buffered = 0;
  private localGoAway = false;
  private remoteGoAway: GoAwayInfo | null = null;
  private closeError: WarrenError | undefined;
  /** Frames for closed streams still excused: the peer sent them before it learned of our RST. */
  private excusedFrames = 0;
  private handshakeTimer: NodeJS.Timeout | null = null;
  private lingerTimer: NodeJS.Timeout | null = null;
  /** Bytes received from the transport. */
  bytesIn = 0;
  /** DATA frames received (counted at each frame's last piece). */
  dataFramesIn = 0;

  /** @internal Use connectSession() or acceptSession(). */
  constructor(transport: Transport, role: 'dialer' | 'acceptor', options: SessionOptions = {}) {
    super();
    this.role = role;
    this.config = verifySessionConfig(options);
    this.transport = transport;
    this.nextStreamId = role === 'dialer' ? 1 : 2;
    this.writer = new FrameWriter(transport, this.config.sendBufferBytes, this);
    this.decoder = new FrameDecoder(this, { maxFrameBytes: this.config.maxFrameBytes, maxMetadataBytes: this.config.maxMetadataBytes });
    this.keepalive = new Keepalive(this.config, this);
    this.handshakeTimer = setTimeout(
      () => this.fail(new ProtocolError('ERR_WARREN_HANDSHAKE_TIMEOUT', `no HELLO within ${this.config.handshakeTimeoutMs} ms`)),
      this.config.handshakeTimeoutMs,
    );
    this.handshakeTimer.unref();
    transport.attach(new TransportLink(this));
  }

  /** This side's announced limits. */
  get limits(): HelloLimits {
    return { maxFrameBytes: this.config.maxFrameBytes, initialWindowBytes: this.config.initialWindowBytes, maxMetadataBytes: this.config.maxMetadataBytes };
  }

  /** Open streams. */
  get streamCount(): number {
    return this.streams?.size ?? 0;
  }

  /** Incoming streams not yet accepted. */
  get pendingOpens(): number {
    return this.pendingCount;
  }

  /** Received bytes not yet read by the application. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /** Bytes handed to the transport. */
  get bytesOut(): number {
    return this.writer.bytesOut;
  }

  /** DATA frames handed to the transport. */
  get dataFramesOut(): number {
    return this.writer.dataFramesOut;
  }

  /** Transport writes so far (each one batch of frames: one writev or one run of WebSocket messages). */
  get transportWrites(): number {
    return this.writer.transportWrites;
  }

  /** Smoothed RTT from keepalive PINGs, in ms; undefined until the first PONG. */
  get rttMs(): number | undefined {
    return this.keepalive.srttMs;
  }

  /** True once the session has ended. */
  get closed(): boolean {
    return this.phase === 'closed';
  }

  /** True once this side has sent GOAWAY: it opens no new streams and refuses the peer's. */
  get goingAway(): boolean {
    return this.localGoAway;
  }

  /** The GOAWAY the peer sent, if any. */
  get goAwayReceived(): GoAwayInfo | null {
    return this.remoteGoAway;
  }

  /** Streams currently open, for status pages. */
  listStreams(): MuxStream[] {
    return this.streams ? [...this.streams.values()] : [];
  }

  // ---- Handshake -------------------------------------------------------------------------

  /** @internal Dialer: sends HELLO. */
  sendClientHello(hello: Omit<ClientHello, 'v' | 'limits'>): void {
    this.writer.queue(encodeHello({ v: PROTOCOL_VERSION, limits: this.limits, ...hello }));
  }

  /**
   * @internal Acceptor: answers HELLO and opens the session for streams. False, and nothing
   * sent, when the session failed while the token was being verified.
   */
  sendServerHello(app: Record<string, unknown>): boolean {
    if (this.phase !== 'handshake' || this.lingerTimer) return false;
    this.id ||= randomBytes(8).toString('hex');
    this.writer.queue(encodeHello({ v: PROTOCOL_VERSION, limits: this.limits, sessionId: this.id, app }));
    this.startOpenPhase();
    return true;
  }

  private startOpenPhase(): void {
    if (this.phase !== 'handshake') return;
    this.phase = 'open';
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
    this.keepalive.start();
    this.emit('open');
  }

  private handleHello(payload: Buffer): void {
    if (this.phase !== 'handshake' || (this.role === 'acceptor' ? this.helloReceived : this.serverHello)) {
      throw new ProtocolError('ERR_WARREN_PROTOCOL', 'HELLO after the handshake');
    }
    if (this.role === 'acceptor') {
      const hello = parseClientHello(payload);
      // Not kept: it holds the token, and the authenticator takes from it what it needs.
      this.helloReceived = true;
      this.peerLimits = sharedLimits(hello.limits);
      this.emit('hello', hello);
    } else {
      this.serverHello = parseServerHello(payload);
      this.peerLimits = sharedLimits(this.serverHello.limits);
      this.id = this.serverHello.sessionId;
      this.startOpenPhase();
    }
  }

  // ---- Opening streams -------------------------------------------------------------------

  /**
   * Opens a stream to `port` on the peer. Synchronous and 0-RTT: write at once, the OPEN and
   * the first DATA leave together. Throws ConnectionError when the session is closed or going away.
   */
  open(port: number, metadata: Readonly<Record<string, string>> = {}): MuxStream {
    if (this.phase !== 'open') throw new ConnectionError('ERR_WARREN_SESSION_CLOSED', 'the session is not open');
    if (this.localGoAway || this.remoteGoAway) throw new ConnectionError('ERR_WARREN_GOING_AWAY', 'the session is going away; open the stream on a new session');
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new StreamResetError('ERR_WARREN_INVALID_ARGUMENT', `port must be 1-65535; got ${port}`);
    if (this.streamCount >= this.config.maxStreams) throw new StreamResetError('ERR_WARREN_STREAM_REFUSED', `session has ${this.streamCount} streams open, the most allowed`);
    if (this.nextStreamId > MAX_STREAM_ID) throw new ConnectionError('ERR_WARREN_GOING_AWAY', 'stream ids exhausted; open a new session');
    const meta = encodeMetadata(metadata);
    if (meta.length > this.peerLimits.maxMetadataBytes) {
      throw new StreamResetError('ERR_WARREN_METADATA_TOO_LARGE', `metadata of ${meta.length} bytes exceeds the peer's ${this.peerLimits.maxMetadataBytes}`);
    }
    const id = this.nextStreamId;
    this.nextStreamId += 2;
    const stream = this.createStream(id, port, metadata, false);
    this.writer.queue(encodeOpen(id, port, meta), () => {
      stream.openWritten = true;
      this.writer.markReady(stream);
    });
    return stream;
  }

  private createStream(id: number, port: number, metadata: Readonly<Record<string, string>>, incoming: boolean): MuxStream {
    const stream = new MuxStream(this, {
      id,
      port,
      metadata,
      incoming,
      sendWindow: this.peerLimits.initialWindowBytes,
      recvWindow: this.config.initialWindowBytes,
      now: this.config.now(),
    });
    (this.streams ??= new Map()).set(id, stream);
    if (incoming) this.pendingCount++;
    return stream;
  }

  // ---- Receiving -------------------------------------------------------------------------

  /** @internal TransportLink */
  onTransportData(chunk: Buffer): void {
    if (this.phase === 'closed') return;
    this.bytesIn += chunk.length;
    this.keepalive.received();
    try {
      this.decoder.push(chunk);
    } catch (err) {
      this.fail(err instanceof WarrenError ? err : new ProtocolError('ERR_WARREN_INTERNAL', 'frame handling failed', { cause: err }));
    }
  }

  /** True when `id` belongs to streams the peer opens. */
  private isPeerId(id: number): boolean {
    return (id % 2 === 1) === (this.role === 'acceptor');
  }

  /** Stream `id` is not in the map: a protocol error if it was never opened, else a late frame for a closed stream. */
  private unknownStream(id: number, what: string): void {
    if (this.isPeerId(id) ? id > this.lastPeerStreamId : id >= this.nextStreamId) {
      throw new ProtocolError('ERR_WARREN_PROTOCOL', `${what} on stream ${id}, which was never opened`);
    }
    if (this.excusedFrames > 0) this.excusedFrames--;
    else this.spendIdle(what);
  }

  private spendIdle(what: string): void {
    if (!(this.idleBucket ??= new TokenBucket(this.config.idleFrameRate, this.config.now)).take()) throw new ProtocolError('ERR_WARREN_FLOOD', `too many frames that carry nothing (${what})`);
  }

  private takeReset(): boolean {
    return (this.resetBucket ??= new TokenBucket(this.config.resetRate, this.config.now)).take();
  }

  /** @internal FrameSink: a piece of a DATA frame. */
  onData(id: number, piece: Buffer, frameEnd: boolean): void {
    if (this.phase !== 'open') throw new ProtocolError('ERR_WARREN_PROTOCOL', 'DATA before the handshake completed');
    if (frameEnd) this.dataFramesIn++;
    const stream = this.streams?.get(id);
    if (!stream) {
      if (frameEnd) this.unknownStream(id, 'DATA');
      return;
    }
    if (stream.recvFin) throw new ProtocolError('ERR_WARREN_PROTOCOL', `DATA after FIN on stream ${id}`);
    if (piece.length === 0) {
      if (frameEnd) this.spendIdle('empty DATA');
      return;
    }
    if (piece.length > stream.recvAllowance) {
      throw new ProtocolError('ERR_WARREN_FLOW_CONTROL', `stream ${id} received ${piece.length} bytes with ${stream.recvAllowance} bytes of credit`);
    }
    this.buffered += piece.length;
    stream.receive(piece);
  }

  /** @internal FrameSink: unknown extension frames are skipped, but they cost parsing: they share the idle-frame budget. */
  onSkip(): void {
    this.spendIdle('extension frame');
  }

  /** @internal FrameSink: a whole control frame. */
  onControl(f: ControlFrame): void {
    if (f.type === FrameType.HELLO) return this.handleHello(f.payload);
    if (f.type === FrameType.GOAWAY) return this.handleFrameGoAway(f);
    if (this.phase !== 'open') throw new ProtocolError('ERR_WARREN_PROTOCOL', `${FrameType[f.type]} before the handshake completed`);
    switch (f.type) {
      case FrameType.OPEN:
        return this.handleFrameOpen(f.streamId, f.port, f.metadata);
      case FrameType.WINDOW:
        return this.handleFrameWindow(f.streamId, f.increment);
      case FrameType.FIN:
        return this.handleFrameFin(f.streamId);
      case FrameType.RST:
        return this.handleFrameRst(f.streamId, f.code, f.reason);
      case FrameType.PING:
        if (!(this.pingBucket ??= new TokenBucket(this.config.pingRate, this.config.now)).take()) throw new ProtocolError('ERR_WARREN_FLOOD', 'PING flood');
        this.writer.queue(encodePing(f.payload, true));
        return;
      case FrameType.PONG:
        if (!this.keepalive.pong(f.payload)) this.spendIdle('unsolicited PONG');
        return;
    }
  }

  private handleFrameOpen(id: number, port: number, metadata: Record<string, string>): void {
    if (!this.isPeerId(id) || id <= this.lastPeerStreamId) {
      throw new ProtocolError('ERR_WARREN_PROTOCOL', `OPEN with stream id ${id}: ids must be ${this.role === 'acceptor' ? 'odd' : 'even'} and increasing`);
    }
    this.lastPeerStreamId = id;
    let refusal: ErrorCode | null = null;
    if (this.localGoAway) refusal = 'ERR_WARREN_GOING_AWAY';
    else if (this.streamCount >= this.config.maxStreams) refusal = 'ERR_WARREN_STREAM_REFUSED';
    else if (this.pendingCount >= this.config.maxPendingOpens) refusal = 'ERR_WARREN_PENDING_LIMIT';
    else if (this.buffered + this.config.initialWindowBytes > this.config.maxBufferedBytes) refusal = 'ERR_WARREN_BUFFER_LIMIT';
    else if (this.listenerCount('stream') === 0) refusal = 'ERR_WARREN_STREAM_REFUSED';
    if (refusal) {
      if (!this.takeReset()) throw new ProtocolError('ERR_WARREN_FLOOD', 'too many refused or reset streams');
      this.writer.queue(encodeRst(id, ERRORS[refusal].wire, ERRORS[refusal].summary));
      return;
    }
    this.emit('stream', this.createStream(id, port, metadata, true));
  }

  private handleFrameWindow(id: number, increment: number): void {
    const stream = this.streams?.get(id);
    if (!stream) return this.unknownStream(id, 'WINDOW');
    if (stream.sendWindow + increment > MAX_WINDOW_BYTES_LIMIT) {
      throw new ProtocolError('ERR_WARREN_FLOW_CONTROL', `WINDOW overflows stream ${id}'s window past ${MAX_WINDOW_BYTES_LIMIT}`);
    }
    // Credit comes back for data this side sent; WINDOW frames beyond what that data earned
    // (a flood of WINDOW(1) on a live stream) carry nothing and spend the idle budget.
    if (stream.windowFramesEarned > 0) stream.windowFramesEarned--;
    else this.spendIdle('WINDOW with no data sent behind it');
    stream.grant(increment);
    this.writer.markReady(stream);
  }

  private handleFrameFin(id: number): void {
    const stream = this.streams?.get(id);
    if (!stream) return this.unknownStream(id, 'FIN');
    if (stream.recvFin) throw new ProtocolError('ERR_WARREN_PROTOCOL', `second FIN on stream ${id}`);
    stream.receiveFin();
    if (stream.sentFin) this.forget(stream);
  }

  private handleFrameRst(id: number, code: number, reason: string): void {
    const stream = this.streams?.get(id);
    if (!stream) return this.unknownStream(id, 'RST');
    if (stream.incoming && !stream.answered && !this.takeReset()) {
      throw new ProtocolError('ERR_WARREN_FLOOD', 'too many streams opened and reset before an answer');
    }
    this.forget(stream);
    stream.abort(errorFromWire(StreamResetError, code, reason, { remote: true }));
  }

  private handleFrameGoAway(f: Extract<ControlFrame, { type: FrameType.GOAWAY }>): void {
    const error = f.code === 0 ? null : errorFromWire(ConnectionError, f.code, f.message);
    this.remoteGoAway = { code: f.code, error, lastStreamId: f.lastStreamId, hint: f.hint, message: f.message };
    if (error) this.closeError ??= error;
    // Streams we opened that the peer will not process can be retried elsewhere.
    for (const stream of this.listStreams()) {
      if (!this.isPeerId(stream.id) && stream.id > f.lastStreamId) {
        this.forget(stream);
        stream.abort(new StreamResetError('ERR_WARREN_GOING_AWAY', 'the peer is going away; this stream was not processed', { remote: true }));
      }
    }
    this.emit('goaway', this.remoteGoAway);
    if (this.phase === 'handshake') this.fail(error ?? new ConnectionError('ERR_WARREN_GOING_AWAY', f.message || undefined), false);
  }

  // ---- StreamOwner -----------------------------------------------------------------------

  /** @internal */
  get maxSendFrameBytes(): number {
    return this.peerLimits.maxFrameBytes;
  }

  /** @internal */
  markReady(stream: MuxStream): void {
    this.writer.markReady(stream);
  }

  /** @internal */
  sendFin(stream: MuxStream): void {
    this.writer.queue(encodeFin(stream.id), () => {
      stream.finSent();
      if (stream.recvFin) this.forget(stream);
    });
  }

  /** @internal */
  sendRst(stream: MuxStream, code: number, reason: string): void {
    if (this.phase === 'open') this.writer.queue(encodeRst(stream.id, code, reason));
    // The peer may have frames for this stream in flight, sent before it learns of the reset:
    // those are excused from the idle budget (up to a few per reset), not counted as a flood.
    if (!stream.recvFin) this.excusedFrames = Math.min(this.excusedFrames + EXCUSED_FRAMES_PER_RESET, MAX_EXCUSED_FRAMES);
    this.forget(stream);
  }

  /** @internal */
  sendWindow(stream: MuxStream, increment: number): void {
    this.writer.queue(encodeWindow(stream.id, increment));
  }

  /**
   * @internal Window auto-tuning. Over the session's buffer budget, a window that grew earlier
   * gives back half (down to the initial window), so maxBufferedBytes bounds memory again once
   * readers catch up. Otherwise the window doubles when half of it went in under ~2 RTTs and the
   * reader keeps up.
   */
  windowAdjustment(stream: MuxStream, unreturned: number, readerIdle: boolean): number {
    const now = this.config.now();
    const elapsed = now - stream.epochStart;
    stream.epochStart = now;
    const initial = this.config.initialWindowBytes;
    if (this.buffered > this.config.maxBufferedBytes) {
      if (stream.recvWindow <= initial) return 0;
      return -Math.min(unreturned, stream.recvWindow - Math.max(initial, Math.floor(stream.recvWindow / 2)));
    }
    if (!readerIdle) return 0;
    const rtt = Math.max(this.keepalive.srttMs ?? INITIAL_RTT_MS, MIN_TUNING_RTT_MS);
    const fraction = unreturned / stream.recvWindow;
    if (elapsed >= 4 * fraction * rtt) return 0;
    const growth = Math.min(stream.recvWindow, this.config.maxWindowBytes - stream.recvWindow);
    if (growth <= 0 || this.buffered + growth > this.config.maxBufferedBytes) return 0;
    return growth;
  }

  /** @internal */
  consumed(bytes: number): void {
    this.buffered -= bytes;
  }

  /** @internal */
  accepted(stream: MuxStream): void {
    if (this.streams?.get(stream.id) === stream) this.pendingCount--;
  }

  /** @internal */
  forget(stream: MuxStream): void {
    if (this.streams?.get(stream.id) !== stream) return;
    this.streams.delete(stream.id);
    if (stream.pending) {
      stream.pending = false;
      this.pendingCount--;
    }
    if (this.localGoAway && this.streams.size === 0 && this.phase === 'open') this.finishGracefully();
  }

  // ---- KeepaliveOwner --------------------------------------------------------------------

  /** @internal */
  queuePing(payload: Buffer): void {
    this.writer.queue(encodePing(payload));
  }

  /** @internal */
  onKeepaliveRtt(ms: number): void {
    this.emit('rtt', ms);
  }

  /** @internal */
  onKeepaliveDead(): void {
    // A silent peer will not read a GOAWAY nor answer a close: tell it in passing, then close
    // at once rather than linger, so the peer is gone within two keepalive intervals.
    const err = new ConnectionError('ERR_WARREN_KEEPALIVE_TIMEOUT', `no answer to keepalive within ${this.config.keepaliveTimeoutMs} ms`);
    this.fail(err);
    this.destroy(err);
  }

  // ---- Ending ----------------------------------------------------------------------------

  /** Measures the round trip with a PING; resolves with milliseconds. */
  ping(timeoutMs = this.config.keepaliveTimeoutMs): Promise<number> {
    if (this.phase !== 'open') return Promise.reject(new ConnectionError('ERR_WARREN_SESSION_CLOSED'));
    return this.keepalive.ping(timeoutMs);
  }

  /**
   * Sends GOAWAY: the peer opens no new streams; streams already open may finish. With `code`
   * 0 (the default) the session then ends by itself once its last stream closes.
   */
  goAway(code: ErrorCode | 0 = 0, options: { hint?: string; message?: string } = {}): void {
    if (this.localGoAway || this.phase === 'closed') return;
    this.localGoAway = true;
    const wire = code === 0 ? 0 : ERRORS[code].wire;
    this.writer.queue(encodeGoAway(wire, this.lastPeerStreamId, options.hint, options.message));
    if (this.streamCount === 0 && this.phase === 'open') this.finishGracefully();
  }

  /** Ends gracefully: GOAWAY, let open streams finish, then close the transport. Resolves on 'close'. */
  close(options: { hint?: string; message?: string } = {}): Promise<void> {
    if (this.phase === 'closed') return Promise.resolve();
    const closed = new Promise<void>((resolve) => this.once('close', () => resolve()));
    if (this.phase === 'handshake') this.destroy();
    else this.goAway(0, options);
    return closed;
  }

  private finishGracefully(): void {
    this.keepalive.stop();
    // This may run inside the writer's flush (a FIN's completion): end on the next tick, once
    // the batch being built has been handed to the transport.
    process.nextTick(() => {
      if (this.phase === 'closed') return;
      this.writer.flushNow();
      this.transport.end();
      this.armLinger();
    });
  }

  /**
   * Ends the session because of `err`: GOAWAY with its code (when `sendGoAway`), every stream
   * fails with it, the transport closes. Used for protocol violations and dead peers.
   */
  fail(err: WarrenError, sendGoAway = true): void {
    if (this.phase === 'closed' || this.lingerTimer) return;
    this.closeError ??= err;
    this.decoder.stop();
    this.keepalive.stop();
    // Also after a graceful GOAWAY: the peer must learn that the drain ended in an error.
    if (sendGoAway) {
      this.localGoAway = true;
      this.writer.queue(encodeGoAway(err.wireCode, this.lastPeerStreamId, '', err.message));
      this.writer.flushNow();
    }
    this.writer.stop();
    this.abortStreams(err);
    this.transport.end();
    this.armLinger();
  }

  private armLinger(): void {
    if (this.lingerTimer) return;
    this.lingerTimer = setTimeout(() => this.transport.destroy(), CLOSE_LINGER_MS);
    this.lingerTimer.unref();
  }

  /** Closes at once: every stream fails with `err` (or ERR_WARREN_SESSION_CLOSED). */
  destroy(err?: WarrenError): void {
    if (this.phase === 'closed') return;
    if (err) this.closeError ??= err;
    this.transport.destroy();
    // The transport's close event finishes the job; make sure it happens even if it never fires.
    this.onTransportClose();
  }

  private abortStreams(err: WarrenError): void {
    const streams = this.listStreams();
    this.streams?.clear();
    this.pendingCount = 0;
    for (const s of streams) s.abort(err instanceof StreamResetError ? err : new ConnectionError(err.code, err.message, { cause: err }));
  }

  /** @internal TransportLink */
  onTransportClose(err?: Error): void {
    if (this.phase === 'closed') return;
    this.phase = 'closed';
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    this.keepalive.stop();
    this.writer.stop();
    this.decoder.stop();
    const graceful = this.localGoAway && !this.closeError;
    const reason =
      this.closeError ??
      (err instanceof WarrenError ? err : graceful || this.remoteGoAway ? undefined : new ConnectionError('ERR_WARREN_SESSION_CLOSED', err ? `transport closed: ${err.message}` : 'the peer closed the connection', { cause: err }));
    this.abortStreams(reason ?? new ConnectionError('ERR_WARREN_SESSION_CLOSED', 'the session closed'));
    this.keepalive.failPings(reason ?? new ConnectionError('ERR_WARREN_SESSION_CLOSED'));
    this.emit('close', reason);
  }
}

/** Options for connectSession(): session options plus what the dialer's HELLO says. */
export interface ConnectSessionOptions extends SessionOptions {
  token: string;
  software?: string;
  app?: Record<string, unknown>;
}

/**
 * Runs the dialer's side of the handshake on `transport`. Resolves with the open session; rejects
 * with the relay's GOAWAY code (for example ERR_WARREN_TOKEN_EXPIRED) or a handshake error.
 */
export function connectSession(transport: Transport, options: ConnectSessionOptions): Promise<Session> {
  const { token, software, app, ...sessionOptions } = options;
  const session = new Session(transport, 'dialer', sessionOptions);
  return new Promise((resolve, reject) => {
    session.once('open', () => {
      session.removeListener('close', onClose);
      resolve(session);
    });
    const onClose = (err?: WarrenError): void => reject(err ?? new ConnectionError('ERR_WARREN_HANDSHAKE', 'the relay closed the connection during the handshake'));
    session.once('close', onClose);
    session.sendClientHello({ token, software, app: app ?? {} });
  });
}

/** Decides on a dialer's HELLO: returns the `app` fields of the answer, or throws a WarrenError to refuse. */
export type Authenticate = (hello: ClientHello, session: Session) => Promise<Record<string, unknown>> | Record<string, unknown>;

/**
 * Runs the acceptor's side of the handshake: waits for HELLO, calls `authenticate`, answers.
 * A thrown WarrenError is sent to the dialer as GOAWAY with its code; the promise rejects with it.
 */
export function acceptSession(transport: Transport, options: SessionOptions & { authenticate: Authenticate }): Promise<Session> {
  const { authenticate, ...sessionOptions } = options;
  const session = new Session(transport, 'acceptor', sessionOptions);
  return new Promise((resolve, reject) => {
    const onClose = (err?: WarrenError): void => reject(err ?? new ConnectionError('ERR_WARREN_HANDSHAKE', 'the peer closed the connection during the handshake'));
    session.once('close', onClose);
    session.once('hello', (hello: ClientHello) => {
      Promise.resolve()
        .then(() => authenticate(hello, session))
        .then(
          (app) => {
            // A session that failed meanwhile (handshake timeout, the dialer's GOAWAY) stays
            // closed: the promise rejects with its reason when it closes.
            if (!session.sendServerHello(app)) return;
            session.removeListener('close', onClose);
            resolve(session);
          },
          (err: unknown) => {
            const failure = err instanceof WarrenError ? err : new ConnectionError('ERR_WARREN_INTERNAL', 'authentication failed', { cause: err });
            session.fail(failure);
          },
        );
    });
  });
}
