import { createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import t from 'tap';
import { generateIssuerKeys, parseIssuerKey, type TrustedKeys } from '../../certs/keys.js';
import { peekClaims, verifyToken, type VerifyOptions } from '../../certs/token.js';
import { TokenError, type ErrorCode } from '../../protocol/errors.js';
import { b64url, mintEdDSA, mintHS256, withNonCanonicalS } from '../helpers/jws.js';

const NOW_S = 1_750_000_000;
const clock = () => NOW_S * 1000;

const pair = generateIssuerKeys();
const issuer = parseIssuerKey(pair.privateKeyPem);
const publicKey = createPublicKey(pair.publicKeyPem);
const keys: TrustedKeys = new Map([[issuer.kid, publicKey]]);
const options: VerifyOptions = { keys, audience: 'warren', now: clock };
const header = { alg: 'EdDSA', typ: 'JWT', kid: issuer.kid };
const claims = { sub: 'ab12cd', role: 'agent', ports: [3000, 5173], aud: 'warren', iat: NOW_S, exp: NOW_S + 3600, jti: 'j-1' };

/** A token signed with the issuer key, with these claims changed (undefined removes one). */
function signed(change: Record<string, unknown> = {}, headerChange: Record<string, unknown> = {}, key: KeyObject = issuer.key): string {
  const payload: Record<string, unknown> = { ...claims, ...change };
  for (const k of Object.keys(payload)) if (payload[k] === undefined) delete payload[k];
  return mintEdDSA({ ...header, ...headerChange }, payload, key);
}

/** The code verifyToken throws, or 'ok'. Also checks that the message holds no part of the token. */
function codeOf(token: string, extra: Partial<VerifyOptions> = {}): ErrorCode | 'ok' {
  try {
    verifyToken(token, { ...options, ...extra });
    return 'ok';
  } catch (err) {
    if (!(err instanceof TokenError)) throw err;
    for (const part of token.split('.')) {
      if (part.length >= 4 && err.message.includes(part)) throw new Error(`message holds a token part: ${err.message}`, { cause: err });
    }
    if (err.message.includes(issuer.kid)) throw new Error(`message holds the kid: ${err.message}`, { cause: err });
    return err.code;
  }
}

const valid = signed();
const [validHeader, validPayload, validSignature] = valid.split('.') as [string, string, string];
const otherKey = generateKeyPairSync('ed25519').privateKey;
const rawPublicKey = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url');

t.test('a valid token verifies and returns its claims, without unknown ones', async (t) => {
  const out = verifyToken(signed({ extra: { nested: true }, org: 'acme' }), options);
  t.same(out, claims);
  t.notOk('extra' in out, 'unknown claims are ignored');
  t.ok(Object.isFrozen(out) && Object.isFrozen(out.ports));
  t.same(verifyToken(signed({ aud: ['other', 'warren'] }), options).aud, ['other', 'warren'], 'aud may be an array');
  t.same(verifyToken(signed({ role: 'viewer', private: [3000], viewer: 'ada@example.com' }), { ...options, roles: ['viewer'] }).viewer, 'ada@example.com');
  t.equal(codeOf(signed({}, { typ: undefined })), 'ok', 'typ is optional');
  t.equal(codeOf(signed({}, { typ: 'jwt' })), 'ok', 'typ compares case-insensitively (RFC 7515 4.1.9)');
});

// Every rejection, each with its own code. The clock is fixed at NOW_S.
const rejections: [string, () => string, ErrorCode, Partial<VerifyOptions>?][] = [
  ['expired beyond the skew', () => signed({ exp: NOW_S - 61 }), 'ERR_WARREN_TOKEN_EXPIRED'],
  ['nbf in the future beyond the skew', () => signed({ nbf: NOW_S + 61 }), 'ERR_WARREN_TOKEN_NOT_YET_VALID'],
  ['iat in the future beyond the skew', () => signed({ iat: NOW_S + 61 }), 'ERR_WARREN_TOKEN_NOT_YET_VALID'],
  ['wrong aud', () => signed({ aud: 'other-network' }), 'ERR_WARREN_TOKEN_AUDIENCE'],
  ['aud array without ours', () => signed({ aud: ['a', 'b'] }), 'ERR_WARREN_TOKEN_AUDIENCE'],
  ['no aud', () => signed({ aud: undefined }), 'ERR_WARREN_TOKEN_AUDIENCE'],
  ['role not accepted here', () => signed(), 'ERR_WARREN_TOKEN_ROLE', { roles: ['client', 'viewer'] }],
  ['unknown kid', () => signed({}, { kid: 'not-a-trusted-key' }), 'ERR_WARREN_TOKEN_UNKNOWN_KEY'],
  ['no kid', () => signed({}, { kid: undefined }), 'ERR_WARREN_TOKEN_UNKNOWN_KEY'],
  ['kid that is not a string', () => signed({}, { kid: 7 }), 'ERR_WARREN_TOKEN_UNKNOWN_KEY'],
  ['alg none with an empty signature', () => `${b64url(JSON.stringify({ ...header, alg: 'none' }))}.${validPayload}.`, 'ERR_WARREN_TOKEN_ALGORITHM'],
  ['alg none with a signature', () => signed({}, { alg: 'none' }), 'ERR_WARREN_TOKEN_ALGORITHM'],
  ['alg HS256 keyed with the public key bytes', () => mintHS256({ ...header, alg: 'HS256' }, claims, rawPublicKey), 'ERR_WARREN_TOKEN_ALGORITHM'],
  ['alg ES256', () => signed({}, { alg: 'ES256' }), 'ERR_WARREN_TOKEN_ALGORITHM'],
  ['alg Ed25519 (not the JWS name)', () => signed({}, { alg: 'Ed25519' }), 'ERR_WARREN_TOKEN_ALGORITHM'],
  ['alg missing', () => signed({}, { alg: undefined }), 'ERR_WARREN_TOKEN_ALGORITHM'],
  ['crit header', () => signed({}, { crit: ['exp'] }), 'ERR_WARREN_TOKEN_MALFORMED'],
  ['typ other than JWT', () => signed({}, { typ: 'at+jwt' }), 'ERR_WARREN_TOKEN_MALFORMED'],
  ['non-canonical signature (S + L)', () => withNonCanonicalS(valid), 'ERR_WARREN_TOKEN_SIGNATURE'],
  ['signed by another key under our kid', () => signed({}, {}, otherKey), 'ERR_WARREN_TOKEN_SIGNATURE'],
  ['claims changed after signing', () => `${validHeader}.${b64url(JSON.stringify({ ...claims, ports: [22] }))}.${validSignature}`, 'ERR_WARREN_TOKEN_SIGNATURE'],
  ['signature of 63 bytes', () => `${validHeader}.${validPayload}.${b64url(Buffer.alloc(63))}`, 'ERR_WARREN_TOKEN_SIGNATURE'],
  ['signature of 65 bytes', () => `${validHeader}.${validPayload}.${b64url(Buffer.alloc(65))}`, 'ERR_WARREN_TOKEN_SIGNATURE'],
  ['repeated key in the header', () => mintEdDSA(`{"alg":"EdDSA","kid":"${issuer.kid}","alg":"none"}`, claims, issuer.key), 'ERR_WARREN_TOKEN_DUPLICATE_KEY'],
  ['repeated key in the claims', () => mintEdDSA(header, JSON.stringify(claims).replace(/}$/, ',"role":"client"}'), issuer.key), 'ERR_WARREN_TOKEN_DUPLICATE_KEY'],
  ['repeated key deep in the claims', () => mintEdDSA(header, JSON.stringify(claims).replace(/}$/, ',"x":{"y":1,"y":2}}'), issuer.key), 'ERR_WARREN_TOKEN_DUPLICATE_KEY'],
  ['oversized', () => signed({ padding: 'x'.repeat(4096) }), 'ERR_WARREN_TOKEN_TOO_LARGE'],
  ['oversized garbage (capped before decoding)', () => '!'.repeat(4097), 'ERR_WARREN_TOKEN_TOO_LARGE'],
  ['over a smaller cap', () => valid, 'ERR_WARREN_TOKEN_TOO_LARGE', { maxBytes: 200 }],
  ['truncated signature', () => valid.slice(0, -1), 'ERR_WARREN_TOKEN_MALFORMED'],
  ['truncated to two parts', () => valid.slice(0, valid.lastIndexOf('.')), 'ERR_WARREN_TOKEN_MALFORMED'],
  ['truncated inside the claims', () => valid.slice(0, validHeader.length + 10), 'ERR_WARREN_TOKEN_MALFORMED'],
  ['four parts', () => `${valid}.${validSignature}`, 'ERR_WARREN_TOKEN_MALFORMED'],
  ['empty', () => '', 'ERR_WARREN_TOKEN_MALFORMED'],
  ['empty header', () => `.${validPayload}.${validSignature}`, 'ERR_WARREN_TOKEN_MALFORMED'],
  ['base64 padding', () => `${validHeader}=.${validPayload}.${validSignature}`, 'ERR_WARREN_TOKEN_MALFORMED'],
  ["'+' of standard base64", () => `+${valid.slice(1)}`, 'ERR_WARREN_TOKEN_MALFORMED'],
  ["'/' of standard base64", () => `${validHeader}./${validPayload.slice(1)}.${validSignature}`, 'ERR_WARREN_TOKEN_MALFORMED'],
  ['non-zero trailing bits', () => `${validHeader}.${validPayload}.${validSignature.slice(0, -1)}${String.fromCharCode(validSignature.charCodeAt(85) + 1)}`, 'ERR_WARREN_TOKEN_MALFORMED'],
  ['whitespace', () => ` ${valid}`, 'ERR_WARREN_TOKEN_MALFORMED'],
  ['header that is not JSON', () => mintEdDSA('{"alg":"EdDSA",}', claims, issuer.key), 'ERR_WARREN_TOKEN_MALFORMED'],
  ['header that is an array', () => mintEdDSA('["EdDSA"]', claims, issuer.key), 'ERR_WARREN_TOKEN_MALFORMED'],
  ['header that is not UTF-8', () => `${b64url(Buffer.from([0x7b, 0xff, 0x7d]))}.${validPayload}.${validSignature}`, 'ERR_WARREN_TOKEN_MALFORMED'],
  ['claims that are not JSON', () => mintEdDSA(header, 'not json', issuer.key), 'ERR_WARREN_TOKEN_MALFORMED'],
  ['claims that are an array', () => mintEdDSA(header, '[1]', issuer.key), 'ERR_WARREN_TOKEN_CLAIMS'],
  ['revoked jti', () => valid, 'ERR_WARREN_TOKEN_REVOKED', { isRevoked: (jti) => jti === 'j-1' }],
  ['no exp', () => signed({ exp: undefined }), 'ERR_WARREN_TOKEN_CLAIMS'],
  ['exp that is a string', () => signed({ exp: String(NOW_S + 3600) }), 'ERR_WARREN_TOKEN_CLAIMS'],
  ['nbf that is not a number', () => signed({ nbf: null }), 'ERR_WARREN_TOKEN_CLAIMS'],
  ['aud that is a number', () => signed({ aud: 1 }), 'ERR_WARREN_TOKEN_CLAIMS'],
  ['aud that is an empty array', () => signed({ aud: [] }), 'ERR_WARREN_TOKEN_CLAIMS'],
  ['role that is not a role', () => signed({ role: 'admin' }), 'ERR_WARREN_TOKEN_CLAIMS'],
  ['port 0', () => signed({ ports: [0] }), 'ERR_WARREN_TOKEN_CLAIMS'],
  ['port 65536', () => signed({ ports: [3000, 65536] }), 'ERR_WARREN_TOKEN_CLAIMS'],
  ['port that is not an integer', () => signed({ ports: [80.5] }), 'ERR_WARREN_TOKEN_CLAIMS'],
  ['port as a string', () => signed({ ports: ['3000'] }), 'ERR_WARREN_TOKEN_CLAIMS'],
  ['no ports', () => signed({ ports: [] }), 'ERR_WARREN_TOKEN_CLAIMS'],
  ['a port twice', () => signed({ ports: [3000, 3000] }), 'ERR_WARREN_TOKEN_CLAIMS'],
  ['sub with capitals', () => signed({ sub: 'AB12cd' }), 'ERR_WARREN_TOKEN_CLAIMS'],
  ['sub with a trailing hyphen', () => signed({ sub: 'ab12-' }), 'ERR_WARREN_TOKEN_CLAIMS'],
  ['sub of 33 characters', () => signed({ sub: 'a'.repeat(33) }), 'ERR_WARREN_TOKEN_CLAIMS'],
  ['sub with a dot', () => signed({ sub: 'a.b' }), 'ERR_WARREN_TOKEN_CLAIMS'],
  ['no sub', () => signed({ sub: undefined }), 'ERR_WARREN_TOKEN_CLAIMS'],
  ['jti of 129 characters', () => signed({ jti: 'j'.repeat(129) }), 'ERR_WARREN_TOKEN_CLAIMS'],
  ['private port not in ports', () => signed({ private: [8080] }), 'ERR_WARREN_TOKEN_CLAIMS'],
  ['viewer of 257 characters', () => signed({ viewer: 'v'.repeat(257) }), 'ERR_WARREN_TOKEN_CLAIMS'],
];

