// Three `warren relay` processes as one network on a real nats-server (JetStream), one preview
// domain, mesh links over mutual TLS: an agent at one relay is reached through every relay, for
// previews (a 20 MB body byte-identical, SSE unbuffered, a WebSocket echo), `warren connect` and a
// private preview whose cookie was set at another relay. Then the wrong peers: a mesh client whose
// certificate is not from the mesh CA or that has none, ALPN warren.v1.mesh on the public listener,
// a client session that dresses a stream up as forwarded, and a forwarded open for an agent
// session the holder no longer has. Then failures: the holder killed with SIGKILL (the others stop
// routing to it at once, the agent moves and every relay serves it again), and NATS stopped and
// started again (held tunnels never fail, remote ones keep their last known route).
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { join } from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import t from 'tap';
import { WebSocket } from 'ws';
import { createDevCa, issueCertificate } from '../../../certs/ca.js';
import { ALPN_CONNECT, connectSession, socketTransport, type MuxStream } from '../../../protocol/index.js';
import { startEchoApp, startTestApp } from '../../helpers/apps.js';
import { previewRequest, startAgentProcess, TEST_DOMAIN, type RelayProc } from '../../helpers/cluster.js';
import { makeTestIdentity } from '../../helpers/identity.js';
import { startNatsServer } from '../../helpers/nats.js';
import { freePort } from '../../helpers/peers.js';
import { startWarren, type Proc } from '../../helpers/process.js';

const ADMIN_TOKEN = 'network-admin-token-0123456789';
const id = await makeTestIdentity();
t.teardown(() => id.remove());
const nats = await startNatsServer();
t.teardown(() => nats.destroy());

// The mesh: one CA, a certificate per relay for client and server use; and a CA nobody trusts.
const meshCa = await createDevCa({ commonName: 'Warren mesh test CA', validDays: 2 });
const rogueCa = await createDevCa({ commonName: 'not the mesh CA', validDays: 2 });
const write = (name: string, text: string | Buffer): string => {
  const file = join(id.dir, name);
  writeFileSync(file, text, { mode: 0o600 });
  return file;
};
const meshCaFile = write('mesh-ca.pem', meshCa.certPem);
const sessionKey = write('session.key', randomBytes(32));
const viewerKey = write('viewer.key', generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }));
const testPeer = await issueCertificate(meshCa, { hosts: ['127.0.0.1'], usage: 'both', validDays: 1 });
const rogue = await issueCertificate(rogueCa, { hosts: ['127.0.0.1'], usage: 'both', validDays: 1 });

/** A relay of the network: its process and ports, and its mesh port once it announced it. */
interface NetRelay extends RelayProc {
  name: string;
  meshPort: number;
  /** The admin listener's URL. */
  admin: string;
  args: string[];
}

async function startNetRelay(name: string, region: string, listenPort?: number): Promise<NetRelay> {
  const cert = await issueCertificate(meshCa, { hosts: ['127.0.0.1'], usage: 'both', validDays: 1 });
  const port = listenPort ?? (await freePort());
  const args = [
    'relay', '--listen', `127.0.0.1:${port}`, '--http-listen', '127.0.0.1:0', '--cert', id.certFile, '--key', id.keyFile, '--domain', TEST_DOMAIN, '--trust-key', id.issuerPubFile,
    '--public-url', 'http://preview.test', '--session-key', sessionKey, '--viewer-token-key', viewerKey,
    '--directory', nats.url, '--directory-heartbeat', '500ms', '--id', name, '--region', region, '--advertise', `wss://127.0.0.1:${port}`,
    '--mesh-listen', '127.0.0.1:0', '--admin', '127.0.0.1:0', '--admin-token', ADMIN_TOKEN, '--mesh-cert', write(`${name}-mesh.pem`, cert.certPem), '--mesh-key', write(`${name}-mesh.key`, cert.keyPem), '--mesh-ca', meshCaFile,
  ];
  const proc = startWarren(args);
  const joined = JSON.parse(await proc.waitFor(/"event":"network_joined"/)) as { mesh: string };
  const listening = JSON.parse(await proc.waitFor(/"event":"listening"/)) as { listen: { port: number }; httpListen: { port: number }; admin: { port: number } };
  return { name, proc, port: listening.listen.port, httpPort: listening.httpListen.port, url: `wss://127.0.0.1:${listening.listen.port}`, meshPort: Number(joined.mesh.split(':').pop()), admin: `http://127.0.0.1:${listening.admin.port}`, args };
}

