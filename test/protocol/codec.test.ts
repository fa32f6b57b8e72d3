// The frame codec (protocol/encode.ts, protocol/decode.ts) against the byte layouts of
// docs/PROTOCOL.md: hex vectors for every frame type, a naive DataView encoder written here,
// random chunk splitting, garbage input, and every limit checked on the header alone.
import t from 'tap';
import fc from 'fast-check';
import {
  FIRST_EXTENSION_TYPE,
  FrameDecoder,
  FrameType,
  HEADER_BYTES,
  MAX_HINT_BYTES,
  MAX_REASON_BYTES,
  ProtocolError,
  encodeControl,
  encodeDataHeader,
  encodeGoAway,
  encodeRst,
  utf8Prefix,
  type ControlFrame,
  type DecoderLimits,
} from '../../protocol/index.js';

// ---- Helpers ---------------------------------------------------------------------------------

/** A frame as the tests see it: a control frame, or DATA with its whole payload. */
type Frame = ControlFrame | { type: FrameType.DATA; streamId: number; payload: Buffer };

/** What a decoder produced, in order. */
interface Decoded {
  frames: Frame[];
  skipped: { type: number; length: number }[];
}

const LIMITS: DecoderLimits = { maxFrameBytes: 16 * 1024, maxMetadataBytes: 0xffff };

/** A decoder whose sink collects frames, joining each DATA frame's pieces. */
function collector(limits: DecoderLimits = LIMITS): { decoder: FrameDecoder; out: Decoded } {
  const out: Decoded = { frames: [], skipped: [] };
  let pieces: Buffer[] = [];
  const decoder = new FrameDecoder(
    {
      onData(streamId, piece, frameEnd) {
        pieces.push(Buffer.from(piece));
        if (frameEnd) {
          out.frames.push({ type: FrameType.DATA, streamId, payload: Buffer.concat(pieces) });
          pieces = [];
        }
      },
      onControl(frame) {
        out.frames.push(frame);
      },
      onSkip(type, length) {
        out.skipped.push({ type, length });
      },
    },
    limits,
  );
  return { decoder, out };
}

/** Decodes `bytes` delivered as the given pieces. */
function decodeAll(pieces: Buffer[], limits?: DecoderLimits): Decoded {
  const { decoder, out } = collector(limits);
  for (const p of pieces) decoder.push(p);
  return out;
}

/** Encodes with protocol/encode.ts. */
function encode(f: Frame): Buffer {
  if (f.type === FrameType.DATA) return Buffer.concat([encodeDataHeader(f.streamId, f.payload.length), f.payload]);
  return encodeControl(f);
}

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** Splits `buf` at the given cut points (any numbers; taken modulo the length and sorted). */
function splitAt(buf: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => (buf.length === 0 ? 0 : c % (buf.length + 1))))].sort((a, b) => a - b);
  const pieces: Buffer[] = [];
  let at = 0;
  for (const p of points) {
    pieces.push(buf.subarray(at, p));
    at = p;
  }
  pieces.push(buf.subarray(at));
  return pieces;
}

/** One-byte pieces. */
function bytewise(buf: Buffer): Buffer[] {
  return [...buf].map((b) => Buffer.from([b]));
}

/** Plain-object view of a decoded frame, so null-prototype metadata compares like any object. */
function plain(f: Frame): unknown {
  if (f.type === FrameType.OPEN) return { ...f, metadata: { ...f.metadata } };
  return f;
}

/** The code of the ProtocolError `fn` throws: 'no error' when it returns, the name of anything else. */
function codeOf(fn: () => void): string {
  try {
    fn();
    return 'no error';
  } catch (err) {
    return err instanceof ProtocolError ? err.code : `not a ProtocolError: ${String(err)}`;
  }
}

// ---- The naive encoder ----------------------------------------------------------------------

/**
 * An independent encoder written from docs/PROTOCOL.md with DataView only: the 12-byte header
 * (type u8, flags u8, reserved u16 = 0, stream id u32, length u32, big-endian) and each payload.
 */
