/**
 * Keepalive: a PING every interval when none is outstanding; the peer is declared dead when a
 * PING has been outstanding and nothing at all has arrived for `keepaliveTimeoutMs`. With the
 * default timeout equal to the interval, a dead peer is found within two intervals. PONGs give
 * the RTT (smoothed like TCP's SRTT, gain 1/8).
 */
import { ConnectionError, type WarrenError } from './errors.js';
import type { SessionConfig } from './config.js';

/** What keepalive asks of its session. */
export interface KeepaliveHooks {
  sendPing(payload: Buffer): void;
  onRtt(ms: number): void;
  onDead(): void;
}

interface OutstandingPing {
  sentAt: number;
  resolve?: (ms: number) => void;
  reject?: (err: WarrenError) => void;
  timer?: NodeJS.Timeout;
}

/** Most PINGs of our own waiting for a PONG at once (keepalive plus ping() calls). */
const MAX_OUTSTANDING_PINGS = 16;

/** Sends PINGs, matches PONGs, and watches for silence. Owned by one Session. */
export class Keepalive {
  private readonly config: SessionConfig;
  private readonly hooks: KeepaliveHooks;
  private timer: NodeJS.Timeout | null = null;
  private readonly outstanding = new Map<bigint, OutstandingPing>();
  private nextId = 1n;
  private keepalivePing: bigint | null = null;
  private lastReceivedAt: number;
  /** Smoothed round-trip time in ms; undefined until the first PONG. */
  srttMs: number | undefined;

  constructor(config: SessionConfig, hooks: KeepaliveHooks) {
    this.config = config;
    this.hooks = hooks;
    this.lastReceivedAt = config.now();
  }

  /** Starts the interval and sends a first PING at once, so the RTT is known early. */
  start(): void {
    if (this.config.keepaliveIntervalMs === 0 || this.timer) return;
    this.timer = setInterval(() => this.tick(), this.config.keepaliveIntervalMs);
    this.timer.unref();
    this.keepalivePing = this.send();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Anything arrived from the peer. */
  received(): void {
    this.lastReceivedAt = this.config.now();
  }

  private tick(): void {
    const now = this.config.now();
    if (this.keepalivePing !== null) {
      if (now - this.lastReceivedAt >= this.config.keepaliveTimeoutMs) {
        this.stop();
        this.hooks.onDead();
      }
      return;
    }
    this.keepalivePing = this.send();
  }

  private send(extra?: Omit<OutstandingPing, 'sentAt'>): bigint | null {
    if (this.outstanding.size >= MAX_OUTSTANDING_PINGS) return null;
    const id = this.nextId++;
    const payload = Buffer.allocUnsafe(8);
    payload.writeBigUInt64BE(id);
    this.outstanding.set(id, { sentAt: this.config.now(), ...extra });
    this.hooks.sendPing(payload);
    return id;
  }

  /** Sends a PING and resolves with its RTT in ms. */
  ping(timeoutMs: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        for (const [id, p] of this.outstanding) if (p.timer === timer) this.outstanding.delete(id);
        reject(new ConnectionError('ERR_WARREN_KEEPALIVE_TIMEOUT', `no PONG within ${timeoutMs} ms`));
      }, timeoutMs);
      timer.unref();
      if (this.send({ resolve, reject, timer }) === null) {
        clearTimeout(timer);
        reject(new ConnectionError('ERR_WARREN_FLOOD', `more than ${MAX_OUTSTANDING_PINGS} pings outstanding`));
      }
    });
  }

  /** A PONG arrived; false when it answers no PING of ours. */
  pong(payload: Buffer): boolean {
    const id = payload.readBigUInt64BE(0);
    const p = this.outstanding.get(id);
    if (!p) return false;
    this.outstanding.delete(id);
    if (id === this.keepalivePing) this.keepalivePing = null;
    const rtt = this.config.now() - p.sentAt;
    this.srttMs = this.srttMs === undefined ? rtt : this.srttMs + (rtt - this.srttMs) / 8;
    this.hooks.onRtt(rtt);
    if (p.timer) clearTimeout(p.timer);
    p.resolve?.(rtt);
    return true;
  }

  /** Rejects every ping() still waiting (the session closed). */
  failPings(err: WarrenError): void {
    for (const p of this.outstanding.values()) {
      if (p.timer) clearTimeout(p.timer);
      p.reject?.(err);
    }
    this.outstanding.clear();
  }
}