const relays = [await startNetRelay('r1', 'eu'), await startNetRelay('r2', 'us'), await startNetRelay('r3', 'ap')];
t.teardown(() => Promise.all(relays.map((r) => r.proc.stop('SIGKILL'))));
const [r1, r2, r3] = relays as [NetRelay, NetRelay, NetRelay];

const app = await startTestApp();
t.teardown(() => app.close());
const echo = await startEchoApp();
t.teardown(() => echo.close());
const agentToken = id.token('agent', 'ab12cd', [app.port, echo.port]);
const agent = await startAgentProcess(id, r1, agentToken, ['--port', String(app.port), '--port', `${echo.port}:private`, '--relay', r2.url]);
t.teardown(() => agent.stop());
const HOST = `${app.port}-ab12cd.${TEST_DOMAIN}`;
const PRIVATE = `${echo.port}-ab12cd.${TEST_DOMAIN}`;

/**
 * Waits until `relay` answers the preview with 200: the condition is the directory record and the
 * mesh link having reached that relay, checked by asking every 50 ms, within a deadline.
 */
async function untilServed(relay: RelayProc, host = HOST, deadlineMs = 20_000): Promise<void> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    const res = await previewRequest(relay, host, '/');
    if (res.status === 200) return;
    if (Date.now() > until) throw new Error(`${host} not served through port ${relay.httpPort} within ${deadlineMs} ms: ${res.status} ${String(res.headers["x-warren-error"])}\n${relays.map((r) => r.name + ":\n" + r.proc.lines.filter((l) => !l.includes("\"access\"")).slice(0, 25).join("\n")).join("\n")}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

await Promise.all(relays.map((r) => untilServed(r)));

t.test('every relay serves the preview: a 20 MB body byte-identical, SSE as it is written, a WebSocket echo', async (t) => {
  const size = 20 * 1024 * 1024;
  const expected = createHash('sha256').update(Buffer.alloc(size, 0x61)).digest('hex');
  for (const r of relays) {
    const res = await previewRequest(r, HOST, `/bytes/${size}`);
    t.equal(res.status, 200, `${r.name}: 200`);
    t.equal(createHash('sha256').update(res.body).digest('hex'), expected, `${r.name}: 20 MB byte-identical`);
  }
  // SSE through a relay that does not hold the tunnel: the first event arrives while the response is still open.
  const first = await new Promise<string>((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: r3.httpPort, path: '/sse', headers: { host: HOST } }, (res) => {
      res.once('data', (c: Buffer) => {
        resolve(c.toString());
        req.destroy();
      });
    });
    req.on('error', reject);
    req.end();
  });
  t.match(first, 'data: first', 'r3: the first SSE event arrives before the response ends');
  const ws = new WebSocket(`ws://127.0.0.1:${r2.httpPort}/`, { headers: { host: `${echo.port}-ab12cd.${TEST_DOMAIN}` } });
  // The echo port is private: without a viewer session the upgrade is refused.
  const refused = await new Promise<number>((resolve) => ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0)));
  t.equal(refused, 401, 'r2: a private port refuses an upgrade without a viewer session');
});

