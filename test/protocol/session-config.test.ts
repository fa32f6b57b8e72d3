// Session configuration (protocol/config.ts): verified once, frozen, and shared by sessions
// with equal options (an idle relay holds thousands of sessions).
import t from 'tap';
import { DEFAULT_SESSION_CONFIG, InvalidArgumentError, verifySessionConfig } from '../../protocol/index.js';

t.test('equal options give the same frozen configuration', async (t) => {
  const a = verifySessionConfig({ maxStreams: 777, pingRate: { perSecond: 5, burst: 10 } });
  const b = verifySessionConfig({ maxStreams: 777, pingRate: { perSecond: 5, burst: 10 } });
  t.equal(a, b, 'one object for equal options, rate objects compared by value');
  t.ok(Object.isFrozen(a));
  t.equal(a.maxStreams, 777);
  t.equal(a.maxFrameBytes, DEFAULT_SESSION_CONFIG.maxFrameBytes);
});

t.test('different options give different configurations', async (t) => {
  const a = verifySessionConfig({ maxStreams: 777 });
  const b = verifySessionConfig({ maxStreams: 778 });
  const c = verifySessionConfig({ maxStreams: 777, pingRate: { perSecond: 5, burst: 11 } });
  t.not(a, b);
  t.equal(b.maxStreams, 778);
  t.not(a, c);
  t.same(c.pingRate, { perSecond: 5, burst: 11 });
  t.equal(verifySessionConfig({}), verifySessionConfig(), 'no options: the defaults');
  t.same(verifySessionConfig(), DEFAULT_SESSION_CONFIG);
});

t.test('an impossible value is refused with the option name', async (t) => {
  t.throws(() => verifySessionConfig({ maxStreams: 0 }), InvalidArgumentError);
  t.throws(() => verifySessionConfig({ maxStreams: 0 }), /maxStreams/);
});
