// The NATS directory against real nats-server processes (test/helpers/nats.ts): propagation,
// clean close, crashed and restarted relays, NATS outages and lost stores, a cluster losing a
// node, bad credentials and churn. Short TTLs keep it fast; every wait is on an event or a
// condition with a bounded timeout.
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { connect } from '@nats-io/transport-node';
import { Kvm } from '@nats-io/kv';
import { NatsDirectory, TUNNELS_BUCKET, type NatsDirectoryOptions } from '../../../relay/network/nats-directory.js';
import type { Directory, RelayRecord, TunnelRecord } from '../../../relay/network/directory.js';
import { WarrenError } from '../../../protocol/errors.js';
import { startNatsCluster, startNatsServer, type NatsServer } from '../../helpers/nats.js';
import { freePort } from '../../helpers/peers.js';
import { startProcess } from '../../helpers/process.js';

const FAST = { heartbeatMs: 200, relayTtlMs: 1_000, tunnelTtlMs: 3_000, reconnectWaitMs: 100 } as const;
const childScript = fileURLToPath(new URL('../../fixtures/directory-child.js', import.meta.url));

function relay(id: string): RelayRecord {
  return { id, region: 'test', advertise: `wss://${id}.test:443`, mesh: `${id}.test:7000`, epoch: randomUUID() };
}

function tunnel(tunnelId: string, self: RelayRecord, sessionEpoch = randomUUID(), since = Date.now()): TunnelRecord {
  return { tunnelId, relayId: self.id, relayEpoch: self.epoch, sessionEpoch, ports: [{ port: 3000, private: false }], since };
}