t.test('metrics and readiness show the network: links, directory, forwarded streams', async (t) => {
  const text = await (await fetch(`${r2.admin}/metrics`)).text();
  const value = (line: RegExp): number => Number(line.exec(text)?.[1] ?? NaN);
  t.equal(value(/^warren_mesh_links (\d+)$/m), 2, 'r2 has a link to each of the two others');
  t.equal(value(/^warren_directory_connected (\d+)$/m), 1);
  t.equal(value(/^warren_directory_relays (\d+)$/m), 2);
  t.ok(value(/^warren_mesh_streams_total\{direction="out"\} (\d+)$/m) >= 1, 'r2 forwarded streams out');
  const held = await (await fetch(`${r1.admin}/metrics`)).text();
  t.ok(Number(/^warren_mesh_streams_total\{direction="in"\} (\d+)$/m.exec(held)?.[1] ?? 0) >= 2, 'r1 served forwarded streams in');
  t.equal(await (await fetch(`${r2.admin}/readyz`)).text(), 'ready\n');
});

t.test('the admin API of a relay that does not hold the tunnel says which relay does', async (t) => {
  const res = await fetch(`${r3.admin}/v1/tunnels/ab12cd`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  t.equal(res.status, 200);
  const body = (await res.json()) as { relay: string; region: string; heldHere: boolean; ports: { port: number; private: boolean }[] };
  t.same({ relay: body.relay, region: body.region, heldHere: body.heldHere }, { relay: 'r1', region: 'eu', heldHere: false });
  t.same(body.ports.map((p) => [p.port, p.private]).sort(), [[app.port, false], [echo.port, true]].sort(), 'its ports, the private one marked');
  t.equal((await fetch(`${r3.admin}/v1/tunnels/nobody`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).status, 404, 'a tunnel no relay holds: 404');
});

/** Sends `bytes` to a relay's plain-HTTP listener; resolves with everything read until close. */
function rawExchange(relay: RelayProc, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host: '127.0.0.1', port: relay.httpPort }, () => socket.write(bytes, 'latin1'));
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', reject);
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
  });
}

t.test('through a forwarding relay the guard and header rules hold as at the holder', async (t) => {
  const smuggled = `GET /slow HTTP/1.1\r\nHost: ${HOST}\r\nX-Warren-Viewer: ceo@example.com\r\n\r\n`;
  const from = app.requests.length;
  const answer = await rawExchange(r3, `POST /innocent HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n${'a:1\r\n'.repeat(1_100)}Content-Length: ${smuggled.length}\r\n\r\n${smuggled}`);
  t.match(answer, /^HTTP\/1\.1 431 /, 'a framing header past the header-count limit: 431 at the edge');
  const forged = await rawExchange(r3, `GET /who HTTP/1.1\r\nHost: ${HOST}\r\nX_Warren_Viewer: ceo@example.com\r\nX-Warren-Viewer: ceo@example.com\r\nX-Forwarded-For: 6.6.6.6\r\nTrue-Client-IP: 6.6.6.6\r\nConnection: close\r\n\r\n`);
  t.match(forged, /^HTTP\/1\.1 200 /);
  const seen = app.requests.slice(from);
  t.same(seen.map((r) => r.url), ['/who'], 'the app saw the one admitted request');
  const h = seen[0]!.headers;
  t.same([h['x-warren-viewer'], h['x_warren_viewer'], h['true-client-ip'], h['x-forwarded-for'], h['x-real-ip']], [undefined, undefined, undefined, '127.0.0.1', '127.0.0.1'], 'forged identity and address headers never reach the app through the hop');
});

t.test('warren connect through each relay reaches the app', async (t) => {
  const clientToken = id.token('client', 'ab12cd', [app.port]);
  for (const r of relays) {
    const proc: Proc = startWarren(['connect', `ab12cd:${app.port}`, '--relay', r.url, '--ca', id.caFile, '--listen', '127.0.0.1:0'], { WARREN_TOKEN: clientToken });
    const line = await proc.waitFor(/forwarding 127\.0\.0\.1:\d+/);
    const port = Number(/127\.0\.0\.1:(\d+)/.exec(line)![1]);
    const body = await (await fetch(`http://127.0.0.1:${port}/hello`)).text();
    t.equal(body, 'hello from the app\n', `${r.name}: warren connect answers`);
    await proc.stop('SIGKILL');
  }
});

