/**
 * The queue of this relay's writes to a KV bucket: the last wanted operation per key (put a value
 * or delete), at most one in flight per key so that a key's writes land in the order they were
 * asked for, at most MAX_WRITES_IN_FLIGHT at once, held while the store is unreachable, and
 * retried after a failure unless a newer operation for the key replaced it. A register quickly
 * followed by an unregister sends only the delete when the put had not left yet.
 */

/** One wanted operation. */
export type KvWrite = { kind: 'put'; value: string } | { kind: 'delete' };

/** What the queue needs of a bucket. */
export interface KvWriter {
  put(key: string, value: string): Promise<unknown>;
  delete(key: string): Promise<unknown>;
}

/** Told of each completed or failed write. */
export interface KvWriteEvents {
  onDone(write: KvWrite): void;
  onError(key: string, write: KvWrite, err: unknown): void;
}

/** The queue; see the module comment. */
export class KvWriteQueue {
  /** Operations not yet sent, by key; Map order is arrival order. */
  private readonly pending = new Map<string, KvWrite>();
  /** Keys with an operation in flight. */
  private readonly inflight = new Set<string>();
  /** Operations that failed, waiting for retryFailed(). */
  private readonly failed = new Map<string, KvWrite>();
  /** Set while the store is reachable; cleared to hold every write. */
  private writer: KvWriter | undefined;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly maxInFlight: number,
    private readonly events: KvWriteEvents,
  ) {}

  /** Wants `write` for `key`, replacing any operation for it not yet sent. */
  set(key: string, write: KvWrite): void {
    this.failed.delete(key);
    this.pending.delete(key);
    this.pending.set(key, write);
    this.pump();
  }

  /** Drops every operation not yet sent for which `keep` is false. */
  filter(keep: (key: string, write: KvWrite) => boolean): void {
    for (const [k, w] of this.pending) if (!keep(k, w)) this.pending.delete(k);
    for (const [k, w] of this.failed) if (!keep(k, w)) this.failed.delete(k);
  }

  /** Starts sending with `writer` (the store is reachable), or holds everything (undefined). */
  setWriter(writer: KvWriter | undefined): void {
    this.writer = writer;
    this.pump();
  }

  /** Queues the failed operations again. */
  retryFailed(): void {
    for (const [k, w] of this.failed) if (!this.pending.has(k)) this.pending.set(k, w);
    this.failed.clear();
    this.pump();
  }

  /** Operations not yet done (pending, in flight or failed). */
  get size(): number {
    return this.pending.size + this.inflight.size + this.failed.size;
  }

  /** Resolves once nothing is pending or in flight (failed operations do not count), or after `timeoutMs`. */
  async idle(timeoutMs: number): Promise<void> {
    if (this.pending.size === 0 && this.inflight.size === 0) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      const waiters = this.idleWaiters;
      function done(): void {
        clearTimeout(timer);
        const i = waiters.indexOf(done);
        if (i >= 0) waiters.splice(i, 1);
        resolve();
      }
      waiters.push(done);
    });
  }

  private pump(): void {
    const writer = this.writer;
    if (writer) {
      for (const [key, write] of this.pending) {
        if (this.inflight.size >= this.maxInFlight) break;
        if (this.inflight.has(key)) continue;
        this.pending.delete(key);
        this.send(writer, key, write);
      }
    }
    if (this.pending.size === 0 && this.inflight.size === 0) for (const w of [...this.idleWaiters]) w();
  }

  private send(writer: KvWriter, key: string, write: KvWrite): void {
    this.inflight.add(key);
    const op = write.kind === 'put' ? writer.put(key, write.value) : writer.delete(key);
    op.then(
      () => this.events.onDone(write),
      (err: unknown) => {
        this.events.onError(key, write, err);
        if (!this.pending.has(key)) this.failed.set(key, write);
      },
    ).finally(() => {
      this.inflight.delete(key);
      this.pump();
    });
  }
}
