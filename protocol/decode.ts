/**
 * The incremental frame decoder: a state machine over whatever chunks the transport delivers.
 *
 * Every limit is checked on the 12-byte header, before any payload is buffered: a frame that is
 * too large, has reserved bits set or a type this version does not know is rejected with a
 * ProtocolError carrying its code, without allocating. DATA payloads are never buffered: each
 * piece is handed on as a view of the incoming chunk. Control payloads are small and bounded,
 * and are gathered into one buffer of exactly their declared length.
 */
import { ProtocolError } from './errors.js';
import {
  FIRST_EXTENSION_TYPE,
  FrameType,
  GOAWAY_FIXED_BYTES,
  HEADER_BYTES,
  KNOWN_FLAGS,
  MAX_HELLO_BYTES,
  MAX_HINT_BYTES,
  MAX_REASON_BYTES,
  OPEN_FIXED_BYTES,
  PING_PAYLOAD_BYTES,
  RST_FIXED_BYTES,
  WINDOW_PAYLOAD_BYTES,
  isKnownType,
  isSessionType,
  type ControlFrame,
} from './frame.js';

/** Receive limits the decoder enforces: this side's own limits, announced in its HELLO. */
export interface DecoderLimits {
  /** Largest DATA (and extension) payload accepted. */
  maxFrameBytes: number;
  /** Largest OPEN metadata accepted. */
  maxMetadataBytes: number;
  /** Largest HELLO payload accepted; default MAX_HELLO_BYTES. */
  maxHelloBytes?: number;
}

/** Where decoded frames go. A callback may throw ProtocolError; push() passes it on. */
export interface FrameSink {
  /** A piece of a DATA frame's payload; `frameEnd` is true on the frame's last piece. */
  onData(streamId: number, piece: Buffer, frameEnd: boolean): void;
  /** A whole control frame. */
  onControl(frame: ControlFrame): void;
  /** An extension frame (type ≥ 0x80) this version does not know was skipped. */
  onSkip?(type: number, length: number): void;
}

const enum State {
  Header,
  Data,
  Control,
  Skip,
}

const EMPTY = Buffer.alloc(0);

/** Decodes a byte stream into frames; call push() with each chunk in order. */
export class FrameDecoder {
  // Static after construction.
  private readonly sink: FrameSink;
  private readonly maxFrameBytes: number;
  private readonly maxMetadataBytes: number;
  private readonly maxHelloBytes: number;

  // Owned by push(): the frame being decoded.
  private state = State.Header;
  // A header split across chunks is gathered here. Made by the first split header (idle sessions
  // rarely see one; a Buffer with its ArrayBuffer costs ~250 bytes), and its own small allocation:
  // a slice of Node's shared 8 KiB pool would keep a whole pool slab alive for the session's life.
  private header: Buffer | null = null;
  private headerFill = 0;
  private type = 0;
  private streamId = 0;
  private remaining = 0;
  private control: Buffer = EMPTY;
  private controlFill = 0;
  private stopped = false;

  constructor(sink: FrameSink, limits: DecoderLimits) {
    this.sink = sink;
    this.maxFrameBytes = limits.maxFrameBytes;
    this.maxMetadataBytes = limits.maxMetadataBytes;
    this.maxHelloBytes = limits.maxHelloBytes ?? MAX_HELLO_BYTES;
  }

  /** Stops decoding: later chunks are ignored (after a fatal error, while the session closes). */
  stop(): void {
    this.stopped = true;
  }

  /** Decodes one chunk. Throws ProtocolError on the first violation; the decoder is then stopped. */
  push(chunk: Buffer): void {
    try {
      this.decode(chunk);
    } catch (err) {
      this.stopped = true;
      throw err;
    }
  }

