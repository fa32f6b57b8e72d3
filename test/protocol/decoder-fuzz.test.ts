// Fuzzing the frame decoder and the session behind it with fast-check. Whatever bytes arrive, in
// whatever chunks, the decoder either yields frames or throws a ProtocolError whose code is in the
// table (docs/errors.md); never a TypeError, a RangeError or anything else. A session fed the same
// bytes after a valid HELLO ends, if it ends, with a coded error: no frame handler ever throws an
// exception it did not mean (the session would report it as ERR_WARREN_INTERNAL with a cause).
import fc from 'fast-check';
import t from 'tap';
import {
  ERRORS,
  FrameDecoder,
  FrameType,
  PROTOCOL_VERSION,
  ProtocolError,
  acceptSession,
  encodeControl,
  encodeDataHeader,
  encodeHello,
  type MuxStream,
  type Session,
  type Transport,
  type TransportHandlers,
  type WarrenError,
} from '../../protocol/index.js';

const LIMITS = { maxFrameBytes: 16 * 1024, maxMetadataBytes: 256, maxHelloBytes: 1024 };

/** Runs `bytes` through a fresh decoder in `cuts` chunks; returns the outcome or rethrows what is not a coded ProtocolError. */
function decode(bytes: Uint8Array, cuts: number[]): { frames: number; code?: string } {
  let frames = 0;
  const decoder = new FrameDecoder({ onControl: () => void frames++, onData: (_id, _piece, end) => void (end && frames++), onSkip: () => void frames++ }, LIMITS);
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  const points = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
  let at = 0;
  try {
    for (const p of [...points, buf.length]) {
      if (p > at) decoder.push(buf.subarray(at, p));
      at = Math.max(at, p);
    }
  } catch (err) {
    if (!(err instanceof ProtocolError) || !(err.code in ERRORS)) throw err;
    return { frames, code: err.code };
  }
  return { frames };
}

/** Short texts for metadata, reasons and hints: plain, empty, multi-byte, and JSON-hostile. */
const text = fc.constantFrom('', 'a', 'host', '127.0.0.1:22', 'é漢字', '"}{\\', 'x'.repeat(40), '__proto__');

/** One valid frame of any type, encoded. */
const validFrame: fc.Arbitrary<Buffer> = fc.oneof(
  fc.record({ id: fc.integer({ min: 1, max: 9 }), payload: fc.uint8Array({ maxLength: 40 }) }).map(({ id, payload }) => Buffer.concat([encodeDataHeader(id, payload.length), payload])),
  fc
    .record({ id: fc.integer({ min: 1, max: 9 }), port: fc.integer({ min: 1, max: 65535 }), meta: fc.dictionary(text, text, { maxKeys: 3 }) })
    .map(({ id, port, meta }) => encodeControl({ type: FrameType.OPEN, streamId: id, port, metadata: meta })),
  fc.record({ id: fc.integer({ min: 1, max: 9 }), inc: fc.integer({ min: 1, max: 0xffff_ffff }) }).map(({ id, inc }) => encodeControl({ type: FrameType.WINDOW, streamId: id, increment: inc })),
  fc.integer({ min: 1, max: 9 }).map((id) => encodeControl({ type: FrameType.FIN, streamId: id })),
  fc.record({ id: fc.integer({ min: 1, max: 9 }), code: fc.integer({ min: 0, max: 0x60 }), reason: text }).map(({ id, code, reason }) => encodeControl({ type: FrameType.RST, streamId: id, code, reason })),
  fc.uint8Array({ minLength: 8, maxLength: 8 }).map((p) => encodeControl({ type: FrameType.PING, streamId: 0, payload: Buffer.from(p) })),
  fc.uint8Array({ minLength: 8, maxLength: 8 }).map((p) => encodeControl({ type: FrameType.PONG, streamId: 0, payload: Buffer.from(p) })),
  fc
    .record({ code: fc.integer({ min: 0, max: 0x60 }), last: fc.nat(), hint: text, message: text })
    .map(({ code, last, hint, message }) => encodeControl({ type: FrameType.GOAWAY, streamId: 0, code, lastStreamId: last, hint, message })),
  fc.uint8Array({ maxLength: 30 }).map((p) => {
    const ext = Buffer.concat([encodeDataHeader(0, p.length), p]);
    ext[0] = 0x80 + (p.length % 0x80); // an extension type, skipped by the decoder
    return ext;
  }),
);

/** A mutation of a byte string: flip, overwrite, insert, delete, or cut. */
const mutation = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.constantFrom(0x00, 0x01, 0x7f, 0x80, 0xff) }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 4 }) }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 4 }) }),
  fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }),
);

/** One generated mutation. */
type Mutation = typeof mutation extends fc.Arbitrary<infer M> ? M : never;

function mutate(input: Buffer, mutations: Mutation[]): Uint8Array {
  let b = Buffer.from(input);
  for (const m of mutations) {
    if (b.length === 0) break;
    const at = m.at % b.length;
    if (m.kind === 'flip') b[at]! ^= 1 << m.bit;
    else if (m.kind === 'set') b[at] = m.value;
    else if (m.kind === 'insert') b = Buffer.concat([b.subarray(0, at), m.bytes, b.subarray(at)]);
    else if (m.kind === 'delete') b = Buffer.concat([b.subarray(0, at), b.subarray(at + m.length)]);
    else b = b.subarray(0, at);
  }
  return b;
}

