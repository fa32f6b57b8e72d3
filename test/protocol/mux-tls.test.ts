// The multiplexer over a real TLS 1.3 connection on 127.0.0.1: many streams at once, a paused
// reader beside busy streams, open/reset churn without leaks, and a peer that breaks the
// protocol. test/protocol/mux-floods.test.ts covers hostile peers frame by frame and
// test/protocol/mux-ws.test.ts the WebSocket transport.
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import v8 from 'node:v8';
import vm from 'node:vm';
import t from 'tap';
import { FrameType, encodeDataHeader, type ConnectionError, type GoAwayInfo, type MuxStream, type Session, type StreamResetError } from '../../protocol/index.js';
import { tlsSessionPair } from '../helpers/mux.js';

/** Waits until `check` is true, re-checking on every turn of the event loop (bounded). */
async function until(check: () => boolean, what: string, turns = 100_000): Promise<void> {
  for (let i = 0; i < turns; i++) {
    if (check()) return;
    await new Promise((r) => setImmediate(r));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** The garbage collector, exposed at run time (tap starts this file without --expose-gc). */
function collectGarbage(): () => void {
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}

/** What the sessions still hold for streams: empty when every stream is gone without a trace. */
function leftovers(...sessions: Session[]): string[] {
  return sessions.flatMap((s) => [
    ...(s.streamCount ? [`${s.role} maps ${s.streamCount} streams`] : []),
    ...(s.pendingOpens ? [`${s.role} counts ${s.pendingOpens} pending opens`] : []),
    ...(s.bufferedBytes ? [`${s.role} counts ${s.bufferedBytes} buffered bytes`] : []),
  ]);
}

const BLOCK = randomBytes(64 * 1024);
/** 64 KiB that differ per stream: the random block rotated by an amount that depends on `n`. */
function payloadFor(n: number): Buffer {
  const at = (n * 4099) % BLOCK.length;
  return Buffer.concat([BLOCK.subarray(at), BLOCK.subarray(0, at)]);
}

t.test('1,000 streams open at once, move 64 KiB each way intact, close, and leave both stream maps empty', async (t) => {
  const pair = await tlsSessionPair();
  t.teardown(() => pair.close());
  // The acceptor checks each request against what the port says it must be and answers with
  // the payload of port + 1000.
  let badRequests = 0;
  pair.acceptor.on('stream', (s: MuxStream) => {
    s.accept();
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => {
      if (!Buffer.concat(chunks).equals(payloadFor(s.port))) badRequests++;
      s.end(payloadFor(s.port + 1000));
    });
  });
  let intact = 0;
  let failed = 0;
  for (let port = 1; port <= 1000; port++) {
    const s = pair.dialer.open(port);
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => {
      if (Buffer.concat(chunks).equals(payloadFor(port + 1000))) intact++;
    });
    s.on('error', () => failed++);
    s.end(payloadFor(port));
  }
  t.equal(pair.dialer.streamCount, 1000, '1,000 streams open at once');
  await until(() => intact + failed === 1000 && pair.dialer.streamCount === 0 && pair.acceptor.streamCount === 0, 'every stream to finish');
  t.equal(failed, 0, 'no stream failed');
  t.equal(badRequests, 0, 'every request arrived intact');
  t.equal(intact, 1000, 'every answer arrived intact');
  t.same(leftovers(pair.dialer, pair.acceptor), [], 'no stream state left on either side');
});

t.test('a paused reader keeps no other stream from its throughput, and buffers no more than its window', async (t) => {
  // Fixed windows: auto-tuning would change the windows between the measurements below.
  const WINDOW = 1024 * 1024;
  const pair = await tlsSessionPair({ initialWindowBytes: WINDOW, maxWindowBytes: WINDOW });
  t.teardown(() => pair.close());
  const received = new Map<number, number>();
  let pausedArrived: ((s: MuxStream) => void) | null = null;
  pair.acceptor.on('stream', (s: MuxStream) => {
    s.accept();
    s.on('error', () => {});
    if (s.port === 2) return pausedArrived?.(s);
    received.set(s.id, 0);
    s.on('data', (c: Buffer) => received.set(s.id, received.get(s.id)! + c.length));
  });

  const PHASE_BYTES = 4 * 1024 * 1024;
  const payload = Buffer.alloc(PHASE_BYTES, 0x5a);
  const busy = Array.from({ length: 10 }, () => pair.dialer.open(1));
  let target = 0;
  let paused: MuxStream | null = null;
  let pausedMax = 0;
  let pausedSenderDrained = 0;
  /** Each of the 10 streams moves 4 MiB more; resolves with the milliseconds it took. */
  const phase = async (): Promise<number> => {
    target += PHASE_BYTES;
    const started = performance.now();
    for (const s of busy) s.write(payload);
    await until(() => {
      if (paused) pausedMax = Math.max(pausedMax, paused.readableLength);
      return received.size === 10 && [...received.values()].every((n) => n >= target);
    }, 'the 10 streams to move their bytes');
    return performance.now() - started;
  };
  /** The same, while an 11th stream's reader is paused with its window full. */
  const phaseWithPausedReader = async (): Promise<number> => {
    const arrived = new Promise<MuxStream>((resolve) => (pausedArrived = resolve));
    const sender = pair.dialer.open(2);
    sender.on('error', () => {});
    sender.write(Buffer.alloc(4 * WINDOW));
    paused = await arrived;
    paused.pause();
    await until(() => paused!.readableLength === WINDOW, 'the paused stream to fill its window');
    const ms = await phase();
    if (sender.bufferedSendBytes < 3 * WINDOW) pausedSenderDrained++;
    sender.destroy();
    paused = null;
    return ms;
  };

  const gc = collectGarbage();
  for (let i = 0; i < 3; i++) await phase(); // warm-up: JIT, TLS buffers
  // Alternate the two measurements, 20 of each, and compare each with its neighbour: the
  // machine's speed drifts, and neighbours see the same drift.
  const measure = async (run: () => Promise<number>): Promise<number> => {
    gc();
    return run();
  };
  const ratios: number[] = [];
  for (let i = 0; i < 20; i++) {
    // Half of the pairs measure the paused case first, half second.
    let alone: number;
    let beside: number;
    if (i % 2 === 0) {
      alone = await measure(phase);
      beside = await measure(phaseWithPausedReader);
    } else {
      beside = await measure(phaseWithPausedReader);
      alone = await measure(phase);
    }
    ratios.push(alone / beside);
  }
  ratios.sort((a, b) => a - b);
  const median = ratios[ratios.length >> 1]!;
  t.ok(median >= 0.9, `beside a paused reader the 10 streams keep ${(median * 100).toFixed(0)}% of their throughput (median of 20 pairs)`);
  t.equal(pausedSenderDrained, 0, 'the paused stream\'s sender stayed blocked on credit every time');
  t.ok(pausedMax <= WINDOW, `the paused stream buffered at most ${pausedMax} bytes with a window of ${WINDOW}`);
  for (const s of busy) s.destroy();
});