function naiveEncode(f: Frame): Uint8Array {
  const utf8 = new TextEncoder();
  let payload: Uint8Array;
  switch (f.type) {
    case FrameType.DATA:
      payload = new Uint8Array(f.payload);
      break;
    case FrameType.OPEN: {
      const meta = Object.keys(f.metadata).length === 0 ? new Uint8Array(0) : utf8.encode(JSON.stringify(f.metadata));
      payload = new Uint8Array(4 + meta.length);
      const v = new DataView(payload.buffer);
      v.setUint16(0, f.port, false);
      v.setUint16(2, meta.length, false);
      payload.set(meta, 4);
      break;
    }
    case FrameType.WINDOW:
      payload = new Uint8Array(4);
      new DataView(payload.buffer).setUint32(0, f.increment, false);
      break;
    case FrameType.FIN:
      payload = new Uint8Array(0);
      break;
    case FrameType.RST: {
      const reason = utf8.encode(f.reason);
      payload = new Uint8Array(4 + reason.length);
      new DataView(payload.buffer).setUint32(0, f.code, false);
      payload.set(reason, 4);
      break;
    }
    case FrameType.PING:
    case FrameType.PONG:
    case FrameType.HELLO:
      payload = new Uint8Array(f.payload);
      break;
    case FrameType.GOAWAY: {
      const hint = utf8.encode(f.hint);
      const message = utf8.encode(f.message);
      payload = new Uint8Array(10 + hint.length + message.length);
      const v = new DataView(payload.buffer);
      v.setUint32(0, f.code, false);
      v.setUint32(4, f.lastStreamId, false);
      v.setUint16(8, hint.length, false);
      payload.set(hint, 10);
      payload.set(message, 10 + hint.length);
      break;
    }
  }
  const out = new Uint8Array(12 + payload.length);
  const h = new DataView(out.buffer);
  h.setUint8(0, f.type);
  h.setUint8(1, 0);
  h.setUint16(2, 0, false);
  h.setUint32(4, f.streamId, false);
  h.setUint32(8, payload.length, false);
  out.set(payload, 12);
  return out;
}

// ---- Arbitraries ----------------------------------------------------------------------------

const streamId = fc.integer({ min: 1, max: 0xffff_ffff });
const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
/** Text that survives UTF-8 (no lone surrogates) and fits in `maxBytes` of it. */
const text = (maxBytes: number): fc.Arbitrary<string> =>
  fc.string({ unit: 'grapheme', maxLength: 40 }).filter((s) => Buffer.byteLength(s) <= maxBytes && Buffer.from(s).toString() === s);
const metadataKey = fc.string({ maxLength: 12 }).filter((k) => k !== '__proto__');

const arbFrame: fc.Arbitrary<Frame> = fc.oneof(
  fc.record({ type: fc.constant(FrameType.DATA as const), streamId, payload: fc.uint8Array({ maxLength: 600 }).map((a) => Buffer.from(a)) }),
  fc.record({
    type: fc.constant(FrameType.OPEN as const),
    streamId,
    port: fc.integer({ min: 1, max: 65535 }),
    metadata: fc.dictionary(metadataKey, fc.string({ maxLength: 20 }), { maxKeys: 4, noNullPrototype: true }),
  }),
  fc.record({ type: fc.constant(FrameType.WINDOW as const), streamId, increment: fc.integer({ min: 1, max: 0xffff_ffff }) }),
  fc.record({ type: fc.constant(FrameType.FIN as const), streamId }),
  fc.record({ type: fc.constant(FrameType.RST as const), streamId, code: u32, reason: text(MAX_REASON_BYTES) }),
  fc.record({ type: fc.constant(FrameType.PING as const), streamId: fc.constant(0 as const), payload: fc.uint8Array({ minLength: 8, maxLength: 8 }).map((a) => Buffer.from(a)) }),
  fc.record({ type: fc.constant(FrameType.PONG as const), streamId: fc.constant(0 as const), payload: fc.uint8Array({ minLength: 8, maxLength: 8 }).map((a) => Buffer.from(a)) }),
  fc.record({
    type: fc.constant(FrameType.GOAWAY as const),
    streamId: fc.constant(0 as const),
    code: u32,
    lastStreamId: u32,
    hint: text(MAX_HINT_BYTES),
    message: text(MAX_REASON_BYTES),
  }),
  fc.record({ type: fc.constant(FrameType.HELLO as const), streamId: fc.constant(0 as const), payload: fc.uint8Array({ minLength: 1, maxLength: 200 }).map((a) => Buffer.from(a)) }),
);