/** A header with zero reserved bits (so the decoder looks further), any type, stream and length, then random bytes. */
const headerThenBytes = fc
  .record({
    type: fc.oneof(fc.integer({ min: 0, max: 9 }), fc.integer({ min: 0, max: 255 })),
    flags: fc.constantFrom(0, 0, 0, 1, 0x80),
    stream: fc.oneof(fc.integer({ min: 0, max: 4 }), fc.nat()),
    length: fc.oneof(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 0, max: 0xffff_ffff })),
    rest: fc.uint8Array({ maxLength: 84, size: 'max' }),
  })
  .map(({ type, flags, stream, length, rest }) => {
    const head = Buffer.alloc(12);
    head[0] = type;
    head[1] = flags;
    head.writeUInt32BE(stream >>> 0, 4);
    head.writeUInt32BE(length >>> 0, 8);
    return new Uint8Array(Buffer.concat([head, rest]));
  });

const cuts = fc.array(fc.nat({ max: 4096 }), { maxLength: 6 });
const ARBITRARY_RUNS = 60_000;
const MUTATED_RUNS = 60_000;
const SESSION_RUNS = 3_000;

t.test(`${ARBITRARY_RUNS} arbitrary byte strings (half behind a plausible header): frames or a coded ProtocolError, nothing else`, async (t) => {
  const codes = new Map<string, number>();
  fc.assert(
    fc.property(fc.oneof(fc.uint8Array({ maxLength: 96, size: 'max' }), headerThenBytes), cuts, (bytes, c) => {
      const r = decode(bytes, c);
      const key = r.code ?? (r.frames > 0 ? 'decoded' : 'incomplete');
      codes.set(key, (codes.get(key) ?? 0) + 1);
    }),
    { numRuns: ARBITRARY_RUNS },
  );
  t.ok(codes.has('ERR_WARREN_PROTOCOL'), `outcomes: ${[...codes].map(([c, n]) => `${c} ×${n}`).join(', ')}`);
});

t.test(`${MUTATED_RUNS} mutated valid frame streams: frames or a coded ProtocolError, nothing else`, async (t) => {
  let clean = 0;
  let refused = 0;
  fc.assert(
    fc.property(fc.array(validFrame, { minLength: 1, maxLength: 6 }), fc.array(mutation, { maxLength: 3 }), cuts, (frames, mutations, c) => {
      const r = decode(mutate(Buffer.concat(frames), mutations), c);
      if (r.code) refused++;
      else clean++;
    }),
    { numRuns: MUTATED_RUNS },
  );
  t.ok(clean > 0 && refused > 0, `${clean} streams decoded, ${refused} refused with a code`);
});

t.test('unmutated valid frame streams decode whole, however they are cut', async (t) => {
  fc.assert(
    fc.property(fc.array(validFrame, { minLength: 1, maxLength: 6 }), cuts, (frames, c) => {
      const r = decode(Buffer.concat(frames), c);
      return r.code === undefined && r.frames === frames.length;
    }),
    { numRuns: 5_000 },
  );
  t.pass('5000 streams');
});

/** A transport whose other end is the test: it writes into the session by hand and drops what the session writes. */
function handTransport(): Transport & { feed(b: Buffer): void } {
  let handlers: TransportHandlers | null = null;
  let closed = false;
  const close = (): void => {
    if (closed) return;
    closed = true;
    handlers?.close();
  };
  return {
    remoteAddress: undefined,
    attach: (h) => void (handlers = h),
    write: (_chunks, done) => done(),
    end: close,
    destroy: close,
    feed: (b) => handlers?.data(b),
  };
}

t.test(`${SESSION_RUNS} hostile byte streams against an open session never throw in a frame handler`, async (t) => {
  const hello = encodeHello({ v: PROTOCOL_VERSION, token: 'fuzz', limits: { maxFrameBytes: 16 * 1024, initialWindowBytes: 64 * 1024, maxMetadataBytes: 256 }, app: {} });
  const endings = new Map<string, number>();
  await fc.assert(
    fc.asyncProperty(fc.array(fc.oneof(validFrame, fc.uint8Array({ maxLength: 24 }).map((b) => Buffer.from(b))), { minLength: 1, maxLength: 8 }), fc.array(mutation, { maxLength: 2 }), async (frames, mutations) => {
      const transport = handTransport();
      const accepted = acceptSession(transport, { keepaliveIntervalMs: 0, maxMetadataBytes: 256, authenticate: () => ({}) });
      transport.feed(hello);
      const session: Session = await accepted;
      // Half the sessions serve incoming streams, as a relay's client sessions and every agent do.
      if (frames.length % 2 === 0) session.on('stream', (s: MuxStream) => {
        s.on('error', () => {});
        s.accept();
        s.resume();
      });
      let reason: WarrenError | undefined;
      session.once('close', (err?: WarrenError) => (reason = err));
      transport.feed(Buffer.from(mutate(Buffer.concat(frames), mutations)));
      await new Promise((r) => setImmediate(r));
      const code = session.closed ? (reason?.code ?? 'clean') : 'open';
      endings.set(code, (endings.get(code) ?? 0) + 1);
      session.destroy();
      // ERR_WARREN_INTERNAL with a cause is an exception a frame handler did not expect; without
      // one it is a GOAWAY code the peer sent that this version does not know, which is fine.
      if (reason?.code === 'ERR_WARREN_INTERNAL' && reason.cause !== undefined) throw new Error('a frame handler threw', { cause: reason.cause });
    }),
    { numRuns: SESSION_RUNS },
  );
  t.ok(endings.size >= 2, `session endings: ${[...endings].map(([c, n]) => `${c} ×${n}`).join(', ')}`);
});
