import { createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { generateIssuerKeys, jwkThumbprint, loadIssuerKey, loadTrustedKeys, parseIssuerKey, parsePublicKeys } from '../../certs/keys.js';
import { ConfigError } from '../../protocol/errors.js';

// RFC 8037 appendix A: an Ed25519 key, its thumbprint (A.3) and a JWS signed with it (A.4).
const RFC_JWK = { kty: 'OKP', crv: 'Ed25519', d: 'nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A', x: '11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo' };
const RFC_THUMBPRINT = 'kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k';
const RFC_SIGNING_INPUT = 'eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc';
const RFC_SIGNATURE = 'hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg';

const dir = mkdtempSync(join(tmpdir(), 'warren-keys-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
let fileNumber = 0;
function file(content: string | object): string {
  const path = join(dir, `key-${fileNumber++}`);
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
  return path;
}

/** The issues of the ConfigError a promise rejects with, after checking its code. */
async function issuesOf(t: Test, promise: Promise<unknown>): Promise<readonly string[]> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof ConfigError, 'rejects with ConfigError');
  t.equal((err as ConfigError).code, 'ERR_WARREN_KEY');
  return (err as ConfigError).issues;
}

t.test('the kid is the RFC 7638 thumbprint (RFC 8037 A.3 vector)', async (t) => {
  const issuer = parseIssuerKey(JSON.stringify({ ...RFC_JWK }));
  t.equal(issuer.kid, RFC_THUMBPRINT);
  t.equal(jwkThumbprint(createPublicKey(issuer.key)), RFC_THUMBPRINT);
  t.equal(sign(null, Buffer.from(RFC_SIGNING_INPUT), issuer.key).toString('base64url'), RFC_SIGNATURE, 'signs the RFC 8037 A.4 example');
  const [trusted] = parsePublicKeys(JSON.stringify({ kty: 'OKP', crv: 'Ed25519', x: RFC_JWK.x }));
  t.equal(trusted?.kid, RFC_THUMBPRINT);
});

t.test('generated keys are PKCS#8 / SPKI PEM that sign and verify, with a thumbprint kid', async (t) => {
  const keys = generateIssuerKeys();
  t.match(keys.privateKeyPem, /^-----BEGIN PRIVATE KEY-----\n/);
  t.match(keys.publicKeyPem, /^-----BEGIN PUBLIC KEY-----\n/);
  t.match(keys.kid, /^[A-Za-z0-9_-]{43}$/);
  const issuer = await loadIssuerKey(file(keys.privateKeyPem));
  const trusted = await loadTrustedKeys([file(keys.publicKeyPem)]);
  t.equal(issuer.kid, keys.kid);
  t.same([...trusted.keys()], [keys.kid]);
  const signature = sign(null, Buffer.from('x'), issuer.key);
  t.ok(verify(null, Buffer.from('x'), trusted.get(keys.kid)!, signature));
  t.not(generateIssuerKeys().kid, keys.kid, 'each pair is new');
});

t.test('trusted keys load from PEM, JWK and JWK Set; a JWK keeps its own kid', async (t) => {
  const a = generateIssuerKeys();
  const b = generateIssuerKeys();
  const c = generateIssuerKeys();
  const jwkOf = (pem: string) => createPublicKey(pem).export({ format: 'jwk' });
  const trusted = await loadTrustedKeys([
    file(a.publicKeyPem),
    file({ ...jwkOf(b.publicKeyPem), kid: '2025-06', use: 'sig', alg: 'EdDSA' }),
    file({ keys: [jwkOf(c.publicKeyPem)] }),
  ]);
  t.same([...trusted.keys()].sort(), [a.kid, '2025-06', c.kid].sort());
});

t.test('an issuer key loads from a JWK with d, keeping its kid', async (t) => {
  const issuer = await loadIssuerKey(file({ ...RFC_JWK, kid: 'k1' }));
  t.equal(issuer.kid, 'k1');
  t.equal(issuer.key.type, 'private');
});

t.test('keys that are not Ed25519 are refused, naming the file', async (t) => {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'pem', type: 'spki' }).toString();
  const p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
  const x25519 = generateKeyPairSync('x25519').publicKey.export({ format: 'pem', type: 'spki' }).toString();
  const cases: [string, string | object, RegExp][] = [
    ['RSA PEM', rsa, /is a rsa key; Warren tokens use Ed25519/],
    ['P-256 JWK', p256.export({ format: 'jwk' }), /is not an Ed25519 key \(kty "EC", crv "P-256"/],
    ['X25519 PEM', x25519, /is a x25519 key/],
    ['X25519 JWK', { kty: 'OKP', crv: 'X25519', x: RFC_JWK.x }, /is not an Ed25519 key/],
    ['oct JWK', { kty: 'oct', k: 'c2VjcmV0' }, /is not an Ed25519 key/],
    ['garbage', 'not a key', /is neither a PEM key nor a JWK/],
    ['bad PEM', '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n', /is not a readable PEM key/],
    ['short x', { kty: 'OKP', crv: 'Ed25519', x: 'AAAA' }, /has no valid "x"/],
    ['wrong use', { kty: 'OKP', crv: 'Ed25519', x: RFC_JWK.x, use: 'enc' }, /has "use" other than "sig"/],
    ['empty kid', { kty: 'OKP', crv: 'Ed25519', x: RFC_JWK.x, kid: '' }, /has a "kid" that is not a string/],
    ['duplicate JSON key', `{"kty":"OKP","crv":"Ed25519","x":"${RFC_JWK.x}","x":"${RFC_JWK.x}"}`, /repeated object key/],
  ];
  for (const [name, content, pattern] of cases) {
    const path = file(content);
    const issues = await issuesOf(t, loadTrustedKeys([path]));
    t.equal(issues.length, 1, name);
    t.match(issues[0], pattern, name);
    t.ok(issues[0]?.startsWith(`${path}: `), `${name}: the issue names the file`);
  }
});