t.test('a private preview: the cookie set at one relay opens it at the others, and the app sees the viewer', async (t) => {
  const viewer = id.token('viewer', 'ab12cd', [echo.port], { viewer: 'ada@example.com' });
  const exchanged = await previewRequest(r2, PRIVATE, `/page?warren_token=${viewer}`);
  t.equal(exchanged.status, 302, 'r2 (not the holder) exchanges the token for a cookie');
  const cookie = String(exchanged.headers['set-cookie']).split(';')[0]!;
  for (const r of [r3, r1]) {
    const res = await previewRequest(r, PRIVATE, '/page', { headers: { cookie } });
    t.equal(res.status, 200, `${r.name}: the cookie opens the private preview`);
    t.match(res.body.toString(), '<p id="viewer">ada@example.com</p>', `${r.name}: the app sees the viewer`);
  }
  const ws = new WebSocket(`ws://127.0.0.1:${r3.httpPort}/`, { headers: { host: PRIVATE, cookie, origin: `http://${PRIVATE}` } });
  const hello = await new Promise<string>((resolve, reject) => {
    ws.once('message', (m: Buffer) => resolve(m.toString()));
    ws.once('error', reject);
  });
  t.equal(hello, 'hello ada@example.com', 'r3: the WebSocket reaches the app with the viewer');
  ws.send('ping through the mesh');
  const [echoed] = (await once(ws, 'message')) as [Buffer];
  t.equal(String(echoed), 'ping through the mesh', 'r3: the WebSocket echoes');
  ws.close();
});

/** Tries a TLS connection to a relay's mesh listener; resolves whether the handshake succeeded and the ALPN chosen. */
function meshHandshake(port: number, options: { cert?: string; key?: string; alpn?: string[] }): Promise<{ ok: boolean; alpn: string | false | null }> {
  return new Promise((resolve) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, ca: meshCa.certPem, cert: options.cert, key: options.key, ALPNProtocols: options.alpn ?? ['warren.v1.mesh'], minVersion: 'TLSv1.3' });
    socket.once('secureConnect', () => {
      // TLS 1.3: the server checks the client certificate after the client's Finished; a refusal
      // arrives as an alert right after, so wait for the first read.
      socket.once('data', () => undefined);
      socket.once('close', () => resolve({ ok: false, alpn: socket.alpnProtocol }));
      socket.write(Buffer.alloc(0));
      setTimeout(() => {
        if (!socket.destroyed) {
          resolve({ ok: true, alpn: socket.alpnProtocol });
          socket.destroy();
        }
      }, 500).unref();
    });
    socket.once('error', () => resolve({ ok: false, alpn: null }));
  });
}