const KNOWN_CODES = new Set(['ERR_WARREN_PROTOCOL', 'ERR_WARREN_FRAME_TOO_LARGE', 'ERR_WARREN_UNKNOWN_FRAME', 'ERR_WARREN_METADATA_TOO_LARGE']);

// ---- Hex vectors ----------------------------------------------------------------------------

/**
 * One vector per frame type, the bytes written out by hand from the layouts in docs/PROTOCOL.md
 * ("Example frames" lists the same bytes). Spaces separate header fields and payload fields.
 */
const VECTORS: { name: string; frame: Frame; bytes: string }[] = [
  {
    name: 'DATA "hi" on stream 1',
    frame: { type: FrameType.DATA, streamId: 1, payload: Buffer.from('hi') },
    bytes: '00 00 0000 00000001 00000002  6869',
  },
  {
    name: 'empty DATA on stream 3',
    frame: { type: FrameType.DATA, streamId: 3, payload: Buffer.alloc(0) },
    bytes: '00 00 0000 00000003 00000000',
  },
  {
    name: 'OPEN stream 1 to port 3000 without metadata',
    frame: { type: FrameType.OPEN, streamId: 1, port: 3000, metadata: {} },
    bytes: '01 00 0000 00000001 00000004  0bb8 0000',
  },
  {
    name: 'OPEN stream 3 to port 3000 with metadata {"a":"b"}',
    frame: { type: FrameType.OPEN, streamId: 3, port: 3000, metadata: { a: 'b' } },
    bytes: '01 00 0000 00000003 0000000d  0bb8 0009 7b2261223a2262227d',
  },
  {
    name: 'WINDOW +65536 on stream 1',
    frame: { type: FrameType.WINDOW, streamId: 1, increment: 65536 },
    bytes: '02 00 0000 00000001 00000004  00010000',
  },
  {
    name: 'FIN on stream 2',
    frame: { type: FrameType.FIN, streamId: 2 },
    bytes: '03 00 0000 00000002 00000000',
  },
  {
    name: 'RST stream 5 with ERR_WARREN_STREAM_CANCELLED (0x10) and no reason',
    frame: { type: FrameType.RST, streamId: 5, code: 0x10, reason: '' },
    bytes: '04 00 0000 00000005 00000004  00000010',
  },
  {
    name: 'RST stream 5 with ERR_WARREN_APP_UNREACHABLE (0x22) and reason "no"',
    frame: { type: FrameType.RST, streamId: 5, code: 0x22, reason: 'no' },
    bytes: '04 00 0000 00000005 00000006  00000022 6e6f',
  },
  {
    name: 'PING 0102030405060708',
    frame: { type: FrameType.PING, streamId: 0, payload: hex('0102030405060708') },
    bytes: '05 00 0000 00000000 00000008  0102030405060708',
  },
  {
    name: 'PONG 0102030405060708',
    frame: { type: FrameType.PONG, streamId: 0, payload: hex('0102030405060708') },
    bytes: '06 00 0000 00000000 00000008  0102030405060708',
  },
  {
    name: 'GOAWAY no error, last stream 7, hint "wss://b", message "bye"',
    frame: { type: FrameType.GOAWAY, streamId: 0, code: 0, lastStreamId: 7, hint: 'wss://b', message: 'bye' },
    bytes: '07 00 0000 00000000 00000014  00000000 00000007 0007 7773733a2f2f62 627965',
  },
  {
    name: 'GOAWAY ERR_WARREN_PROTOCOL (0x01), last stream 0, no hint, no message',
    frame: { type: FrameType.GOAWAY, streamId: 0, code: 1, lastStreamId: 0, hint: '', message: '' },
    bytes: '07 00 0000 00000000 0000000a  00000001 00000000 0000',
  },
  {
    name: 'HELLO {"v":1}',
    frame: { type: FrameType.HELLO, streamId: 0, payload: Buffer.from('{"v":1}') },
    bytes: '08 00 0000 00000000 00000007  7b2276223a317d',
  },
];