t.test('a private key given as a trusted key is refused', async (t) => {
  const keys = generateIssuerKeys();
  const [pem] = await issuesOf(t, loadTrustedKeys([file(keys.privateKeyPem)]));
  t.match(pem, /is a private key; relays trust the public key/);
  const [jwk] = await issuesOf(t, loadTrustedKeys([file(RFC_JWK)]));
  t.match(jwk, /is a private key/);
});

t.test('a public key given as the issuer key is refused', async (t) => {
  const keys = generateIssuerKeys();
  t.throws(() => parseIssuerKey(keys.publicKeyPem, 'issuer.pub'), { code: 'ERR_WARREN_KEY', message: /issuer\.pub: is not a private key/ });
  t.throws(() => parseIssuerKey(JSON.stringify({ kty: 'OKP', crv: 'Ed25519', x: RFC_JWK.x })), { message: /a JWK needs "d"/ });
  t.throws(() => parseIssuerKey(JSON.stringify({ ...RFC_JWK, x: createPublicKey(keys.publicKeyPem).export({ format: 'jwk' }).x })), {
    message: /"x" and "d" that do not belong together/,
  });
});

t.test('two keys with one kid are an error, whichever files they come from', async (t) => {
  const keys = generateIssuerKeys();
  const first = file(keys.publicKeyPem);
  const second = file(keys.publicKeyPem);
  const [issue] = await issuesOf(t, loadTrustedKeys([first, second]));
  t.match(issue, `${second}: key id "${keys.kid}" is also used by a key in ${first}`);
  const other = createPublicKey(generateIssuerKeys().publicKeyPem).export({ format: 'jwk' });
  const rfc = { kty: 'OKP', crv: 'Ed25519', x: RFC_JWK.x };
  const [inSet] = await issuesOf(t, loadTrustedKeys([file({ keys: [{ ...rfc, kid: 'same' }, { ...other, kid: 'same' }] })]));
  t.match(inSet, /key id "same" is also used/);
});

t.test('every problem in every file is reported at once', async (t) => {
  const missing = join(dir, 'does-not-exist.pub');
  const issues = await issuesOf(t, loadTrustedKeys([missing, file('junk'), file({ keys: [{ kty: 'RSA' }, { kty: 'OKP', crv: 'Ed25519' }] })]));
  t.equal(issues.length, 4);
  t.match(issues[0], `${missing}: cannot be read (ENOENT)`);
  t.match(issues[2], /keys\[0\]: is not an Ed25519 key/);
  t.match(issues[3], /keys\[1\]: has no valid "x"/);
});

t.test('no files give no keys; the caller decides whether that is allowed', async (t) => {
  t.equal((await loadTrustedKeys([])).size, 0);
});
