/**
 * Flood budgets: what a peer may send that costs this side work but carries nothing. PINGs,
 * frames that carry nothing (empty DATA, frames for closed streams, unknown extension frames,
 * WINDOW frames no data earned) and streams opened then reset before an answer each spend a token
 * bucket from the session's config; an empty bucket ends the session with ERR_WARREN_FLOOD.
 */
import { ProtocolError } from './errors.js';
import type { Rate, SessionConfig } from './config.js';

/** Frames for a stream this side reset that the peer may send before it learns of the reset. */
const EXCUSED_FRAMES_PER_RESET = 16;
/** Most excused frames held at once. */
const MAX_EXCUSED_FRAMES = 65_536;

/** A token bucket on an injectable clock: take() is false once the rate is exceeded. */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly rate: Rate,
    private readonly now: () => number,
  ) {
    this.tokens = rate.burst;
    this.last = now();
  }

  /** Takes one token; false when none is left. */
  take(): boolean {
    const t = this.now();
    this.tokens = Math.min(this.rate.burst, this.tokens + ((t - this.last) / 1000) * this.rate.perSecond);
    this.last = t;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/**
 * The flood budgets of one session. Buckets are made when first spent: a bucket made then starts
 * full, exactly as one made with the session would be by that time (a full bucket stays full).
 */
export class FloodBudget {
  private pingBucket: TokenBucket | null = null;
  private idleBucket: TokenBucket | null = null;
  private resetBucket: TokenBucket | null = null;
  /** Frames for closed streams still excused: the peer sent them before it learned of our RST. */
  private excusedFrames = 0;

  constructor(private readonly config: Readonly<SessionConfig>) {}

  /** Spends one PING; throws ProtocolError ERR_WARREN_FLOOD past the pingRate. */
  spendPing(): void {
    if (!(this.pingBucket ??= new TokenBucket(this.config.pingRate, this.config.now)).take()) throw new ProtocolError('ERR_WARREN_FLOOD', 'PING flood');
  }

  /** Spends one frame that carries nothing (`what` names it in the error); throws ERR_WARREN_FLOOD past the idleFrameRate. */
  spendIdle(what: string): void {
    if (!(this.idleBucket ??= new TokenBucket(this.config.idleFrameRate, this.config.now)).take()) throw new ProtocolError('ERR_WARREN_FLOOD', `too many frames that carry nothing (${what})`);
  }

  /** Spends one refused or reset stream; false past the resetRate (the caller decides the error). */
  takeReset(): boolean {
    return (this.resetBucket ??= new TokenBucket(this.config.resetRate, this.config.now)).take();
  }

  /**
   * This side reset a stream the peer may still be sending on: the frames it has in flight,
   * sent before it learns of the reset, are excused from the idle budget (up to a few per reset).
   */
  excuseAfterReset(): void {
    this.excusedFrames = Math.min(this.excusedFrames + EXCUSED_FRAMES_PER_RESET, MAX_EXCUSED_FRAMES);
  }

  /** A late frame for a closed stream: free while excused frames remain, else an idle frame. */
  spendLate(what: string): void {
    if (this.excusedFrames > 0) this.excusedFrames--;
    else this.spendIdle(what);
  }
}
