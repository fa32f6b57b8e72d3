// Per-stream authorization at a real `warren relay` process with real `warren agent` processes:
// a client token reaches only its own tunnel's listed ports, whatever a stream's OPEN says; a
// viewer token opens only the private preview it names; each role is accepted at its own endpoint
// only. Every app counts the connections it accepts: a refused stream or request never reaches one.
import { once } from 'node:events';
import t from 'tap';
import { dialRelay } from '../../transport/dial.js';
import { ERRORS, FrameType, encodeOpen, type MuxStream, type Session, type WarrenError } from '../../protocol/index.js';
import { makeTestIdentity } from '../helpers/identity.js';
import { startTestApp, type TestApp } from '../helpers/apps.js';
import { previewRequest, startAgentProcess, startRelayProcess, TEST_DOMAIN } from '../helpers/cluster.js';
import { rawHandshake } from '../helpers/raw-peer.js';

const id = await makeTestIdentity();
t.teardown(() => id.remove());
const relay = await startRelayProcess(id);
t.teardown(() => relay.proc.stop('SIGKILL'));

/** A test app that also counts the TCP connections it accepted. */
async function countingApp(): Promise<TestApp & { connections: () => number }> {
  const app = await startTestApp();
  t.teardown(() => app.close());
  let n = 0;
  app.server.on('connection', () => n++);
  return { ...app, connections: () => n };
}

const a1 = await countingApp(); // alpha, public, in the client token
const a2 = await countingApp(); // alpha, private, not in the client token
const b1 = await countingApp(); // bravo, private
const agents = await Promise.all([
  startAgentProcess(id, relay, id.token('agent', 'alpha', [a1.port, a2.port]), ['--port', String(a1.port), '--port', `${a2.port}:private`]),
  startAgentProcess(id, relay, id.token('agent', 'bravo', [b1.port]), ['--port', `${b1.port}:private`]),
]);
t.teardown(() => Promise.all(agents.map((a) => a.stop())));
const total = (): number => a1.connections() + a2.connections() + b1.connections();

/** Opens a client session at /v1/connect. */
function clientSession(token: string, app: Record<string, unknown> = {}): Promise<Session> {
  return dialRelay({ relay: relay.url, path: '/v1/connect', token, ca: id.caPem, app, session: { keepaliveIntervalMs: 0 } });
}

/** Sends one HTTP request over a client stream; resolves with the answer, or rejects with the stream's reset. */
async function httpOver(stream: MuxStream): Promise<string> {
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  stream.end('GET /via-client HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n');
  await once(stream, 'end');
  return Buffer.concat(chunks).toString();
}

/** The code a stream was reset with. */
async function resetCode(stream: MuxStream): Promise<string> {
  const [err] = (await once(stream, 'error')) as [WarrenError];
  return err.code;
}

t.test('a client token reaches its listed port and nothing else, whatever OPEN says', async (t) => {
  const session = await clientSession(id.token('client', 'alpha', [a1.port]));
  t.teardown(() => session.destroy());
  const before = { a1: a1.connections(), a2: a2.connections(), b1: b1.connections() };
  t.match(await httpOver(session.open(a1.port)), /hello from the app/, 'its own port answers');
  t.equal(await resetCode(session.open(a2.port)), 'ERR_WARREN_FORBIDDEN', "a port of its tunnel the token does not list: RST ERR_WARREN_FORBIDDEN");
  t.equal(await resetCode(session.open(b1.port)), 'ERR_WARREN_FORBIDDEN', "another tunnel's port: RST ERR_WARREN_FORBIDDEN");
  // Metadata cannot steer a stream: the relay takes the tunnel from the token and the port from OPEN.
  const steered = session.open(a1.port, { tunnel: 'bravo', host: '10.0.0.1', port: String(b1.port), src: 'agent' });
  t.match(await httpOver(steered), /hello from the app/, 'metadata naming bravo still lands on alpha');
  t.same(
    { a1: a1.connections() - before.a1, a2: a2.connections() - before.a2, b1: b1.connections() - before.b1 },
    { a1: 2, a2: 0, b1: 0 },
    'connections: 2 at alpha\'s listed port, 0 at the unlisted one, 0 at bravo',
  );
});

t.test('a client HELLO that names another tunnel or unlisted ports is refused before any stream', async (t) => {
  const token = id.token('client', 'alpha', [a1.port]);
  const before = total();
  await t.rejects(clientSession(token, { tunnel: 'bravo' }), { code: 'ERR_WARREN_FORBIDDEN' }, 'tunnel bravo');
  await t.rejects(clientSession(token, { tunnel: 'alpha', ports: [a2.port] }), { code: 'ERR_WARREN_FORBIDDEN' }, 'an unlisted port');
  t.equal(total(), before, 'no app saw a connection');
});

