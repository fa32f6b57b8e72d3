/**
 * Listeners shared by many emitters. An arrow function made per emitter (per session, per stream)
 * keeps a closure and its context for the emitter's life, which an idle relay pays thousands of
 * times; one listener made with emitterListener() serves every emitter, which it receives as
 * `this` (EventEmitter calls listeners with the emitter as `this`).
 */

/** A listener that hands the emitter it was called on (its `this`) to `handler`, with the event's arguments. */
export function emitterListener<T, A extends unknown[]>(handler: (emitter: T, ...args: A) => void): (this: T, ...args: A) => void {
  return function (this: T, ...args: A): void {
    handler(this, ...args);
  };
}
