import { Duplex } from 'node:stream';

/**
 * Two in-memory Duplex ends wired to each other: what one writes, the other reads. Stands in
 * for a socket in mux unit tests (Node 20 has no stream.duplexPair); integration tests use real
 * TLS sockets. Each chunk is delivered on a later tick, as a socket would.
 */
export function duplexPair(): [Duplex, Duplex] {
  const ends: Duplex[] = [];
  const make = (peer: () => Duplex): Duplex =>
    new Duplex({
      read() {},
      write(chunk: Buffer, _enc, cb) {
        setImmediate(() => {
          peer().push(chunk);
          cb();
        });
      },
      // A corked batch arrives as one chunk, as a socket's writev would deliver it.
      writev(chunks: { chunk: Buffer }[], cb) {
        const joined = Buffer.concat(chunks.map((c) => c.chunk));
        setImmediate(() => {
          peer().push(joined);
          cb();
        });
      },
      final(cb) {
        setImmediate(() => {
          peer().push(null);
          cb();
        });
      },
      destroy(err, cb) {
        const p = peer();
        setImmediate(() => p.destroy());
        cb(err);
      },
    });
  const a = make(() => ends[1]!);
  const b = make(() => ends[0]!);
  ends.push(a, b);
  return [a, b];
}
