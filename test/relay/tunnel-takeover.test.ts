// Tunnel takeover against a real `warren relay` process. An agent token for tunnel alpha must
// never register, replace or receive the traffic of tunnel bravo, whatever its HELLO says and
// however its `sub` imitates bravo's; bravo's requests keep reaching bravo's app. A second agent
// with the same token does replace the first, cleanly: the first stops with
// ERR_WARREN_TUNNEL_REPLACED after finishing what it carried, and every later request reaches
// only the second.
//
// Two agents of one tunnel dial the same loopback port, so the app alone cannot tell them apart:
// on each connection it asks the kernel (/proc/net/tcp and /proc/PID/fd) which agent process
// holds the other end, and counts requests per agent.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import t, { type Test } from 'tap';
import { parseIssuerKey } from '../../certs/keys.js';
import { FrameType } from '../../protocol/index.js';
import { makeTestIdentity, recordSecret } from '../helpers/identity.js';
import { startTestApp } from '../helpers/apps.js';
import { previewRequest, startAgentProcess, startRelayProcess, TEST_DOMAIN } from '../helpers/cluster.js';
import { mintEdDSA } from '../helpers/jws.js';
import { rawHandshake, type RawPeer } from '../helpers/raw-peer.js';
import { startWarren, type Proc } from '../helpers/process.js';

const id = await makeTestIdentity();
t.teardown(() => id.remove());
const relay = await startRelayProcess(id);
t.teardown(() => relay.proc.stop('SIGKILL'));
const bravoApp = await startTestApp();
t.teardown(() => bravoApp.close());
const bravo = await startAgentProcess(id, relay, id.token('agent', 'bravo', [bravoApp.port]), ['--port', String(bravoApp.port)]);
t.teardown(() => bravo.stop());
const bravoHost = `${bravoApp.port}-bravo.${TEST_DOMAIN}`;
const ALPHA_PORT = 4000;
const alphaToken = id.token('agent', 'alpha', [ALPHA_PORT]);

const attackers: RawPeer[] = [];
t.teardown(() => attackers.forEach((p) => p.close()));

/** Opens a raw agent session; resolves with it (it counts the OPENs it is sent) or the refusal message. */
async function attacker(token: string, app: Record<string, unknown>): Promise<{ peer?: RawPeer; refused?: string }> {
  try {
    const peer = await rawHandshake(`${relay.url}/v1/agent`, id.caPem, token, app);
    attackers.push(peer);
    return { peer };
  } catch (err) {
    return { refused: (err as Error).message };
  }
}

/** The tunnel the relay's HELLO says a session registered. */
function registeredTunnel(peer: RawPeer): unknown {
  const hello = peer.frames.find((f) => f.type === FrameType.HELLO);
  return hello && hello.type === FrameType.HELLO ? (JSON.parse(hello.payload.toString()) as { app: { tunnel?: unknown } }).app.tunnel : undefined;
}

/** Sends `n` requests to bravo's preview; asserts they all reached bravo's app. */
async function bravoStillServed(t: Test, n: number): Promise<void> {
  const before = bravoApp.requests.length;
  const results = await Promise.all(Array.from({ length: n }, (_, i) => previewRequest(relay, bravoHost, `/bravo/${i}`)));
  t.equal(results.filter((r) => r.status === 200).length, n, `${n} requests to bravo answered 200`);
  t.equal(bravoApp.requests.length - before, n, `bravo's app saw all ${n}`);
}

t.test('an alpha token whose HELLO names bravo registers alpha and receives none of bravo\'s traffic', async (t) => {
  const { peer } = await attacker(alphaToken, { ports: [{ port: ALPHA_PORT }], tunnel: 'bravo', sub: 'bravo', tunnelId: 'bravo' });
  t.equal(registeredTunnel(peer!), 'alpha', 'the relay registered the token\'s tunnel, not the one named in HELLO');
  await bravoStillServed(t, 20);
  t.equal(peer!.count(FrameType.OPEN), 0, 'the alpha session was sent no stream');
});

t.test('an alpha token asking for bravo\'s port is refused with ERR_WARREN_FORBIDDEN', async (t) => {
  const { refused } = await attacker(alphaToken, { ports: [{ port: bravoApp.port }] });
  t.match(refused, /allows ports 4000, not/, 'refused: the port is not in the token');
  await bravoStillServed(t, 5);
});

t.test('tokens whose sub imitates bravo are refused, or name a tunnel of their own', async (t) => {
  const issuer = parseIssuerKey(readFileSync(id.issuerKeyFile, 'utf8'), 'issuer.key');
  const now = Math.floor(Date.now() / 1000);
  const mint = (sub: string): string => {
    const token = mintEdDSA({ alg: 'EdDSA', typ: 'JWT', kid: id.kid }, { sub, role: 'agent', ports: [bravoApp.port], aud: 'warren', iat: now, exp: now + 600 }, issuer.key);
    recordSecret(token);
    return token;
  };
  const ports = { ports: [{ port: bravoApp.port }] };
  for (const sub of ['Bravo', 'BRAVO', 'bravo.', ' bravo', 'bravo ', 'bravo\n', 'bravo\u0000', 'br\u0430vo', 'bravo-', '-bravo', 'bravo.preview.test', `${bravoApp.port}-bravo.${TEST_DOMAIN}`]) {
    const { refused } = await attacker(mint(sub), ports);
    t.match(refused, /sub is not a tunnel id/, `sub ${JSON.stringify(sub)} refused`);
  }
  for (const sub of ['bravo0', 'bravo-0', 'xn--bravo', 'b-ravo', `${bravoApp.port}-bravo`]) {
    const { peer } = await attacker(mint(sub), ports);
    t.equal(registeredTunnel(peer!), sub, `sub ${sub} registers its own tunnel`);
  }
  await bravoStillServed(t, 20);
  t.equal(attackers.reduce((n, p) => n + p.count(FrameType.OPEN), 0), 0, 'no attacker session was sent any of bravo\'s streams');
});

