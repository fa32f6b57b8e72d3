/**
 * Transports: what a session runs over. A session needs ordered bytes both ways, a write
 * completion signal for backpressure, and a close notification; a TLS or TCP socket, any Node
 * Duplex, and a WebSocket (binary messages, read as one byte stream) all provide that.
 *
 * Data that arrives before the session attaches is kept and delivered on attach, so a transport
 * can be wrapped the moment its connection is accepted.
 */
import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import { ProtocolError } from './errors.js';

/** What a transport reports to its session. */
export interface TransportHandlers {
  data(chunk: Buffer): void;
  /** The transport is gone; `err` when it failed. Called once. */
  close(err?: Error): void;
}

/** A byte transport for a session. */
export interface Transport {
  /** Writes the buffers in order; `done` runs once they have been handed to the OS (or failed). */
  write(chunks: Buffer[], done: () => void): void;
  /** Ends gracefully once pending writes are out. */
  end(): void;
  /** Closes at once. */
  destroy(): void;
  /** Starts delivering data and close to `handlers`; called once. */
  attach(handlers: TransportHandlers): void;
  /** Remote address for logs, when known. */
  readonly remoteAddress: string | undefined;
}

/** Buffers events until attach(), then forwards them; shared by both transports. */
class Inbox {
  private handlers: TransportHandlers | null = null;
  private early: Buffer[] = [];
  private closed: { err?: Error } | null = null;

  attach(handlers: TransportHandlers): void {
    if (this.handlers) throw new Error('transport already attached');
    this.handlers = handlers;
    const early = this.early;
    this.early = [];
    for (const chunk of early) handlers.data(chunk);
    if (this.closed) handlers.close(this.closed.err);
  }

  data(chunk: Buffer): void {
    if (this.closed) return;
    if (this.handlers) this.handlers.data(chunk);
    else this.early.push(chunk);
  }

  close(err?: Error): void {
    if (this.closed) return;
    this.closed = err ? { err } : {};
    this.handlers?.close(err);
  }
}

/** A transport over a Node Duplex: a TLS or TCP socket, or an in-memory pair in tests. */
export function socketTransport(socket: Duplex & { remoteAddress?: string }): Transport {
  const inbox = new Inbox();
  let failure: Error | undefined;
  socket.on('data', (chunk: Buffer) => inbox.data(chunk));
  socket.on('error', (err) => {
    failure ??= err;
  });
  socket.on('close', () => inbox.close(failure));
  // The peer's EOF ends the session's input; finish our side too so 'close' follows.
  socket.on('end', () => socket.end());
  return {
    remoteAddress: socket.remoteAddress,
    attach: (handlers) => inbox.attach(handlers),
    write(chunks, done) {
      if (socket.destroyed || socket.writableEnded) {
        done();
        return;
      }
      if (chunks.length === 1) {
        socket.write(chunks[0]!, () => done());
        return;
      }
      socket.cork();
      const last = chunks.length - 1;
      for (let i = 0; i < last; i++) socket.write(chunks[i]!);
      socket.write(chunks[last]!, () => done());
      socket.uncork();
    },
    end: () => socket.end(),
    destroy: () => socket.destroy(),
  };
}

/** Pieces smaller than this are joined into one WebSocket message; larger ones go as their own. */
const WS_JOIN_BELOW_BYTES = 64 * 1024;
/** Largest WebSocket message this side sends; receivers must accept at least this (maxPayload). */
export const WS_MAX_MESSAGE_BYTES = 1024 * 1024;

/**
 * A transport over a `ws` WebSocket. Binary messages are one byte stream: frames may span
 * messages and a message may hold many frames. A text message is a protocol error.
 */
export function webSocketTransport(ws: WebSocket, remoteAddress?: string): Transport {
  const inbox = new Inbox();
  let failure: Error | undefined;
  ws.binaryType = 'nodebuffer';
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    if (!isBinary) {
      failure ??= new ProtocolError('ERR_WARREN_PROTOCOL', 'text WebSocket message on a binary channel');
      ws.terminate();
      return;
    }
    inbox.data(data);
  });
  ws.on('error', (err) => {
    failure ??= err;
  });
  ws.on('close', () => inbox.close(failure));

  function send(buf: Buffer, cb?: () => void): void {
    for (let offset = 0; offset < buf.length; offset += WS_MAX_MESSAGE_BYTES) {
      const piece = offset === 0 && buf.length <= WS_MAX_MESSAGE_BYTES ? buf : buf.subarray(offset, offset + WS_MAX_MESSAGE_BYTES);
      const last = offset + WS_MAX_MESSAGE_BYTES >= buf.length;
      ws.send(piece, { binary: true, compress: false }, last && cb ? () => cb() : undefined);
    }
  }

  return {
    remoteAddress,
    attach: (handlers) => inbox.attach(handlers),
    write(chunks, done) {
      if (ws.readyState !== ws.OPEN) {
        done();
        return;
      }
      // Join runs of small buffers; send large ones without copying.
      let run: Buffer[] = [];
      let runBytes = 0;
      const flushRun = (cb?: () => void): void => {
        if (run.length === 0) return;
        send(run.length === 1 ? run[0]! : Buffer.concat(run, runBytes), cb);
        run = [];
        runBytes = 0;
      };
      for (let i = 0; i < chunks.length; i++) {
        const c = chunks[i]!;
        const last = i === chunks.length - 1;
        if (c.length >= WS_JOIN_BELOW_BYTES) {
          flushRun();
          send(c, last ? done : undefined);
        } else {
          run.push(c);
          runBytes += c.length;
          if (runBytes >= WS_JOIN_BELOW_BYTES || last) flushRun(last ? done : undefined);
        }
      }
    },
    end: () => ws.close(1000),
    destroy: () => ws.terminate(),
  };
}
