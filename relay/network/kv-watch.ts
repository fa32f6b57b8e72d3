/**
 * One watch of a KV bucket, including its initial values: every entry goes to `onEntry`, and
 * `initial` resolves once the values that existed when the watch began have all been delivered.
 */
import type { KV, KvWatchEntry } from '@nats-io/kv';

/** A running watch. */
export interface BucketWatch {
  /** Resolves once the initial values were delivered; rejects if the watch ends first or after `timeoutMs`. */
  initial: Promise<void>;
  /** Ends the watch. */
  stop(): void;
}

/**
 * Starts watching every key of `kv` (bucket `name`). `onEntry` gets each entry with `initial` true while the
 * initial values are still arriving.
 */
export async function watchBucket(kv: KV, name: string, onEntry: (e: KvWatchEntry, initial: boolean) => void, timeoutMs: number): Promise<BucketWatch> {
  const iter = await kv.watch();
  let loaded = false;
  let resolveInitial!: () => void;
  let rejectInitial!: (err: Error) => void;
  const initial = new Promise<void>((resolve, reject) => {
    resolveInitial = resolve;
    rejectInitial = reject;
  });
  initial.catch(() => {});
  const timer = setTimeout(() => rejectInitial(new Error(`the initial values of ${name} did not arrive within ${timeoutMs} ms`)), timeoutMs);
  const markLoaded = (): void => {
    if (loaded) return;
    loaded = true;
    clearTimeout(timer);
    resolveInitial();
  };
  // The watch counted the values waiting when it began (num_pending of its consumer); an empty
  // bucket delivers nothing, so the count is the only way to know the load is complete. The
  // entries themselves say it with `isUpdate`, which turns true on the last initial value.
  const consumer = (iter as unknown as { _data?: { info(cached: boolean): Promise<{ num_pending: number }> } })._data;
  if (consumer) {
    const info = await consumer.info(true);
    if (info.num_pending === 0) markLoaded();
  }
  void (async () => {
    try {
      for await (const e of iter) {
        onEntry(e, !loaded);
        if (e.isUpdate) markLoaded();
      }
    } finally {
      clearTimeout(timer);
      if (!loaded) rejectInitial(new Error('the watch ended before its initial values arrived'));
    }
  })().catch(() => {});
  return {
    initial,
    stop() {
      clearTimeout(timer);
      iter.stop();
    },
  };
}
