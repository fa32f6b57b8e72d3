// A malicious relay against a real `warren agent` process. The agent accepts any relay whose
// certificate chains to its --ca, so the test plays that relay: a TLS WebSocket server with the
// test CA's certificate whose acceptSession() speaks real frames. Whatever it sends, the agent
// dials only 127.0.0.1 / ::1 and only the ports it exposes: a listener on every other port counts
// zero accepted connections, and the agent answers each such OPEN with RST ERR_WARREN_DIAL_DENIED.
import { once } from 'node:events';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import t from 'tap';
import { WebSocketServer } from 'ws';
import { acceptSession, encodeOpen, webSocketTransport, WS_SUBPROTOCOL, type MuxStream, type Session, type WarrenError } from '../../protocol/index.js';
import { makeTestIdentity } from '../helpers/identity.js';
import { startTestApp } from '../helpers/apps.js';
import { freePort } from '../helpers/peers.js';
import { startWarren, type Proc } from '../helpers/process.js';
import { testTlsIdentity } from '../helpers/tls.js';

const id = await makeTestIdentity();
t.teardown(() => id.remove());

/** Sessions the malicious relay accepted, in order. */
const sessions: Session[] = [];
let wakeSession: (() => void) | null = null;
/** Resolves with session number `index` once the agent has opened it; rejects after 15 s. */
async function nextSession(index: number): Promise<Session> {
  const deadline = Date.now() + 15_000;
  while (sessions.length <= index) {
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`the agent opened no session #${index + 1} within 15 s`);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, left);
      wakeSession = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
  return sessions[index]!;
}

const https = createHttpsServer({ cert: id.certPem, key: id.keyPem, minVersion: 'TLSv1.3' });
const wss = new WebSocketServer({ server: https, path: '/v1/agent', handleProtocols: (offered) => (offered.has(WS_SUBPROTOCOL) ? WS_SUBPROTOCOL : false) });
wss.on('connection', (ws) => {
  acceptSession(webSocketTransport(ws), { keepaliveIntervalMs: 0, authenticate: () => ({ tunnel: 'sandbox', previews: [], tcp: [] }) }).then(
    (session) => {
      sessions.push(session);
      wakeSession?.();
    },
    () => undefined,
  );
});
https.listen(0, '127.0.0.1');
await once(https, 'listening');
t.teardown(() => {
  for (const s of sessions) s.destroy();
  wss.close();
  https.closeAllConnections();
  https.close();
});
const relayUrl = `wss://127.0.0.1:${(https.address() as AddressInfo).port}`;

/** A TCP listener that counts what it accepts. */
interface Counter {
  port: number;
  host: string;
  accepted: number;
  server: NetServer;
}

async function counter(port: number, host = '127.0.0.1'): Promise<Counter | null> {
  const server = createNetServer();
  const c: Counter = { port, host, accepted: 0, server };
  server.on('connection', (s: Socket) => {
    c.accepted++;
    s.destroy();
  });
  try {
    server.listen(port, host);
    await Promise.race([once(server, 'listening'), once(server, 'error').then(([e]) => Promise.reject(e as Error))]);
  } catch {
    return null;
  }
  t.teardown(() => server.close());
  return c;
}

// The app on P; decoys on its neighbours P-1 and P+1 (found free together).
const app = await startTestApp();
t.teardown(() => app.close());
let appConnections: string[] = [];
app.server.on('connection', (s: Socket) => appConnections.push(s.remoteAddress ?? ''));
const P = app.port;
const decoys: Counter[] = [];
for (const port of [P - 1, P + 1]) {
  const c = await counter(port);
  if (c) decoys.push(c);
}
// Q: in the agent's token but not exposed by it. R: exposed, but only 127.0.0.2 listens there.
const Q = await counter(await freePort());
const R = await counter(await freePort(), '127.0.0.2');
if (!Q || !R) throw new Error('could not bind the decoy listeners');
decoys.push(Q, R);
const untouched = (): number => decoys.reduce((n, d) => n + d.accepted, 0);

/** Starts an agent exposing P and R with a token for P, Q and R; resolves with its relay-side session. */
async function sandbox(): Promise<{ agent: Proc; session: Session }> {
  const index = sessions.length;
  const agent = startWarren(['agent', '--relay', relayUrl, '--ca', id.caFile, '--port', String(P), '--port', String(R!.port), '--status-socket', 'off'], {
    WARREN_TOKEN: id.token('agent', 'sandbox', [P, Q!.port, R!.port]),
  });
  t.teardown(() => agent.stop('SIGKILL'));
  const session = await nextSession(index);
  await agent.waitFor(/is online via/);
  return { agent, session };
}

/** Resolves with the code the agent reset `stream` with. */
async function resetCode(stream: MuxStream): Promise<string> {
  const [err] = (await once(stream, 'error')) as [WarrenError];
  return err.code;
}

const REQUEST = 'GET / HTTP/1.1\r\nHost: sandbox\r\nConnection: close\r\n\r\n';
const first = await sandbox();

t.test('OPENs for ports the agent does not expose are refused with DIAL_DENIED and reach nothing', async (t) => {
  const ports = [P - 1, P + 1, Q.port, 1, 22, 80, 443, 2375, 6379, 65535, (https.address() as AddressInfo).port];
  for (const port of ports) {
    const stream = first.session.open(port, {});
    stream.write(REQUEST); // 0-RTT data rides with the OPEN
    t.equal(await resetCode(stream), 'ERR_WARREN_DIAL_DENIED', `port ${port}: RST ERR_WARREN_DIAL_DENIED`);
  }
  t.equal(untouched(), 0, 'the listeners on P-1, P+1 and Q accepted 0 connections');
  t.same(appConnections, [], 'nor did the app');
});