  private decode(chunk: Buffer): void {
    let offset = 0;
    const end = chunk.length;
    while (offset < end && !this.stopped) {
      switch (this.state) {
        case State.Header: {
          if (this.headerFill === 0 && end - offset >= HEADER_BYTES) {
            this.startFrame(chunk, offset);
            offset += HEADER_BYTES;
          } else {
            const n = Math.min(HEADER_BYTES - this.headerFill, end - offset);
            const header = (this.header ??= Buffer.allocUnsafeSlow(HEADER_BYTES));
            chunk.copy(header, this.headerFill, offset, offset + n);
            this.headerFill += n;
            offset += n;
            if (this.headerFill < HEADER_BYTES) return;
            this.headerFill = 0;
            this.startFrame(header, 0);
          }
          break;
        }
        case State.Data: {
          const n = Math.min(this.remaining, end - offset);
          this.remaining -= n;
          const piece = n === end - offset && offset === 0 ? chunk : chunk.subarray(offset, offset + n);
          offset += n;
          if (this.remaining === 0) this.state = State.Header;
          this.sink.onData(this.streamId, piece, this.remaining === 0);
          break;
        }
        case State.Control: {
          const n = Math.min(this.remaining, end - offset);
          chunk.copy(this.control, this.controlFill, offset, offset + n);
          this.controlFill += n;
          this.remaining -= n;
          offset += n;
          if (this.remaining === 0) this.finishControl();
          break;
        }
        case State.Skip: {
          const n = Math.min(this.remaining, end - offset);
          this.remaining -= n;
          offset += n;
          if (this.remaining === 0) this.state = State.Header;
          break;
        }
      }
    }
  }

  /** Validates a header and chooses the state for its payload. Allocates only for control payloads. */
  private startFrame(buf: Buffer, at: number): void {
    const type = buf[at]!;
    const flags = buf[at + 1]!;
    const streamId = buf.readUInt32BE(at + 4);
    const length = buf.readUInt32BE(at + 8);
    if (buf[at + 2] !== 0 || buf[at + 3] !== 0) throw new ProtocolError('ERR_WARREN_PROTOCOL', 'reserved header bits are not zero');
    this.type = type;
    this.streamId = streamId;
    this.remaining = length;

    if (!isKnownType(type)) {
      if (type < FIRST_EXTENSION_TYPE) throw new ProtocolError('ERR_WARREN_UNKNOWN_FRAME', `unknown critical frame type 0x${type.toString(16)}`);
      if (length > this.maxFrameBytes) throw new ProtocolError('ERR_WARREN_FRAME_TOO_LARGE', `extension frame of ${length} bytes exceeds ${this.maxFrameBytes}`);
      this.sink.onSkip?.(type, length);
      this.state = length === 0 ? State.Header : State.Skip;
      return;
    }
    if ((flags & ~KNOWN_FLAGS) !== 0) throw new ProtocolError('ERR_WARREN_PROTOCOL', `undefined flags 0x${flags.toString(16)} on frame type ${FrameType[type]}`);
    if (isSessionType(type) !== (streamId === 0)) {
      throw new ProtocolError('ERR_WARREN_PROTOCOL', `${FrameType[type]} frame on ${streamId === 0 ? 'stream 0' : `stream ${streamId}`}`);
    }

    if (type === FrameType.DATA) {
      if (length > this.maxFrameBytes) throw new ProtocolError('ERR_WARREN_FRAME_TOO_LARGE', `DATA frame of ${length} bytes exceeds ${this.maxFrameBytes}`);
      if (length === 0) {
        this.state = State.Header;
        this.sink.onData(streamId, EMPTY, true);
      } else {
        this.state = State.Data;
      }
      return;
    }

    this.checkControlLength(type, length);
    if (length === 0) {
      this.control = EMPTY;
      this.finishControl();
      return;
    }
    this.control = Buffer.allocUnsafe(length);
    this.controlFill = 0;
    this.state = State.Control;
  }

  private checkControlLength(type: FrameType, length: number): void {
    let ok: boolean;
    switch (type) {
      case FrameType.OPEN:
        if (length > OPEN_FIXED_BYTES + this.maxMetadataBytes) {
          throw new ProtocolError('ERR_WARREN_METADATA_TOO_LARGE', `OPEN metadata of ${length - OPEN_FIXED_BYTES} bytes exceeds ${this.maxMetadataBytes}`);
        }
        ok = length >= OPEN_FIXED_BYTES;
        break;
      case FrameType.WINDOW:
        ok = length === WINDOW_PAYLOAD_BYTES;
        break;
      case FrameType.FIN:
        ok = length === 0;
        break;
      case FrameType.RST:
        ok = length >= RST_FIXED_BYTES && length <= RST_FIXED_BYTES + MAX_REASON_BYTES;
        break;
      case FrameType.PING:
      case FrameType.PONG:
        ok = length === PING_PAYLOAD_BYTES;
        break;
      case FrameType.GOAWAY:
        ok = length >= GOAWAY_FIXED_BYTES && length <= GOAWAY_FIXED_BYTES + MAX_HINT_BYTES + MAX_REASON_BYTES;
        break;
      case FrameType.HELLO:
        if (length > this.maxHelloBytes) throw new ProtocolError('ERR_WARREN_FRAME_TOO_LARGE', `HELLO of ${length} bytes exceeds ${this.maxHelloBytes}`);
        ok = length > 0;
        break;
      default:
        ok = false;
    }
    if (!ok) throw new ProtocolError('ERR_WARREN_PROTOCOL', `${FrameType[type]} frame with a payload of ${length} bytes`);
  }

