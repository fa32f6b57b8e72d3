import assert from 'node:assert/strict';
import { createPublicKey } from 'node:crypto';
import fc from 'fast-check';
import t from 'tap';
import { generateIssuerKeys, parseIssuerKey, type TrustedKeys } from '../../certs/keys.js';
import { issueToken, verifyToken, type VerifyOptions, type WarrenClaims } from '../../certs/token.js';
import { InvalidArgumentError, TokenError } from '../../protocol/errors.js';
import { mintEdDSA, verifyIndependently } from '../helpers/jws.js';

const NOW_S = 1_750_000_000;
const pair = generateIssuerKeys();
const issuer = parseIssuerKey(pair.privateKeyPem);
const publicKey = createPublicKey(pair.publicKeyPem);
const keys: TrustedKeys = new Map([[issuer.kid, publicKey]]);
const options: VerifyOptions = { keys, audience: 'warren', now: () => NOW_S * 1000 };
const claims: WarrenClaims = { sub: 'ab12cd', role: 'client', ports: [5173], aud: 'warren', exp: NOW_S + 600 };

t.test('a token minted the way jose or PyJWT mint it verifies', async (t) => {
  // jose: header members in insertion order, compact JSON, integer NumericDates.
  const jose = mintEdDSA({ alg: 'EdDSA', kid: issuer.kid }, { ...claims, iat: NOW_S, nbf: NOW_S }, issuer.key);
  t.same(verifyToken(jose, options), { ...claims, iat: NOW_S, nbf: NOW_S });
  // PyJWT: {"alg":..., "kid":..., "typ":"JWT"} with sorted-ish members, and claims of its own.
  const pyjwt = mintEdDSA('{"alg":"EdDSA","kid":"' + issuer.kid + '","typ":"JWT"}', JSON.stringify({ iss: 'platform', ...claims, aud: ['warren'] }), issuer.key);
  t.equal(verifyToken(pyjwt, options).sub, 'ab12cd');
  // Whitespace inside JSON is legal JSON and signed as it is.
  const spaced = mintEdDSA(JSON.stringify({ typ: 'JWT', alg: 'EdDSA', kid: issuer.kid }, null, 2), JSON.stringify(claims, null, 1), issuer.key);
  t.equal(verifyToken(spaced, options).role, 'client');
});

t.test('a token we mint verifies with an independent verifier', async (t) => {
  const token = issueToken(issuer, { ...claims, jti: 'abc' }, { now: () => NOW_S * 1000 });
  const decoded = verifyIndependently(token, publicKey);
  t.ok(decoded, 'the signature verifies with plain node:crypto');
  t.equal(Buffer.from(token.split('.')[0]!, 'base64url').toString(), `{"alg":"EdDSA","typ":"JWT","kid":"${issuer.kid}"}`, 'the header is exactly this');
  t.same(decoded?.payload, { ...claims, jti: 'abc', iat: NOW_S });
  t.same(verifyToken(token, options), { ...claims, jti: 'abc', iat: NOW_S });
});

t.test('issueToken refuses claims the verifier would reject, naming the claim', async (t) => {
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ sub: 'Bad_Id' }, /claims: sub is not a tunnel id/],
    [{ ports: [] }, /claims: ports is not a non-empty array/],
    [{ ports: [70000] }, /claims: ports holds a value that is not a port/],
    [{ role: 'root' }, /claims: role is not one of/],
    [{ private: [1] }, /claims: private lists a port that is not in ports/],
    [{ exp: NOW_S - 1 }, /claims: exp is not after iat/],
    [{ aud: [] }, /claims: aud is not/],
  ];
  for (const [change, message] of bad) {
    const err = t.throws(() => issueToken(issuer, { ...claims, ...change }, { now: () => NOW_S * 1000 }), { code: 'ERR_WARREN_INVALID_ARGUMENT', message });
    t.ok(err instanceof InvalidArgumentError, String(message));
  }
  t.throws(() => issueToken({ key: publicKey, kid: issuer.kid }, claims), { message: /key\.key: not an Ed25519 private key/ });
  t.throws(() => issueToken({ key: issuer.key, kid: '' }, claims), { message: /key\.kid/ });
});

t.test('arbitrary strings never throw anything but TokenError', async (t) => {
  const tokenish = fc.string({ unit: fc.constantFrom(...'ABCDEFabcdef0123456789-_.=+/ eyJ'.split('')), maxLength: 200 });
  fc.assert(
    fc.property(fc.oneof(fc.string({ maxLength: 300 }), fc.string({ unit: 'binary', maxLength: 100 }), tokenish), (s) => {
      assert.throws(() => verifyToken(s, options), TokenError);
    }),
    { numRuns: 3000 },
  );
  t.pass('3000 random strings rejected with TokenError');
});

t.test('a valid token with one character changed is rejected with TokenError', async (t) => {
  const token = issueToken(issuer, claims, { now: () => NOW_S * 1000 });
  fc.assert(
    fc.property(fc.nat(token.length - 1), fc.constantFrom(...'AQgwBx-_.=+/ \u00e9'.split('')), (i, c) => {
      const changed = token.slice(0, i) + c + token.slice(i + 1);
      if (changed === token) return;
      assert.throws(() => verifyToken(changed, options), TokenError);
    }),
    { numRuns: 2000 },
  );
  t.pass('2000 one-character changes rejected');
});

t.test('signed claims sets of any shape verify or fail with TokenError', async (t) => {
  const claim = fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.constantFrom('agent', 'client', 'viewer', 'warren', 'ab12cd', NOW_S, [3000], []));
  const claimSet = fc.record(
    { sub: claim, role: claim, ports: claim, aud: claim, exp: fc.oneof(claim, fc.constant(NOW_S + 60)), nbf: claim, iat: claim, jti: claim, private: claim, viewer: claim },
    { requiredKeys: [] },
  );
  fc.assert(
    fc.property(fc.oneof(claimSet, fc.jsonValue({ maxDepth: 4 })), (payload) => {
      const signed = mintEdDSA({ alg: 'EdDSA', kid: issuer.kid }, JSON.stringify(payload), issuer.key);
      try {
        const out = verifyToken(signed, options);
        assert.ok(Object.isFrozen(out));
      } catch (err) {
        assert.ok(err instanceof TokenError, String(err));
      }
    }),
    { numRuns: 1000 },
  );
  t.pass('1000 signed random claim sets handled');
});

t.test('thousands of verifies run (a reconnect storm in miniature)', async (t) => {
  const fresh = generateIssuerKeys();
  const rotated: TrustedKeys = new Map([...keys, [fresh.kid, createPublicKey(fresh.publicKeyPem)]]);
  const tokens = Array.from({ length: 20 }, (_, i) => issueToken(issuer, { ...claims, sub: `tunnel-${i}`, jti: `j${i}` }, { now: () => NOW_S * 1000 }));
  let verified = 0;
  for (let i = 0; i < 3000; i++) {
    if (verifyToken(tokens[i % tokens.length]!, { ...options, keys: rotated, roles: ['client'], isRevoked: () => false }).sub === `tunnel-${i % tokens.length}`) verified++;
  }
  t.equal(verified, 3000);
});
