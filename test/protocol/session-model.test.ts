// A model-based test of the stream state machine (fast-check commands) over memorySessionPair.
// Random programs open streams from either side, write, half-close, reset, pause, resume and
// read; the model records what each side wrote and who ended or reset what, and the checks say
// what the other side must have received. Between commands the pair is run until no byte is in
// flight, so every command sees the effects of the ones before it.
import t from 'tap';
import fc from 'fast-check';
import { StreamResetError, type ErrorCode, type MuxStream, type Session } from '../../protocol/index.js';
import { memorySessionPair, type SessionPair } from '../helpers/mux.js';

type Side = 'dialer' | 'acceptor';
const SIDES: readonly Side[] = ['dialer', 'acceptor'];
const other = (side: Side): Side => (side === 'dialer' ? 'acceptor' : 'dialer');

/** Small windows so that a few writes already exercise flow control. */
const OPTIONS = { initialWindowBytes: 64 * 1024, maxWindowBytes: 128 * 1024, keepaliveIntervalMs: 0 };
const RESET_CODES: readonly ErrorCode[] = ['ERR_WARREN_STREAM_CANCELLED', 'ERR_WARREN_APP_UNREACHABLE', 'ERR_WARREN_DIAL_DENIED', 'ERR_WARREN_TIMEOUT'];

/** What the test saw happen at one end of a stream. */
interface EndLog {
  stream: MuxStream;
  received: Buffer[];
  gotEnd: boolean;
  error: Error | null;
}

/** One stream as the model knows it: what each side did to it. */
interface ModelStream {
  opener: Side;
  written: Record<Side, Buffer[]>;
  ended: Record<Side, boolean>;
  paused: Record<Side, boolean>;
  reset: { by: Side; code: ErrorCode; bothEndedBefore: boolean } | null;
}

interface Model {
  streams: ModelStream[];
}

/** The system under test: a session pair and both ends of every stream. */
interface Real {
  pair: SessionPair;
  ends: Record<Side, EndLog>[];
  /** Incoming ends not yet matched to a model stream, by side. */
  arrived: Record<Side, EndLog[]>;
}

function session(real: Real, side: Side): Session {
  return side === 'dialer' ? real.pair.dialer : real.pair.acceptor;
}

/** Records everything an end does. */
function track(stream: MuxStream): EndLog {
  const log: EndLog = { stream, received: [], gotEnd: false, error: null };
  stream.on('data', (c: Buffer) => log.received.push(c));
  stream.on('end', () => (log.gotEnd = true));
  stream.on('error', (err) => (log.error = err));
  return log;
}

/** Runs the event loop until both directions have no byte in flight for two turns in a row. */
async function settle(pair: SessionPair): Promise<void> {
  let last = '';
  let quiet = 0;
  for (let turn = 0; turn < 20_000; turn++) {
    await new Promise((r) => setImmediate(r));
    const { dialer: d, acceptor: a } = pair;
    const state = `${d.bytesOut}/${a.bytesIn}/${a.bytesOut}/${d.bytesIn}`;
    const idle = d.bytesOut === a.bytesIn && a.bytesOut === d.bytesIn;
    quiet = idle && state === last ? quiet + 1 : 0;
    last = state;
    if (quiet >= 2) return;
  }
  throw new Error('the session pair never went quiet');
}

/** Deterministic bytes, different at each position, so reordering or loss shows. */
function bytes(size: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) b[i] = (seed + i * 31 + (i >> 8)) & 0xff;
  return b;
}

/** The position of the stream a command acts on: the generated index among the eligible streams. */
function pick(model: Model, index: number, eligible: (s: ModelStream) => boolean): number | undefined {
  const positions = model.streams.flatMap((s, i) => (eligible(s) ? [i] : []));
  return positions.length === 0 ? undefined : positions[index % positions.length];
}

// ---- Commands --------------------------------------------------------------------------------