t.test('every rejection has its own code', async (t) => {
  for (const [name, make, code, extra] of rejections) t.equal(codeOf(make(), extra), code, name);
});

t.test('checks run cheapest first: the earlier failure wins', async (t) => {
  t.equal(codeOf(signed({ padding: 'x'.repeat(4096), exp: 0 }, { alg: 'none' })), 'ERR_WARREN_TOKEN_TOO_LARGE');
  t.equal(codeOf(signed({}, { alg: 'none', kid: 'unknown' })), 'ERR_WARREN_TOKEN_ALGORITHM', 'alg before kid');
  t.equal(codeOf(signed({ exp: 0 }, { kid: 'unknown' })), 'ERR_WARREN_TOKEN_UNKNOWN_KEY', 'kid before claims');
  t.equal(codeOf(signed({ exp: 0, aud: 'x' }, {}, otherKey)), 'ERR_WARREN_TOKEN_SIGNATURE', 'signature before claims');
  t.equal(codeOf(signed({ exp: NOW_S - 3600, aud: 'x', ports: [0] })), 'ERR_WARREN_TOKEN_EXPIRED', 'expiry before aud and claims');
  t.equal(codeOf(signed({ nbf: NOW_S + 3600, aud: 'x' })), 'ERR_WARREN_TOKEN_NOT_YET_VALID', 'nbf before aud');
  t.equal(codeOf(signed({ aud: 'x', role: 'viewer' }), { roles: ['agent'], isRevoked: () => true }), 'ERR_WARREN_TOKEN_AUDIENCE', 'aud before revocation');
  t.equal(codeOf(signed({ role: 'viewer' }), { roles: ['agent'], isRevoked: () => true }), 'ERR_WARREN_TOKEN_REVOKED', 'revocation before role');
  t.equal(codeOf(signed({ role: 'viewer', ports: [0] }), { roles: ['agent'] }), 'ERR_WARREN_TOKEN_ROLE', 'role before other claims');
});

