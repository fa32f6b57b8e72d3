// The relay and the agent as real processes (the built CLI), an app on loopback, and HTTP
// requests to the relay's preview listener: what a user of `warren relay` + `warren agent` sees.
import { createHash, randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { makeTestIdentity } from '../../helpers/identity.js';
import { startPythonHttpServer, startTestApp } from '../../helpers/apps.js';
import { previewRequest, startAgentProcess, startRelayProcess, TEST_DOMAIN } from '../../helpers/cluster.js';
import { runWarren, startWarren } from '../../helpers/process.js';
import { WebSocket, WebSocketServer } from 'ws';
import { once } from 'node:events';

const id = await makeTestIdentity();
t.teardown(() => id.remove());
const relay = await startRelayProcess(id);
t.teardown(() => relay.proc.stop());
const app = await startTestApp();
t.teardown(() => app.close());
const files = mkdtempSync(join(tmpdir(), 'warren-files-'));
t.teardown(() => rmSync(files, { recursive: true, force: true }));
const big = randomBytes(50 * 1024 * 1024);
writeFileSync(join(files, 'big.bin'), big);
const python = await startPythonHttpServer(files);
t.teardown(() => python.proc.stop());

const tunnel = 'e2etest';
const agent = await startAgentProcess(id, relay, id.token('agent', tunnel, [app.port, python.port]), ['--port', String(app.port), '--port', String(python.port)]);
t.teardown(() => agent.stop());
const appHost = `${app.port}-${tunnel}.${TEST_DOMAIN}`;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

t.test('the agent prints the preview URL of each port', async (t) => {
  t.ok(agent.lines.some((l) => l.includes(`http://${app.port}-${tunnel}.${TEST_DOMAIN}`) || l.includes(`${app.port}-${tunnel}.${TEST_DOMAIN}`)), agent.lines.join('\n'));
});

t.test('a 50 MB file from python http.server arrives byte-identical', async (t) => {
  const res = await previewRequest(relay, `${python.port}-${tunnel}.${TEST_DOMAIN}`, '/big.bin');
  t.equal(res.status, 200);
  t.equal(res.body.length, big.length);
  t.equal(sha(res.body), sha(big));
});

t.test('a 10 MB POST reaches the app intact', async (t) => {
  const body = randomBytes(10 * 1024 * 1024);
  const res = await previewRequest(relay, appHost, '/sha256', { method: 'POST', body, headers: { 'content-type': 'application/octet-stream' } });
  t.equal(res.status, 200);
  t.same(JSON.parse(res.body.toString()), { sha256: sha(body), length: body.length });
});

t.test('a Server-Sent Event arrives before the response ends', async (t) => {
  const first = await new Promise<string>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: relay.httpPort, path: '/sse', headers: { host: appHost }, agent: false }, (res) => {
      t.equal(res.headers['content-type'], 'text/event-stream');
      res.once('data', (c: Buffer) => {
        resolve(c.toString());
        // The app still holds the response open: end it, and this request with it.
        void previewRequest(relay, appHost, '/sse-end');
      });
      res.on('error', reject);
      res.resume();
    });
    req.on('error', reject);
    req.end();
  });
  t.match(first, /data: first/);
});

t.test('a WebSocket echoes through the preview', async (t) => {
  const wsApp = new WebSocketServer({ server: app.server, path: '/ws' });
  t.teardown(() => wsApp.close());
  wsApp.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
  const ws = new WebSocket(`ws://127.0.0.1:${relay.httpPort}/ws`, { headers: { host: appHost } });
  await once(ws, 'open');
  const payload = randomBytes(256 * 1024);
  ws.send(payload);
  const [echo] = (await once(ws, 'message')) as [Buffer];
  t.equal(sha(echo), sha(payload), 'a 256 KiB binary message comes back intact');
  ws.send('hello');
  const [text, isBinary] = (await once(ws, 'message')) as [Buffer, boolean];
  t.equal(text.toString(), 'hello');
  t.equal(isBinary, false);
  ws.close();
  await once(ws, 'close');
});