/** Resolves once `cond()` holds, checking every 20 ms; fails the wait after `timeoutMs`. */
async function until(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Resolves with the first `event` whose value passes `pred`; rejects after `timeoutMs`. */
function nextEvent<T>(dir: Directory, event: string, pred: (v: T) => boolean = () => true, timeoutMs = 10_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no '${event}' event within ${timeoutMs} ms`)), timeoutMs);
    const on = (v: T): void => {
      if (!pred(v)) return;
      clearTimeout(timer);
      (dir as NatsDirectory).off(event, on);
      resolve(v);
    };
    dir.on(event, on);
  });
}

/** A started directory, closed at teardown. */
async function open(tt: Test, servers: string[], self: RelayRecord, options: Partial<NatsDirectoryOptions> = {}): Promise<NatsDirectory> {
  const dir = new NatsDirectory({ servers, ...FAST, ...options });
  tt.teardown(() => dir.close());
  await dir.start(self);
  return dir;
}

async function server(tt: Test, options: Parameters<typeof startNatsServer>[0] = {}): Promise<NatsServer> {
  const s = await startNatsServer(options);
  tt.teardown(() => s.destroy());
  return s;
}

t.test('a registration propagates, an unregister removes it, and a clean close hides the relay at once', async (t) => {
  const s = await server(t);
  const [a, b] = [relay('r1'), relay('r2')];
  const r1 = await open(t, [s.url], a);
  const r2 = await open(t, [s.url], b);
  t.equal(r1.state, 'connected');
  await until(() => r2.relays().some((r) => r.id === 'r1'), 'r2 sees r1 alive');
  const rec = tunnel('tun-a', a);
  const seen = nextEvent<TunnelRecord>(r2, 'tunnel', (v) => v.tunnelId === 'tun-a');
  r1.register(rec);
  await seen;
  t.same(r2.holders('tun-a'), [rec], 'r2 finds the tunnel at r1');
  t.same(r1.holders('tun-a'), [], 'a relay does not list itself');
  const gone = nextEvent<{ gone?: boolean }>(r2, 'tunnel', (v) => v.gone === true);
  r1.unregister('tun-a', 'another-session');
  r1.unregister('tun-a', rec.sessionEpoch);
  await gone;
  t.same(r2.holders('tun-a'), []);
  r1.register(tunnel('tun-b', a));
  await until(() => r2.holders('tun-b').length === 1, 'r2 sees tun-b');
  const down = nextEvent<string>(r2, 'relay-down', (id) => id === 'r1', 2_000);
  await r1.close();
  t.equal(await down, 'r1', 'relay-down at once after a clean close (well within the relay TTL)');
  await until(() => r2.holders('tun-b').length === 0, 'tun-b record deleted', 2_000);
  t.equal(r2.stats().tunnels, 0);
});

t.test('a relay that dies without close drops out within the relay TTL; markDown hides it at once', async (t) => {
  const s = await server(t);
  const [a, b, c] = [relay('r1'), relay('r2'), relay('r3')];
  const r2 = await open(t, [s.url], b);
  const r3 = await open(t, [s.url], c);
  r3.register(tunnel('tun-c', c));
  await until(() => r2.holders('tun-c').length === 1, 'r2 sees tun-c');
  const child = startProcess(process.execPath, [childScript, JSON.stringify({ servers: [s.url], self: a, tunnels: [tunnel('tun-k', a)], options: FAST })]);
  t.teardown(() => child.stop('SIGKILL'));
  await child.waitFor(/directory ready/);
  await until(() => r2.holders('tun-k').length === 1, 'r2 sees the child relay tunnel');
  await child.stop('SIGKILL');
  const killedAt = Date.now();
  await nextEvent<string>(r2, 'relay-down', (id) => id === 'r1', FAST.relayTtlMs + 1_500);
  const after = Date.now() - killedAt;
  t.ok(after <= FAST.relayTtlMs + 500, `relay-down ${after} ms after the kill`);
  t.same(r2.holders('tun-k'), [], 'no holders once the relay is down');
  t.equal(r2.stats().relays, 1, 'only r3 is alive');

  r2.markDown('r3');
  t.same(r2.holders('tun-c'), [], 'markDown hides the records at once');
  t.notOk(r2.relays().some((r) => r.id === 'r3'));
  await nextEvent<RelayRecord>(r2, 'relay-up', (r) => r.id === 'r3', 2_000);
  t.equal(r2.holders('tun-c').length, 1, 'a newer heartbeat brings r3 back');
});

t.test('a restarted relay (same id, new epoch): its old records are ignored at once and deleted', async (t) => {
  const s = await server(t);
  const a1 = relay('r1');
  const r2 = await open(t, [s.url], relay('r2'));
  const child = startProcess(process.execPath, [childScript, JSON.stringify({ servers: [s.url], self: a1, tunnels: [tunnel('old-1', a1), tunnel('old-2', a1)], options: FAST })]);
  t.teardown(() => child.stop('SIGKILL'));
  await child.waitFor(/directory ready/);
  await until(() => r2.holders('old-1').length === 1 && r2.holders('old-2').length === 1, 'r2 sees the old records');
  await child.stop('SIGKILL');
  const a2 = { ...relay('r1') };
  const up = nextEvent<RelayRecord>(r2, 'relay-up', (r) => r.id === 'r1' && r.epoch === a2.epoch, 5_000);
  const r1 = await open(t, [s.url], a2);
  // The new epoch's heartbeat came first: from then on r2 ignores the old epoch's records.
  await until(() => r2.relays().some((r) => r.epoch === a2.epoch), 'r2 knows the new epoch');
  t.same(r2.holders('old-1'), [], 'old records ignored at once');
  t.equal((await up).epoch, a2.epoch, 'relay-up for the new life');
  await until(() => r2.stats().tunnels === 0, 'the old records are deleted from the store', 5_000);
  const nc = await connect({ servers: [s.url] });
  t.teardown(() => nc.close());
  const kv = await new Kvm(nc).open(TUNNELS_BUCKET);
  t.not((await kv.get('old-1.r1'))?.operation ?? 'gone', 'PUT', 'deleted in the store');
  r1.register(tunnel('new-1', a2));
  await until(() => r2.holders('new-1').length === 1, 'the new life registers');
});

t.test('NATS stopped: the last known view stays; restarted (same store, then an empty one): records put again', async (t) => {
  const s = await server(t);
  const [a, b] = [relay('r1'), relay('r2')];
  const r1 = await open(t, [s.url], a);
  const r2 = await open(t, [s.url], b);
  r1.register(tunnel('kept', a));
  await until(() => r2.holders('kept').length === 1, 'r2 sees kept');
  const d1 = nextEvent(r1, 'state', (v) => v === 'disconnected');
  const d2 = nextEvent(r2, 'state', (v) => v === 'disconnected');
  const stoppedAt = Date.now();
  await s.stop();
  await Promise.all([d1, d2]);
  r1.register(tunnel('while-down', a));
  // Past the relay TTL with no heartbeat: the frozen view still answers.
  await new Promise((r) => setTimeout(r, Math.max(0, stoppedAt + FAST.relayTtlMs * 1.5 - Date.now())));
  t.equal(r2.holders('kept').length, 1, 'holders() still returns the last known view');
  t.equal(r2.state, 'disconnected');

  let c1 = nextEvent(r1, 'state', (v) => v === 'connected');
  let c2 = nextEvent(r2, 'state', (v) => v === 'connected');
  await s.start();
  await Promise.all([c1, c2]);
  await until(() => r2.holders('while-down').length === 1 && r2.holders('kept').length === 1, 'r2 sees both after the restart');

  const e1 = nextEvent(r1, 'state', (v) => v === 'disconnected');
  await s.stop();
  await e1;
  s.wipe();
  c1 = nextEvent(r1, 'state', (v) => v === 'connected');
  c2 = nextEvent(r2, 'state', (v) => v === 'connected');
  await s.start();
  await Promise.all([c1, c2]);
  await until(() => r2.holders('while-down').length === 1 && r2.holders('kept').length === 1, 'r2 sees them again after the store was lost');
  const nc = await connect({ servers: [s.url] });
  t.teardown(() => nc.close());
  const kv = await new Kvm(nc).open(TUNNELS_BUCKET);
  t.equal((await kv.get('kept.r1'))?.operation, 'PUT', 'the bucket was re-created and the record put again');
});

t.test('NATS unreachable at start: start() resolves disconnected and connects later', async (t) => {
  const port = await freePort();
  const dir = new NatsDirectory({ servers: [`nats://127.0.0.1:${port}`], ...FAST });
  t.teardown(() => dir.close());
  await dir.start(relay('r1'));
  t.equal(dir.state, 'disconnected');
  const connected = nextEvent(dir, 'state', (v) => v === 'connected');
  await server(t, { port });
  await connected;
});

