/**
 * Frame layout and constants of the Warren wire protocol, version 1. docs/PROTOCOL.md is the
 * normative text; every constant here names its section there.
 *
 * Protocol flow:
 *   1. The dialer (agent or client) opens a WebSocket with subprotocol `warren.v1` (or another byte
 *      transport) and sends HELLO on stream 0: version, token, its receive limits.
 *   2. The acceptor (relay) verifies the token before it creates any stream state, then answers
 *      HELLO with its own limits, or GOAWAY with a code and closes.
 *   3. Either side opens streams with OPEN (dialer odd ids, acceptor even ids). DATA may follow
 *      OPEN at once (0-RTT). Each side grants credit with WINDOW; FIN half-closes; RST aborts.
 *   4. PING/PONG measure RTT and detect dead peers. GOAWAY ends the session, gracefully (code 0,
 *      optional reconnect hint) or with an error code.
 *
 * Every frame starts with the same 12-byte header, all integers big-endian:
 *
 *   0        1        2        3
 *   +--------+--------+--------+--------+
 *   |  Type  | Flags  |  Reserved (0)   |
 *   +--------+--------+--------+--------+
 *   |            Stream ID              |
 *   +--------+--------+--------+--------+
 *   |              Length               |
 *   +--------+--------+--------+--------+
 *   |   Payload (Length bytes) ...
 */

/** Version 1 is the only version; it is also the WebSocket subprotocol `warren.v1` (PROTOCOL.md, "Version negotiation"). */
export const PROTOCOL_VERSION = 1;

/** The WebSocket subprotocol that selects this version (PROTOCOL.md, "Transport"). */
export const WS_SUBPROTOCOL = 'warren.v1';

/**
 * ALPN protocol ids of the raw TLS transport: frames straight on the TLS connection, no
 * WebSocket. Each names its endpoint, as the URL path does for WebSocket (PROTOCOL.md, "Transport").
 */
export const ALPN_AGENT = 'warren.v1.agent';
export const ALPN_CONNECT = 'warren.v1.connect';

/** Bytes in every frame header: type u8 | flags u8 | reserved u16 | stream id u32 | length u32 (PROTOCOL.md, "Frame header"). */
export const HEADER_BYTES = 12;

/**
 * Frame types (PROTOCOL.md, "Frame types"; each member's layout is its section there). Types
 * below 0x80 are critical: a receiver that does not know one ends the session with
 * ERR_WARREN_UNKNOWN_FRAME. Types 0x80..0xFF are extensions: unknown ones are skipped.
 */
export enum FrameType {
  /** Stream bytes. Stream id ≠ 0. Payload: 0..maxFrameBytes bytes, counted against the window. */
  DATA = 0x00,
  /**
   * Opens a stream. Stream id ≠ 0, the opener's parity, increasing. Payload:
   *   +----------------+---------------------+-----------------------------------------+
   *   | port u16 (≠ 0) | metadata length u16 | metadata (UTF-8 JSON object of strings) |
   *   +----------------+---------------------+-----------------------------------------+
   * Metadata length = frame length − 4, at most the receiver's maxMetadataBytes.
   */
  OPEN = 0x01,
  /** Grants credit. Stream id ≠ 0. Payload: increment u32, > 0; the window may not pass 2^31 - 1. */
  WINDOW = 0x02,
  /** Half-close: the sender will send no more DATA on the stream. Stream id ≠ 0. Empty payload. */
  FIN = 0x03,
  /**
   * Aborts a stream in both directions. Stream id ≠ 0. Payload:
   *   +----------------------+-----------------------------+
   *   | code u32 (wire, ≠ 0) | reason (UTF-8, ≤ 256 bytes) |
   *   +----------------------+-----------------------------+
   */
  RST = 0x04,
  /** Liveness and RTT probe. Stream id 0. Payload: 8 opaque bytes, echoed by PONG. */
  PING = 0x05,
  /** Answer to PING. Stream id 0. Payload: the PING's 8 bytes. */
  PONG = 0x06,
  /**
   * Ends the session. Stream id 0. Payload:
   *   +----------+--------------------+-----------------+--------------------+-----------------------+
   *   | code u32 | last stream id u32 | hint length u16 | hint (≤ 512 bytes) | message (≤ 256 bytes) |
   *   +----------+--------------------+-----------------+--------------------+-----------------------+
   * Code 0 is a graceful end; the hint is where to reconnect; the message runs to the frame's end.
   */
  GOAWAY = 0x07,
  /** Handshake. Stream id 0. Payload: a UTF-8 JSON object of 1..MAX_HELLO_BYTES (handshake.ts). First frame each way. */
  HELLO = 0x08,
}

/** First extension type: unknown frames with a type at or above it are skipped, not fatal (PROTOCOL.md, "Critical and extension types"). */
export const FIRST_EXTENSION_TYPE = 0x80;

/** No flags are defined in version 1; every flag bit must be 0. */
export const KNOWN_FLAGS = 0x00;

/** Largest stream id; ids are never reused within a session (PROTOCOL.md, "Stream ids"). */
export const MAX_STREAM_ID = 0xffff_ffff;

/** Payload bytes of fixed-size control frames (PROTOCOL.md, "Frame types"). */
export const WINDOW_PAYLOAD_BYTES = 4;
export const PING_PAYLOAD_BYTES = 8;
/** OPEN payload before its metadata: port u16 and metadata length u16. */
export const OPEN_FIXED_BYTES = 4;
/** RST payload before its reason: code u32. */
export const RST_FIXED_BYTES = 4;
/** GOAWAY payload before hint and message: code u32, last stream id u32, hint length u16. */
export const GOAWAY_FIXED_BYTES = 10;

/** Longest RST reason and GOAWAY message in bytes; longer text is cut by the sender (PROTOCOL.md, "Limits"). */
export const MAX_REASON_BYTES = 256;
/** Longest GOAWAY reconnect hint (a relay URL) in bytes. */
export const MAX_HINT_BYTES = 512;
/** Largest HELLO payload accepted, checked before the payload is buffered (PROTOCOL.md, "Handshake"). */
export const MAX_HELLO_BYTES = 16 * 1024;
/** Hard cap on any negotiated maximum frame size (PROTOCOL.md, "Limits"). */
export const MAX_FRAME_BYTES_LIMIT = 16 * 1024 * 1024;
/** Largest credit window a receiver may grant on one stream (2^31 - 1, as in HTTP/2; PROTOCOL.md, "Flow control"). */
export const MAX_WINDOW_BYTES_LIMIT = 0x7fff_ffff;

/** A decoded control frame (every type but DATA, whose payload is streamed in pieces). */
export type ControlFrame =
  | { type: FrameType.OPEN; streamId: number; port: number; metadata: Record<string, string> }
  | { type: FrameType.WINDOW; streamId: number; increment: number }
  | { type: FrameType.FIN; streamId: number }
  | { type: FrameType.RST; streamId: number; code: number; reason: string }
  | { type: FrameType.PING; streamId: 0; payload: Buffer }
  | { type: FrameType.PONG; streamId: 0; payload: Buffer }
  | { type: FrameType.GOAWAY; streamId: 0; code: number; lastStreamId: number; hint: string; message: string }
  | { type: FrameType.HELLO; streamId: 0; payload: Buffer };

/** True for types this version knows. */
export function isKnownType(type: number): type is FrameType {
  return type <= (FrameType.HELLO as number);
}

/** True for frame types that travel on stream 0 (session control). */
export function isSessionType(type: FrameType): boolean {
  return type === FrameType.PING || type === FrameType.PONG || type === FrameType.GOAWAY || type === FrameType.HELLO;
}
