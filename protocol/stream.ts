/**
 * A multiplexed stream: a Node Duplex over one stream id of a Session.
 *
 * `stream.pipeline(socket, muxStream, socket)` works: end() sends FIN (half-close), a received
 * FIN ends the readable side, destroy() frees everything and, unless both directions had already
 * finished cleanly, sends RST. reset(code) sends RST with a chosen code.
 *
 * Events besides Duplex's: 'firstByte' once, when the first byte from the peer arrives.
 *
 * Flow control: the sender may have at most `sendWindow` unacknowledged bytes in flight. The
 * receiver returns credit (WINDOW) as the application reads, never for bytes still sitting in the
 * readable buffer, so a paused reader stops the sender once its window is used, and memory stays
 * within the window. While the reader keeps up and the window is used up fast relative to the
 * RTT, the window doubles, up to maxWindowBytes (see docs/PROTOCOL.md, "Flow control").
 */
import { Duplex } from 'node:stream';
import { ERRORS, StreamResetError, WarrenError, type ErrorCode } from './errors.js';
import { encodeDataHeader } from './encode.js';
import type { SessionConfig } from './config.js';

/**
 * WINDOW frames a peer may send for each DATA frame it received on a stream before further ones
 * count as idle frames. A receiver returns credit once half its window is read, so one DATA frame
 * (never larger than the window) leads to at most two WINDOW frames; four leaves room for peers
 * that return credit more eagerly.
 */
export const WINDOW_FRAMES_PER_DATA_FRAME = 4;

/** Smallest RTT used for window auto-tuning, so loopback links still grow windows under load. */
const MIN_TUNING_RTT_MS = 2;
/** RTT assumed before the first PONG. */
const INITIAL_RTT_MS = 50;

/**
 * Window auto-tuning, at a credit return of `unreturned` bytes on `stream`: returns how its
 * receive window changes (see StreamOwner.windowAdjustment) and starts the stream's next epoch.
 * Over the session's buffer budget (`buffered` above maxBufferedBytes), a window that grew earlier
 * gives back half (down to the initial window), so maxBufferedBytes bounds memory again once
 * readers catch up. Otherwise the window doubles when half of it went in under ~2 RTTs (`srttMs`,
 * undefined before the first PONG) and the reader keeps up.
 */
export function tuneReceiveWindow(stream: MuxStream, unreturned: number, readerIdle: boolean, config: Readonly<SessionConfig>, buffered: number, srttMs: number | undefined): number {
  const now = config.now();
  const elapsed = now - stream.epochStart;
  stream.epochStart = now;
  const initial = config.initialWindowBytes;
  if (buffered > config.maxBufferedBytes) {
    if (stream.recvWindow <= initial) return 0;
    return -Math.min(unreturned, stream.recvWindow - Math.max(initial, Math.floor(stream.recvWindow / 2)));
  }
  if (!readerIdle) return 0;
  const rtt = Math.max(srttMs ?? INITIAL_RTT_MS, MIN_TUNING_RTT_MS);
  const fraction = unreturned / stream.recvWindow;
  if (elapsed >= 4 * fraction * rtt) return 0;
  const growth = Math.min(stream.recvWindow, config.maxWindowBytes - stream.recvWindow);
  if (growth <= 0 || buffered + growth > config.maxBufferedBytes) return 0;
  return growth;
}

/** The session operations a stream needs; implemented by Session. */
export interface StreamOwner {
  readonly maxSendFrameBytes: number;
  /** Queues the stream for the send scheduler. */
  markReady(stream: MuxStream): void;
  /** Queues a FIN after everything the stream has written. */
  sendFin(stream: MuxStream): void;
  /** Queues an RST and forgets the stream. */
  sendRst(stream: MuxStream, code: number, reason: string): void;
  /** Grants credit: a WINDOW frame. */
  sendWindow(stream: MuxStream, increment: number): void;
  /**
   * Decides how a stream's receive window changes at this credit return: a positive number grows
   * it, a negative one shrinks it (never below the initial window, never by more than
   * `unreturned`), 0 keeps it. `readerIdle` is true when the reader has drained its buffer.
   */
  windowAdjustment(stream: MuxStream, unreturned: number, readerIdle: boolean): number;
  /** Accounts bytes that left the stream's readable buffer. */
  consumed(bytes: number): void;
  /** Called once when the stream is gone: removes it from the session. */
  forget(stream: MuxStream): void;
  /** Called when an incoming stream is accepted (no longer counts as pending). */
  accepted(stream: MuxStream): void;
}

/** Options for a MuxStream; set by the session. */
export interface MuxStreamInit {
  id: number;
  port: number;
  metadata: Readonly<Record<string, string>>;
  incoming: boolean;
  sendWindow: number;
  recvWindow: number;
  now: number;
}

/** A stream of a Session. Create with `session.open()`; incoming ones arrive on the 'stream' event. */
export class MuxStream extends Duplex {
  /** Stream id: odd when opened by the dialer, even when opened by the acceptor. */
  readonly id: number;
  /** Target port named in OPEN. */
  readonly port: number;
  /** Metadata sent with OPEN. */
  readonly metadata: Readonly<Record<string, string>>;
  /** True when the peer opened this stream. */
  readonly incoming: boolean;

