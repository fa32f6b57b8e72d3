/**
 * Session options: defaults, and verify() that rejects impossible values with the option's name.
 * Limits are this side's receive limits; the size-related ones are announced to the peer in
 * HELLO and the peer must stay within them.
 */
import { InvalidArgumentError } from './errors.js';
import { MAX_FRAME_BYTES_LIMIT, MAX_WINDOW_BYTES_LIMIT } from './frame.js';

/** A token-bucket rate: `perSecond` refill and a `burst` capacity. */
export interface Rate {
  perSecond: number;
  burst: number;
}

/** Everything a session can be told; all optional in `SessionOptions`. */
export interface SessionConfig {
  /** Largest DATA payload this side accepts (announced). Default 256 KiB; 16 KiB..16 MiB. */
  maxFrameBytes: number;
  /** Credit each new stream starts with, per direction (announced). Default 256 KiB. */
  initialWindowBytes: number;
  /** Ceiling for a stream's receive window as it grows toward the bandwidth-delay product. Default 16 MiB. */
  maxWindowBytes: number;
  /** Concurrent streams, both directions together. Default 1024. */
  maxStreams: number;
  /** Incoming streams not yet accepted by the application (a burst of OPENs all arrive before any local dial completes). Default 512. */
  maxPendingOpens: number;
  /** Largest OPEN metadata accepted (announced). Default 4 KiB. */
  maxMetadataBytes: number;
  /** Received bytes not yet read by the application, all streams together; above it new streams are refused and windows stop growing. Default 64 MiB. */
  maxBufferedBytes: number;
  /** Bytes handed to the transport and not yet written out before senders wait. Default 1 MiB. */
  sendBufferBytes: number;
  /** Interval between keepalive PINGs; 0 disables keepalive. Default 15 s. */
  keepaliveIntervalMs: number;
  /** How long a PING may go unanswered (with nothing else received) before the peer is dead. Default 15 s. */
  keepaliveTimeoutMs: number;
  /** Time allowed for the HELLO exchange. Default 10 s. */
  handshakeTimeoutMs: number;
  /** PINGs accepted from the peer. Default 20/s, burst 100. */
  pingRate: Rate;
  /** Frames that carry nothing (empty DATA, frames for closed streams). Default 500/s, burst 2000. */
  idleFrameRate: Rate;
  /** Streams the peer opens and resets (or we refuse) before any answer. Default 200/s, burst 1000. */
  resetRate: Rate;
  /** Clock in milliseconds; injectable for tests. Default performance.now. */
  now: () => number;
}

/** Options for a session: any subset of SessionConfig. */
export type SessionOptions = Partial<SessionConfig>;

/** Default session configuration. */
export const DEFAULT_SESSION_CONFIG: Readonly<SessionConfig> = Object.freeze({
  maxFrameBytes: 256 * 1024,
  initialWindowBytes: 256 * 1024,
  maxWindowBytes: 16 * 1024 * 1024,
  maxStreams: 1024,
  maxPendingOpens: 512,
  maxMetadataBytes: 4 * 1024,
  maxBufferedBytes: 64 * 1024 * 1024,
  sendBufferBytes: 1024 * 1024,
  keepaliveIntervalMs: 15_000,
  keepaliveTimeoutMs: 15_000,
  handshakeTimeoutMs: 10_000,
  pingRate: { perSecond: 20, burst: 100 },
  idleFrameRate: { perSecond: 500, burst: 2000 },
  resetRate: { perSecond: 200, burst: 1000 },
  now: () => performance.now(),
});

function integerIn(name: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}; got ${String(value)}`);
  }
}

function rate(name: string, value: Rate): void {
  if (!(value.perSecond > 0) || !(value.burst >= 1)) throw new InvalidArgumentError(`${name} needs perSecond > 0 and burst >= 1`);
}

function sameRate(a: Rate, b: Rate): boolean {
  return a.perSecond === b.perSecond && a.burst === b.burst;
}

function sameConfig(a: SessionConfig, b: SessionConfig): boolean {
  const keys = Object.keys(a) as (keyof SessionConfig)[];
  if (keys.length !== Object.keys(b).length) return false;
  for (const key of keys) {
    const x = a[key];
    const y = b[key];
    if (x === y) continue;
    if (typeof x !== 'object' || typeof y !== 'object' || !sameRate(x, y)) return false;
  }
  return true;
}

/** The configuration verified last, returned again for equal options. */
let lastVerified: Readonly<SessionConfig> = DEFAULT_SESSION_CONFIG;

/**
 * Spreads options over the defaults and checks every value; throws InvalidArgumentError naming the
 * option. The result is frozen, and equal options give the same object: the sessions of a process
 * nearly always share one configuration, and an idle relay holds thousands of sessions.
 */
export function verifySessionConfig(options: SessionOptions = {}): Readonly<SessionConfig> {
  const c: SessionConfig = { ...DEFAULT_SESSION_CONFIG, ...options };
  integerIn('maxFrameBytes', c.maxFrameBytes, 16 * 1024, MAX_FRAME_BYTES_LIMIT);
  integerIn('initialWindowBytes', c.initialWindowBytes, 64 * 1024, MAX_WINDOW_BYTES_LIMIT);
  integerIn('maxWindowBytes', c.maxWindowBytes, c.initialWindowBytes, MAX_WINDOW_BYTES_LIMIT);
  integerIn('maxStreams', c.maxStreams, 1, 1 << 20);
  integerIn('maxPendingOpens', c.maxPendingOpens, 1, c.maxStreams);
  integerIn('maxMetadataBytes', c.maxMetadataBytes, 0, 0xffff);
  integerIn('maxBufferedBytes', c.maxBufferedBytes, c.initialWindowBytes, Number.MAX_SAFE_INTEGER);
  integerIn('sendBufferBytes', c.sendBufferBytes, 16 * 1024, 1 << 30);
  integerIn('keepaliveIntervalMs', c.keepaliveIntervalMs, 0, 24 * 3_600_000);
  integerIn('keepaliveTimeoutMs', c.keepaliveTimeoutMs, 1, 24 * 3_600_000);
  integerIn('handshakeTimeoutMs', c.handshakeTimeoutMs, 1, 3_600_000);
  rate('pingRate', c.pingRate);
  rate('idleFrameRate', c.idleFrameRate);
  rate('resetRate', c.resetRate);
  if (typeof c.now !== 'function') throw new InvalidArgumentError('now must be a function returning milliseconds');
  if (sameConfig(c, lastVerified)) return lastVerified;
  lastVerified = Object.freeze(c);
  return lastVerified;
}
