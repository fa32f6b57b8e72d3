// Session behaviour over an in-memory duplex pair: streams, half-close, reset, limits,
// flow control, GOAWAY and keepalive. test/protocol/mux-tls.test.ts repeats the load-bearing
// cases over a real TLS connection.
import { once } from 'node:events';
import { createHash, randomBytes } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import t from 'tap';
import { StreamResetError, acceptSession, encodeGoAway, encodeHello, socketTransport, type ConnectionError, type MuxStream, type Session } from '../../protocol/index.js';
import { duplexPair } from '../helpers/duplex-pair.js';
import { memorySessionPair, tlsSessionPair } from '../helpers/mux.js';

/** Reads a stream to its end. */
async function readAll(stream: MuxStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** Echo server: every incoming stream is accepted and piped back to itself. */
function serveEcho(session: Session): void {
  session.on('stream', (s: MuxStream) => {
    s.accept();
    s.on('error', () => {});
    s.pipe(s);
  });
}

/** Waits until `check` is true, re-checking on every turn of the event loop (bounded). */
async function until(check: () => boolean, what: string, turns = 10_000): Promise<void> {
  for (let i = 0; i < turns; i++) {
    if (check()) return;
    await new Promise((r) => setImmediate(r));
  }
  throw new Error(`timed out waiting for ${what}`);
}

t.test('a stream carries bytes both ways and closes cleanly on both sides', async (t) => {
  const pair = await memorySessionPair();
  t.teardown(() => pair.close());
  serveEcho(pair.acceptor);
  const stream = pair.dialer.open(3000, { kind: 'test' });
  const data = randomBytes(3 * 1024 * 1024 + 17);
  stream.end(data);
  const echoed = await readAll(stream);
  t.equal(createHash('sha256').update(echoed).digest('hex'), createHash('sha256').update(data).digest('hex'));
  await until(() => pair.dialer.streamCount === 0 && pair.acceptor.streamCount === 0, 'stream maps to empty');
  t.equal(pair.dialer.bufferedBytes, 0);
  t.equal(pair.acceptor.bufferedBytes, 0);
});

t.test('the acceptor sees the port and metadata named in OPEN', async (t) => {
  const pair = await memorySessionPair();
  t.teardown(() => pair.close());
  const incoming = once(pair.acceptor, 'stream') as Promise<[MuxStream]>;
  const s = pair.dialer.open(5432, { source: 'client', remote: '10.0.0.1' });
  s.end();
  const [remote] = await incoming;
  t.equal(remote.port, 5432);
  t.same({ ...remote.metadata }, { source: 'client', remote: '10.0.0.1' });
  t.equal(remote.id % 2, 1, 'dialer streams have odd ids');
  remote.resume();
  remote.end();
});

t.test('0-RTT: data written right after open arrives with the OPEN', async (t) => {
  const pair = await memorySessionPair();
  t.teardown(() => pair.close());
  const incoming = once(pair.acceptor, 'stream') as Promise<[MuxStream]>;
  const s = pair.dialer.open(80);
  s.write('GET / HTTP/1.1\r\n\r\n');
  const [remote] = await incoming;
  remote.on('error', () => {});
  // The first read happens in the same turn as the OPEN: the bytes came in the same batch.
  const first = remote.read() as Buffer | null;
  t.equal(first?.toString(), 'GET / HTTP/1.1\r\n\r\n');
  s.destroy();
});

t.test('half-close: a side that ends its writes still receives the whole answer', async (t) => {
  const pair = await memorySessionPair();
  t.teardown(() => pair.close());
  pair.acceptor.on('stream', (s: MuxStream) => {
    s.accept();
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    // Answer only after the request side is finished, as a server does after EOF.
    s.on('end', () => {
      const body = Buffer.concat(chunks);
      s.end(Buffer.concat([Buffer.from('got '), Buffer.from(String(body.length)), Buffer.alloc(1024 * 1024, 7)]));
    });
  });
  const s = pair.dialer.open(1);
  s.end(Buffer.alloc(100_000, 1));
  const answer = await readAll(s);
  t.equal(answer.subarray(0, 10).toString(), 'got 100000');
  t.equal(answer.length, 10 + 1024 * 1024);
});

t.test('reset: RST carries its code to the other side and frees both ends', async (t) => {
  const pair = await memorySessionPair();
  t.teardown(() => pair.close());
  const incoming = once(pair.acceptor, 'stream') as Promise<[MuxStream]>;
  const s = pair.dialer.open(1);
  s.write('x');
  const [remote] = await incoming;
  remote.accept();
  const failed = once(s, 'error') as Promise<[StreamResetError]>;
  remote.on('error', () => t.fail('the side that resets sees no error'));
  remote.reset('ERR_WARREN_APP_UNREACHABLE', 'connect ECONNREFUSED 127.0.0.1:1');
  const [err] = await failed;
  t.type(err, StreamResetError);
  t.equal(err.code, 'ERR_WARREN_APP_UNREACHABLE');
  t.equal(err.remote, true);
  t.match(err.message, /ECONNREFUSED/);
  await until(() => pair.dialer.streamCount === 0 && pair.acceptor.streamCount === 0, 'stream maps to empty');
});

t.test('destroy() without an error sends RST with ERR_WARREN_STREAM_CANCELLED', async (t) => {
  const pair = await memorySessionPair();
  t.teardown(() => pair.close());
  const incoming = once(pair.acceptor, 'stream') as Promise<[MuxStream]>;
  const s = pair.dialer.open(1);
  s.write('x');
  const [remote] = await incoming;
  const failed = once(remote, 'error') as Promise<[StreamResetError]>;
  s.destroy();
  const [err] = await failed;
  t.equal(err.code, 'ERR_WARREN_STREAM_CANCELLED');
});

t.test('one bad stream never harms its session: other streams keep working after a reset', async (t) => {
  const pair = await memorySessionPair();
  t.teardown(() => pair.close());
  serveEcho(pair.acceptor);
  const doomed = pair.dialer.open(1);
  doomed.on('error', () => {});
  doomed.write('abc');
  doomed.reset('ERR_WARREN_STREAM_CANCELLED');
  const healthy = pair.dialer.open(2);
  healthy.end('still here');
  t.equal((await readAll(healthy)).toString(), 'still here');
  t.notOk(pair.dialer.closed);
  t.notOk(pair.acceptor.closed);
});

t.test('max streams: an OPEN over the limit is refused with a retryable code, others unaffected', async (t) => {
  const pair = await memorySessionPair({}, { maxStreams: 3, maxPendingOpens: 3 });
  t.teardown(() => pair.close());
  const held: MuxStream[] = [];
  pair.acceptor.on('stream', (s: MuxStream) => {
    s.accept();
    held.push(s);
  });
  const open = [1, 2, 3].map((p) => pair.dialer.open(p));
  for (const s of open) s.write('hi');
  await until(() => held.length === 3, 'three streams accepted');
  const extra = pair.dialer.open(4);
  extra.write('hi');
  const [err] = (await once(extra, 'error')) as [StreamResetError];
  t.equal(err.code, 'ERR_WARREN_STREAM_REFUSED');
  t.equal(err.retryable, true);
  t.equal(pair.acceptor.streamCount, 3);
  for (const s of open) s.destroy();
});

t.test('max pending opens: streams nobody accepts are refused beyond the limit', async (t) => {
  const pair = await memorySessionPair({}, { maxPendingOpens: 2 });
  t.teardown(() => pair.close());
  pair.acceptor.on('stream', () => {}); // never accepted
  const streams = [1, 2, 3].map((p) => pair.dialer.open(p));
  streams[0]!.on('error', () => {});
  streams[1]!.on('error', () => {});
  streams[2]!.write('x');
  const [err] = (await once(streams[2]!, 'error')) as [StreamResetError];
  t.equal(err.code, 'ERR_WARREN_PENDING_LIMIT');
  t.equal(pair.acceptor.pendingOpens, 2);
});

t.test('a session without a stream handler refuses streams instead of leaking them', async (t) => {
  const pair = await memorySessionPair();
  t.teardown(() => pair.close());
  const s = pair.dialer.open(1);
  s.write('x');
  const [err] = (await once(s, 'error')) as [StreamResetError];
  t.equal(err.code, 'ERR_WARREN_STREAM_REFUSED');
  t.equal(pair.acceptor.streamCount, 0);
});

t.test('metadata larger than the peer allows is refused before anything is sent', async (t) => {
  const pair = await memorySessionPair({}, { maxMetadataBytes: 64 });
  t.teardown(() => pair.close());
  t.throws(() => pair.dialer.open(1, { big: 'x'.repeat(100) }), { code: 'ERR_WARREN_METADATA_TOO_LARGE' });
});

t.test('flow control: a paused reader stops the sender at the window and buffers no more', async (t) => {
  const pair = await memorySessionPair({}, { initialWindowBytes: 128 * 1024 });
  t.teardown(() => pair.close());
  const incoming = once(pair.acceptor, 'stream') as Promise<[MuxStream]>;
  const s = pair.dialer.open(1);
  let drained = false;
  const chunk = Buffer.alloc(16 * 1024);
  const writeMore = (): void => {
    while (s.write(chunk));
  };
  s.on('drain', () => {
    drained = true;
    writeMore();
  });
  writeMore();
  const [remote] = await incoming;
  remote.accept();
  remote.pause();
  // The sender can move the acceptor's initial window and no more.
  await until(() => pair.acceptor.bufferedBytes === 128 * 1024 && s.bufferedSendBytes > 0, 'window used up');
  for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
  t.equal(pair.acceptor.bufferedBytes, 128 * 1024, 'no byte beyond the window was sent');
  t.equal(remote.readableLength, 128 * 1024);
  // Reading resumes the flow.
  let got = 0;
  remote.on('data', (c: Buffer) => (got += c.length));
  remote.resume();
  await until(() => got > 1024 * 1024, 'transfer resumed');
  t.ok(drained || got > 0);
  s.destroy();
});

t.test('flow control: the window grows for a reader that keeps up', async (t) => {
  const pair = await memorySessionPair();
  t.teardown(() => pair.close());
  const incoming = once(pair.acceptor, 'stream') as Promise<[MuxStream]>;
  const s = pair.dialer.open(1);
  s.end(Buffer.alloc(32 * 1024 * 1024));
  const [remote] = await incoming;
  remote.accept();
  remote.resume();
  await once(remote, 'end');
  t.ok(remote.recvWindow > 256 * 1024, `window grew to ${remote.recvWindow}`);
  t.ok(remote.recvWindow <= 16 * 1024 * 1024, 'and stays within maxWindowBytes');
});

t.test('a stream that starts late gets a fair share beside one that has been sending for a while', async (t) => {
  // Regression: a write completed inside the scheduler re-queued the stream a second time, so a
  // long-running writer piled up entries in the ready queue and starved every newcomer.
  const pair = await memorySessionPair();
  t.teardown(() => pair.close());
  const got = new Map<number, number>();
  pair.acceptor.on('stream', (s: MuxStream) => {
    s.accept();
    s.on('error', () => {});
    got.set(s.port, 0);
    s.on('data', (c: Buffer) => got.set(s.port, got.get(s.port)! + c.length));
  });
  const chunk = Buffer.alloc(16 * 1024);
  const pump = (s: MuxStream): void => {
    const write = (): void => {
      while (!s.destroyed && s.write(chunk));
    };
    s.on('drain', write);
    s.on('error', () => {});
    write();
  };
  const early = pair.dialer.open(1);
  pump(early);
  await until(() => (got.get(1) ?? 0) >= 64 * 1024 * 1024, 'the first stream to move 64 MiB alone', 100_000);
  const before = got.get(1)!;
  const late = pair.dialer.open(2);
  pump(late);
  await until(() => got.get(1)! - before + (got.get(2) ?? 0) >= 64 * 1024 * 1024, '64 MiB more on the two streams', 100_000);
  const earlyShare = got.get(1)! - before;
  const lateShare = got.get(2) ?? 0;
  t.ok(lateShare >= earlyShare / 2, `late stream moved ${lateShare} bytes while the early one moved ${earlyShare}`);
  early.destroy();
  late.destroy();
});

t.test('bytes read after the peer half-closes stop counting as buffered, so uploads do not exhaust the buffer budget', async (t) => {
  // Regression: credit and consumption were only counted in _read(), which Node no longer calls
  // once the peer's FIN has ended the readable side; bytes read after it stayed "buffered" until
  // the stream was destroyed, and a server still answering uploads refused new streams.
  const pair = await memorySessionPair({}, { maxBufferedBytes: 1024 * 1024 });
  t.teardown(() => pair.close());
  const uploads: MuxStream[] = [];
  let readToEnd = 0;
  pair.acceptor.on('stream', (s: MuxStream) => {
    s.accept();
    s.on('error', () => {});
    uploads.push(s);
    s.resume();
    s.on('end', () => readToEnd++); // the answer is not sent yet: the stream stays half-open
  });
  const clients = Array.from({ length: 8 }, () => pair.dialer.open(80));
  for (const c of clients) {
    c.on('error', () => {});
    c.end(Buffer.alloc(512 * 1024));
  }
  await until(() => readToEnd === 8, 'the server to read every upload to its end');
  t.equal(uploads.reduce((sum, s) => sum + s.readableLength, 0), 0, 'nothing is left unread');
  t.equal(pair.acceptor.bufferedBytes, 0, 'so nothing counts as buffered');
  const next = pair.dialer.open(81);
  next.on('error', (err) => t.fail(`a new stream was refused: ${(err as StreamResetError).code}`));
  next.write('x');
  await until(() => uploads.length === 9, 'the ninth stream to arrive');
  for (const s of [...clients, next]) s.destroy();
});

t.test('bytes taken with read() from a paused stream stop counting as buffered at once', async (t) => {
  // Regression: Node does not call _read() again while an earlier _read() has not been answered
  // by a push, so bytes read in paused mode stayed counted until the next DATA frame arrived.
  const pair = await memorySessionPair();
  t.teardown(() => pair.close());
  const incoming = once(pair.acceptor, 'stream') as Promise<[MuxStream]>;
  const s = pair.dialer.open(1);
  s.write('first');
  const [remote] = await incoming;
  remote.accept();
  remote.pause();
  await until(() => remote.readableLength === 5, 'the first bytes to arrive');
  s.write('second');
  await until(() => remote.readableLength === 11, 'more bytes to arrive');
  t.equal(pair.acceptor.bufferedBytes, 11);
  t.equal((remote.read() as Buffer).toString(), 'firstsecond');
  await until(() => pair.acceptor.bufferedBytes === 0, 'the read bytes to be uncounted', 100);
  t.equal(pair.acceptor.bufferedBytes, 0, 'nothing counts as buffered once it was read');
  s.destroy();
});

t.test('GOAWAY: no new streams, open ones finish, then the session closes', async (t) => {
  const pair = await memorySessionPair();
  t.teardown(() => pair.close());
  serveEcho(pair.acceptor);
  const s = pair.dialer.open(1);
  s.write('before');
  await until(() => pair.acceptor.streamCount === 1, 'stream open');
  const goaway = once(pair.dialer, 'goaway');
  pair.acceptor.goAway(0, { hint: 'wss://relay-b.example:443' });
  const [info] = (await goaway) as [{ code: number; hint: string }];
  t.equal(info.code, 0);
  t.equal(info.hint, 'wss://relay-b.example:443');
  t.throws(() => pair.dialer.open(2), { code: 'ERR_WARREN_GOING_AWAY' });
  const closed = once(pair.acceptor, 'close');
  s.end(' and after');
  t.equal((await readAll(s)).toString(), 'before and after');
  const [reason] = (await closed) as [unknown];
  t.equal(reason, undefined, 'a graceful close carries no error');
});

t.test('a session that fails while draining still tells the peer why in a second GOAWAY', async (t) => {
  // Regression: fail() sent its GOAWAY only if no graceful one had gone out, so a violation
  // during a drain reached the peer as a clean close.
  const pair = await memorySessionPair();
  t.teardown(() => pair.close());
  pair.acceptor.on('stream', (s: MuxStream) => {
    s.accept();
    s.on('error', () => {});
  });
  const s = pair.dialer.open(1);
  s.on('error', () => {});
  s.write('x');
  await until(() => pair.acceptor.streamCount === 1, 'stream open');
  const codes: number[] = [];
  pair.dialer.on('goaway', (info: { code: number }) => codes.push(info.code));
  pair.acceptor.goAway(0);
  await until(() => codes.length === 1, 'the graceful GOAWAY');
  const closed = once(pair.dialer, 'close') as Promise<[ConnectionError | undefined]>;
  // A FIN header with a reserved bit set, written under the dialer's session.
  pair.sockets[0].write(Buffer.from('030000010000000100000000', 'hex'));
  const [reason] = await closed;
  t.same(codes, [0, 0x01], 'a graceful GOAWAY, then one with ERR_WARREN_PROTOCOL');
  t.equal(reason?.code, 'ERR_WARREN_PROTOCOL', 'the peer closes with the reason');
});

t.test('an acceptor whose dialer gives up while the token is being verified rejects instead of opening', async (t) => {
  // Regression: when authenticate() finished after the session had failed, but before its
  // transport closed, acceptSession() sent HELLO and resolved with a session that was closing.
  const [raw, end] = duplexPair();
  raw.on('data', () => {});
  raw.on('end', () => raw.end());
  let release!: () => void;
  const verified = new Promise<void>((resolve) => (release = resolve));
  const accepted = acceptSession(socketTransport(end), {
    authenticate: async (_hello, session) => {
      session.on('goaway', () => release()); // the token check finishes just as the dialer leaves
      await verified;
      return {};
    },
  });
  raw.write(encodeHello({ v: 1, token: 'test', limits: { maxFrameBytes: 16 * 1024, initialWindowBytes: 64 * 1024, maxMetadataBytes: 0 }, app: {} }));
  raw.write(encodeGoAway(0x0c, 0, '', 'changed my mind'));
  const outcome = await accepted.then(
    (session) => `resolved with a session that is ${session.closed ? 'closed' : 'open'}`,
    (err: ConnectionError) => err.code,
  );
  t.equal(outcome, 'ERR_WARREN_GOING_AWAY', 'acceptSession rejects with the dialer\'s GOAWAY code');
});

t.test('keepalive measures the RTT, and a silent peer is declared dead', async (t) => {
  // Real TLS sockets here: they keep the event loop alive while the silence lasts.
  const pair = await tlsSessionPair({ keepaliveIntervalMs: 40, keepaliveTimeoutMs: 40 });
  t.teardown(() => pair.close());
  const rtt = await pair.dialer.ping();
  t.ok(rtt >= 0 && rtt < 1000, `rtt ${rtt} ms`);
  t.ok(pair.dialer.rttMs !== undefined);
  // Blackhole the acceptor: its end stops reading, so nothing it would answer is ever sent.
  const started = performance.now();
  const closed = once(pair.dialer, 'close') as Promise<[ConnectionError]>;
  pair.sockets[1].pause();
  const [err] = await closed;
  const elapsed = performance.now() - started;
  t.equal(err.code, 'ERR_WARREN_KEEPALIVE_TIMEOUT');
  t.ok(elapsed <= 2 * 40 + 40, `detected after ${elapsed.toFixed(0)} ms (two intervals plus scheduling slack)`);
});

t.test('a session that closes fails its open streams with a retryable connection error', async (t) => {
  const pair = await memorySessionPair();
  pair.acceptor.on('stream', (remote: MuxStream) => {
    remote.accept();
    remote.on('error', () => {});
  });
  const s = pair.dialer.open(1);
  s.write('x');
  await until(() => pair.acceptor.streamCount === 1, 'stream open');
  const failed = once(s, 'error') as Promise<[ConnectionError]>;
  pair.acceptor.destroy();
  const [err] = await failed;
  t.equal(err.code, 'ERR_WARREN_SESSION_CLOSED');
  t.equal(err.retryable, true);
  await pair.close();
});

t.test('pipeline(socket-like, stream, socket-like) moves data and finishes both ways', async (t) => {
  const pair = await memorySessionPair();
  t.teardown(() => pair.close());
  serveEcho(pair.acceptor);
  const s = pair.dialer.open(1);
  const { Readable, Writable } = await import('node:stream');
  const out: Buffer[] = [];
  await pipeline(
    Readable.from([Buffer.from('a'), Buffer.from('b'), Buffer.from('c')]),
    s,
    new Writable({
      write(c: Buffer, _e, cb) {
        out.push(c);
        cb();
      },
    }),
  );
  t.equal(Buffer.concat(out).toString(), 'abc');
});

t.test('flow control: windows that grew shrink back while the session is over its buffer budget', async (t) => {
  const MiB = 1024 * 1024;
  const pair = await memorySessionPair({}, { maxBufferedBytes: MiB });
  t.teardown(() => pair.close());
  const remotes: MuxStream[] = [];
  pair.acceptor.on('stream', (s: MuxStream) => {
    s.accept();
    remotes.push(s);
  });
  // Two streams, each grown by a fast reader while the other is idle.
  const senders = [pair.dialer.open(1), pair.dialer.open(2)];
  for (const [i, s] of senders.entries()) {
    s.write(Buffer.alloc(8 * MiB));
    await until(() => remotes.length > i, 'stream accepted');
    const remote = remotes[i]!;
    let got = 0;
    const onData = (c: Buffer): void => void (got += c.length);
    remote.on('data', onData);
    await until(() => got === 8 * MiB, 'first transfer');
    remote.removeListener('data', onData);
    remote.pause();
  }
  const grown = remotes.map((r) => r.recvWindow);
  t.ok(grown.every((w) => w > 256 * 1024), `both windows grew (${grown.join(', ')})`);
  // Both readers paused and both senders fill their windows: the session goes over budget.
  for (const s of senders) s.write(Buffer.alloc(4 * MiB));
  await until(() => senders.every((s) => s.sendWindow === 0 && s.bufferedSendBytes > 0), 'both senders blocked on credit');
  t.ok(pair.acceptor.bufferedBytes > MiB, 'over the 1 MiB budget');
  // The first reader drains; credit returned while over budget shrinks its window.
  remotes[0]!.resume();
  await until(() => remotes[0]!.recvWindow < grown[0]!, 'window shrank');
  t.ok(remotes[0]!.recvWindow >= 256 * 1024, 'never below the initial window');
  for (const s of senders) s.destroy();
});

t.test('unknown extension frames share the idle-frame budget', async (t) => {
  const pair = await memorySessionPair({}, { idleFrameRate: { perSecond: 1, burst: 20 } });
  t.teardown(() => pair.close());
  const closed = once(pair.acceptor, 'close') as Promise<[ConnectionError]>;
  const frame = Buffer.alloc(12);
  frame[0] = 0x90; // an extension type this version does not know
  for (let i = 0; i < 100; i++) pair.sockets[0].write(frame);
  const [err] = await closed;
  t.equal(err.code, 'ERR_WARREN_FLOOD');
});
