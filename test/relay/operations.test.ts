// What an operator relies on, with the relay and agents as real processes: the admin listener
// (metrics parsed by the real Prometheus parser, health, readiness, the admin API), drain on
// SIGTERM with a request in flight, logs that never carry a token, and config checking.
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { request } from 'node:http';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { makeTestIdentity } from '../helpers/identity.js';
import { startTestApp } from '../helpers/apps.js';
import { previewRequest, startAgentProcess, startRelayProcess, TEST_DOMAIN, type RelayProc } from '../helpers/cluster.js';
import { runWarren } from '../helpers/process.js';
import { repoRoot } from '../helpers/paths.js';

const ADMIN_TOKEN = 'admin-token-for-tests-0123456789';
const id = await makeTestIdentity();
t.teardown(() => id.remove());
const app = await startTestApp();
t.teardown(() => app.close());

/** Starts a relay with an admin listener; resolves with its admin base URL too. */
async function relayWithAdmin(extra: string[] = []): Promise<RelayProc & { admin: string }> {
  const relay = await startRelayProcess(id, ['--admin', '127.0.0.1:0', ...extra], { WARREN_ADMIN_TOKEN: ADMIN_TOKEN });
  const line = relay.proc.lines.find((l) => l.includes('"event":"listening"'))!;
  const admin = (JSON.parse(line) as { admin: { port: number } }).admin;
  return { ...relay, admin: `http://127.0.0.1:${admin.port}` };
}

/** Metric families parsed by python3-prometheus-client (Debian's, at /usr/bin/python3). */
async function parseMetrics(text: string): Promise<{ name: string; type: string; samples: [string, Record<string, string>, number][] }[]> {
  const script =
    'import sys, json\nfrom prometheus_client.parser import text_string_to_metric_families\n' +
    'print(json.dumps([{"name": f.name, "type": f.type, "samples": [[s.name, s.labels, s.value] for s in f.samples]} for f in text_string_to_metric_families(sys.stdin.read())]))';
  const child = execFile('/usr/bin/python3', ['-c', script], { maxBuffer: 16 * 1024 * 1024 });
  child.stdin!.end(text);
  const out: Buffer[] = [];
  child.stdout!.on('data', (c: Buffer) => out.push(Buffer.from(c)));
  const [code] = (await once(child, 'exit')) as [number];
  if (code !== 0) throw new Error('the Prometheus parser rejected /metrics');
  return JSON.parse(Buffer.concat(out).toString()) as { name: string; type: string; samples: [string, Record<string, string>, number][] }[];
}

/** Metric names listed in docs/metrics.md; `network`: those a relay exposes only in a relay network. */
function documentedMetrics(): Set<string> & { network: Set<string> } {
  const doc = readFileSync(join(repoRoot, 'docs', 'metrics.md'), 'utf8');
  const all = new Set([...doc.matchAll(/^\| `(warren_[a-z0-9_]+)` \|/gm)].map((m) => m[1]!));
  const network = new Set([...doc.matchAll(/^\| `(warren_[a-z0-9_]+)` \|[^\n]*\| Relay network only:/gm)].map((m) => m[1]!));
  return Object.assign(all, { network });
}

const relay = await relayWithAdmin();
t.teardown(() => relay.proc.stop('SIGKILL'));
const agentToken = id.token('agent', 'opsbox', [app.port]);
const agent = await startAgentProcess(id, relay, agentToken, ['--port', String(app.port)]);
t.teardown(() => agent.stop());
const host = `${app.port}-opsbox.${TEST_DOMAIN}`;

t.test('health and readiness answer on the admin listener', async (t) => {
  t.equal((await fetch(`${relay.admin}/healthz`)).status, 200);
  const ready = await fetch(`${relay.admin}/readyz`);
  t.equal(ready.status, 200);
});

