/**
 * What the two processes of the multiplexer benchmark (bench/mux.ts, the sender, and
 * bench/mux-receiver.ts, the receiver) agree on: the cases, the IPC messages, the payload the
 * sender writes and the acknowledgement the receiver sends back at the end of each transfer.
 */
import { createHash, randomBytes, type Hash } from 'node:crypto';
import type { SessionOptions } from '../protocol/index.js';

/** How the bytes travel: over a TLS socket or a WebSocket over TLS (wss). */
export type BenchTransport = 'tls' | 'wss';

/** One benchmark case. */
export interface BenchCase {
  /** Stable name, used in the JSON and the table. */
  name: string;
  transport: BenchTransport;
  /** 'raw': the application writes to the connection itself; 'mux': through Warren streams. */
  mode: 'raw' | 'mux';
  /** Parallel streams sharing the bytes (1 for raw). */
  streams: number;
}

/** Every case, in the order they run and print. `tls-raw` is the baseline the others are compared with. */
export const CASES: readonly BenchCase[] = [
  { name: 'tls-raw', transport: 'tls', mode: 'raw', streams: 1 },
  { name: 'tls-mux-1', transport: 'tls', mode: 'mux', streams: 1 },
  { name: 'tls-mux-64', transport: 'tls', mode: 'mux', streams: 64 },
  { name: 'wss-raw', transport: 'wss', mode: 'raw', streams: 1 },
  { name: 'wss-mux-1', transport: 'wss', mode: 'mux', streams: 1 },
  { name: 'wss-mux-64', transport: 'wss', mode: 'mux', streams: 64 },
];

/** The name of the baseline case. */
export const BASELINE_CASE = 'tls-raw';

/** Port named in the benchmark's OPEN frames; the receiver serves any port. */
export const BENCH_PORT = 9;

/** WebSocket paths on the receiver. */
export const WS_RAW_PATH = '/raw';
export const WS_MUX_PATH = '/mux';

/** Bytes of the length prefix that starts a raw transfer (the mux uses FIN instead). */
export const LENGTH_PREFIX_BYTES = 8;

/** Parent → receiver: start the listeners. */
export interface InitMessage {
  type: 'init';
  caPem: string;
  certPem: string;
  keyPem: string;
  /** Hash every received byte and send the digest back (slower; for correctness runs). */
  verify: boolean;
  sessionOptions: SessionOptions;
}

/** Parent → receiver: report the resources used so far. */
export interface UsageRequest {
  type: 'usage';
}

/** What a process has used since it started. */
export interface Usage {
  /** User and system CPU time. */
  cpuSeconds: number;
  /** Minor page faults: fresh memory being mapped in, a sign of allocation churn. */
  minorFaults: number;
}

/** This process's usage now. */
export function usageNow(): Usage {
  const r = process.resourceUsage();
  return { cpuSeconds: (r.userCPUTime + r.systemCPUTime) / 1e6, minorFaults: r.minorPageFault };
}

/** Receiver → parent. */
export type ReceiverMessage =
  | { type: 'ready'; ports: { tlsRaw: number; tlsMux: number; wss: number } }
  | { type: 'usage'; usage: Usage }
  | { type: 'error'; message: string };

/** The acknowledgement: received byte count (u64) and, when verifying, the SHA-256 of the bytes. */
export function encodeAck(count: number, digest: Buffer | null): Buffer {
  const buf = Buffer.alloc(8 + (digest?.length ?? 0));
  buf.writeBigUInt64BE(BigInt(count), 0);
  digest?.copy(buf, 8);
  return buf;
}

/** Parses an acknowledgement written by encodeAck(). */
export function decodeAck(buf: Buffer): { count: number; digest: Buffer | null } {
  if (buf.length < 8) throw new Error(`acknowledgement of ${buf.length} bytes is too short`);
  return { count: Number(buf.readBigUInt64BE(0)), digest: buf.length > 8 ? buf.subarray(8) : null };
}

/** Counts (and optionally hashes) what one transfer delivers. */
export class ByteSink {
  count = 0;
  private readonly hash: Hash | null;

  constructor(verify: boolean) {
    this.hash = verify ? createHash('sha256') : null;
  }

  /** Takes one received piece. */
  add(chunk: Buffer): void {
    this.count += chunk.length;
    this.hash?.update(chunk);
  }

  /** The acknowledgement for what was received. */
  ack(): Buffer {
    return encodeAck(this.count, this.hash ? this.hash.digest() : null);
  }
}

/** Bytes of each application write. 64 KiB is what a socket read, and so a pipe(), hands on. */
export const CHUNK_BYTES = 64 * 1024;

/** Chunk offsets advance by a step coprime with the chunk size, so consecutive chunks differ. */
const POOL_BYTES = 4 * 1024 * 1024;
const POOL_STEP = 40_961;

/**
 * The bytes a sender writes: `total` bytes in CHUNK_BYTES views of one random pool, never copied.
 * With `verify`, also the SHA-256 of everything handed out, to compare with the receiver's.
 */
export class Payload {
  private static pool: Buffer | undefined;
  private readonly pool: Buffer;
  private readonly hash: Hash | null;
  private index = 0;
  /** Bytes not handed out yet. */
  remaining: number;

  constructor(total: number, seed: number, verify: boolean) {
    Payload.pool ??= randomBytes(POOL_BYTES);
    this.pool = Payload.pool;
    this.remaining = total;
    this.index = seed * 7919;
    this.hash = verify ? createHash('sha256') : null;
  }

  /** The next chunk, or null when everything was handed out. */
  next(): Buffer | null {
    if (this.remaining === 0) return null;
    const n = Math.min(CHUNK_BYTES, this.remaining);
    const offset = (this.index++ * POOL_STEP) % (POOL_BYTES - CHUNK_BYTES);
    this.remaining -= n;
    const chunk = this.pool.subarray(offset, offset + n);
    this.hash?.update(chunk);
    return chunk;
  }

  /** SHA-256 of everything handed out; null unless verifying. */
  digest(): Buffer | null {
    return this.hash ? this.hash.digest() : null;
  }
}
