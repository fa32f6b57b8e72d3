// Forged, stale and misused tokens against a running `warren relay` process. Each is presented in
// the HELLO at /v1/agent through the real client code (transport/dial.ts, connectSession) and must
// be refused with its own code in the GOAWAY; the relay registers nothing (no agent connected,
// one handshake failure counted per code on /metrics), and no line the relay printed holds any
// fragment of any token. test/certs/token*.test.ts has the same table against verifyToken alone.
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import t from 'tap';
import { dialRelay } from '../../transport/dial.js';
import { parseIssuerKey } from '../../certs/keys.js';
import type { WarrenError } from '../../protocol/index.js';
import { makeTestIdentity, recordSecret } from '../helpers/identity.js';
import { startRelayProcess } from '../helpers/cluster.js';
import { mintEdDSA, mintHS256, withNonCanonicalS } from '../helpers/jws.js';
import { startWarren } from '../helpers/process.js';

const PORT = 3000;
const REVOKED_JTI = 'revoked-jti-for-the-relay-tokens-suite';
const id = await makeTestIdentity();
t.teardown(() => id.remove());
const relay = await startRelayProcess(id, ['--admin', '127.0.0.1:0', '--revoked', REVOKED_JTI]);
t.teardown(() => relay.proc.stop('SIGKILL'));
const adminPort = (JSON.parse(relay.proc.lines.find((l) => l.includes('"event":"listening"'))!) as { admin: { port: number } }).admin.port;

const issuer = parseIssuerKey(readFileSync(id.issuerKeyFile, 'utf8'), 'issuer.key');
const now = Math.floor(Date.now() / 1000);
const claims = { sub: 'victim', role: 'agent', ports: [PORT], aud: 'warren', iat: now, exp: now + 3600 };
const header = { alg: 'EdDSA', typ: 'JWT', kid: id.kid };
/** A token the relay accepts; every row below breaks one thing about it. */
const valid = id.token('agent', 'victim', [PORT]);
const strangerKey = generateKeyPairSync('ed25519').privateKey;
const publicPem = readFileSync(id.issuerPubFile);

/** Hand-made tokens are secrets too: the suite-wide log check looks for them. */
function recorded(token: string): string {
  recordSecret(token);
  return token;
}

const TABLE: { name: string; token: string; code: string }[] = [
  { name: 'expired', token: id.token('agent', 'victim', [PORT], { iat: now - 7200, exp: now - 3600 }), code: 'ERR_WARREN_TOKEN_EXPIRED' },
  { name: 'not yet valid (nbf in an hour)', token: id.token('agent', 'victim', [PORT], { nbf: now + 3600, ttl: 7200 }), code: 'ERR_WARREN_TOKEN_NOT_YET_VALID' },
  { name: 'issued in the future (iat in an hour)', token: id.token('agent', 'victim', [PORT], { iat: now + 3600, exp: now + 7200 }), code: 'ERR_WARREN_TOKEN_NOT_YET_VALID' },
  { name: 'another relay network (aud)', token: id.token('agent', 'victim', [PORT], { aud: 'another-network' }), code: 'ERR_WARREN_TOKEN_AUDIENCE' },
  { name: 'client role at /v1/agent', token: id.token('client', 'victim', [PORT]), code: 'ERR_WARREN_TOKEN_ROLE' },
  { name: 'viewer role at /v1/agent', token: id.token('viewer', 'victim', [PORT]), code: 'ERR_WARREN_TOKEN_ROLE' },
  { name: 'unknown kid', token: recorded(mintEdDSA({ ...header, kid: 'not-a-trusted-key' }, claims, strangerKey)), code: 'ERR_WARREN_TOKEN_UNKNOWN_KEY' },
  { name: 'trusted kid, signed by another key', token: recorded(mintEdDSA(header, claims, strangerKey)), code: 'ERR_WARREN_TOKEN_SIGNATURE' },
  { name: 'alg none', token: recorded(`${Buffer.from(JSON.stringify({ ...header, alg: 'none' })).toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.`), code: 'ERR_WARREN_TOKEN_ALGORITHM' },
  { name: 'HS256 keyed with the public key', token: recorded(mintHS256({ ...header, alg: 'HS256' }, claims, publicPem)), code: 'ERR_WARREN_TOKEN_ALGORITHM' },
  { name: 'non-canonical signature (S + L)', token: recorded(withNonCanonicalS(valid)), code: 'ERR_WARREN_TOKEN_SIGNATURE' },
  { name: 'repeated header key (alg twice)', token: recorded(mintEdDSA(`{"alg":"EdDSA","typ":"JWT","kid":"${id.kid}","alg":"none"}`, claims, issuer.key)), code: 'ERR_WARREN_TOKEN_DUPLICATE_KEY' },
  { name: 'repeated claim (sub twice)', token: recorded(mintEdDSA(header, `${JSON.stringify(claims).slice(0, -1)},"sub":"other"}`, issuer.key)), code: 'ERR_WARREN_TOKEN_DUPLICATE_KEY' },
  { name: 'oversized (5 KB, validly signed)', token: recorded(mintEdDSA(header, { ...claims, pad: 'x'.repeat(3800) }, issuer.key)), code: 'ERR_WARREN_TOKEN_TOO_LARGE' },
  { name: 'truncated (signature cut off)', token: recorded(valid.slice(0, valid.lastIndexOf('.'))), code: 'ERR_WARREN_TOKEN_MALFORMED' },
  { name: 'truncated (signature 2 characters short: 63 bytes)', token: recorded(valid.slice(0, -2)), code: 'ERR_WARREN_TOKEN_SIGNATURE' },
  { name: 'padded base64 (a second spelling)', token: recorded(`${valid.split('.')[0]}=.${valid.split('.').slice(1).join('.')}`), code: 'ERR_WARREN_TOKEN_MALFORMED' },
  { name: 'ports claim holds a string', token: recorded(mintEdDSA(header, { ...claims, ports: ['3000'] }, issuer.key)), code: 'ERR_WARREN_TOKEN_CLAIMS' },
  { name: 'revoked jti', token: id.token('agent', 'victim', [PORT], { jti: REVOKED_JTI }), code: 'ERR_WARREN_TOKEN_REVOKED' },
  { name: 'empty', token: '', code: 'ERR_WARREN_TOKEN_MISSING' },
];