t.test('a three-node cluster with replicas 3 loses a node: registrations still propagate, nothing visible changes', async (t) => {
  const t0 = Date.now();
  const cluster = await startNatsCluster();
  t.teardown(() => cluster.destroy());
  t.comment(`cluster ready in ${Date.now() - t0} ms`);
  // Relay r1 is on a node that is not the JetStream meta leader; that node is killed. (Losing the
  // meta leader on 2.9 stalls the directory's writes for 5-20 s while Raft elects another; the
  // views stay frozen meanwhile, but the test would mostly measure the election.)
  const leader = cluster.metaLeader();
  const order = [...cluster.nodes.filter((n) => n !== leader), ...cluster.nodes.filter((n) => n === leader)];
  const [u1, u2, u3] = order.map((n) => n.url) as [string, string, string];
  const opts = { replicas: 3, heartbeatMs: 300, relayTtlMs: 6_000, tunnelTtlMs: 20_000, randomizeServers: false };
  const [a, b] = [relay('r1'), relay('r2')];
  const r1 = await open(t, [u1, u2, u3], a, opts);
  const r2 = await open(t, [u2, u3, u1], b, opts);
  let downs = 0;
  r2.on('relay-down', () => downs++);
  r1.on('relay-down', () => downs++);
  r1.register(tunnel('before', a));
  await until(() => r2.holders('before').length === 1, 'r2 sees before');
  await until(() => r1.relays().length === 1, 'r1 sees r2');
  t.comment(`directories ready at ${Date.now() - t0} ms`);
  await order[0]!.stop('SIGKILL');
  const killedAt = Date.now();
  r1.register(tunnel('after', a));
  r2.register(tunnel('other', b));
  await until(() => r2.holders('after').length === 1 && r1.holders('other').length === 1, 'registrations propagate with one node gone', 30_000);
  t.comment(`propagated ${Date.now() - killedAt} ms after the kill`);
  t.equal(r2.holders('before').length, 1, 'earlier records still there');
  t.equal(downs, 0, 'no relay went down');
  t.equal(r1.state, 'connected');
  t.equal(r2.state, 'connected');
});