  // Guarded by the session (single event loop): flow control and life-cycle state.
  /** @internal Bytes we may still send. */
  sendWindow: number;
  /** @internal Current receive window (grows with auto-tuning). */
  recvWindow: number;
  /** @internal Bytes the peer may still send before it needs more credit. */
  recvAllowance: number;
  /** @internal Bytes received in DATA frames. */
  received = 0;
  /** @internal Received bytes already returned as credit. */
  credited = 0;
  /** @internal Received bytes known to have left the readable buffer. */
  consumedReported = 0;
  /** @internal When the current auto-tuning epoch started. */
  epochStart: number;
  /** @internal The OPEN frame has been written to the transport. */
  openWritten: boolean;
  /** @internal In the session's ready queue. */
  queued = false;
  /** @internal Any DATA or FIN sent (used to spot open-then-reset floods). */
  answered = false;
  /**
   * @internal WINDOW frames the peer may still send on this stream without spending the idle
   * budget: each DATA frame sent earns WINDOW_FRAMES_PER_DATA_FRAME (credit is returned for data
   * received, so a WINDOW with no data behind it carries nothing).
   */
  windowFramesEarned = 0;
  /** @internal Incoming and not yet accepted. */
  pending: boolean;
  /** @internal FIN sent / received; RST sent or received. */
  sentFin = false;
  recvFin = false;
  wasReset = false;

  private readonly owner: StreamOwner;
  private chunks: Buffer[] = [];
  private chunkBytes = 0;
  private writeCallback: ((err?: Error | null) => void) | null = null;
  private finalCallback: ((err?: Error | null) => void) | null = null;
  private creditScheduled = false;
  private resetWith: StreamResetError | undefined;

  /** @internal Created by the session only. */
  constructor(owner: StreamOwner, init: MuxStreamInit) {
    // Credit is returned at _read(); the readable high-water mark must stay at or below half the
    // initial window so a sender blocked on credit always gets it back (docs/PROTOCOL.md).
    const hwm = Math.min(64 * 1024, Math.floor(init.recvWindow / 4));
    super({ allowHalfOpen: true, readableHighWaterMark: hwm, writableHighWaterMark: 64 * 1024, decodeStrings: true });
    this.owner = owner;
    this.id = init.id;
    this.port = init.port;
    this.metadata = init.metadata;
    this.incoming = init.incoming;
    this.sendWindow = init.sendWindow;
    this.recvWindow = init.recvWindow;
    this.recvAllowance = init.recvWindow;
    this.epochStart = init.now;
    this.pending = init.incoming;
    this.openWritten = init.incoming;
    // A flowing reader is handed pushed bytes without a read() call, and after the peer's FIN
    // Node stops calling _read(): count what is left when the reader reaches the end. One
    // listener for every stream ('end' comes once): a closure and a once() wrapper per stream cost
    // an idle relay ~250 bytes per stream, twice per joined pair.
    this.on('end', reportConsumedAtEnd);
  }

  /** Marks an incoming stream as accepted: it no longer counts against maxPendingOpens. */
  accept(): void {
    if (this.pending) {
      this.pending = false;
      this.owner.accepted(this);
    }
  }

  /** Aborts the stream in both directions with RST carrying `code`; the peer sees a StreamResetError with it. */
  reset(code: ErrorCode = 'ERR_WARREN_STREAM_CANCELLED', message?: string): void {
    // The caller chose to reset: the RST carries the code, but this side sees a plain close, not an error.
    this.resetWith ??= new StreamResetError(code, message);
    this.destroy();
  }

  /** Bytes written and waiting for credit or for the transport. */
  get bufferedSendBytes(): number {
    return this.chunkBytes;
  }

  /** @internal True when the stream has bytes and credit to send. */
  get sendable(): boolean {
    return this.chunkBytes > 0 && this.sendWindow > 0 && this.openWritten && !this.wasReset;
  }

