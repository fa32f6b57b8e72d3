/**
 * Joining a TCP socket to a stream: bytes flow both ways, half-close is faithful (a FIN on one
 * side becomes a FIN on the other), and a failure is faithful too: a reset stream resets the TCP
 * connection (RST, so the peer sees ECONNRESET rather than a clean end), and a reset TCP
 * connection resets the stream. A side that goes away before both its directions ended takes the
 * other with it.
 *
 * Two pipe() calls and a few listeners rather than stream.pipeline(): every stream of every
 * session is joined here, and pipeline's per-call AbortController and its premature-close errors
 * (each an Error with a stack) cost several times the join itself.
 */
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

/** True when both directions of `s` ended cleanly (no more bytes either way, nothing lost). */
function endedBothWays(s: Duplex): boolean {
  return s.readableEnded && s.writableFinished;
}

/** Joins `socket` and `stream`; `done` runs once both are closed, with the first error either had. */
export function joinSocket(socket: Socket, stream: Duplex, done?: (err: Error | undefined) => void): void {
  let failure: Error | undefined;
  let open = 2;
  const closed = (): void => {
    if (--open === 0) done?.(failure);
  };
  stream.once('error', (err: Error) => {
    failure ??= err;
    if (socket.destroyed) return;
    // After end() the socket may be shutting down, and libuv refuses a reset then (EINVAL); Node
    // 20's TCPWrap marks the handle closing anyway and never closes it: the descriptor leaks and
    // the process spins at exit in CleanupHandles. The peer has our FIN already: close plainly.
    if (socket.writableEnded) socket.destroy();
    else socket.resetAndDestroy();
  });
  socket.on('error', (err: Error) => {
    failure ??= err;
    // The stream resets (RST), so the far side sees the failure too.
    stream.destroy(err);
  });
  stream.once('close', () => {
    if (!socket.destroyed && !endedBothWays(stream)) socket.destroy();
    closed();
  });
  socket.once('close', () => {
    if (!stream.destroyed && !endedBothWays(socket)) stream.destroy();
    closed();
  });
  socket.pipe(stream);
  stream.pipe(socket);
}

/**
 * Joins two streams both ways (a client's stream to the agent's, on the relay): half-close passes
 * through, an error on one destroys the other with the same error (for mux streams, an RST with
 * the same code), and a side that goes away before both its directions ended takes the other.
 */
export function joinStreams(a: Duplex, b: Duplex): void {
  a.on('error', (err: Error) => b.destroy(err));
  b.on('error', (err: Error) => a.destroy(err));
  a.once('close', () => {
    if (!b.destroyed && !endedBothWays(a)) b.destroy();
  });
  b.once('close', () => {
    if (!a.destroyed && !endedBothWays(b)) a.destroy();
  });
  a.pipe(b);
  b.pipe(a);
}