t.test('every frame type encodes to the exact bytes of its layout and decodes back', async (t) => {
  for (const v of VECTORS) {
    const bytes = hex(v.bytes);
    t.equal(encode(v.frame).toString('hex'), bytes.toString('hex'), `${v.name}: encoded`);
    t.equal(Buffer.from(naiveEncode(v.frame)).toString('hex'), bytes.toString('hex'), `${v.name}: the naive encoder agrees`);
    t.same(decodeAll([bytes]).frames.map(plain), [plain(v.frame)], `${v.name}: decoded whole`);
    t.same(decodeAll(bytewise(bytes)).frames.map(plain), [plain(v.frame)], `${v.name}: decoded one byte at a time`);
  }
});

t.test('all vectors back to back decode the same at every single split point', async (t) => {
  const all = Buffer.concat(VECTORS.map((v) => hex(v.bytes)));
  const expected = VECTORS.map((v) => plain(v.frame));
  for (let cut = 0; cut <= all.length; cut++) {
    const got = decodeAll([all.subarray(0, cut), all.subarray(cut)]).frames.map(plain);
    if (!t.same(got, expected, `split at byte ${cut}`)) break;
  }
});

// ---- Round trips ----------------------------------------------------------------------------

t.test('the encoder agrees byte for byte with a naive DataView encoder, and decoding inverts both', async (t) => {
  fc.assert(
    fc.property(arbFrame, (f) => {
      const ours = encode(f);
      const naive = Buffer.from(naiveEncode(f));
      if (!ours.equals(naive)) throw new Error(`encoders disagree:\n${ours.toString('hex')}\n${naive.toString('hex')}`);
      return JSON.stringify(decodeAll([naive]).frames.map(plain)) === JSON.stringify([plain(f)]);
    }),
    { numRuns: 500 },
  );
  t.pass('500 random frames of every type');
});

t.test('any sequence of frames, cut into arbitrary pieces, decodes to the same frames', async (t) => {
  let runs = 0;
  fc.assert(
    fc.property(fc.array(arbFrame, { maxLength: 20 }), fc.array(fc.nat(), { maxLength: 30 }), (frames, cuts) => {
      const stream = Buffer.concat(frames.map(encode));
      const got = decodeAll(splitAt(stream, cuts)).frames.map(plain);
      runs++;
      return JSON.stringify(got) === JSON.stringify(frames.map(plain));
    }),
    { numRuns: 400 },
  );
  t.equal(runs, 400);
});

t.test('any sequence of frames delivered one byte at a time decodes to the same frames', async (t) => {
  fc.assert(
    fc.property(fc.array(arbFrame, { maxLength: 6 }), (frames) => {
      const stream = Buffer.concat(frames.map(encode));
      return JSON.stringify(decodeAll(bytewise(stream)).frames.map(plain)) === JSON.stringify(frames.map(plain));
    }),
    { numRuns: 100 },
  );
  t.pass('one-byte pieces');
});

t.test('DATA payloads are handed on as views of the incoming chunk, never copied', async (t) => {
  const payload = Buffer.alloc(1000, 0xab);
  const chunk = Buffer.concat([encodeDataHeader(1, payload.length), payload]);
  const pieces: Buffer[] = [];
  const decoder = new FrameDecoder({ onData: (_id, piece) => pieces.push(piece), onControl: () => {} }, LIMITS);
  decoder.push(chunk);
  t.equal(pieces.length, 1);
  t.equal(pieces[0]!.buffer, chunk.buffer, 'the piece shares the chunk memory');
});