/** Which agent process holds the other end of an app connection, asked of the kernel. */
function ownerOf(socket: Socket, pids: number[]): number | undefined {
  const hex = (n: number): string => n.toString(16).toUpperCase().padStart(4, '0');
  const local = `:${hex(socket.remotePort!)}`;
  const remote = `:${hex(socket.localPort!)}`;
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || !f[1]!.endsWith(local) || !f[2]!.endsWith(remote)) continue;
      const link = `socket:[${f[9]}]`;
      return pids.find((pid) => {
        try {
          return readdirSync(`/proc/${pid}/fd`).some((fd) => {
            try {
              return readlinkSync(`/proc/${pid}/fd/${fd}`) === link;
            } catch {
              return false;
            }
          });
        } catch {
          return false; // the process has exited
        }
      });
    }
  }
  return undefined;
}

/** An app that counts requests per agent process and can hold `/held` until released. */
async function attributingApp(pids: () => number[]): Promise<{ server: Server; port: number; byPid: Map<number | 'unknown', string[]>; held: Promise<(body: string) => void> }> {
  const byPid = new Map<number | 'unknown', string[]>();
  let release!: (r: (body: string) => void) => void;
  const held = new Promise<(body: string) => void>((r) => (release = r));
  const owners = new WeakMap<Socket, number | 'unknown'>();
  const server = createServer((req, res) => {
    const owner = owners.get(req.socket) ?? 'unknown';
    byPid.set(owner, [...(byPid.get(owner) ?? []), req.url ?? '']);
    if (req.url === '/held') return release((body) => res.end(body));
    res.end('ok');
  });
  server.on('connection', (socket: Socket) => owners.set(socket, ownerOf(socket, pids()) ?? 'unknown'));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as AddressInfo).port, byPid, held };
}

t.test('a second agent with the same token replaces the first cleanly', async (t) => {
  const procs: Proc[] = [];
  const app = await attributingApp(() => procs.map((p) => p.child.pid!));
  t.teardown(() => {
    app.server.closeAllConnections();
    app.server.close();
    return Promise.all(procs.map((p) => p.stop()));
  });
  const token = id.token('agent', 'charlie', [app.port]);
  const host = `${app.port}-charlie.${TEST_DOMAIN}`;
  const first = await startAgentProcess(id, relay, token, ['--port', String(app.port)]);
  procs.push(first);
  const firstPid = first.child.pid!;

  const before = await Promise.all(Array.from({ length: 20 }, (_, i) => previewRequest(relay, host, `/before/${i}`)));
  t.equal(before.filter((r) => r.status === 200).length, 20);
  t.equal(app.byPid.get(firstPid)?.length, 20, 'before: all 20 requests went through the first agent');

  // A request the first agent carries while it is replaced.
  const inFlight = previewRequest(relay, host, '/held');
  const release = await app.held;

  // Requests keep coming, one after another, while the second agent connects and takes over.
  let online = false;
  const during: number[] = [];
  const traffic = (async () => {
    for (let i = 0; !online; i++) during.push((await previewRequest(relay, host, `/during/${i}`)).status);
  })();
  const second = startWarren(['agent', '--relay', relay.url, '--ca', id.caFile, '--port', String(app.port)], { WARREN_TOKEN: token });
  procs.push(second);
  await second.waitFor(/is online via/);
  online = true;
  await traffic;
  t.same(
    during.filter((s) => s !== 200),
    [],
    `all ${during.length} requests sent during the takeover answered 200`,
  );
  const delivered = [...app.byPid.values()].flat().filter((u) => u.startsWith('/during/'));
  t.equal(delivered.length, during.length, 'each reached the app exactly once (none lost, none delivered by both agents)');

  const after = await Promise.all(Array.from({ length: 20 }, (_, i) => previewRequest(relay, host, `/after/${i}`)));
  t.equal(after.filter((r) => r.status === 200).length, 20, 'after: 20 requests answered 200');
  t.equal(app.byPid.get(second.child.pid!)?.filter((u) => u.startsWith('/after/')).length, 20, 'after: all 20 went through the second agent');
  t.notOk(app.byPid.get(firstPid)?.some((u) => u.startsWith('/after/')), 'after: none went through the first');
  t.notOk(app.byPid.has('unknown'), 'every request was traced to one agent');

  t.equal(first.child.exitCode, null, 'the first agent waits for the request it carries');
  release('finished\n');
  const held = await inFlight;
  t.same({ status: held.status, body: held.body.toString() }, { status: 200, body: 'finished\n' }, 'the request the first agent carried completed');
  t.equal(await first.exited, 1, 'then the first agent exits 1');
  t.match(first.lines.join('\n'), /stopped: .*ERR_WARREN_TUNNEL_REPLACED/, 'saying it was replaced');
  t.equal(second.child.exitCode, null, 'the second agent runs on');
});
