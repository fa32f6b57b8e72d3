/**
 * A raw Warren peer over a real WebSocket (subprotocol `warren.v1`), for attack suites: it writes
 * exactly the bytes it is given (frames built with protocol/encode.ts) and records every frame
 * the other side sends, in order. It is not polite: no flow control, no keepalive, no answers.
 *
 * Waiting is event-driven: waitFor() re-checks its condition on every frame that arrives and on
 * close, so tests never sleep to synchronise.
 */
import { WebSocket } from 'ws';
import { FrameDecoder, FrameType, MAX_FRAME_BYTES_LIMIT, PROTOCOL_VERSION, WS_SUBPROTOCOL, encodeHello, encodePing, type ControlFrame, type HelloLimits } from '../../protocol/index.js';

/** The limits a raw peer announces in its HELLO (the protocol defaults). */
export const RAW_PEER_LIMITS: HelloLimits = { maxFrameBytes: 256 * 1024, initialWindowBytes: 256 * 1024, maxMetadataBytes: 4096 };

/** A DATA frame as the raw peer saw it (payload gathered). */
export interface SeenData {
  type: FrameType.DATA;
  streamId: number;
  payload: Buffer;
}

/** Every frame the other side sent. */
export type SeenFrame = ControlFrame | SeenData;

/** The GOAWAY frame. */
export type GoAwayFrame = Extract<ControlFrame, { type: FrameType.GOAWAY }>;

/** A raw peer on one WebSocket. */
export interface RawPeer {
  ws: WebSocket;
  /** Frames received, in order. */
  frames: SeenFrame[];
  /** True once the WebSocket has closed. */
  closed: boolean;
  /** Sends the buffers as one WebSocket message. */
  send(...frames: Buffer[]): void;
  /** Resolves once `check()` is true (checked on every frame and on close); rejects after `timeoutMs`. */
  waitFor(check: () => boolean, what: string, timeoutMs?: number): Promise<void>;
  /** Resolves with the other side's GOAWAY once it arrived. */
  goAway(timeoutMs?: number): Promise<GoAwayFrame>;
  /** Resolves once the WebSocket is closed. */
  whenClosed(timeoutMs?: number): Promise<void>;
  /** Frames of `type` received so far (before index `before`, when given). */
  count(type: FrameType, before?: number): number;
  /** Index of the first frame of `type`, or -1. */
  indexOf(type: FrameType): number;
  close(): void;
}

/** Opens a WebSocket to `url` (wss, trusting `ca`) offering `warren.v1`; resolves once it is open. */
export function openRawPeer(url: string, ca: string): Promise<RawPeer> {
  const ws = new WebSocket(url, [WS_SUBPROTOCOL], { ca, perMessageDeflate: false, maxPayload: 32 * 1024 * 1024 });
  const frames: SeenFrame[] = [];
  const waiters = new Set<() => void>();
  const wake = (): void => {
    for (const w of [...waiters]) w();
  };
  let partial: { streamId: number; pieces: Buffer[] } | null = null;
  const decoder = new FrameDecoder(
    {
      onControl: (f) => {
        frames.push(f);
        wake();
      },
      onData: (streamId, piece, end) => {
        partial ??= { streamId, pieces: [] };
        partial.pieces.push(Buffer.from(piece));
        if (!end) return;
        frames.push({ type: FrameType.DATA, streamId, payload: Buffer.concat(partial.pieces) });
        partial = null;
        wake();
      },
    },
    { maxFrameBytes: MAX_FRAME_BYTES_LIMIT, maxMetadataBytes: 0xffff },
  );
  const peer: RawPeer = {
    ws,
    frames,
    closed: false,
    send: (...bufs) => ws.send(bufs.length === 1 ? bufs[0]! : Buffer.concat(bufs), { binary: true }),
    waitFor(check, what, timeoutMs = 15_000) {
      if (check()) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`raw peer: no ${what} within ${timeoutMs} ms`));
        }, timeoutMs);
        const waiter = (): void => {
          if (check()) {
            waiters.delete(waiter);
            clearTimeout(timer);
            resolve();
          } else if (peer.closed) {
            waiters.delete(waiter);
            clearTimeout(timer);
            reject(new Error(`raw peer: closed before ${what}`));
          }
        };
        waiters.add(waiter);
      });
    },
    async goAway(timeoutMs) {
      await peer.waitFor(() => peer.indexOf(FrameType.GOAWAY) >= 0, 'GOAWAY', timeoutMs);
      return frames[peer.indexOf(FrameType.GOAWAY)] as GoAwayFrame;
    },
    whenClosed: (timeoutMs) => peer.waitFor(() => peer.closed, 'close', timeoutMs),
    count: (type, before = frames.length) => frames.slice(0, before).filter((f) => f.type === type).length,
    indexOf: (type) => frames.findIndex((f) => f.type === type),
    close: () => ws.terminate(),
  };
  ws.on('message', (data: Buffer) => {
    try {
      decoder.push(data);
    } catch {
      ws.terminate(); // the other side broke the protocol: the tests assert on what came before
    }
  });
  ws.on('close', () => {
    peer.closed = true;
    wake();
  });
  return new Promise((resolve, reject) => {
    ws.once('open', () => {
      ws.removeListener('error', reject);
      ws.on('error', () => {});
      resolve(peer);
    });
    ws.once('error', reject);
  });
}

/**
 * Opens a raw peer and sends HELLO with `token` and `app`; resolves once the other side answered
 * with HELLO (the session is open) and rejects with the GOAWAY's message when it refused.
 */
export async function rawHandshake(url: string, ca: string, token: string, app: Record<string, unknown>): Promise<RawPeer> {
  const peer = await openRawPeer(url, ca);
  peer.send(encodeHello({ v: PROTOCOL_VERSION, token, limits: RAW_PEER_LIMITS, software: 'raw-peer/1', app }));
  await peer.waitFor(() => peer.indexOf(FrameType.HELLO) >= 0 || peer.indexOf(FrameType.GOAWAY) >= 0, 'HELLO answer');
  const goAway = peer.frames.find((f): f is GoAwayFrame => f.type === FrameType.GOAWAY);
  if (goAway && peer.indexOf(FrameType.HELLO) < 0) throw new Error(`handshake refused: ${goAway.message}`);
  return peer;
}

/** A PING whose 8 bytes carry `n` (so its PONG can be matched). */
export function pingFrame(n: number): Buffer {
  const payload = Buffer.alloc(8);
  payload.writeUInt32BE(n >>> 0, 4);
  return encodePing(payload);
}
