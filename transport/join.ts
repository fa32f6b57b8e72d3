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

/**
 * A joined stream's side of the join, kept on the stream itself: the join's listeners are module
 * functions that find it through `this` (the emitter), so a joined pair holds no closures.
 */
const kJoin = Symbol('warren.join');

interface JoinState {
  firstError: Error | undefined;
  open: number;
  done: JoinDone | undefined;
}

interface JoinEnd {
  /** The stream this one's bytes are written into (and whose bytes are written into this one). */
  peer: Joined;
  state: JoinState;
  /** This stream is a socket corked for a batch of writes (batchWrites). */
  corked: boolean;
}

type Joined = Duplex & { [kJoin]: JoinEnd };

/** Joins `a` and `b` both ways; `done` runs once both have closed. */
export function joinStreams(a: Duplex, b: Duplex, done?: JoinDone): void {
  const state: JoinState = { firstError: undefined, open: 2, done };
  attach(a as Joined, b as Joined, state);
  attach(b as Joined, a as Joined, state);
}

function attach(s: Joined, peer: Joined, state: JoinState): void {
  s[kJoin] = { peer, state, corked: false };
  s.on('data', peer instanceof Socket ? onDataBatched : onData);
  s.on('drain', onDrain);
  s.on('end', onEnd);
  s.on('error', onError);
  s.on('close', onClose);
}

function onData(this: Joined, chunk: Buffer): void {
  const to = this[kJoin].peer;
  if (!to.destroyed && !to.write(chunk)) this.pause();
}

/** This stream drained: what writes into it may go on. */
function onDrain(this: Joined): void {
  this[kJoin].peer.resume();
}

function onEnd(this: Joined): void {
  const to = this[kJoin].peer;
  if (!to.destroyed && !to.writableEnded) to.end();
}

function onError(this: Joined, err: Error): void {
  const join = this[kJoin];
  join.state.firstError ??= err;
  if (!join.peer.destroyed) join.peer.destroy(err);
}

function onClose(this: Joined): void {
  const join = this[kJoin];
  // Destroyed without an error before finishing both ways: the other side is cut too.
  if (!join.peer.destroyed && !(this.readableEnded && this.writableFinished)) join.peer.destroy();
  if (--join.state.open === 0) join.state.done?.(join.state.firstError);
}

/** A piece this large starts a batch: a TLS session's plaintext comes in pieces of up to 16 KiB. */
const BATCH_FROM_BYTES = 8 * 1024;
/** A batch holding this much pauses its source until the socket drains. */
const BATCH_MAX_BYTES = 1024 * 1024;

/**
 * `data` of a stream joined to a socket: the socket gets one write per event-loop turn. A TLS
 * session hands its plaintext over in 16 KiB pieces, several per read, and a socket write each
 * would be a syscall each. The socket is corked at the first bulk piece of a turn and uncorked
 * once the turn's I/O is done (setImmediate runs right after the poll phase), so the pieces leave
 * in one writev. Backpressure is checked after the flush, and within a turn once a batch holds
 * 1 MiB. Only bulk transfers batch: a small piece with no batch open is written at once.
 */
function onDataBatched(this: Joined, chunk: Buffer): void {
  const to = this[kJoin].peer;
  if (to.destroyed) return;
  const batch = to[kJoin];
  if (batch.corked) {
    // A source that yields more within one turn than a batch should hold waits for the flush.
    if (!to.write(chunk) && to.writableLength >= BATCH_MAX_BYTES) this.pause();
  } else if (chunk.length < BATCH_FROM_BYTES) {
    // Small pieces (requests, keystrokes, pings) go out at once: no timer, no added latency.
    if (!to.write(chunk)) this.pause();
  } else {
    batch.corked = true;
    to.cork();
    setImmediate(flushBatch, to);
    to.write(chunk);
  }
}

function flushBatch(to: Joined): void {
  to[kJoin].corked = false;
  to.uncork();
  if (to.writableNeedDrain) to[kJoin].peer.pause();
}

/** Joins a TCP `socket` and `stream`, with a reset of the stream sent on as a TCP reset. */
export function joinSocket(socket: Socket, stream: Duplex, done?: JoinDone): void {
  // Registered before the join's own listeners, so the RST goes out before a plain destroy().
  stream.on('error', resetPeerSocket);
  joinStreams(socket, stream, done);
}

/** `error` of a stream joined to a socket: the socket is reset, so its peer sees ECONNRESET. */
function resetPeerSocket(this: Joined): void {
  const socket = this[kJoin].peer as Joined & Socket;
  if (socket.destroyed) return;
  // After end() the socket may be shutting down, and libuv refuses a reset then (EINVAL); Node
  // 20's TCPWrap marks the handle closing anyway and never closes it: the descriptor leaks and
  // the process spins at exit in CleanupHandles. The peer has our FIN already: close plainly.
  if (socket.writableEnded) socket.destroy();
  else socket.resetAndDestroy();
}