// ---- Hostile input --------------------------------------------------------------------------

/** Decodes `pieces`; true when it ended in frames or a known ProtocolError, throws on anything else. */
function decodesOrRejects(pieces: Buffer[]): boolean {
  try {
    decodeAll(pieces, { maxFrameBytes: 16 * 1024, maxMetadataBytes: 256 });
    return true;
  } catch (err) {
    if (err instanceof ProtocolError && KNOWN_CODES.has(err.code)) return true;
    throw err;
  }
}

/** Bytes that look like headers: small lengths, mostly-zero reserved bits, interesting types. */
const headerish = fc
  .tuple(
    fc.oneof(fc.integer({ min: 0, max: 10 }), fc.constantFrom(0x7f, 0x80, 0x81, 0xff)),
    fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }) }),
    fc.oneof({ weight: 8, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff }) }),
    fc.oneof(fc.integer({ min: 0, max: 8 }), u32),
    fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 0, max: 40 }) }, { weight: 1, arbitrary: u32 }),
    fc.uint8Array({ maxLength: 40 }),
  )
  .map(([type, flags, reserved, id, length, tail]) => {
    const h = Buffer.alloc(HEADER_BYTES);
    h[0] = type;
    h[1] = flags;
    h.writeUInt16BE(reserved, 2);
    h.writeUInt32BE(id, 4);
    h.writeUInt32BE(length, 8);
    return Buffer.concat([h, tail]);
  });

t.test('arbitrary bytes give frames or a coded ProtocolError, never another exception', async (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 2000 }), fc.array(fc.nat(), { maxLength: 10 }), (bytes, cuts) => decodesOrRejects(splitAt(Buffer.from(bytes), cuts))),
    { numRuns: 1000 },
  );
  fc.assert(
    fc.property(fc.array(headerish, { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 10 }), (parts, cuts) => decodesOrRejects(splitAt(Buffer.concat(parts), cuts))),
    { numRuns: 2000 },
  );
  t.pass('no other exception');
});

t.test('a valid stream with one byte flipped gives frames or a coded ProtocolError', async (t) => {
  fc.assert(
    fc.property(fc.array(arbFrame, { minLength: 1, maxLength: 8 }), fc.nat(), fc.integer({ min: 1, max: 255 }), fc.array(fc.nat(), { maxLength: 6 }), (frames, at, xor, cuts) => {
      const stream = Buffer.concat(frames.map(encode));
      const i = at % stream.length;
      stream[i] = stream[i]! ^ xor;
      return decodesOrRejects(splitAt(stream, cuts));
    }),
    { numRuns: 2000 },
  );
  t.pass('no other exception');
});

t.test('after a violation the decoder is stopped and ignores later bytes', async (t) => {
  const { decoder, out } = collector();
  t.equal(codeOf(() => decoder.push(hex('00 00 0001 00000001 00000000'))), 'ERR_WARREN_PROTOCOL', 'reserved bits');
  decoder.push(encode({ type: FrameType.FIN, streamId: 1 }));
  t.same(out.frames, [], 'nothing decoded after the error');
});

// ---- Limits, checked on the 12-byte header alone --------------------------------------------