t.test('bad credentials: start() rejects with ERR_WARREN_DIRECTORY naming the authorization problem', async (t) => {
  const s = await server(t, { user: 'u', password: 'p' });
  const bad = new NatsDirectory({ servers: [s.url], user: 'u', password: 'wrong', ...FAST });
  const err = await bad.start(relay('r1')).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof WarrenError, 'a WarrenError');
  t.equal((err as WarrenError).code, 'ERR_WARREN_DIRECTORY');
  t.match((err as WarrenError).message, /refused the credentials \(Authorization Violation\)/);
  t.notMatch((err as WarrenError).message, /wrong/, 'the password is not in the message');
  const good = await open(t, [s.url], relay('r1'), { user: 'u', password: 'p' });
  t.equal(good.state, 'connected');
});

t.test('a server without JetStream is refused', async (t) => {
  const s = await server(t, { noJetStream: true });
  const dir = new NatsDirectory({ servers: [s.url], ...FAST });
  await t.rejects(dir.start(relay('r1')), { code: 'ERR_WARREN_DIRECTORY', message: /no JetStream/ });
});

t.test('churn: 2,000 tunnels registered and unregistered quickly converge to exactly the live set', async (t) => {
  const s = await server(t);
  const [a, b] = [relay('r1'), relay('r2')];
  const r1 = await open(t, [s.url], a, { tunnelTtlMs: 20_000 });
  const r2 = await open(t, [s.url], b, { tunnelTtlMs: 20_000 });
  const live = new Map<string, TunnelRecord>();
  for (let i = 0; i < 2_000; i++) {
    const rec = tunnel(`churn-${i}`, a);
    r1.register(rec);
    live.set(rec.tunnelId, rec);
    // Every third tunnel leaves again, and every fifth comes back with a new session.
    if (i % 3 === 0) {
      r1.unregister(rec.tunnelId, rec.sessionEpoch);
      live.delete(rec.tunnelId);
    } else if (i % 5 === 0) {
      const again = tunnel(rec.tunnelId, a);
      r1.register(again);
      live.set(rec.tunnelId, again);
    }
  }
  await r1.flushed(20_000);
  await until(() => r2.stats().tunnels === live.size, `r2 holds ${live.size} records`, 20_000);
  let mismatches = 0;
  for (let i = 0; i < 2_000; i++) {
    const id = `churn-${i}`;
    const want = live.get(id);
    const got = r2.holders(id);
    if (want ? got.length !== 1 || got[0]!.sessionEpoch !== want.sessionEpoch : got.length !== 0) mismatches++;
  }
  t.equal(mismatches, 0, 'every tunnel matches the live set');
  const st = r1.stats();
  t.equal(r1.ownCount(), live.size);
  t.ok(st.puts >= live.size && st.puts <= 2_000 + 400, `puts ${st.puts}`);
  t.ok(st.deletes <= 667, `deletes ${st.deletes}`);
  t.equal(st.errors, 0);
  t.equal(r2.stats().relays, 1);
});
