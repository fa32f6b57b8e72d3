/**
 * Many repeating timers of one period on one Node timer. An idle relay has a keepalive per
 * session, and a setInterval each would cost a Timeout, a closure and its context (about 220
 * bytes of heap per session); here an entry costs three fields.
 *
 * Each entry keeps its own phase, as with setInterval: it is due one period after it was added,
 * then one period after each of its ticks. Entries join at the tail due one period from now, so
 * the list stays in due order and one timer set for the head serves them all.
 */

/** An entry of a Ticker. The three `ticker*` fields are owned by the Ticker. */
export interface TickerEntry {
  tickerPrev: TickerEntry | null;
  tickerNext: TickerEntry | null;
  /** When the entry is next due (performance.now() milliseconds); meaningless while not in a list. */
  tickerDueAt: number;
  /** Runs once per period; it may remove its entry (or any other). */
  tick(): void;
}

/** Entries with one period, ticked in due order by one unref'd timer. */
export class Ticker {
  readonly periodMs: number;

  // Owned by the ticker: a doubly linked list in due order, and the timer set for its head.
  private head: TickerEntry | null = null;
  private tail: TickerEntry | null = null;
  private timer: NodeJS.Timeout | null = null;
  private timerDueAt = 0;

  constructor(periodMs: number) {
    this.periodMs = periodMs;
  }

  /** True when `entry` is in this ticker's list. */
  has(entry: TickerEntry): boolean {
    return entry.tickerPrev !== null || this.head === entry;
  }

  /** Adds `entry`, first due one period from now. It must not be in a list. */
  add(entry: TickerEntry): void {
    this.append(entry, performance.now() + this.periodMs);
    this.arm();
  }

  /** Removes `entry`; a no-op when it is not in the list. */
  remove(entry: TickerEntry): void {
    if (!this.has(entry)) return;
    this.unlink(entry);
    if (this.head === null && this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }

  private append(entry: TickerEntry, dueAt: number): void {
    entry.tickerDueAt = dueAt;
    entry.tickerPrev = this.tail;
    entry.tickerNext = null;
    if (this.tail) this.tail.tickerNext = entry;
    else this.head = entry;
    this.tail = entry;
  }

  private unlink(entry: TickerEntry): void {
    if (entry.tickerPrev) entry.tickerPrev.tickerNext = entry.tickerNext;
    else this.head = entry.tickerNext;
    if (entry.tickerNext) entry.tickerNext.tickerPrev = entry.tickerPrev;
    else this.tail = entry.tickerPrev;
    entry.tickerPrev = null;
    entry.tickerNext = null;
  }

  /** Sets the timer for the head, unless one is already set for that time or earlier. */
  private arm(): void {
    const head = this.head;
    if (!head || (this.timer && this.timerDueAt <= head.tickerDueAt)) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerDueAt = head.tickerDueAt;
    this.timer = setTimeout(() => this.run(), Math.max(0, head.tickerDueAt - performance.now()));
    this.timer.unref();
  }

  private run(): void {
    this.timer = null;
    const now = performance.now();
    // Entries ticked in this run go back to the tail due a period later than now: the loop
    // stops at the first of them, so each entry ticks at most once per run.
    for (let entry = this.head; entry && entry.tickerDueAt <= now; entry = this.head) {
      this.unlink(entry);
      this.append(entry, now + this.periodMs);
      entry.tick();
    }
    this.arm();
  }
}