class OpenCommand implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly side: Side,
    readonly port: number,
    readonly firstWrite: number,
    readonly then: 'nothing' | 'end' | 'reset',
  ) {}
  check(model: Model): boolean {
    return model.streams.length < 24;
  }
  async run(model: Model, real: Real): Promise<void> {
    const local = track(session(real, this.side).open(this.port, { n: String(model.streams.length) }));
    const m: ModelStream = {
      opener: this.side,
      written: { dialer: [], acceptor: [] },
      ended: { dialer: false, acceptor: false },
      paused: { dialer: false, acceptor: false },
      reset: null,
    };
    // 0-RTT: the first bytes, and possibly FIN or RST, leave in the same batch as the OPEN.
    if (this.firstWrite > 0) {
      const data = bytes(this.firstWrite, model.streams.length);
      local.stream.write(data);
      m.written[this.side].push(data);
    }
    if (this.then === 'end') {
      local.stream.end();
      m.ended[this.side] = true;
    } else if (this.then === 'reset') {
      local.stream.reset('ERR_WARREN_STREAM_CANCELLED');
      m.reset = { by: this.side, code: 'ERR_WARREN_STREAM_CANCELLED', bothEndedBefore: false };
    }
    await settle(real.pair);
    const remote = real.arrived[other(this.side)].shift();
    if (!remote) throw new Error('the OPEN never arrived');
    if (remote.stream.port !== this.port) throw new Error(`OPEN arrived for port ${remote.stream.port}, not ${this.port}`);
    model.streams.push(m);
    real.ends.push(this.side === 'dialer' ? { dialer: local, acceptor: remote } : { dialer: remote, acceptor: local });
  }
  toString(): string {
    return `open(${this.side}, ${this.port}, write ${this.firstWrite}, then ${this.then})`;
  }
}

/** A command on one end of an existing stream, chosen among the streams it may act on. */
abstract class StreamCommand implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly index: number,
    readonly side: Side,
  ) {}
  /** True for streams this command may act on. */
  abstract eligible(s: ModelStream): boolean;
  /** Acts on the chosen end and updates the model. */
  abstract act(s: ModelStream, end: EndLog): void;
  abstract describe(): string;

  check(model: Model): boolean {
    return pick(model, this.index, (s) => this.eligible(s)) !== undefined;
  }
  async run(model: Model, real: Real): Promise<void> {
    const at = pick(model, this.index, (s) => this.eligible(s))!;
    this.act(model.streams[at]!, real.ends[at]![this.side]);
    await settle(real.pair);
  }
  toString(): string {
    return `${this.describe()}(#${this.index}, ${this.side})`;
  }
}

class WriteCommand extends StreamCommand {
  constructor(
    index: number,
    side: Side,
    readonly size: number,
  ) {
    super(index, side);
  }
  eligible(s: ModelStream): boolean {
    return !s.reset && !s.ended[this.side];
  }
  act(s: ModelStream, end: EndLog): void {
    const data = bytes(this.size, this.index * 7 + s.written[this.side].length);
    end.stream.write(data);
    s.written[this.side].push(data);
  }
  describe(): string {
    return `write ${this.size}`;
  }
}

class EndCommand extends StreamCommand {
  eligible(s: ModelStream): boolean {
    return !s.reset && !s.ended[this.side];
  }
  act(s: ModelStream, end: EndLog): void {
    end.stream.end();
    s.ended[this.side] = true;
  }
  describe(): string {
    return 'end';
  }
}

class ResetCommand extends StreamCommand {
  constructor(
    index: number,
    side: Side,
    readonly code: ErrorCode,
  ) {
    super(index, side);
  }
  eligible(s: ModelStream): boolean {
    return !s.reset;
  }
  act(s: ModelStream, end: EndLog): void {
    end.stream.reset(this.code, 'reset by the model');
    s.reset = { by: this.side, code: this.code, bothEndedBefore: s.ended.dialer && s.ended.acceptor };
  }
  describe(): string {
    return `reset ${this.code}`;
  }
}

class PauseCommand extends StreamCommand {
  constructor(
    index: number,
    side: Side,
    readonly pause: boolean,
  ) {
    super(index, side);
  }
  eligible(s: ModelStream): boolean {
    return !s.reset && s.paused[this.side] !== this.pause;
  }
  act(s: ModelStream, end: EndLog): void {
    if (this.pause) end.stream.pause();
    else end.stream.resume();
    s.paused[this.side] = this.pause;
  }
  describe(): string {
    return this.pause ? 'pause' : 'resume';
  }
}