t.test('a header declaring a 4 GiB payload is rejected on the 12 header bytes alone', async (t) => {
  const cases: [number, number, string][] = [
    [FrameType.DATA, 1, 'ERR_WARREN_FRAME_TOO_LARGE'],
    [FrameType.OPEN, 1, 'ERR_WARREN_METADATA_TOO_LARGE'],
    [FrameType.WINDOW, 1, 'ERR_WARREN_PROTOCOL'],
    [FrameType.FIN, 1, 'ERR_WARREN_PROTOCOL'],
    [FrameType.RST, 1, 'ERR_WARREN_PROTOCOL'],
    [FrameType.PING, 0, 'ERR_WARREN_PROTOCOL'],
    [FrameType.PONG, 0, 'ERR_WARREN_PROTOCOL'],
    [FrameType.GOAWAY, 0, 'ERR_WARREN_PROTOCOL'],
    [FrameType.HELLO, 0, 'ERR_WARREN_FRAME_TOO_LARGE'],
    [0x80, 0, 'ERR_WARREN_FRAME_TOO_LARGE'],
  ];
  for (const [type, id, code] of cases) {
    const header = Buffer.alloc(HEADER_BYTES);
    header[0] = type;
    header.writeUInt32BE(id, 4);
    header.writeUInt32BE(0xffff_ffff, 8);
    const name = FrameType[type] ?? `extension 0x${type.toString(16)}`;
    // Only the header is ever fed: the error cannot come from a payload that was buffered.
    t.equal(codeOf(() => collector().decoder.push(header)), code, `${name} of 4 GiB`);
    // The same holds when the header itself trickles in byte by byte.
    const { decoder } = collector();
    t.equal(codeOf(() => bytewise(header).forEach((b) => decoder.push(b))), code, `${name} of 4 GiB, byte by byte`);
  }
});

t.test('DATA and OPEN limits are exact: at the limit accepted, one byte over rejected', async (t) => {
  const limits = { maxFrameBytes: 16 * 1024, maxMetadataBytes: 100 };
  const dataAt = Buffer.concat([encodeDataHeader(1, 16 * 1024), Buffer.alloc(16 * 1024)]);
  t.equal(decodeAll([dataAt], limits).frames.length, 1, 'DATA of exactly maxFrameBytes');
  t.equal(codeOf(() => decodeAll([encodeDataHeader(1, 16 * 1024 + 1)], limits)), 'ERR_WARREN_FRAME_TOO_LARGE', 'DATA of maxFrameBytes + 1');
  const meta = (n: number): Record<string, string> => ({ k: 'x'.repeat(n - 8) }); // {"k":"…"} is 8 bytes of framing
  t.equal(decodeAll([encodeControl({ type: FrameType.OPEN, streamId: 1, port: 1, metadata: meta(100) })], limits).frames.length, 1, 'metadata of exactly maxMetadataBytes');
  t.equal(codeOf(() => decodeAll([encodeControl({ type: FrameType.OPEN, streamId: 1, port: 1, metadata: meta(101) }).subarray(0, HEADER_BYTES)], limits)), 'ERR_WARREN_METADATA_TOO_LARGE', 'metadata of maxMetadataBytes + 1, header only');
  t.equal(codeOf(() => decodeAll([encodeControl({ type: FrameType.HELLO, streamId: 0, payload: Buffer.alloc(100) }).subarray(0, HEADER_BYTES)], { ...limits, maxHelloBytes: 99 })), 'ERR_WARREN_FRAME_TOO_LARGE', 'HELLO over maxHelloBytes, header only');
});

t.test('reserved header bits must be zero', async (t) => {
  for (const reserved of ['0001', '0100', '8000', 'ffff']) {
    t.equal(codeOf(() => decodeAll([hex(`03 00 ${reserved} 00000001 00000000`)])), 'ERR_WARREN_PROTOCOL', `reserved ${reserved}`);
  }
});

t.test('flags are undefined in version 1 and must be zero on every known type', async (t) => {
  for (const v of VECTORS) {
    for (const flag of [0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80]) {
      const bytes = Buffer.from(hex(v.bytes));
      bytes[1] = flag;
      t.equal(codeOf(() => decodeAll([bytes.subarray(0, HEADER_BYTES)])), 'ERR_WARREN_PROTOCOL', `${v.name} with flag 0x${flag.toString(16)}`);
    }
  }
});

t.test('unknown critical types 0x09..0x7f end the session with ERR_WARREN_UNKNOWN_FRAME', async (t) => {
  for (let type = FrameType.HELLO + 1; type < FIRST_EXTENSION_TYPE; type++) {
    const header = Buffer.alloc(HEADER_BYTES);
    header[0] = type;
    t.equal(codeOf(() => decodeAll([header])), 'ERR_WARREN_UNKNOWN_FRAME', `type 0x${type.toString(16)}`);
  }
});