t.test('200 concurrent requests all succeed', async (t) => {
  const results = await Promise.all(Array.from({ length: 200 }, (_, i) => previewRequest(relay, appHost, `/n/${i}`)));
  t.equal(results.filter((r) => r.status === 200 && r.body.toString() === 'hello from the app\n').length, 200);
});

t.test('response headers keep their duplicates (Set-Cookie)', async (t) => {
  const res = await previewRequest(relay, appHost, '/');
  t.same(res.headers['set-cookie'], ['a=1; Path=/', 'b=2; Path=/']);
});

t.test('errors answer with their status and code', async (t) => {
  const offline = await previewRequest(relay, `${app.port}-nobody.${TEST_DOMAIN}`, '/', { headers: { accept: 'application/json' } });
  t.equal(offline.status, 502);
  t.equal(JSON.parse(offline.body.toString()).error.code, 'ERR_WARREN_TUNNEL_OFFLINE');
  const notExposed = await previewRequest(relay, `1-${tunnel}.${TEST_DOMAIN}`, '/', { headers: { accept: 'application/json' } });
  t.equal(notExposed.status, 404);
  t.equal(JSON.parse(notExposed.body.toString()).error.code, 'ERR_WARREN_PORT_NOT_EXPOSED');
});

t.test('an app that refuses the connection gets its own 502 code, distinct from an offline tunnel', async (t) => {
  const closedPort = 1; // nothing listens on port 1 of loopback
  const other = await startAgentProcess(id, relay, id.token('agent', 'refused', [closedPort]), ['--port', String(closedPort)]);
  t.teardown(() => other.stop());
  const res = await previewRequest(relay, `${closedPort}-refused.${TEST_DOMAIN}`, '/', { headers: { accept: 'application/json' } });
  t.equal(res.status, 502);
  t.equal(JSON.parse(res.body.toString()).error.code, 'ERR_WARREN_APP_UNREACHABLE');
});

t.test('an agent token the relay does not trust is refused with its code and exit 1', async (t) => {
  const stranger = await makeTestIdentity();
  t.teardown(() => stranger.remove());
  const refused = startWarren(['agent', '--relay', relay.url, '--ca', id.caFile, '--port', String(app.port)], { WARREN_TOKEN: stranger.token('agent', 'stranger', [app.port]) });
  t.equal(await refused.exited, 1);
  t.ok(refused.lines.some((l) => l.includes('ERR_WARREN_TOKEN_UNKNOWN_KEY')), refused.lines.join('\n'));
  t.notOk(refused.lines.join('\n').includes(stranger.token('agent', 'stranger', [app.port]).split('.')[2]!), 'the token never appears in output');
});

t.test('a token for another role is refused before anything is sent', async (t) => {
  const res = await runWarren(['agent', '--relay', relay.url, '--ca', id.caFile, '--port', String(app.port)], { WARREN_TOKEN: id.token('client', tunnel, [app.port]) });
  t.equal(res.code, 2);
  t.match(res.lines.join('\n'), /role "agent"/);
});

t.test('an agent killed and restarted serves the same URL again', async (t) => {
  const port = app.port;
  const token = id.token('agent', 'restart', [port]);
  const first = await startAgentProcess(id, relay, token, ['--port', String(port)]);
  const host = `${port}-restart.${TEST_DOMAIN}`;
  t.equal((await previewRequest(relay, host, '/')).status, 200);
  await first.stop('SIGKILL');
  const second = await startAgentProcess(id, relay, token, ['--port', String(port)]);
  t.teardown(() => second.stop());
  const res = await previewRequest(relay, host, '/');
  t.equal(res.status, 200);
  t.equal(res.body.toString(), 'hello from the app\n');
});

t.test('a relay without trusted keys will not start', async (t) => {
  const res = await runWarren(['relay', '--listen', '127.0.0.1:0', '--cert', id.certFile, '--key', id.keyFile, '--domain', TEST_DOMAIN]);
  t.equal(res.code, 2);
  t.match(res.lines.join('\n'), /ERR_WARREN_NO_TRUST_KEYS/);
  t.match(res.lines.join('\n'), /trust/i);
});
