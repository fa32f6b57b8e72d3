/**
 * Keepalive: a PING every interval when none is outstanding; the peer is declared dead when a
 * PING has been outstanding and nothing at all has arrived for `keepaliveTimeoutMs`. With the
 * default timeout equal to the interval, a dead peer is found within two intervals. PONGs give
 * the RTT (smoothed like TCP's SRTT, gain 1/8).
 */
import { ConnectionError, type WarrenError } from './errors.js';
import type { SessionConfig } from './config.js';
import { Ticker, type TickerEntry } from './ticker.js';

/** What keepalive asks of its session. */
export interface KeepaliveOwner {
  queuePing(payload: Buffer): void;
  onKeepaliveRtt(ms: number): void;
  onKeepaliveDead(): void;
}

/** A ping() call waiting for its PONG. */
interface OutstandingPing {
  sentAt: number;
  resolve: (ms: number) => void;
  reject: (err: WarrenError) => void;
  timer: NodeJS.Timeout;
}

/** Most PINGs of our own waiting for a PONG at once (keepalive plus ping() calls). */
const MAX_OUTSTANDING_PINGS = 16;

/** One ticker per keepalive interval: every session of a process with that interval shares its timer. */
const tickers = new Map<number, Ticker>();

function tickerFor(periodMs: number): Ticker {
  let ticker = tickers.get(periodMs);
  if (!ticker) tickers.set(periodMs, (ticker = new Ticker(periodMs)));
  return ticker;
}

/** Sends PINGs, matches PONGs, and watches for silence. Owned by one Session. */
export class Keepalive implements TickerEntry {
  private readonly config: SessionConfig;
  private readonly owner: KeepaliveOwner;
  /** Set while started. */
  private ticker: Ticker | null = null;
  /** Id of the next PING; PING payloads are this number as a u64. */
  private nextId = 1;
  /** The keepalive PING waiting for its PONG (0: none), and when it left. */
  private keepalivePing = 0;
  private keepaliveSentAt = 0;
  /** ping() calls waiting for their PONG, by PING id; made on the first call. */
  private outstanding: Map<number, OutstandingPing> | null = null;
  private lastReceivedAt: number;
  /** Smoothed round-trip time in ms; undefined until the first PONG. */
  srttMs: number | undefined;
  // TickerEntry, owned by the ticker.
  tickerPrev: TickerEntry | null = null;
  tickerNext: TickerEntry | null = null;
  tickerDueAt = 0;

  constructor(config: SessionConfig, owner: KeepaliveOwner) {
    this.config = config;
    this.owner = owner;
    this.lastReceivedAt = config.now();
  }

  /** Starts the interval and sends a first PING at once, so the RTT is known early. */
  start(): void {
    if (this.config.keepaliveIntervalMs === 0 || this.ticker) return;
    this.ticker = tickerFor(this.config.keepaliveIntervalMs);
    this.ticker.add(this);
    this.sendKeepalive();
  }

  stop(): void {
    this.ticker?.remove(this);
    this.ticker = null;
  }

  /** Anything arrived from the peer. */
  received(): void {
    this.lastReceivedAt = this.config.now();
  }

  /** @internal TickerEntry: once per interval. */
  tick(): void {
    const now = this.config.now();
    if (this.keepalivePing !== 0) {
      if (now - this.lastReceivedAt >= this.config.keepaliveTimeoutMs) {
        this.stop();
        this.owner.onKeepaliveDead();
      }
      return;
    }
    this.sendKeepalive();
  }

  private get outstandingCount(): number {
    return (this.outstanding?.size ?? 0) + (this.keepalivePing !== 0 ? 1 : 0);
  }

  /** Sends a PING; its id, or 0 when too many are outstanding. */
  private send(): number {
    if (this.outstandingCount >= MAX_OUTSTANDING_PINGS) return 0;
    const id = this.nextId++;
    const payload = Buffer.allocUnsafe(8);
    payload.writeUInt32BE(Math.floor(id / 0x1_0000_0000), 0);
    payload.writeUInt32BE(id >>> 0, 4);
    this.owner.queuePing(payload);
    return id;
  }

  private sendKeepalive(): void {
    this.keepaliveSentAt = this.config.now();
    this.keepalivePing = this.send();
  }

  /** Sends a PING and resolves with its RTT in ms. */
  ping(timeoutMs: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const sentAt = this.config.now();
      const id = this.send();
      if (id === 0) {
        reject(new ConnectionError('ERR_WARREN_FLOOD', `more than ${MAX_OUTSTANDING_PINGS} pings outstanding`));
        return;
      }
      const timer = setTimeout(() => {
        this.outstanding?.delete(id);
        reject(new ConnectionError('ERR_WARREN_KEEPALIVE_TIMEOUT', `no PONG within ${timeoutMs} ms`));
      }, timeoutMs);
      timer.unref();
      (this.outstanding ??= new Map()).set(id, { sentAt, resolve, reject, timer });
    });
  }

  /** A PONG arrived; false when it answers no PING of ours. */
  pong(payload: Buffer): boolean {
    const id = payload.readUInt32BE(0) * 0x1_0000_0000 + payload.readUInt32BE(4);
    let sentAt: number;
    let p: OutstandingPing | undefined;
    if (id !== 0 && id === this.keepalivePing) {
      sentAt = this.keepaliveSentAt;
      this.keepalivePing = 0;
    } else {
      p = this.outstanding?.get(id);
      if (!p) return false;
      this.outstanding!.delete(id);
      sentAt = p.sentAt;
    }
    const rtt = this.config.now() - sentAt;
    this.srttMs = this.srttMs === undefined ? rtt : this.srttMs + (rtt - this.srttMs) / 8;
    this.owner.onKeepaliveRtt(rtt);
    if (p) {
      clearTimeout(p.timer);
      p.resolve(rtt);
    }
    return true;
  }

  /** Rejects every ping() still waiting (the session closed). */
  failPings(err: WarrenError): void {
    if (!this.outstanding) return;
    for (const p of this.outstanding.values()) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this.outstanding.clear();
  }
}