t.test('clock skew: 59 s accepted, 61 s rejected, on both ends', async (t) => {
  t.equal(codeOf(signed({ iat: NOW_S - 3600, exp: NOW_S - 59 })), 'ok', 'expired 59 s ago');
  t.equal(codeOf(signed({ iat: NOW_S - 3600, exp: NOW_S - 61 })), 'ERR_WARREN_TOKEN_EXPIRED', 'expired 61 s ago');
  t.equal(codeOf(signed({ nbf: NOW_S + 59 })), 'ok', 'nbf 59 s ahead');
  t.equal(codeOf(signed({ nbf: NOW_S + 61 })), 'ERR_WARREN_TOKEN_NOT_YET_VALID', 'nbf 61 s ahead');
  t.equal(codeOf(signed({ iat: NOW_S + 59 })), 'ok', 'iat 59 s ahead');
  t.equal(codeOf(signed({ exp: NOW_S - 1 }), { clockSkewSeconds: 0 }), 'ERR_WARREN_TOKEN_EXPIRED', 'no skew when set to 0');
  t.equal(codeOf(signed({ exp: NOW_S })), 'ok', 'valid through the second of exp');
  t.equal(codeOf(signed({ exp: NOW_S + 1.5 })), 'ok', 'fractional NumericDate');
  const advancing = { now: () => (NOW_S + 3600 + 61) * 1000 };
  t.equal(codeOf(valid, advancing), 'ERR_WARREN_TOKEN_EXPIRED', 'the injected clock decides');
});