t.test('metadata cannot steer a dial: hosts, ports and paths in OPEN are ignored', async (t) => {
  const steer = { host: '10.0.0.1', ip: '169.254.169.254', port: String(Q.port), target: `127.0.0.1:${P + 1}`, unix: '/var/run/docker.sock', src: 'client' };
  t.equal(await resetCode(first.session.open(Q.port, steer)), 'ERR_WARREN_DIAL_DENIED', 'a denied port stays denied');
  const atLimit = { pad: 'x'.repeat(4096 - '{"pad":""}'.length) };
  t.equal(await resetCode(first.session.open(Q.port, atLimit)), 'ERR_WARREN_DIAL_DENIED', 'metadata at the 4 KiB limit: still DIAL_DENIED');
  const stream = first.session.open(P, steer);
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  stream.end(REQUEST);
  await once(stream, 'end');
  t.match(Buffer.concat(chunks).toString(), /hello from the app/, 'the exposed port is served');
  t.equal(appConnections.length, 1, 'one connection reached the app on P');
  t.ok(['127.0.0.1', '::1'].includes(appConnections[0]!), `from loopback (${appConnections[0]})`);
  t.equal(untouched(), 0, 'no decoy accepted anything');
  appConnections = [];
});

t.test('an exposed port where only 127.0.0.2 listens: APP_UNREACHABLE, and 127.0.0.2 is never dialed', async (t) => {
  t.equal(await resetCode(first.session.open(R.port, { host: '127.0.0.2' })), 'ERR_WARREN_APP_UNREACHABLE');
  t.equal(R.accepted, 0, 'the listener on 127.0.0.2 accepted 0 connections');
});

t.test('1000 denied OPENs at once: 1000 RSTs, no connection, the session lives on', async (t) => {
  const codes = await Promise.all(Array.from({ length: 1000 }, (_, i) => resetCode(first.session.open(i % 2 ? Q.port : P + 1, {}))));
  t.equal(codes.filter((c) => c === 'ERR_WARREN_DIAL_DENIED').length, 1000);
  t.equal(untouched(), 0, 'no decoy accepted anything');
  t.ok((await first.session.ping(5_000)) >= 0, 'the agent still answers PING');
  t.equal(first.agent.child.exitCode, null, 'the agent runs on');
});

t.test('OPEN for port 0, or with metadata over the maximum, ends the session with its code; nothing is dialed; the agent reconnects', async (t) => {
  for (const [name, frame, code] of [
    ['port 0', encodeOpen(2_000_000, 0, Buffer.alloc(0)), 'ERR_WARREN_PROTOCOL'],
    ['5 KiB of metadata', encodeOpen(2_000_000, P, Buffer.from(JSON.stringify({ pad: 'x'.repeat(5000) }))), 'ERR_WARREN_METADATA_TOO_LARGE'],
  ] as const) {
    const { agent, session } = await sandbox();
    const goAway = once(session, 'goaway') as Promise<[{ error: WarrenError | null }]>;
    const index = sessions.length;
    // Raw bytes: the relay's own session would refuse to send either frame.
    session.transport.write([frame], () => undefined);
    const [info] = await goAway;
    t.equal(info.error?.code, code, `${name}: the agent ends the session with GOAWAY ${code}`);
    await nextSession(index);
    t.equal(agent.child.exitCode, null, `${name}: the agent runs on and opened a new session`);
    await agent.stop('SIGKILL');
  }
  t.equal(untouched(), 0, 'no decoy accepted anything');
  t.same(appConnections, [], 'nor did the app');
});

t.test('a drain hint to plain ws:// or to an untrusted certificate never receives the token; the agent carries on', async (t) => {
  const plain = await counter(await freePort());
  if (!plain) throw new Error('could not bind the plain listener');
  const other = await testTlsIdentity(); // a certificate from a CA the agent does not trust
  const impostor = createHttpsServer({ cert: other.certPem, key: other.keyPem, minVersion: 'TLSv1.3' });
  let impostorRequests = 0;
  impostor.on('request', () => impostorRequests++);
  impostor.on('upgrade', (_req, socket: Socket) => {
    impostorRequests++;
    socket.destroy();
  });
  impostor.listen(0, '127.0.0.1');
  await once(impostor, 'listening');
  t.teardown(() => impostor.close());

  const { agent } = await sandbox();
  for (const hint of [`ws://127.0.0.1:${plain.port}`, `wss://localhost:${(impostor.address() as AddressInfo).port}`, 'not a url']) {
    const index = sessions.length;
    sessions[index - 1]!.goAway('ERR_WARREN_DRAINING', { hint }); // the agent's current session
    await nextSession(index); // the agent came back to its configured relay
    t.pass(`hint ${hint}: the agent moved back to its relay list`);
  }
  t.equal(plain.accepted, 0, 'the plain ws:// listener accepted 0 connections');
  t.equal(impostorRequests, 0, 'the impostor with an untrusted certificate got no request, so no HELLO and no token');
  t.equal(agent.child.exitCode, null, 'the agent runs on');
});