t.test('/metrics parses as Prometheus text, matches docs/metrics.md, and counts traffic', async (t) => {
  for (let i = 0; i < 3; i++) t.equal((await previewRequest(relay, host, '/')).status, 200);
  await previewRequest(relay, `1-opsbox.${TEST_DOMAIN}`, '/');
  const text = await (await fetch(`${relay.admin}/metrics`)).text();
  const families = await parseMetrics(text);
  // The parser drops a counter's _total suffix from the family name; samples keep it.
  const exposed = new Set(families.flatMap((f) => (f.type === 'counter' ? [`${f.name}_total`] : [f.name])));
  const documented = documentedMetrics();
  t.same([...exposed].filter((n) => !documented.has(n)).sort(), [], 'every exposed metric is documented');
  t.same([...documented].filter((n) => !exposed.has(n) && !documented.network.has(n)).sort(), [], 'every documented metric is exposed (those of a relay network only in one)');
  t.ok(documented.network.size >= 5 && [...documented.network].every((n) => !exposed.has(n)), 'a relay alone exposes none of the network metrics');
  const sample = (name: string, labels: Record<string, string> = {}): number | undefined =>
    families.flatMap((f) => f.samples).find(([n, l]) => n === name && Object.entries(labels).every(([k, v]) => l[k] === v))?.[2];
  t.equal(sample('warren_agents_connected'), 1);
  // Preview streams are kept alive per tunnel port: the three requests need at least one.
  t.ok((sample('warren_streams_opened_total', { kind: 'preview' }) ?? 0) >= 1);
  t.ok((sample('warren_preview_requests_total', { class: '2xx' }) ?? 0) >= 3);
  t.ok((sample('warren_streams_refused_total', { kind: 'preview', code: 'ERR_WARREN_PORT_NOT_EXPOSED' }) ?? 0) >= 1);
  t.ok((sample('warren_bytes_total', { direction: 'out' }) ?? 0) > 0);
  t.ok((sample('warren_handshake_duration_seconds_count', { role: 'agent' }) ?? 0) >= 1);
  t.notMatch(text, /opsbox/, 'no tunnel id appears in any label');
});

