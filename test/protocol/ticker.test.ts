// The shared keepalive timer (protocol/ticker.ts): many entries of one period on one Node timer,
// each ticking in its own phase as a setInterval of its own would.
import t from 'tap';
import { Ticker, type TickerEntry } from '../../protocol/ticker.js';

const PERIOD_MS = 20;

// The ticker's timer is unref'd (keepalives must not keep a process alive): hold the process
// open while the tests wait for ticks.
const hold = setInterval(() => {}, 60_000);
t.teardown(() => clearInterval(hold));

/** An entry that records when it ticked and runs `onTick` after each tick. */
function entry(onTick: (ticks: number[]) => void = () => {}): TickerEntry & { ticks: number[] } {
  const e = {
    tickerPrev: null,
    tickerNext: null,
    tickerDueAt: 0,
    ticks: [] as number[],
    tick(): void {
      e.ticks.push(performance.now());
      onTick(e.ticks);
    },
  };
  return e;
}

t.test('each entry ticks once per period, in its own phase', async (t) => {
  const ticker = new Ticker(PERIOD_MS);
  let done: () => void;
  const finished = new Promise<void>((resolve) => (done = resolve));
  let bAddedAt = 0;
  const b = entry((ticks) => {
    if (ticks.length === 3) {
      ticker.remove(a);
      ticker.remove(b);
      done();
    }
  });
  const aAddedAt = performance.now();
  const a = entry((ticks) => {
    // Added in the middle of a's first period: b's phase is not a's.
    if (ticks.length === 1) {
      bAddedAt = performance.now();
      ticker.add(b);
    }
  });
  ticker.add(a);
  await finished;
  t.ok(a.ticks[0]! - aAddedAt >= PERIOD_MS, 'a ticks one period after it was added');
  t.ok(b.ticks[0]! - bAddedAt >= PERIOD_MS, 'b ticks one period after it was added, not with a');
  for (const e of [a, b]) {
    for (let i = 1; i < e.ticks.length; i++) t.ok(e.ticks[i]! - e.ticks[i - 1]! >= PERIOD_MS, `ticks ${i - 1} and ${i} are a period apart`);
  }
  t.ok(a.ticks.length >= 3, 'a kept ticking while b was added');
  t.notOk(ticker.has(a) || ticker.has(b), 'both removed');
});

t.test('an entry removed during a tick, by itself or by another, ticks no more', async (t) => {
  const ticker = new Ticker(PERIOD_MS);
  let done: () => void;
  const finished = new Promise<void>((resolve) => (done = resolve));
  const self = entry(() => ticker.remove(self));
  const victim = entry();
  const killer = entry((ticks) => {
    if (ticks.length === 1) ticker.remove(victim);
    if (ticks.length === 3) {
      ticker.remove(killer);
      done();
    }
  });
  // killer is due first: it removes victim in the very run where victim is due too.
  ticker.add(killer);
  ticker.add(self);
  ticker.add(victim);
  await finished;
  t.equal(self.ticks.length, 1, 'the entry that removed itself ticked once');
  t.equal(victim.ticks.length, 0, 'the removed entry never ticked');
  t.equal(killer.ticks.length, 3);
  t.notOk(ticker.has(self) || ticker.has(victim) || ticker.has(killer));
});

t.test('removing an entry that is not in the list changes nothing', async (t) => {
  const ticker = new Ticker(PERIOD_MS);
  const stray = entry();
  let done: () => void;
  const finished = new Promise<void>((resolve) => (done = resolve));
  const a = entry((ticks) => {
    if (ticks.length === 2) {
      ticker.remove(a);
      done();
    }
  });
  ticker.add(a);
  ticker.remove(stray);
  await finished;
  t.equal(a.ticks.length, 2);
  t.equal(stray.ticks.length, 0);
});
