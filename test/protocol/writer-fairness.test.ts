// Fairness of the send scheduler (protocol/writer.ts): streams that always have data to send
// share the session in turn, however fast their writers refill them.
import t from 'tap';
import type { MuxStream } from '../../protocol/index.js';
import { memorySessionPair } from '../helpers/mux.js';

t.test('two busy streams share the session evenly, even when a completed write refills a stream at once', async (t) => {
  const pair = await memorySessionPair();
  t.teardown(() => pair.close());
  const received = new Map<number, number>();
  pair.acceptor.on('stream', (s: MuxStream) => {
    s.accept();
    s.on('error', () => {});
    s.on('data', (c: Buffer) => received.set(s.id, (received.get(s.id) ?? 0) + c.length));
  });
  const chunk = Buffer.alloc(64 * 1024);
  const streams = [pair.dialer.open(1), pair.dialer.open(1)];
  for (const s of streams) {
    s.on('error', () => {});
    // A writer that refills on every 'drain': the stream has more the moment its frame is taken.
    const fill = (): void => {
      while (s.write(chunk));
    };
    s.on('drain', fill);
    fill();
  }
  const total = (): number => [...received.values()].reduce((a, b) => a + b, 0);
  while (total() < 64 * 1024 * 1024) await new Promise((r) => setImmediate(r));
  const [a, b] = streams.map((s) => received.get(s.id) ?? 0) as [number, number];
  t.ok(Math.min(a, b) > total() / 3, `each stream got a fair share: ${a} and ${b} bytes`);
  for (const s of streams) s.destroy();
});