  private finishControl(): void {
    this.state = State.Header;
    const p = this.control;
    this.control = EMPTY;
    const streamId = this.streamId;
    switch (this.type as FrameType) {
      case FrameType.OPEN: {
        const port = p.readUInt16BE(0);
        const metaLength = p.readUInt16BE(2);
        if (port === 0) throw new ProtocolError('ERR_WARREN_PROTOCOL', 'OPEN for port 0');
        if (metaLength !== p.length - OPEN_FIXED_BYTES) throw new ProtocolError('ERR_WARREN_PROTOCOL', 'OPEN metadata length does not match the frame length');
        this.sink.onControl({ type: FrameType.OPEN, streamId, port, metadata: decodeMetadata(p.subarray(OPEN_FIXED_BYTES)) });
        return;
      }
      case FrameType.WINDOW: {
        const increment = p.readUInt32BE(0);
        if (increment === 0) throw new ProtocolError('ERR_WARREN_PROTOCOL', 'WINDOW with a zero increment');
        this.sink.onControl({ type: FrameType.WINDOW, streamId, increment });
        return;
      }
      case FrameType.FIN:
        this.sink.onControl({ type: FrameType.FIN, streamId });
        return;
      case FrameType.RST:
        this.sink.onControl({ type: FrameType.RST, streamId, code: p.readUInt32BE(0), reason: p.toString('utf8', RST_FIXED_BYTES) });
        return;
      case FrameType.PING:
        this.sink.onControl({ type: FrameType.PING, streamId: 0, payload: p });
        return;
      case FrameType.PONG:
        this.sink.onControl({ type: FrameType.PONG, streamId: 0, payload: p });
        return;
      case FrameType.GOAWAY: {
        const hintLength = p.readUInt16BE(8);
        if (hintLength > MAX_HINT_BYTES || GOAWAY_FIXED_BYTES + hintLength > p.length) throw new ProtocolError('ERR_WARREN_PROTOCOL', 'GOAWAY hint length out of range');
        const messageStart = GOAWAY_FIXED_BYTES + hintLength;
        if (p.length - messageStart > MAX_REASON_BYTES) throw new ProtocolError('ERR_WARREN_PROTOCOL', 'GOAWAY message too long');
        this.sink.onControl({
          type: FrameType.GOAWAY,
          streamId: 0,
          code: p.readUInt32BE(0),
          lastStreamId: p.readUInt32BE(4),
          hint: p.toString('utf8', GOAWAY_FIXED_BYTES, messageStart),
          message: p.toString('utf8', messageStart),
        });
        return;
      }
      case FrameType.HELLO:
        this.sink.onControl({ type: FrameType.HELLO, streamId: 0, payload: p });
        return;
      case FrameType.DATA:
        throw new Error('unreachable: DATA is streamed, not gathered');
    }
  }
}

/** Parses OPEN metadata: empty, or a UTF-8 JSON object whose values are all strings. */
export function decodeMetadata(bytes: Buffer): Record<string, string> {
  if (bytes.length === 0) return {};
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new ProtocolError('ERR_WARREN_PROTOCOL', 'OPEN metadata is not JSON');
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new ProtocolError('ERR_WARREN_PROTOCOL', 'OPEN metadata is not a JSON object');
  const out: Record<string, string> = Object.create(null);
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== 'string') throw new ProtocolError('ERR_WARREN_PROTOCOL', 'OPEN metadata values must be strings');
    out[k] = v;
  }
  return out;
}
