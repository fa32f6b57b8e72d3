/**
 * A session: many streams over one transport (docs/PROTOCOL.md). Create one with
 * connectSession() (the dialer: agent, client) or acceptSession() (the relay); both resolve once
 * the HELLO exchange is done.
 *
 * Events: 'stream' (an incoming MuxStream: call accept() once it is being served), 'goaway'
 * ({ code, lastStreamId, hint, message }), 'rtt' (ms), and 'close' (err?: WarrenError), emitted
 * once. A session never emits 'error': a broken peer ends only its own session.
 */
import { randomBytes } from 'node:crypto';
import { ERRORS, ConnectionError, ProtocolError, StreamResetError, WarrenError, errorFromWire, type ErrorCode } from './errors.js';
import { encodeHello, encodeMetadata, encodeOpen, encodePing, encodeRst } from './encode.js';
import { FrameType, MAX_STREAM_ID, MAX_WINDOW_BYTES_LIMIT, PROTOCOL_VERSION, type ControlFrame } from './frame.js';
import { parseClientHello, parseServerHello, sharedLimits, type ClientHello } from './handshake.js';
import { SessionCore } from './session-core.js';
import { MuxStream } from './stream.js';

export type { GoAwayInfo } from './session-core.js';

/**
 * A multiplexed session: the handshake, opening streams and the frame handlers, over the state
 * and life cycle of SessionCore (session-core.ts).
 */
export class Session extends SessionCore {
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
    this.flood.spendLate(what);
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
      if (frameEnd) this.flood.spendIdle('empty DATA');
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
    this.flood.spendIdle('extension frame');
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
        this.flood.spendPing();
        this.writer.queue(encodePing(f.payload, true));
        return;
      case FrameType.PONG:
        if (!this.keepalive.pong(f.payload)) this.flood.spendIdle('unsolicited PONG');
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
      if (!this.flood.takeReset()) throw new ProtocolError('ERR_WARREN_FLOOD', 'too many refused or reset streams');
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
    else this.flood.spendIdle('WINDOW with no data sent behind it');
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
    if (stream.incoming && !stream.answered && !this.flood.takeReset()) {
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

}