t.test('each role is accepted only at its own endpoint', async (t) => {
  const outcome = async (path: '/v1/agent' | '/v1/connect', role: 'agent' | 'client' | 'viewer'): Promise<string> => {
    const token = id.token(role, 'matrix', [9]);
    try {
      const s = await dialRelay({ relay: relay.url, path, token, ca: id.caPem, app: path === '/v1/agent' ? { ports: [{ port: 9 }] } : {}, session: { keepaliveIntervalMs: 0 } });
      s.destroy();
      return 'accepted';
    } catch (err) {
      return (err as WarrenError).code;
    }
  };
  const matrix: Record<string, string> = {};
  for (const path of ['/v1/agent', '/v1/connect'] as const) for (const role of ['agent', 'client', 'viewer'] as const) matrix[`${role} at ${path}`] = await outcome(path, role);
  t.same(matrix, {
    'agent at /v1/agent': 'accepted',
    'client at /v1/agent': 'ERR_WARREN_TOKEN_ROLE',
    'viewer at /v1/agent': 'ERR_WARREN_TOKEN_ROLE',
    'agent at /v1/connect': 'ERR_WARREN_TOKEN_ROLE',
    'client at /v1/connect': 'accepted',
    'viewer at /v1/connect': 'ERR_WARREN_TOKEN_ROLE',
  });
});

t.test('a client flooding refused OPENs loses its session with ERR_WARREN_FLOOD after the reset burst', async (t) => {
  const peer = await rawHandshake(`${relay.url}/v1/connect`, id.caPem, id.token('client', 'alpha', [a1.port]), {});
  t.teardown(() => peer.close());
  const before = total();
  const started = performance.now();
  peer.send(Buffer.concat(Array.from({ length: 5_000 }, (_, i) => encodeOpen(2 * i + 1, b1.port, Buffer.alloc(0)))));
  const goAway = await peer.goAway();
  const ms = performance.now() - started;
  t.equal(goAway.code, ERRORS.ERR_WARREN_FLOOD.wire, `GOAWAY ERR_WARREN_FLOOD (got ${goAway.code}: ${goAway.message})`);
  const refused = peer.count(FrameType.RST, peer.indexOf(FrameType.GOAWAY));
  const most = 1000 + Math.ceil((200 * ms) / 1000) + 1;
  t.ok(refused >= 1000 && refused <= most, `${refused} of 5000 OPENs answered with RST before the GOAWAY (burst 1000, at most ${most} in ${ms.toFixed(0)} ms)`);
  t.equal(total(), before, 'no app saw a connection');
  t.equal((await previewRequest(relay, `${a1.port}-alpha.${TEST_DOMAIN}`, '/')).status, 200, 'the tunnel still serves its preview');
});

t.test('a viewer token opens only the private preview it names', async (t) => {
  const alphaPrivate = `${a2.port}-alpha.${TEST_DOMAIN}`;
  const bravoPrivate = `${b1.port}-bravo.${TEST_DOMAIN}`;
  const bearer = (token: string): { headers: Record<string, string> } => ({ headers: { authorization: `Bearer ${token}`, accept: 'application/json' } });
  const code = (body: Buffer): string => (JSON.parse(body.toString()) as { error: { code: string } }).error.code;
  // Requests, not connections: the preview proxy keeps a connection to an app alive for reuse.
  const seen = (): { a2: number; b1: number } => ({ a2: a2.requests.length - before.a2, b1: b1.requests.length - before.b1 });
  const before = { a2: a2.requests.length, b1: b1.requests.length };

  const cases: [string, string, string][] = [
    ['no token', alphaPrivate, ''],
    ["bravo's viewer token on alpha", alphaPrivate, id.token('viewer', 'bravo', [b1.port])],
    ["alpha's viewer token for its public port, on the private one", alphaPrivate, id.token('viewer', 'alpha', [a1.port])],
    ["alpha's client token for the port", alphaPrivate, id.token('client', 'alpha', [a2.port])],
    ["alpha's agent token", alphaPrivate, id.token('agent', 'alpha', [a2.port])],
    ["alpha's viewer token on bravo", bravoPrivate, id.token('viewer', 'alpha', [a2.port])],
    ['an expired viewer token', alphaPrivate, id.token('viewer', 'alpha', [a2.port], { iat: Math.floor(Date.now() / 1000) - 7200, exp: Math.floor(Date.now() / 1000) - 3600 })],
  ];
  for (const [name, host, token] of cases) {
    const res = await previewRequest(relay, host, '/', token ? bearer(token) : { headers: { accept: 'application/json' } });
    t.same({ status: res.status, code: code(res.body) }, { status: 401, code: 'ERR_WARREN_UNAUTHORIZED' }, `${name}: 401`);
  }
  t.same(seen(), { a2: 0, b1: 0 }, 'no refused request reached a private app');

  const viewer = id.token('viewer', 'alpha', [a2.port]);
  const ok = await previewRequest(relay, alphaPrivate, '/', bearer(viewer));
  t.equal(ok.status, 200, "alpha's viewer token opens alpha's private port");
  // The session cookie made for alpha's host opens nothing on bravo's.
  const exchange = await previewRequest(relay, alphaPrivate, `/?warren_token=${viewer}`);
  t.equal(exchange.status, 302);
  const cookie = String(exchange.headers['set-cookie']?.[0] ?? '').split(';')[0]!;
  t.match(cookie, /^warren_session=/);
  t.equal((await previewRequest(relay, alphaPrivate, '/', { headers: { cookie } })).status, 200, 'the cookie opens its own host');
  t.equal((await previewRequest(relay, bravoPrivate, '/', { headers: { cookie } })).status, 401, "and not bravo's");
  t.same(seen(), { a2: 2, b1: 0 }, 'alpha\'s private app saw the 2 allowed requests, bravo\'s none');
});
