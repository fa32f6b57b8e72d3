/**
 * Joining two byte streams both ways, as a relay or an agent does for every connection: bytes
 * flow with backpressure, half-close is faithful (an end on one side becomes an end on the
 * other), and so is failure: an error on one side destroys the other with the same error, so a
 * reset stream's code travels on as RST, and a reset stream resets a TCP connection (RST, so the
 * peer sees ECONNRESET rather than a clean end).
 *
 * Not stream.pipeline(): a pipeline of three costs two dozen closures and listeners per joined
 * pair, which an idle open stream pays for its whole life (kilobytes per stream on a relay).
 *
 * One limit comes from libuv, on every Node TCP peer: a reset that arrives in the same poll as
 * bytes not yet read is reported as a plain end of stream, so it travels on as a FIN.
 */
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

/** Called once, when both sides have closed, with the first error either side had. */
export type JoinDone = (err: Error | undefined) => void;

/** Joins `a` and `b` both ways; `done` runs once both have closed. */
export function joinStreams(a: Duplex, b: Duplex, done?: JoinDone): void {
  let firstError: Error | undefined;
  let open = 2;
  const side = (from: Duplex, to: Duplex): void => {
    if (to instanceof Socket) batchWrites(from, to);
    else {
      from.on('data', (chunk: Buffer) => {
        if (!to.destroyed && !to.write(chunk)) from.pause();
      });
    }
    to.on('drain', () => from.resume());
    from.on('end', () => {
      if (!to.destroyed && !to.writableEnded) to.end();
    });
    from.on('error', (err: Error) => {
      firstError ??= err;
      if (!to.destroyed) to.destroy(err);
    });
    from.on('close', () => {
      // Destroyed without an error before finishing both ways: the other side is cut too.
      if (!to.destroyed && !(from.readableEnded && from.writableFinished)) to.destroy();
      if (--open === 0) done?.(firstError);
    });
  };
  side(a, b);
  side(b, a);
}

/**
 * Writes what `from` yields into the socket `to`, one write per event-loop turn: a TLS session
 * hands its plaintext over in 16 KiB pieces, several per read, and a socket write each would be a
 * syscall each. The socket is corked at the first piece of a turn and uncorked once the turn's
 * I/O is done (setImmediate runs right after the poll phase), so the pieces leave in one writev.
 * Backpressure is checked after the flush, and within a turn once a batch holds 1 MiB. Only bulk
 * transfers batch: a small
 * piece with no batch open is written at once.
 */
/** A piece this large starts a batch: a TLS session's plaintext comes in pieces of up to 16 KiB. */
const BATCH_FROM_BYTES = 8 * 1024;
/** A batch holding this much pauses its source until the socket drains. */
const BATCH_MAX_BYTES = 1024 * 1024;

function batchWrites(from: Duplex, to: Socket): void {
  let corked = false;
  const flush = (): void => {
    corked = false;
    to.uncork();
    if (to.writableNeedDrain) from.pause();
  };
  from.on('data', (chunk: Buffer) => {
    if (to.destroyed) return;
    if (corked) {
      // A source that yields more within one turn than a batch should hold waits for the flush.
      if (!to.write(chunk) && to.writableLength >= BATCH_MAX_BYTES) from.pause();
    } else if (chunk.length < BATCH_FROM_BYTES) {
      // Small pieces (requests, keystrokes, pings) go out at once: no timer, no added latency.
      if (!to.write(chunk)) from.pause();
    } else {
      corked = true;
      to.cork();
      setImmediate(flush);
      to.write(chunk);
    }
  });
}

/** Joins a TCP `socket` and `stream`, with a reset of the stream sent on as a TCP reset. */
export function joinSocket(socket: Socket, stream: Duplex, done?: JoinDone): void {
  // Registered before the join's own listeners, so the RST goes out before a plain destroy().
  stream.once('error', () => {
    if (socket.destroyed) return;
    // After end() the socket may be shutting down, and libuv refuses a reset then (EINVAL); Node
    // 20's TCPWrap marks the handle closing anyway and never closes it: the descriptor leaks and
    // the process spins at exit in CleanupHandles. The peer has our FIN already: close plainly.
    if (socket.writableEnded) socket.destroy();
    else socket.resetAndDestroy();
  });
  joinStreams(socket, stream, done);
}