t.test('the wrong peers get nothing', async (t) => {
  t.notOk((await meshHandshake(r2.meshPort, {})).ok, 'no client certificate: no mesh connection');
  t.notOk((await meshHandshake(r2.meshPort, { cert: rogue.certPem, key: rogue.keyPem })).ok, 'a certificate from another CA: no mesh connection');
  const atPublic = await new Promise<string>((resolve) => {
    const socket = tlsConnect({ host: '127.0.0.1', port: r2.port, ca: id.caPem, servername: 'relay.test', ALPNProtocols: ['warren.v1.mesh'], minVersion: 'TLSv1.3' });
    socket.once('secureConnect', () => resolve(`connected (${String(socket.alpnProtocol)})`));
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
  t.match(atPublic, /NO_APPLICATION_PROTOCOL|alert/i, 'ALPN warren.v1.mesh on the public listener is refused in the handshake');

  // A client session (a valid client token for another tunnel) dressing a stream up as forwarded:
  // the relay opens it to the client token's own tunnel, never to the one the metadata names.
  const other = await startTestApp();
  t.teardown(() => other.close());
  const otherAgent = await startAgentProcess(id, r3, id.token('agent', 'other', [other.port]), ['--port', String(other.port)]);
  t.teardown(() => otherAgent.stop());
  const socket = tlsConnect({ host: '127.0.0.1', port: r2.port, ca: id.caPem, servername: 'relay.test', ALPNProtocols: [ALPN_CONNECT], minVersion: 'TLSv1.3' });
  await once(socket, 'secureConnect');
  const session = await connectSession(socketTransport(socket), { token: id.token('client', 'other', [other.port]), app: { tunnel: 'other', ports: [other.port] } });
  t.teardown(() => session.destroy());
  const before = app.requests.length;
  const stream: MuxStream = session.open(other.port, { fwd: '1', tunnel: 'ab12cd', epoch: 'whatever', src: 'preview' });
  stream.end(`GET /forged HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  await once(stream, 'end');
  t.match(Buffer.concat(chunks).toString(), 'hello from the app', 'the stream reached the client token\'s own tunnel');
  t.equal(app.requests.length, before, 'the tunnel named in the metadata saw nothing');
  t.ok(other.requests.some((r) => r.url === '/forged'), 'the token\'s tunnel got it');
});

t.test('a forwarded open for an agent session the holder does not have is refused with ERR_WARREN_TUNNEL_MOVED', async (t) => {
  // The test acts as a mesh peer with a certificate of the mesh CA.
  const socket = tlsConnect({ host: '127.0.0.1', port: r1.meshPort, ca: meshCa.certPem, cert: testPeer.certPem, key: testPeer.keyPem, ALPNProtocols: ['warren.v1.mesh'], minVersion: 'TLSv1.3' });
  await once(socket, 'secureConnect');
  const session = await connectSession(socketTransport(socket), { token: '', app: { relay: 'test-peer', epoch: 'e' } });
  t.teardown(() => session.destroy());
  const stream = session.open(app.port, { fwd: '1', tunnel: 'ab12cd', epoch: 'not-the-agent-session', src: 'preview' });
  const [err] = (await once(stream, 'error')) as [{ code: string }];
  t.equal(err.code, 'ERR_WARREN_TUNNEL_MOVED');
  const bad = session.open(app.port, { tunnel: 'ab12cd', src: 'preview' });
  const [err2] = (await once(bad, 'error')) as [{ code: string }];
  t.equal(err2.code, 'ERR_WARREN_BAD_REQUEST', 'an open that is not marked forwarded, with no agent session, is refused');
});

t.test('NATS stopped: held and remote previews keep answering; NATS back: still one network', async (t) => {
  await nats.stop('SIGKILL');
  // /readyz stays 200 (the relay serves) and says what it serves from.
  const untilDegraded = Date.now() + 15_000;
  let ready = await (await fetch(`${r2.admin}/readyz`)).text();
  while (!ready.includes('degraded') && Date.now() < untilDegraded) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    ready = await (await fetch(`${r2.admin}/readyz`)).text();
  }
  t.match(ready, /^ready, degraded: the directory is unreachable/, 'r2 /readyz says it routes from its last known view');
  for (const r of relays) {
    const res = await previewRequest(r, HOST, '/');
    t.equal(res.status, 200, `${r.name}: answers while the directory is down (${r === r1 ? 'holds the tunnel' : 'last known view'})`);
  }
  await nats.start();
  // The relays reconnect by themselves; the tunnel is re-registered and served everywhere.
  await Promise.all(relays.map((r) => untilServed(r)));
  t.pass('every relay serves after NATS is back');
});

t.test('the holder killed with SIGKILL: the others stop routing to it at once, then serve the agent at its next relay', async (t) => {
  await r1.proc.stop('SIGKILL');
  const started = Date.now();
  const res = await previewRequest(r3, HOST, '/');
  t.ok(res.status === 200 || res.headers['x-warren-error'] === 'ERR_WARREN_TUNNEL_OFFLINE', `r3 answers at once (${res.status} ${String(res.headers['x-warren-error'])}), never hangs`);
  t.ok(Date.now() - started < 2_000, 'within 2 s');
  await agent.waitFor(/is online via/, 20_000, agent.lines.findIndex((l) => /is online via/.test(l)) + 1);
  await Promise.all([r2, r3].map((r) => untilServed(r)));
  t.pass('the agent moved to r2, and r2 and r3 serve it');
});
