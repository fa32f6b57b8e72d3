/**
 * Reconnect backoff: full-jitter exponential (a random delay between 0 and min(cap, base·2^n)),
 * so that thousands of agents losing the same relay do not come back in lockstep. The clock and
 * the random source are injectable for tests.
 */

/** Timers the agent uses; tests pass a fake one. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** The real clock. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/** Backoff settings. */
export interface BackoffOptions {
  /** First ceiling; default 500 ms. */
  baseMs?: number;
  /** Largest ceiling; default 30 s. */
  maxMs?: number;
  /** Random source in [0, 1); default Math.random. */
  random?: () => number;
}

/** Full-jitter exponential backoff. */
export class Backoff {
  private attempt = 0;
  private readonly baseMs: number;
  private readonly maxMs: number;
  private readonly random: () => number;

  constructor(options: BackoffOptions = {}) {
    this.baseMs = options.baseMs ?? 500;
    this.maxMs = options.maxMs ?? 30_000;
    this.random = options.random ?? Math.random;
  }

  /** The delay before the next attempt, in ms; each call widens the range until the cap. */
  next(): number {
    const ceiling = Math.min(this.maxMs, this.baseMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    return Math.floor(this.random() * ceiling);
  }

  /** Attempts made since the last reset. */
  get attempts(): number {
    return this.attempt;
  }

  /** Starts over after a connection that held. */
  reset(): void {
    this.attempt = 0;
  }
}