/** A read size meaning: read until the buffer is empty. */
const ALL = -1;

class ReadCommand extends StreamCommand {
  constructor(
    index: number,
    side: Side,
    readonly size: number,
  ) {
    super(index, side);
  }
  eligible(s: ModelStream): boolean {
    return !s.reset && s.paused[this.side];
  }
  act(_s: ModelStream, end: EndLog): void {
    // read() in paused mode emits 'data' for what it returns, so the log sees these bytes too.
    if (this.size === ALL) while (end.stream.read() !== null);
    else if (end.stream.readableLength > 0) end.stream.read(Math.min(this.size, end.stream.readableLength));
  }
  describe(): string {
    return `read ${this.size === ALL ? 'all' : this.size}`;
  }
}

const side = fc.constantFrom<Side>(...SIDES);
const index = fc.nat({ max: 1000 });
const size = fc.oneof({ weight: 5, arbitrary: fc.integer({ min: 1, max: 4096 }) }, { weight: 1, arbitrary: fc.integer({ min: 32 * 1024, max: 160 * 1024 }) });

const openCommand = fc
  .tuple(side, fc.integer({ min: 1, max: 65535 }), fc.oneof(fc.constant(0), size), fc.constantFrom('nothing' as const, 'nothing' as const, 'nothing' as const, 'end' as const, 'reset' as const))
  .map(([s, port, first, then]) => new OpenCommand(s, port, first, then));

/** A program: one to three streams opened first, then any mix of commands. */
const programs = fc
  .tuple(
    fc.array(openCommand, { minLength: 1, maxLength: 3 }),
    fc.commands(
      [
        openCommand,
        fc.tuple(index, side, size).map(([i, s, n]) => new WriteCommand(i, s, n)),
        fc.tuple(index, side, size).map(([i, s, n]) => new WriteCommand(i, s, n)),
        fc.tuple(index, side).map(([i, s]) => new EndCommand(i, s)),
        fc.tuple(index, side, fc.constantFrom(...RESET_CODES)).map(([i, s, c]) => new ResetCommand(i, s, c)),
        fc.tuple(index, side, fc.boolean()).map(([i, s, p]) => new PauseCommand(i, s, p)),
        fc.tuple(index, side, fc.oneof(fc.integer({ min: 1, max: 8192 }), fc.constant(ALL))).map(([i, s, n]) => new ReadCommand(i, s, n)),
      ],
      { maxCommands: 80, size: 'max' },
    ),
  )
  .map(([opens, rest]) => ({ opens, rest, toString: () => [...opens, ...rest].map(String).join(', ') }));

// ---- Checks ----------------------------------------------------------------------------------

function concat(list: Buffer[]): Buffer {
  return Buffer.concat(list);
}

function isPrefix(prefix: Buffer, whole: Buffer): boolean {
  return prefix.length <= whole.length && whole.subarray(0, prefix.length).equals(prefix);
}

/**
 * Invariants at every quiet point: no end buffers more than its receive window, and each
 * session's bufferedBytes is exactly what its live streams hold unread.
 */
function checkWindows(real: Real): void {
  for (const ends of real.ends) {
    for (const s of SIDES) {
      const { stream } = ends[s];
      if (stream.readableLength > stream.recvWindow) throw new Error(`stream ${stream.id} (${s}) buffers ${stream.readableLength} bytes with a window of ${stream.recvWindow}`);
    }
  }
  for (const s of SIDES) {
    const sess = session(real, s);
    const unread = real.ends.reduce((sum, e) => sum + (e[s].stream.destroyed ? 0 : e[s].stream.readableLength), 0);
    if (sess.bufferedBytes !== unread) throw new Error(`${s} counts ${sess.bufferedBytes} buffered bytes but its streams hold ${unread}`);
  }
}

