/**
 * The state and life cycle shared by every session (see session.ts for the whole picture):
 * fields, the stream table as the streams see it (StreamOwner), keepalive, GOAWAY and closing.
 */
import { EventEmitter } from 'node:events';
import { ConnectionError, ProtocolError, StreamResetError, WarrenError, ERRORS, type ErrorCode } from './errors.js';
import { verifySessionConfig, type SessionConfig, type SessionOptions } from './config.js';
import { FrameDecoder, type FrameSink } from './decode.js';
import { encodeFin, encodeGoAway, encodePing, encodeRst, encodeWindow } from './encode.js';
import type { ControlFrame } from './frame.js';
import { FloodBudget } from './flood-budget.js';
import { LIMITS_BEFORE_HELLO, type HelloLimits, type ServerHello } from './handshake.js';
import { tuneReceiveWindow, type MuxStream, type StreamOwner } from './stream.js';
import type { Transport, TransportHandlers } from './transport.js';
import { FrameWriter } from './writer.js';
import { Keepalive, type KeepaliveOwner } from './keepalive.js';

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

/** Where a session is in its life: HELLO exchange, open for streams, ended. */
export type Phase = 'handshake' | 'open' | 'closed';

/** How long a failed session waits for its GOAWAY to leave before dropping the transport. */
const CLOSE_LINGER_MS = 1000;
/**
 * What the transport reports, passed on to its session: one small object rather than two
 * closures (an idle relay holds one per session).
 */
class TransportLink implements TransportHandlers {
  constructor(private readonly session: SessionCore) {}

  data(chunk: Buffer): void {
    this.session.onTransportData(chunk);
  }

  close(err?: Error): void {
    this.session.onTransportClose(err);
  }
}

/**
 * What every session holds, and the parts that do not read frames: its state, the StreamOwner
 * and KeepaliveOwner sides, GOAWAY and closing. Session (session.ts) adds the handshake, opening
 * streams and the frame handlers.
 *
 * An idle relay holds one session per agent, so a session is built to be small while idle: it is
 * itself the sink of its decoder, the owner of its keepalive and writer (prototype methods, no
 * per-session closures), and its stream map and flood budgets are made on first use.
 */
export abstract class SessionCore extends EventEmitter implements StreamOwner, FrameSink, KeepaliveOwner {
  // Static after construction.
  readonly role: 'dialer' | 'acceptor';
  readonly config: SessionConfig;
  readonly transport: Transport;
  protected readonly writer: FrameWriter;
  protected readonly decoder: FrameDecoder;
  protected readonly keepalive: Keepalive;

  // Set by the handshake.
  /** Session id chosen by the acceptor. */
  id = '';
  /** The peer's announced receive limits. */
  peerLimits: Readonly<HelloLimits> = LIMITS_BEFORE_HELLO;
  /** The acceptor's HELLO (on the dialer side). */
  serverHello: ServerHello | null = null;

  // Owned by the event loop (no locks in Node, but one owner each).
  protected phase: Phase = 'handshake';
  /** The acceptor has read the dialer's HELLO (which goes to the 'hello' listener, not kept). */
  protected helloReceived = false;
  /** Open streams by id; made with the first stream. */
  protected streams: Map<number, MuxStream> | null = null;
  /** Flood budgets, made when first spent. */
  protected floodBudget: FloodBudget | null = null;
  protected nextStreamId: number;
  protected lastPeerStreamId = 0;
  protected pendingCount = 0;
  protected buffered = 0;
  protected localGoAway = false;
  protected remoteGoAway: GoAwayInfo | null = null;
  protected closeError: WarrenError | undefined;
  protected handshakeTimer: NodeJS.Timeout | null = null;
  protected lingerTimer: NodeJS.Timeout | null = null;
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

  /** The session's flood budgets, made on first use. */
  protected get flood(): FloodBudget {
    return (this.floodBudget ??= new FloodBudget(this.config));
  }

  /** @internal TransportLink: bytes from the transport. */
  abstract onTransportData(chunk: Buffer): void;
  /** @internal FrameSink */
  abstract onData(id: number, piece: Buffer, frameEnd: boolean): void;
  /** @internal FrameSink */
  abstract onSkip(): void;
  /** @internal FrameSink */
  abstract onControl(f: ControlFrame): void;

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
    if (!stream.recvFin) this.flood.excuseAfterReset();
    this.forget(stream);
  }

  /** @internal */
  sendWindow(stream: MuxStream, increment: number): void {
    this.writer.queue(encodeWindow(stream.id, increment));
  }

  /** @internal Window auto-tuning: see tuneReceiveWindow() in stream.ts. */
  windowAdjustment(stream: MuxStream, unreturned: number, readerIdle: boolean): number {
    return tuneReceiveWindow(stream, unreturned, readerIdle, this.config, this.buffered, this.keepalive.srttMs);
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