t.test('unknown extension types 0x80..0xff are skipped, payload and all, and the next frame decodes', async (t) => {
  const fin = encode({ type: FrameType.FIN, streamId: 9 });
  for (let type = FIRST_EXTENSION_TYPE; type <= 0xff; type++) {
    const ext = Buffer.alloc(HEADER_BYTES + 5, 0xee);
    ext[0] = type;
    // Extension frames may use flags and any stream id; this version does not look at them.
    ext[1] = 0x5a;
    ext.writeUInt16BE(0, 2);
    ext.writeUInt32BE(77, 4);
    ext.writeUInt32BE(5, 8);
    const empty = Buffer.from(ext.subarray(0, HEADER_BYTES));
    empty.writeUInt32BE(0, 8);
    const out = decodeAll(bytewise(Buffer.concat([ext, empty, fin])));
    if (!t.same(out.frames, [{ type: FrameType.FIN, streamId: 9 }], `type 0x${type.toString(16)}: FIN after it decodes`)) break;
    t.same(out.skipped, [
      { type, length: 5 },
      { type, length: 0 },
    ]);
  }
});

t.test('session frames must use stream 0 and stream frames must not', async (t) => {
  for (const type of [FrameType.PING, FrameType.PONG, FrameType.GOAWAY, FrameType.HELLO]) {
    const header = Buffer.alloc(HEADER_BYTES);
    header[0] = type;
    header.writeUInt32BE(1, 4);
    header.writeUInt32BE(8, 8);
    t.equal(codeOf(() => decodeAll([header])), 'ERR_WARREN_PROTOCOL', `${FrameType[type]} on stream 1`);
  }
  for (const type of [FrameType.DATA, FrameType.OPEN, FrameType.WINDOW, FrameType.FIN, FrameType.RST]) {
    const header = Buffer.alloc(HEADER_BYTES);
    header[0] = type;
    header.writeUInt32BE(4, 8);
    t.equal(codeOf(() => decodeAll([header])), 'ERR_WARREN_PROTOCOL', `${FrameType[type]} on stream 0`);
  }
});

t.test('fixed-size payloads must have their exact size', async (t) => {
  const cases: [FrameType, number, number][] = [
    [FrameType.OPEN, 1, 3],
    [FrameType.WINDOW, 1, 3],
    [FrameType.WINDOW, 1, 5],
    [FrameType.FIN, 1, 1],
    [FrameType.RST, 1, 3],
    [FrameType.RST, 1, 4 + MAX_REASON_BYTES + 1],
    [FrameType.PING, 0, 7],
    [FrameType.PING, 0, 9],
    [FrameType.PONG, 0, 0],
    [FrameType.GOAWAY, 0, 9],
    [FrameType.GOAWAY, 0, 10 + MAX_HINT_BYTES + MAX_REASON_BYTES + 1],
    [FrameType.HELLO, 0, 0],
  ];
  for (const [type, id, length] of cases) {
    const header = Buffer.alloc(HEADER_BYTES);
    header[0] = type;
    header.writeUInt32BE(id, 4);
    header.writeUInt32BE(length, 8);
    t.equal(codeOf(() => decodeAll([header])), 'ERR_WARREN_PROTOCOL', `${FrameType[type]} with a payload of ${length} bytes`);
  }
});

t.test('WINDOW with a zero increment is rejected', async (t) => {
  t.equal(codeOf(() => decodeAll([hex('02 00 0000 00000001 00000004 00000000')])), 'ERR_WARREN_PROTOCOL', 'WINDOW 0');
});

t.test('OPEN for port 0 is rejected', async (t) => {
  t.equal(codeOf(() => decodeAll([hex('01 00 0000 00000001 00000004 0000 0000')])), 'ERR_WARREN_PROTOCOL', 'OPEN port 0');
});

