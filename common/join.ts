/**
 * Joining a TCP socket to a stream: bytes flow both ways, half-close is faithful (a FIN on one
 * side becomes a FIN on the other), and a failure is faithful too: a reset stream resets the TCP
 * connection (RST, so the peer sees ECONNRESET rather than a clean end), and a reset TCP
 * connection resets the stream.
 *
 * One limit comes from libuv, on every Node TCP peer: a reset that arrives in the same poll as
 * bytes not yet read is reported as a plain end of stream, so it travels on as a FIN.
 */
import type { Socket } from 'node:net';
import { pipeline, type Duplex } from 'node:stream';

/** Joins `socket` and `stream`; `done` runs once both are finished or torn down. */
export function joinSocket(socket: Socket, stream: Duplex, done?: (err: Error | undefined) => void): void {
  // Registered before pipeline's own listeners, so the RST goes out before pipeline's plain destroy().
  stream.once('error', () => {
    if (socket.destroyed) return;
    // After end() the socket may be shutting down, and libuv refuses a reset then (EINVAL); Node
    // 20's TCPWrap marks the handle closing anyway and never closes it: the descriptor leaks and
    // the process spins at exit in CleanupHandles. The peer has our FIN already: close plainly.
    if (socket.writableEnded) socket.destroy();
    else socket.resetAndDestroy();
  });
  socket.on('error', () => {
    // pipeline passes the socket's error on to the stream, which resets it.
  });
  pipeline(socket, stream, socket, (err) => done?.(err ?? undefined));
}