t.test('1,000 open/reset cycles leave no stream state and no memory behind', async (t) => {
  const pair = await tlsSessionPair();
  t.teardown(() => pair.close());
  // The acceptor answers every stream with a byte; odd ports are then reset by the acceptor,
  // even ones by the dialer once the answer arrived.
  pair.acceptor.on('stream', (s: MuxStream) => {
    s.accept();
    s.on('error', () => {});
    s.write('y');
    if (s.port % 2 === 1) s.reset('ERR_WARREN_APP_UNREACHABLE');
  });
  let wrongCodes = 0;
  const cycle = (port: number): Promise<void> =>
    new Promise((resolve) => {
      const s = pair.dialer.open(port);
      s.write('x');
      s.on('error', (err: StreamResetError) => {
        if (err.code !== 'ERR_WARREN_APP_UNREACHABLE') wrongCodes++;
      });
      s.on('close', () => resolve());
      if (port % 2 === 0) s.once('data', () => s.reset('ERR_WARREN_STREAM_CANCELLED'));
    });
  const cycles = async (n: number): Promise<void> => {
    for (let done = 0; done < n; done += 50) await Promise.all(Array.from({ length: 50 }, (_, i) => cycle(1 + ((done + i) % 60000))));
    await until(() => pair.dialer.streamCount === 0 && pair.acceptor.streamCount === 0, 'both stream maps to empty');
  };

  const gc = collectGarbage();
  await cycles(300); // warm-up: JIT, pools, TLS buffers
  gc();
  const baseline = process.memoryUsage().heapUsed;
  await cycles(1000);
  gc();
  const grown = process.memoryUsage().heapUsed - baseline;
  t.equal(wrongCodes, 0, 'every acceptor reset arrived with its code');
  t.same(leftovers(pair.dialer, pair.acceptor), [], 'no stream state left on either side');
  t.notOk(pair.dialer.closed || pair.acceptor.closed, 'the session survived the churn');
  // A leaked stream costs several KiB (a Duplex and its state): 1,000 of them would be megabytes.
  t.ok(grown < 1024 * 1024, `heap grew by ${(grown / 1024).toFixed(0)} KiB over 1,000 cycles`);
});

t.test('a peer that breaks the protocol loses its own session with ERR_WARREN_PROTOCOL, and only that one', async (t) => {
  const bad = await tlsSessionPair();
  const good = await tlsSessionPair();
  t.teardown(() => Promise.all([bad.close(), good.close()]));
  for (const s of [good.acceptor, bad.acceptor]) {
    s.on('stream', (stream: MuxStream) => {
      stream.accept();
      stream.on('error', () => {});
      stream.pipe(stream);
    });
  }
  const goaway = once(bad.dialer, 'goaway') as Promise<[GoAwayInfo]>;
  const dialerClosed = once(bad.dialer, 'close') as Promise<[ConnectionError]>;
  const acceptorClosed = once(bad.acceptor, 'close') as Promise<[ConnectionError]>;
  // Raw bytes on the dialer's TLS socket: a FIN header with a reserved bit set.
  const header = encodeDataHeader(1, 0);
  header[0] = FrameType.FIN;
  header[3] = 1;
  bad.sockets[0].write(header);

  const [info] = await goaway;
  t.equal(info.code, 0x01, 'GOAWAY carries wire code 0x01');
  t.equal(info.error?.code, 'ERR_WARREN_PROTOCOL');
  t.match(info.message, /reserved/);
  const [dialerReason] = await dialerClosed;
  t.equal(dialerReason.code, 'ERR_WARREN_PROTOCOL', 'the other side closes with the GOAWAY code as its reason');
  const [acceptorReason] = await acceptorClosed;
  t.equal(acceptorReason.code, 'ERR_WARREN_PROTOCOL', 'the side that saw the violation closes with it too');

  t.notOk(good.dialer.closed || good.acceptor.closed, 'the other session is still open');
  const s = good.dialer.open(7);
  s.end('still working');
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(c as Buffer);
  t.equal(Buffer.concat(chunks).toString(), 'still working', 'and still carries streams');
});