/** Presents `token` at /v1/agent; resolves with the refusal's code, or 'accepted'. */
async function present(token: string): Promise<string> {
  try {
    const session = await dialRelay({ relay: relay.url, path: '/v1/agent', token, ca: id.caPem, app: { ports: [{ port: PORT }] }, session: { keepaliveIntervalMs: 0 } });
    session.destroy();
    return 'accepted';
  } catch (err) {
    return (err as WarrenError).code ?? String(err);
  }
}

/** A metric sample from the relay's admin /metrics (0 when absent). */
async function metric(name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (m && m[1] === name && want.every((w) => (m[2] ?? '').split(',').includes(w))) return Number(m[3]);
  }
  return 0;
}

t.test('every forged, stale or misused token is refused at /v1/agent with its own code', async (t) => {
  for (const row of TABLE) t.equal(await present(row.token), row.code, row.name);
  t.equal(await metric('warren_agents_connected'), 0, 'no tunnel was registered');
  const byCode = new Map<string, number>();
  for (const row of TABLE) byCode.set(row.code, (byCode.get(row.code) ?? 0) + 1);
  for (const [code, n] of byCode) t.equal(await metric('warren_handshake_failures_total', { role: 'agent', code }), n, `${n} handshake failure(s) counted under ${code}`);
});

t.test('the untouched token is accepted, so each refusal above is about the one thing broken', async (t) => {
  t.equal(await present(valid), 'accepted');
});

t.test('`warren agent` with a forged token exits 1 with the code and never prints the token', async (t) => {
  const rows = TABLE.filter((r) => r.name === 'non-canonical signature (S + L)' || r.name === 'alg none');
  await Promise.all(
    rows.map(async (row) => {
      const agent = startWarren(['agent', '--relay', relay.url, '--ca', id.caFile, '--port', String(PORT)], { WARREN_TOKEN: row.token });
      t.equal(await agent.exited, 1, `${row.name}: exit 1`);
      t.ok(agent.lines.some((l) => l.includes(row.code)), `${row.name}: the exit line names ${row.code}`);
      t.notOk(leaks(agent.lines, row.token), `${row.name}: no fragment of the token in the agent's output`);
    }),
  );
});

/** True when a line holds any 24 characters of the token's payload or signature. */
function leaks(lines: string[], token: string): boolean {
  const text = lines.join('\n');
  for (const part of token.split('.').slice(1)) {
    for (let i = 0; i + 24 <= part.length; i += 12) if (text.includes(part.slice(i, i + 24))) return true;
  }
  return false;
}

t.test('no line the relay printed holds a fragment of any presented token', async (t) => {
  t.ok(relay.proc.lines.some((l) => l.includes('"event":"agent_refused"')), 'refusals are logged');
  const leaked = TABLE.filter((row) => leaks(relay.proc.lines, row.token)).map((row) => row.name);
  t.same(leaked, [], `${TABLE.length} tokens, ${relay.proc.lines.length} relay lines`);
  t.notOk(leaks(relay.proc.lines, valid), 'nor of the accepted one');
});
