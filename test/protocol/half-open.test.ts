// Half-open peers, with real processes and short keepalives (1.5 s on both sides): a TCP proxy
// between a `warren agent` and a `warren relay` stops forwarding in both directions without
// closing anything (a blackholed path), and an agent or a relay process is frozen (SIGSTOP). Each
// side must find its silent peer within two keepalive intervals (ERR_WARREN_KEEPALIVE_TIMEOUT),
// and never before one: the relay drops the session (its gauge and admin API show it gone), the
// agent reconnects on its own.
import { once } from 'node:events';
import { connect as netConnect, createServer, type AddressInfo, type Socket } from 'node:net';
import t from 'tap';
import { makeTestIdentity } from '../helpers/identity.js';
import { startTestApp } from '../helpers/apps.js';
import { previewRequest, startRelayProcess, TEST_DOMAIN } from '../helpers/cluster.js';
import { startWarren } from '../helpers/process.js';

const KEEPALIVE_MS = 1_500;
/**
 * Two intervals, plus 500 ms for timers that fire late on a loaded machine (the test runs beside
 * others on two cores).
 */
const DETECTION_BOUND_MS = 2 * KEEPALIVE_MS + 500;
const ADMIN_TOKEN = 'admin-token-for-tests-0123456789';

const id = await makeTestIdentity();
t.teardown(() => id.remove());
const app = await startTestApp();
t.teardown(() => app.close());
const relay = await startRelayProcess(id, ['--keepalive', `${KEEPALIVE_MS}ms`, '--admin', '127.0.0.1:0'], { WARREN_ADMIN_TOKEN: ADMIN_TOKEN });
t.teardown(() => relay.proc.stop('SIGKILL'));
const admin = `http://127.0.0.1:${(JSON.parse(relay.proc.lines.find((l) => l.includes('"event":"listening"'))!) as { admin: { port: number } }).admin.port}`;

/** A TCP proxy to the relay's TLS listener whose open connections can be blackholed. */
interface Blackhole {
  port: number;
  /** Connections forwarded so far. */
  connections: number;
  /** From now on, open connections forward nothing either way and stay open; new ones forward normally. */
  swallow(): void;
  close(): void;
}

async function startBlackhole(): Promise<Blackhole> {
  const open = new Set<{ swallowed: boolean; sockets: Socket[] }>();
  const proxy: Blackhole = {
    port: 0,
    connections: 0,
    swallow: () => {
      for (const c of open) c.swallowed = true;
    },
    close: () => {
      server.close();
      for (const c of open) for (const s of c.sockets) s.destroy();
    },
  };
  const server = createServer((down) => {
    proxy.connections++;
    const up = netConnect({ host: '127.0.0.1', port: relay.port });
    const conn = { swallowed: false, sockets: [down, up] };
    open.add(conn);
    const forward = (from: Socket, to: Socket): void => {
      from.on('data', (c: Buffer) => {
        if (!conn.swallowed) to.write(c);
      });
      from.on('end', () => {
        if (!conn.swallowed) to.end();
      });
      from.on('error', () => {});
      from.on('close', () => {
        if (!conn.swallowed) to.destroy();
        open.delete(conn);
      });
    };
    forward(down, up);
    forward(up, down);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  proxy.port = (server.address() as AddressInfo).port;
  return proxy;
}

async function adminJson<T>(path: string): Promise<{ status: number; body: T }> {
  const res = await fetch(`${admin}${path}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  return { status: res.status, body: (await res.json()) as T };
}

async function agentsConnected(): Promise<number> {
  const text = await (await fetch(`${admin}/metrics`)).text();
  return Number(/^warren_agents_connected (\d+)$/m.exec(text)?.[1]);
}

t.test('a blackholed path is found by both sides within two keepalive intervals', async (t) => {
  const proxy = await startBlackhole();
  t.teardown(() => proxy.close());
  const agent = startWarren(['agent', '--relay', `wss://127.0.0.1:${proxy.port}`, '--ca', id.caFile, '--keepalive', `${KEEPALIVE_MS}ms`, '--port', String(app.port)], {
    WARREN_TOKEN: id.token('agent', 'holed', [app.port]),
  });
  t.teardown(() => agent.stop());
  await agent.waitFor(/is online via/);
  const host = `${app.port}-holed.${TEST_DOMAIN}`;
  t.equal((await previewRequest(relay, host, '/')).status, 200);
  const first = await adminJson<{ sessionId: string }>('/v1/tunnels/holed');

  const agentMark = agent.lines.length;
  const relayMark = relay.proc.lines.length;
  const agentSaw = agent.waitFor(/ERR_WARREN_KEEPALIVE_TIMEOUT/, 10_000, agentMark).then(() => performance.now());
  const relaySaw = relay.proc.waitFor(/"event":"agent_disconnected".*"tunnelId":"holed".*ERR_WARREN_KEEPALIVE_TIMEOUT/, 10_000, relayMark).then(() => performance.now());
  const start = performance.now();
  proxy.swallow();
  const [agentAt, relayAt] = await Promise.all([agentSaw, relaySaw]);
  for (const [side, at] of [
    ['agent', agentAt],
    ['relay', relayAt],
  ] as const) {
    const ms = at - start;
    t.ok(ms >= KEEPALIVE_MS, `the ${side} waited ${Math.round(ms)} ms: at least one interval of silence`);
    t.ok(ms <= DETECTION_BOUND_MS, `the ${side} found the dead path after ${Math.round(ms)} ms (bound ${DETECTION_BOUND_MS} ms)`);
  }

  // The agent comes back over a new connection; the relay holds only the new session.
  await agent.waitFor(/is online via/, 20_000, agentMark);
  t.equal(proxy.connections, 2, 'the agent dialed again');
  const second = await adminJson<{ sessionId: string }>('/v1/tunnels/holed');
  t.not(second.body.sessionId, first.body.sessionId, 'a new session serves the tunnel');
  t.equal(await agentsConnected(), 1, 'the relay counts one agent session: the dead one is gone');
  t.equal((await previewRequest(relay, host, '/')).status, 200, 'the preview works again');
});