/** What every stream must show once all readers resumed and all writers ended. */
function checkOutcome(model: Model, real: Real): void {
  model.streams.forEach((m, i) => {
    const ends = real.ends[i]!;
    const name = `stream #${i} (id ${ends.dialer.stream.id})`;
    for (const x of SIDES) {
      const y = other(x);
      const sent = concat(m.written[x]);
      const got = concat(ends[y].received);
      if (!isPrefix(got, sent)) throw new Error(`${name}: ${y} received ${got.length} bytes that are not a prefix of the ${sent.length} ${x} wrote`);
    }
    if (!m.reset) {
      for (const x of SIDES) {
        const y = other(x);
        if (!concat(ends[y].received).equals(concat(m.written[x]))) throw new Error(`${name}: ${y} did not receive everything ${x} wrote`);
        if (!ends[y].gotEnd) throw new Error(`${name}: ${x} ended but ${y} saw no 'end'`);
        if (ends[y].error) throw new Error(`${name}: ${y} failed with ${String(ends[y].error)}`);
      }
      return;
    }
    const { by, code, bothEndedBefore } = m.reset;
    const peer = other(by);
    if (ends[by].error) throw new Error(`${name}: the side that reset saw an error: ${String(ends[by].error)}`);
    const err = ends[peer].error;
    if (err) {
      if (!(err instanceof StreamResetError) || err.code !== code || !err.remote) throw new Error(`${name}: ${peer} failed with ${String(err)}, not a remote reset with ${code}`);
    } else {
      // No RST is sent for a stream that had already finished both ways: then the peer ended
      // cleanly and got everything.
      if (!bothEndedBefore) throw new Error(`${name}: ${by} reset with ${code} but ${peer} saw no error`);
      if (!ends[peer].gotEnd || !concat(ends[peer].received).equals(concat(m.written[by]))) throw new Error(`${name}: ${peer} neither failed nor finished cleanly`);
    }
  });
  for (const s of SIDES) {
    for (const e of real.ends) if (!e[s].stream.destroyed) throw new Error(`stream ${e[s].stream.id} is still open on the ${s}`);
    const sess = session(real, s);
    if (sess.closed) throw new Error(`the ${s} session closed`);
    if (sess.streamCount !== 0) throw new Error(`the ${s} still maps ${sess.streamCount} streams`);
    if (sess.pendingOpens !== 0) throw new Error(`the ${s} still counts ${sess.pendingOpens} pending opens`);
    if (sess.bufferedBytes !== 0) throw new Error(`the ${s} still counts ${sess.bufferedBytes} buffered bytes`);
  }
}

t.test('streams deliver bytes in order, FIN as end and RST as an error with its code, and leave no state behind', async (t) => {
  let runs = 0;
  await fc.assert(
    fc.asyncProperty(programs, async ({ opens, rest }) => {
      const pair = await memorySessionPair(OPTIONS);
      const real: Real = { pair, ends: [], arrived: { dialer: [], acceptor: [] } };
      for (const s of SIDES) {
        session(real, s).on('stream', (stream: MuxStream) => {
          stream.accept();
          real.arrived[s].push(track(stream));
        });
      }
      try {
        const model: Model = { streams: [] };
        await fc.asyncModelRun(() => ({ model, real }), [...opens, ...rest].map((c) => wrap(c, real)));
        // Drain: every reader resumes, every writer ends; then nothing may be left anywhere.
        for (const ends of real.ends) for (const s of SIDES) if (!ends[s].stream.destroyed) ends[s].stream.resume();
        await settle(pair);
        for (const ends of real.ends) for (const s of SIDES) if (!ends[s].stream.destroyed && !ends[s].stream.writableEnded) ends[s].stream.end();
        await settle(pair);
        checkOutcome(model, real);
        runs++;
      } finally {
        await pair.close();
      }
    }),
    { numRuns: 100 },
  );
  t.equal(runs, 100, '100 random programs');
});

/** Checks the window invariants after each command as it runs. */
function wrap(cmd: fc.AsyncCommand<Model, Real>, real: Real): fc.AsyncCommand<Model, Real> {
  return {
    check: (m) => cmd.check(m),
    run: async (m, r) => {
      await cmd.run(m, r);
      checkWindows(real);
    },
    toString: () => cmd.toString(),
  };
}
