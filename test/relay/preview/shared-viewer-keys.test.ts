// Two `warren relay` processes given the same --session-key and --viewer-token-key, one agent at
// each for the same tunnel: a private preview's session cookie set at one relay opens the preview
// at the other, and both sign the app's X-Warren-Viewer-Token with the one key their JWK Sets
// publish. A relay with its own key refuses the cookie. Bad key files are refused at start, by name.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import t from 'tap';
import { startEchoApp } from '../../helpers/apps.js';
import { previewRequest, startAgentProcess, startRelayProcess, TEST_DOMAIN } from '../../helpers/cluster.js';
import { makeTestIdentity } from '../../helpers/identity.js';
import { startWarren } from '../../helpers/process.js';

const id = await makeTestIdentity();
t.teardown(() => id.remove());
const sessionKey = join(id.dir, 'session.key');
writeFileSync(sessionKey, randomBytes(32), { mode: 0o600 });
const viewerKey = join(id.dir, 'viewer.key');
writeFileSync(viewerKey, generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
const shared = ['--session-key', sessionKey, '--viewer-token-key', viewerKey, '--public-url', 'http://preview.test'];
const [a, b, own] = await Promise.all([startRelayProcess(id, shared), startRelayProcess(id, shared), startRelayProcess(id, ['--public-url', 'http://preview.test'])]);
t.teardown(() => Promise.all([a, b, own].map((r) => r.proc.stop('SIGKILL'))));
const app = await startEchoApp();
t.teardown(() => app.close());
const agents = await Promise.all([a, b, own].map((r) => startAgentProcess(id, r, id.token('agent', 'alpha', [app.port]), ['--port', `${app.port}:private`])));
t.teardown(() => Promise.all(agents.map((p) => p.stop())));
const host = `${app.port}-alpha.${TEST_DOMAIN}`;

t.test('a session cookie set at one relay opens the private preview at another that shares the key', async (t) => {
  const viewer = id.token('viewer', 'alpha', [app.port], { viewer: 'ada@example.com' });
  const exchanged = await previewRequest(a, host, `/page?warren_token=${viewer}`);
  t.equal(exchanged.status, 302, 'relay A exchanges the token for a session cookie');
  const cookie = String(exchanged.headers['set-cookie']).split(';')[0]!;
  t.match(cookie, /^warren_session=/);
  const atB = await previewRequest(b, host, '/page', { headers: { cookie } });
  t.equal(atB.status, 200, 'relay B opens the preview with A\'s cookie');
  t.match(atB.body.toString(), '<p id="viewer">ada@example.com</p>', 'and the app sees the viewer');
  const atOwn = await previewRequest(own, host, '/page', { headers: { cookie } });
  t.equal(atOwn.status, 401, 'a relay with its own session key refuses the cookie');
});

/** The JWK Set a relay serves on its own host (TLS listener). */
function jwks(relay: { port: number }): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port: relay.port, path: '/.well-known/warren/jwks.json', servername: 'relay.test', headers: { host: 'relay.test' }, ca: id.caPem, agent: false }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve(body));
    });
    req.on('error', reject);
    req.end();
  });
}

t.test('relays that share the viewer-token key publish the same JWK Set', async (t) => {
  const [ja, jb, jo] = await Promise.all([jwks(a), jwks(b), jwks(own)]);
  t.match(ja, /"kty":"OKP"/);
  t.equal(ja, jb, 'A and B publish one key');
  t.not(ja, jo, 'a relay with its own key publishes another');
});

t.test('bad key files are refused at start, each by its setting name', async (t) => {
  const short = join(id.dir, 'short.key');
  writeFileSync(short, randomBytes(16));
  const rsa = join(id.dir, 'rsa.key');
  writeFileSync(rsa, generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const proc = startWarren(['relay', '--check-config', '--listen', '127.0.0.1:0', '--cert', id.certFile, '--key', id.keyFile, '--domain', TEST_DOMAIN, '--trust-key', id.issuerPubFile, '--session-key', short, '--viewer-token-key', rsa]);
  t.not(await proc.exited, 0, 'exits non-zero');
  const out = proc.lines.join('\n');
  t.match(out, /sessionKey: .*holds 16 bytes; a session key needs at least 32/);
  t.match(out, /viewerTokenKey: .*is a rsa key; viewer tokens are signed with Ed25519/);
});
