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

/**
 * Buffers events until attach(), then forwards them; the base of both transports. Each transport
 * is one object with prototype methods, and its connection's listeners are functions shared by
 * every connection (they find the transport through a symbol on the connection): an idle relay
 * holds thousands of these, and closures and their contexts would cost several hundred bytes each.
 */
abstract class Inbox {
  // Owned by the connection's listeners.
  private handlers: TransportHandlers | null = null;
  /** Chunks that arrived before attach(); made on first use. */
  private early: Buffer[] | null = null;
  private closed = false;
  /** The first error the connection reported, passed on with close. */
  protected failure: Error | undefined = undefined;

  attach(handlers: TransportHandlers): void {
    if (this.handlers) throw new Error('transport already attached');
    this.handlers = handlers;
    const early = this.early;
    this.early = null;
    if (early) for (const chunk of early) handlers.data(chunk);
    if (this.closed) handlers.close(this.failure);
  }

  /** @internal */
  deliver(chunk: Buffer): void {
    if (this.closed) return;
    if (this.handlers) this.handlers.data(chunk);
    else (this.early ??= []).push(chunk);
  }

  /** @internal */
  fail(err: Error): void {
    if (!this.closed) this.failure ??= err;
  }

  /** @internal */
  deliverClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.handlers?.close(this.failure);
  }
}

/** Where a connection's shared listeners find its transport. */
const kTransport = Symbol('warren.transport');

function transportOf(connection: object): Inbox {
  return (connection as { [kTransport]: Inbox })[kTransport];
}

function onConnectionError(this: object, err: Error): void {
  transportOf(this).fail(err);
}

// A socket error also destroys the socket (idempotent; Node's own errors come from destroy()
// already), so 'close' follows and no other 'error' listener is needed for that: a third listener
// on an event grows its listener array to room for 19.
function onSocketError(this: Duplex, err: Error): void {
  transportOf(this).fail(err);
  this.destroy();
}

function onConnectionClose(this: object): void {
  transportOf(this).deliverClose();
}

function onSocketData(this: Duplex, chunk: Buffer): void {
  transportOf(this).deliver(chunk);
}

// The peer's EOF ends the session's input; finish our side too so 'close' follows.
function onSocketEnd(this: Duplex): void {
  this.end();
}

/** A transport over a Node Duplex. */
class SocketTransport extends Inbox implements Transport {
  readonly remoteAddress: string | undefined;
  private readonly socket: Duplex;

  constructor(socket: Duplex & { remoteAddress?: string }) {
    super();
    this.socket = socket;
    this.remoteAddress = socket.remoteAddress;
    (socket as { [kTransport]?: Inbox })[kTransport] = this;
    socket.on('data', onSocketData);
    socket.on('error', onSocketError);
    socket.on('close', onConnectionClose);
    socket.on('end', onSocketEnd);
  }

  write(chunks: Buffer[], done: () => void): void {
    const socket = this.socket;
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
  }

  end(): void {
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** A transport over a Node Duplex: a TLS or TCP socket, or an in-memory pair in tests. */
export function socketTransport(socket: Duplex & { remoteAddress?: string }): Transport {
  return new SocketTransport(socket);
}

/** Pieces smaller than this are joined into one WebSocket message; larger ones go as their own. */
const WS_JOIN_BELOW_BYTES = 64 * 1024;
/** Largest WebSocket message this side sends; receivers must accept at least this (maxPayload). */
export const WS_MAX_MESSAGE_BYTES = 1024 * 1024;

function onWebSocketMessage(this: WebSocket, data: Buffer, isBinary: boolean): void {
  if (!isBinary) {
    transportOf(this).fail(new ProtocolError('ERR_WARREN_PROTOCOL', 'text WebSocket message on a binary channel'));
    this.terminate();
    return;
  }
  transportOf(this).deliver(data);
}

/** A transport over a `ws` WebSocket. */
class WebSocketTransport extends Inbox implements Transport {
  readonly remoteAddress: string | undefined;
  private readonly ws: WebSocket;

  constructor(ws: WebSocket, remoteAddress: string | undefined) {
    super();
    this.ws = ws;
    this.remoteAddress = remoteAddress;
    ws.binaryType = 'nodebuffer';
    (ws as { [kTransport]?: Inbox })[kTransport] = this;
    ws.on('message', onWebSocketMessage);
    ws.on('error', onConnectionError);
    ws.on('close', onConnectionClose);
  }

  private send(buf: Buffer, cb?: () => void): void {
    for (let offset = 0; offset < buf.length; offset += WS_MAX_MESSAGE_BYTES) {
      const piece = offset === 0 && buf.length <= WS_MAX_MESSAGE_BYTES ? buf : buf.subarray(offset, offset + WS_MAX_MESSAGE_BYTES);
      const last = offset + WS_MAX_MESSAGE_BYTES >= buf.length;
      this.ws.send(piece, { binary: true, compress: false }, last && cb ? () => cb() : undefined);
    }
  }

  write(chunks: Buffer[], done: () => void): void {
    if (this.ws.readyState !== this.ws.OPEN) {
      done();
      return;
    }
    // Join runs of small buffers; send large ones without copying.
    let run: Buffer[] = [];
    let runBytes = 0;
    const flushRun = (cb?: () => void): void => {
      if (run.length === 0) return;
      this.send(run.length === 1 ? run[0]! : Buffer.concat(run, runBytes), cb);
      run = [];
      runBytes = 0;
    };
    for (let i = 0; i < chunks.length; i++) {
      const c = chunks[i]!;
      const last = i === chunks.length - 1;
      if (c.length >= WS_JOIN_BELOW_BYTES) {
        flushRun();
        this.send(c, last ? done : undefined);
      } else {
        run.push(c);
        runBytes += c.length;
        if (runBytes >= WS_JOIN_BELOW_BYTES || last) flushRun(last ? done : undefined);
      }
    }
  }

  end(): void {
    this.ws.close(1000);
  }

  destroy(): void {
    this.ws.terminate();
  }
}

/**
 * A transport over a `ws` WebSocket. Binary messages are one byte stream: frames may span
 * messages and a message may hold many frames. A text message is a protocol error.
 */
export function webSocketTransport(ws: WebSocket, remoteAddress?: string): Transport {
  return new WebSocketTransport(ws, remoteAddress);
}