  /**
   * @internal Takes the next DATA frame, at most `max` payload bytes and within the window: the
   * header and the payload pieces, small pieces joined into one. Null when nothing can be sent.
   */
  takeFrame(max: number): Buffer[] | null {
    const n = Math.min(this.sendWindow, max, this.chunkBytes);
    if (n <= 0 || !this.openWritten) return null;
    let payload: Buffer;
    const first = this.chunks[0]!;
    if (first.length >= n) {
      payload = first.length === n ? first : first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      payload = Buffer.allocUnsafe(n);
      let filled = 0;
      while (filled < n) {
        const c = this.chunks[0]!;
        const take = Math.min(c.length, n - filled);
        c.copy(payload, filled, 0, take);
        filled += take;
        if (take === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(take);
      }
    }
    this.chunkBytes -= n;
    this.sendWindow -= n;
    this.answered = true;
    this.windowFramesEarned += WINDOW_FRAMES_PER_DATA_FRAME;
    if (this.chunkBytes === 0 && this.writeCallback) {
      const cb = this.writeCallback;
      this.writeCallback = null;
      cb();
    }
    return [encodeDataHeader(this.id, n), payload];
  }

  /** @internal A DATA piece from the peer (already checked against the window). */
  receive(piece: Buffer): void {
    // 'firstByte': observing it does not change the read mode, unlike a 'data' listener.
    if (this.received === 0) this.emit('firstByte');
    this.recvAllowance -= piece.length;
    this.received += piece.length;
    this.push(piece);
  }

  /** @internal The peer sent FIN. */
  receiveFin(): void {
    this.recvFin = true;
    this.push(null);
  }

  /** @internal The peer sent RST, or the session ended: fail the stream without sending RST. */
  abort(err: WarrenError): void {
    this.wasReset = true;
    this.destroy(err);
  }

  /** @internal The peer granted credit. */
  grant(increment: number): void {
    this.sendWindow += increment;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.enqueue([chunk], callback);
  }

  override _writev(chunks: { chunk: Buffer }[], callback: (err?: Error | null) => void): void {
    this.enqueue(
      chunks.map((c) => c.chunk),
      callback,
    );
  }

  private enqueue(chunks: Buffer[], callback: (err?: Error | null) => void): void {
    let bytes = 0;
    for (const c of chunks) {
      if (c.length === 0) continue;
      this.chunks.push(c);
      bytes += c.length;
    }
    if (bytes === 0) {
      callback();
      return;
    }
    this.chunkBytes += bytes;
    this.writeCallback = callback;
    this.owner.markReady(this);
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.finalCallback = callback;
    this.owner.sendFin(this);
  }

  /** @internal The FIN left in order after the data; completes end(). */
  finSent(): void {
    this.sentFin = true;
    this.answered = true;
    const cb = this.finalCallback;
    this.finalCallback = null;
    cb?.();
  }

  override _read(): void {
    // Node calls _read() before it takes the bytes being read out of the buffer, so the
    // consumed count is only right once read() has returned: look on the next tick.
    this.scheduleCredit();
  }

  /**
   * Every read that takes bytes out of the buffer (flowing mode reads through here too) counts
   * them: Node does not call _read() again while an earlier _read() has not been answered with
   * a push, nor after the peer's FIN, so _read() alone would miss bytes read in those states.
   */
  override read(size?: number): ReturnType<Duplex['read']> {
    const chunk: ReturnType<Duplex['read']> = super.read(size);
    if (chunk !== null) this.scheduleCredit();
    return chunk;
  }

  private scheduleCredit(): void {
    if (this.creditScheduled) return;
    this.creditScheduled = true;
    process.nextTick(() => this.returnCredit());
  }

  /**
   * Counts what the reader consumed and, once half the window is consumed, returns it as credit.
   * At this point the buffer holds less than the high-water mark (≤ a quarter of the window), so
   * a sender blocked on credit always gets some back: a consuming reader can never stall.
   */
  private returnCredit(): void {
    this.creditScheduled = false;
    if (this.destroyed) return;
    const consumed = this.reportConsumed();
    if (this.recvFin || this.wasReset) return;
    const unreturned = consumed - this.credited;
    if (unreturned < this.recvWindow / 2) return;
    const adjustment = this.owner.windowAdjustment(this, unreturned, this.readableLength === 0);
    const increment = unreturned + adjustment;
    this.recvWindow += adjustment;
    this.credited = consumed;
    this.recvAllowance += increment;
    // A shrinking window may absorb the whole return; the sender's view stays in step (allowance).
    if (increment > 0) this.owner.sendWindow(this, increment);
  }

  /** @internal Tells the session how many received bytes have left the readable buffer; returns the total. */
  reportConsumed(): number {
    const consumed = this.received - this.readableLength;
    const delta = consumed - this.consumedReported;
    if (delta > 0) {
      this.consumedReported = consumed;
      this.owner.consumed(delta);
    }
    return consumed;
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    const unread = this.received - this.consumedReported;
    if (unread > 0) {
      this.consumedReported = this.received;
      this.owner.consumed(unread);
    }
    if (!this.wasReset && !(this.sentFin && this.recvFin)) {
      this.wasReset = true;
      const reason = err instanceof WarrenError ? err : this.resetWith;
      this.owner.sendRst(this, reason?.wireCode ?? ERRORS.ERR_WARREN_STREAM_CANCELLED.wire, reason?.message ?? '');
    }
    this.chunks = [];
    this.chunkBytes = 0;
    const pendingWrite = this.writeCallback;
    const pendingFinal = this.finalCallback;
    this.writeCallback = null;
    this.finalCallback = null;
    this.owner.forget(this);
    if (pendingWrite || pendingFinal) {
      // Made only when someone waits for it: an error (and its stack) per closed stream adds up.
      const failure = err ?? new StreamResetError('ERR_WARREN_STREAM_CLOSED', 'stream destroyed');
      pendingWrite?.(failure);
      pendingFinal?.(failure);
    }
    callback(err);
  }
}

/** The 'end' listener of every MuxStream (the stream is its `this`). */
function reportConsumedAtEnd(this: MuxStream): void {
  this.reportConsumed();
}