t.test('a frozen agent process is dropped by the relay within two keepalive intervals', async (t) => {
  const agent = startWarren(['agent', '--relay', relay.url, '--ca', id.caFile, '--keepalive', `${KEEPALIVE_MS}ms`, '--port', String(app.port)], {
    WARREN_TOKEN: id.token('agent', 'frozen', [app.port]),
  });
  t.teardown(() => {
    agent.child.kill('SIGCONT');
    return agent.stop('SIGKILL');
  });
  await agent.waitFor(/is online via/);
  t.equal((await adminJson('/v1/tunnels/frozen')).status, 200);
  const relaySaw = relay.proc.waitFor(/"event":"agent_disconnected".*"tunnelId":"frozen".*ERR_WARREN_KEEPALIVE_TIMEOUT/, 10_000, relay.proc.lines.length);
  const start = performance.now();
  agent.child.kill('SIGSTOP');
  await relaySaw;
  const ms = performance.now() - start;
  t.ok(ms >= KEEPALIVE_MS, `the relay waited ${Math.round(ms)} ms: at least one interval of silence`);
  t.ok(ms <= DETECTION_BOUND_MS, `the relay dropped the frozen agent after ${Math.round(ms)} ms (bound ${DETECTION_BOUND_MS} ms)`);
  t.equal((await adminJson('/v1/tunnels/frozen')).status, 404, 'the admin API shows the tunnel gone');
  const offline = await previewRequest(relay, `${app.port}-frozen.${TEST_DOMAIN}`, '/', { headers: { accept: 'application/json' } });
  t.equal(offline.status, 502, 'its preview answers offline at once instead of hanging');

  const mark = agent.lines.length;
  agent.child.kill('SIGCONT');
  await agent.waitFor(/is online via/, 20_000, mark);
  t.equal((await adminJson('/v1/tunnels/frozen')).status, 200, 'the thawed agent reconnects');
});

t.test('a frozen relay process is left by its agent within two keepalive intervals', async (t) => {
  const frozen = await startRelayProcess(id, ['--keepalive', `${KEEPALIVE_MS}ms`]);
  t.teardown(() => {
    frozen.proc.child.kill('SIGCONT');
    return frozen.proc.stop('SIGKILL');
  });
  const agent = startWarren(['agent', '--relay', frozen.url, '--ca', id.caFile, '--keepalive', `${KEEPALIVE_MS}ms`, '--port', String(app.port)], {
    WARREN_TOKEN: id.token('agent', 'stranded', [app.port]),
  });
  t.teardown(() => agent.stop());
  await agent.waitFor(/is online via/);
  const mark = agent.lines.length;
  const agentSaw = agent.waitFor(/ERR_WARREN_KEEPALIVE_TIMEOUT/, 10_000, mark);
  const start = performance.now();
  frozen.proc.child.kill('SIGSTOP');
  await agentSaw;
  const ms = performance.now() - start;
  t.ok(ms >= KEEPALIVE_MS, `the agent waited ${Math.round(ms)} ms: at least one interval of silence`);
  t.ok(ms <= DETECTION_BOUND_MS, `the agent left the frozen relay after ${Math.round(ms)} ms (bound ${DETECTION_BOUND_MS} ms)`);
  frozen.proc.child.kill('SIGCONT');
  await agent.waitFor(/is online via/, 20_000, mark);
  t.equal((await previewRequest(frozen, `${app.port}-stranded.${TEST_DOMAIN}`, '/')).status, 200, 'once thawed, the relay serves the agent again');
});