t.test('OPEN whose metadata length disagrees with the frame length is rejected', async (t) => {
  t.equal(codeOf(() => decodeAll([hex('01 00 0000 00000001 00000006 0bb8 0001 7b7d')])), 'ERR_WARREN_PROTOCOL', 'metadata length 1 in 2 bytes');
  t.equal(codeOf(() => decodeAll([hex('01 00 0000 00000001 00000004 0bb8 0002')])), 'ERR_WARREN_PROTOCOL', 'metadata length 2 in 0 bytes');
});

t.test('OPEN metadata must be a JSON object of strings', async (t) => {
  for (const bad of ['not json', '[]', '"x"', 'null', '1', 'true', '{"a":1}', '{"a":{"b":"c"}}', '{"a":null}', '{"a":["b"]}', '{"a":"b"', '\u00ff']) {
    const meta = Buffer.from(bad, 'utf8');
    const frame = Buffer.alloc(HEADER_BYTES + 4 + meta.length);
    frame[0] = FrameType.OPEN;
    frame.writeUInt32BE(1, 4);
    frame.writeUInt32BE(4 + meta.length, 8);
    frame.writeUInt16BE(80, 12);
    frame.writeUInt16BE(meta.length, 14);
    meta.copy(frame, 16);
    t.equal(codeOf(() => decodeAll([frame])), 'ERR_WARREN_PROTOCOL', `metadata ${JSON.stringify(bad)}`);
  }
  const ok = decodeAll([hex('01 00 0000 00000001 00000006 0050 0002 7b7d')]).frames[0];
  t.same(plain(ok!), { type: FrameType.OPEN, streamId: 1, port: 80, metadata: {} }, '{} is empty metadata');
});

t.test('GOAWAY hint and message must fit their limits and the frame', async (t) => {
  // Hint length 8 in a GOAWAY with 2 bytes after the fixed part.
  t.equal(codeOf(() => decodeAll([hex('07 00 0000 00000000 0000000c 00000000 00000000 0008 6869')])), 'ERR_WARREN_PROTOCOL', 'hint past the end');
  const longHint = Buffer.alloc(HEADER_BYTES + 10 + MAX_HINT_BYTES + 1, 0x61);
  longHint.fill(0, 0, HEADER_BYTES + 10);
  longHint[0] = FrameType.GOAWAY;
  longHint.writeUInt32BE(10 + MAX_HINT_BYTES + 1, 8);
  longHint.writeUInt16BE(MAX_HINT_BYTES + 1, HEADER_BYTES + 8);
  t.equal(codeOf(() => decodeAll([longHint])), 'ERR_WARREN_PROTOCOL', 'hint over 512 bytes');
  const longMessage = Buffer.alloc(HEADER_BYTES + 10 + MAX_REASON_BYTES + 1, 0x61);
  longMessage.fill(0, 0, HEADER_BYTES + 10);
  longMessage[0] = FrameType.GOAWAY;
  longMessage.writeUInt32BE(10 + MAX_REASON_BYTES + 1, 8);
  t.equal(codeOf(() => decodeAll([longMessage])), 'ERR_WARREN_PROTOCOL', 'message over 256 bytes');
});

// ---- Encoder limits -------------------------------------------------------------------------

t.test('long RST reasons and GOAWAY hints are cut to their limits on a character boundary', async (t) => {
  t.equal(utf8Prefix('aé', 2).toString(), 'a', 'a two-byte character is not split');
  t.equal(utf8Prefix('😀😀', 5).length, 4, 'a four-byte character is not split');
  const rst = decodeAll([encodeRst(1, 0x10, 'é'.repeat(200))]).frames[0] as Extract<Frame, { type: FrameType.RST }>;
  t.equal(Buffer.byteLength(rst.reason), MAX_REASON_BYTES);
  t.equal(rst.reason, 'é'.repeat(128));
  const goaway = decodeAll([encodeGoAway(0, 1, 'h'.repeat(600), 'm'.repeat(300))]).frames[0] as Extract<Frame, { type: FrameType.GOAWAY }>;
  t.equal(goaway.hint.length, MAX_HINT_BYTES);
  t.equal(goaway.message.length, MAX_REASON_BYTES);
});
