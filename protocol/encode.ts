/**
 * Frame encoders. Control frames are built whole; DATA is a 12-byte header written beside the
 * caller's payload buffer, so payload bytes are never copied here.
 */
import {
  FrameType,
  GOAWAY_FIXED_BYTES,
  HEADER_BYTES,
  MAX_HINT_BYTES,
  MAX_REASON_BYTES,
  OPEN_FIXED_BYTES,
  PING_PAYLOAD_BYTES,
  RST_FIXED_BYTES,
  WINDOW_PAYLOAD_BYTES,
  type ControlFrame,
} from './frame.js';

/** Writes a frame header at `offset` of `buf` (reserved bytes set to 0). */
export function writeHeader(buf: Buffer, offset: number, type: FrameType, streamId: number, length: number, flags = 0): void {
  buf[offset] = type;
  buf[offset + 1] = flags;
  buf[offset + 2] = 0;
  buf[offset + 3] = 0;
  buf.writeUInt32BE(streamId, offset + 4);
  buf.writeUInt32BE(length, offset + 8);
}

/** A frame with room for `payloadBytes` after its header; the caller fills the payload. */
function frame(type: FrameType, streamId: number, payloadBytes: number): Buffer {
  const buf = Buffer.allocUnsafe(HEADER_BYTES + payloadBytes);
  writeHeader(buf, 0, type, streamId, payloadBytes);
  return buf;
}

/** UTF-8 bytes of `text`, cut to at most `max` bytes without splitting a character. */
export function utf8Prefix(text: string, max: number): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= max) return bytes;
  let end = max;
  // Step back over continuation bytes (10xxxxxx) so the cut falls on a character boundary.
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end);
}

/** The header of a DATA frame carrying `length` payload bytes. */
export function encodeDataHeader(streamId: number, length: number): Buffer {
  const buf = Buffer.allocUnsafe(HEADER_BYTES);
  writeHeader(buf, 0, FrameType.DATA, streamId, length);
  return buf;
}

/** Encodes stream metadata as the UTF-8 JSON object OPEN carries. */
export function encodeMetadata(metadata: Readonly<Record<string, string>>): Buffer {
  return Object.keys(metadata).length === 0 ? Buffer.alloc(0) : Buffer.from(JSON.stringify(metadata), 'utf8');
}

/** OPEN: port u16 | metadata length u16 | metadata. `metadata` is already encoded (encodeMetadata). */
export function encodeOpen(streamId: number, port: number, metadata: Buffer): Buffer {
  const buf = frame(FrameType.OPEN, streamId, OPEN_FIXED_BYTES + metadata.length);
  buf.writeUInt16BE(port, HEADER_BYTES);
  buf.writeUInt16BE(metadata.length, HEADER_BYTES + 2);
  metadata.copy(buf, HEADER_BYTES + OPEN_FIXED_BYTES);
  return buf;
}

/** WINDOW: increment u32. */
export function encodeWindow(streamId: number, increment: number): Buffer {
  const buf = frame(FrameType.WINDOW, streamId, WINDOW_PAYLOAD_BYTES);
  buf.writeUInt32BE(increment, HEADER_BYTES);
  return buf;
}

/** FIN: no payload. */
export function encodeFin(streamId: number): Buffer {
  return frame(FrameType.FIN, streamId, 0);
}

/** RST: code u32 | reason. */
export function encodeRst(streamId: number, code: number, reason = ''): Buffer {
  const text = utf8Prefix(reason, MAX_REASON_BYTES);
  const buf = frame(FrameType.RST, streamId, RST_FIXED_BYTES + text.length);
  buf.writeUInt32BE(code, HEADER_BYTES);
  text.copy(buf, HEADER_BYTES + RST_FIXED_BYTES);
  return buf;
}

/** PING or PONG with its 8 opaque bytes. */
export function encodePing(payload: Buffer, pong = false): Buffer {
  const buf = frame(pong ? FrameType.PONG : FrameType.PING, 0, PING_PAYLOAD_BYTES);
  payload.copy(buf, HEADER_BYTES, 0, PING_PAYLOAD_BYTES);
  return buf;
}

/** GOAWAY: code u32 | last stream id u32 | hint length u16 | hint | message. */
export function encodeGoAway(code: number, lastStreamId: number, hint = '', message = ''): Buffer {
  const hintBytes = utf8Prefix(hint, MAX_HINT_BYTES);
  const messageBytes = utf8Prefix(message, MAX_REASON_BYTES);
  const buf = frame(FrameType.GOAWAY, 0, GOAWAY_FIXED_BYTES + hintBytes.length + messageBytes.length);
  buf.writeUInt32BE(code, HEADER_BYTES);
  buf.writeUInt32BE(lastStreamId, HEADER_BYTES + 4);
  buf.writeUInt16BE(hintBytes.length, HEADER_BYTES + 8);
  hintBytes.copy(buf, HEADER_BYTES + GOAWAY_FIXED_BYTES);
  messageBytes.copy(buf, HEADER_BYTES + GOAWAY_FIXED_BYTES + hintBytes.length);
  return buf;
}

/** HELLO: a JSON object. */
export function encodeHello(message: object): Buffer {
  const body = Buffer.from(JSON.stringify(message), 'utf8');
  const buf = frame(FrameType.HELLO, 0, body.length);
  body.copy(buf, HEADER_BYTES);
  return buf;
}

/** Encodes any control frame; used by tests and tools. */
export function encodeControl(f: ControlFrame): Buffer {
  switch (f.type) {
    case FrameType.OPEN:
      return encodeOpen(f.streamId, f.port, encodeMetadata(f.metadata));
    case FrameType.WINDOW:
      return encodeWindow(f.streamId, f.increment);
    case FrameType.FIN:
      return encodeFin(f.streamId);
    case FrameType.RST:
      return encodeRst(f.streamId, f.code, f.reason);
    case FrameType.PING:
      return encodePing(f.payload);
    case FrameType.PONG:
      return encodePing(f.payload, true);
    case FrameType.GOAWAY:
      return encodeGoAway(f.code, f.lastStreamId, f.hint, f.message);
    case FrameType.HELLO: {
      const buf = frame(FrameType.HELLO, 0, f.payload.length);
      f.payload.copy(buf, HEADER_BYTES);
      return buf;
    }
  }
}