t.test('the admin API needs its bearer token and lists tunnels with their streams', async (t) => {
  t.equal((await fetch(`${relay.admin}/v1/tunnels`)).status, 401);
  t.equal((await fetch(`${relay.admin}/v1/tunnels`, { headers: { authorization: 'Bearer wrong-token-wrong-token' } })).status, 401);
  const res = await fetch(`${relay.admin}/v1/tunnels`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  t.equal(res.status, 200);
  const body = (await res.json()) as { tunnels: { tunnel: string; ports: { port: number }[] }[] };
  const entry = body.tunnels.find((e) => e.tunnel === 'opsbox');
  t.ok(entry, 'the tunnel is listed');
  t.same(entry?.ports.map((p) => p.port), [app.port]);
  const one = await fetch(`${relay.admin}/v1/tunnels/opsbox`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  t.equal(one.status, 200);
  t.ok(Array.isArray(((await one.json()) as { openStreams: unknown[] }).openStreams));
});

t.test('disconnecting a tunnel closes its session; the agent comes back on its own', async (t) => {
  const before = ((await (await fetch(`${relay.admin}/v1/tunnels/opsbox`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()) as { sessionId: string }).sessionId;
  const res = await fetch(`${relay.admin}/v1/tunnels/opsbox`, { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  t.equal(res.status, 200);
  const goingAway = agent.lines.length;
  await agent.waitFor(/is going away/, 10_000, goingAway);
  await agent.waitFor(/is online via/, 10_000, goingAway);
  const after = await fetch(`${relay.admin}/v1/tunnels/opsbox`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  t.not(((await after.json()) as { sessionId: string }).sessionId, before, 'a new session serves the tunnel');
  t.equal((await previewRequest(relay, host, '/')).status, 200);
});

t.test('revoking a token closes its session and the agent stops with ERR_WARREN_TOKEN_REVOKED', async (t) => {
  const token = id.token('agent', 'revoked', [app.port]);
  const jti = (JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { jti: string }).jti;
  const victim = await startAgentProcess(id, relay, token, ['--port', String(app.port)]);
  const res = await fetch(`${relay.admin}/v1/revoke`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ jti }) });
  t.same(await res.json(), { revoked: jti, sessionsClosed: 1 });
  t.equal(await victim.exited, 1);
  t.ok(victim.lines.some((l) => l.includes('ERR_WARREN_TOKEN_REVOKED')), victim.lines.join('\n'));
  const offline = await previewRequest(relay, `${app.port}-revoked.${TEST_DOMAIN}`, '/', { headers: { accept: 'application/json' } });
  t.equal(offline.status, 502);
});

t.test('no log line carries a token or a fragment of one', async (t) => {
  // Access lines are written in batches (at most a second late): wait for the first one.
  await relay.proc.waitFor(/"event":"access"/, 5_000);
  const signature = agentToken.split('.')[2]!;
  const logs = relay.proc.lines.join('\n') + agent.lines.join('\n');
  t.notOk(logs.includes(signature.slice(0, 16)), 'no token signature in the logs');
  t.notOk(logs.includes(agentToken.split('.')[1]!.slice(0, 24)), 'no token payload in the logs');
});

t.test('SIGTERM drains: not ready, agents told to move, the request in flight finishes, exit 0', async (t) => {
  const draining = await relayWithAdmin(['--grace-period', '20s']);
  const moved = await startAgentProcess(id, draining, id.token('agent', 'drainbox', [app.port]), ['--port', String(app.port)]);
  t.teardown(() => moved.stop());
  // A response the app holds open until the test says so.
  const held = app.hold('/held');
  const inFlight = new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: draining.httpPort, path: '/held', headers: { host: `${app.port}-drainbox.${TEST_DOMAIN}` } }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
  const release = await held;
  draining.proc.child.kill('SIGTERM');
  await moved.waitFor(/is going away/);
  t.equal((await fetch(`${draining.admin}/readyz`)).status, 503, 'not ready while draining');
  await t.rejects(previewRequest(draining, `${app.port}-drainbox.${TEST_DOMAIN}`, '/'), { code: 'ECONNREFUSED' }, 'new connections are refused');
  release('released\n');
  t.same(await inFlight, { status: 200, body: 'released\n' }, 'the request in flight completes');
  t.equal(await draining.proc.exited, 0);
});

t.test('--check-config validates a YAML file and reports every problem by name', async (t) => {
  const good = join(id.dir, 'relay.yaml');
  writeFileSync(good, `listen: 127.0.0.1:0\ncert: ${id.certFile}\nkey: ${id.keyFile}\ndomain: ${TEST_DOMAIN}\ntrustKey:\n  - ${id.issuerPubFile}\n`);
  const ok = await runWarren(['relay', '--config', good, '--check-config']);
  t.equal(ok.code, 0);
  t.match(ok.stdout, /config ok/);
  const bad = join(id.dir, 'bad.yaml');
  writeFileSync(bad, 'listen: nowhere\ncert: /nonexistent.pem\ndomain: "not a domain"\ntrustKey: []\ngracePeriod: soon\nlisen: typo\n');
  const res = await runWarren(['relay', '--config', bad, '--check-config']);
  t.equal(res.code, 2);
  const out = res.lines.join('\n');
  t.match(out, /lisen.*did you mean "listen"/);
  const worse = join(id.dir, 'worse.yaml');
  writeFileSync(worse, `listen: nowhere\ncert: /nonexistent.pem\nkey: /nonexistent.key\ndomain: "not a domain"\ngracePeriod: soon\n`);
  const all = (await runWarren(['relay', '--config', worse, '--check-config'])).lines.join('\n');
  for (const field of ['listen', 'cert', 'key', 'domain', 'gracePeriod', 'trustKey']) t.match(all, new RegExp(`${field}:`), `reports ${field}`);
});

t.test('SIGHUP loads a renewed certificate for new connections', async (t) => {
  const { connect: tlsConnect } = await import('node:tls');
  const { copyFileSync } = await import('node:fs');
  const renewed = await makeTestIdentity();
  t.teardown(() => renewed.remove());
  const own = await makeTestIdentity();
  t.teardown(() => own.remove());
  const relay2 = await startRelayProcess(own);
  t.teardown(() => relay2.proc.stop('SIGKILL'));
  const fingerprint = async (ca: string): Promise<string> => {
    const socket = tlsConnect({ host: '127.0.0.1', port: relay2.port, ca, servername: 'relay.test' });
    await once(socket, 'secureConnect');
    const fp = socket.getPeerCertificate().fingerprint256;
    socket.destroy();
    return fp;
  };
  const before = await fingerprint(own.caPem);
  copyFileSync(renewed.certFile, own.certFile);
  copyFileSync(renewed.keyFile, own.keyFile);
  const reloaded = relay2.proc.lines.length;
  relay2.proc.child.kill('SIGHUP');
  await relay2.proc.waitFor(/"event":"certificate_reloaded"/, 10_000, reloaded);
  const after = await fingerprint(renewed.caPem);
  t.not(after, before, 'new connections get the renewed certificate');
});

t.test('a drain hint sends agents to the named relay', async (t) => {
  const target = await startRelayProcess(id);
  t.teardown(() => target.proc.stop('SIGKILL'));
  const hinted = await startRelayProcess(id, ['--drain-hint', target.url]);
  const mover = await startAgentProcess(id, hinted, id.token('agent', 'hinted', [app.port]), ['--port', String(app.port)]);
  t.teardown(() => mover.stop());
  hinted.proc.child.kill('SIGTERM');
  await mover.waitFor(new RegExp(`moving to ${target.url.replace(/[.]/g, '\\.')}`));
  await mover.waitFor(new RegExp(`is online via ${target.url.replace(/[.]/g, '\\.')}`));
  t.equal((await previewRequest(target, `${app.port}-hinted.${TEST_DOMAIN}`, '/')).status, 200, 'the preview works through the hinted relay');
  t.equal(await hinted.proc.exited, 0);
});