t.test('revocation is only asked about tokens with a jti', async (t) => {
  const asked: string[] = [];
  const isRevoked = (jti: string) => {
    asked.push(jti);
    return false;
  };
  t.equal(codeOf(signed({ jti: undefined }), { isRevoked }), 'ok');
  t.equal(codeOf(valid, { isRevoked }), 'ok');
  t.same(asked, ['j-1']);
});

t.test('a non-Ed25519 key under a trusted kid verifies nothing', async (t) => {
  const p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
  t.equal(codeOf(valid, { keys: new Map([[issuer.kid, p256]]) }), 'ERR_WARREN_TOKEN_SIGNATURE');
});

t.test('bad options are InvalidArgumentErrors naming the option', async (t) => {
  t.throws(() => verifyToken(valid, { ...options, clockSkewSeconds: 61 }), { code: 'ERR_WARREN_INVALID_ARGUMENT', message: /clockSkewSeconds/ });
  t.throws(() => verifyToken(valid, { ...options, clockSkewSeconds: -1 }), { message: /clockSkewSeconds/ });
  t.throws(() => verifyToken(valid, { ...options, audience: '' }), { message: /audience/ });
  t.throws(() => verifyToken(valid, { ...options, maxBytes: 0 }), { message: /maxBytes/ });
  t.throws(() => verifyToken(valid, { ...options, roles: ['admin' as 'agent'] }), { message: /roles/ });
  t.throws(() => verifyToken(valid, { ...options, keys: {} as TrustedKeys }), { message: /keys/ });
  t.throws(() => verifyToken(valid, { ...options, now: () => NaN }), { code: 'ERR_WARREN_INVALID_ARGUMENT', message: /now: the clock/ });
});

t.test('peekClaims reads the claims of a JWT without verifying it, within the size cap', async (t) => {
  const token = `${b64url(JSON.stringify({ alg: 'none' }))}.${b64url(JSON.stringify({ sub: 'ab12cd', role: 'agent' }))}.`;
  t.same(peekClaims(token), { sub: 'ab12cd', role: 'agent' });
  t.equal(peekClaims('not-a-jwt'), undefined);
  t.equal(peekClaims(`${b64url('{}')}.${b64url('not json')}.x`), undefined);
  t.equal(peekClaims(token, token.length - 1), undefined);
});
