/**
 * Warren tokens: JWTs in compact JWS form, signed with Ed25519 (`alg: EdDSA`, RFC 8037), so a
 * platform mints them with any JWT library and `warren token issue` mints them too.
 *
 * Verification is strict and ordered cheapest first, because a relay verifies one token per
 * connection and 20,000 agents may reconnect at once: the size cap before any decoding, then
 * the shape (three canonical base64url parts), the header (no repeated keys, `alg` exactly
 * `EdDSA`, no `crit`, a trusted `kid`), the signature (OpenSSL, which also rejects a
 * non-canonical S), and only then the claims. Each failure is a TokenError with its own code;
 * no message contains the token or any part of it. Each part is decoded once.
 */
import { sign, verify, type KeyObject } from 'node:crypto';
import { InvalidArgumentError, TokenError, type ErrorCode } from '../protocol/errors.js';
import { ROLES, audienceMatches, claimsProblem, isNumericDate, isRole, pickClaims, type Role, type WarrenClaims } from './claims.js';
import { MAX_KID_LENGTH, type IssuerKey, type TrustedKeys } from './keys.js';
import { StrictJsonError, parseStrictJson, type JsonValue } from './strict-json.js';

export { ROLES, TUNNEL_ID_PATTERN, type Role, type WarrenClaims } from './claims.js';

/** Default size cap for a token, in bytes (a token is ASCII, so characters and bytes agree). */
export const DEFAULT_MAX_TOKEN_BYTES = 4096;

/** The most clock skew verifyToken tolerates, in seconds; also the default. */
export const MAX_CLOCK_SKEW_SECONDS = 60;

/** Deepest JSON nesting accepted in a header or claims set; Warren's own claims need 2. */
const MAX_TOKEN_JSON_DEPTH = 8;

/** Length of an Ed25519 signature in bytes. */
const ED25519_SIGNATURE_BYTES = 64;

/**
 * Reads a token's claims without verifying anything, for a look before the token is sent where it
 * is verified (is it a JWT, which role, has it expired). Undefined when the token is longer than
 * `maxBytes` (default DEFAULT_MAX_TOKEN_BYTES), is not three dot-separated parts, or its middle
 * part is not a JSON object. Nothing in the result can be trusted.
 */
export function peekClaims(token: string, maxBytes = DEFAULT_MAX_TOKEN_BYTES): Record<string, unknown> | undefined {
  if (token.length > maxBytes) return undefined;
  const parts = token.split('.');
  if (parts.length !== 3) return undefined;
  try {
    const claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as unknown;
    return claims !== null && typeof claims === 'object' ? (claims as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** Options for verifyToken. */
export interface VerifyOptions {
  /** Trusted public keys by kid (loadTrustedKeys). */
  keys: TrustedKeys;
  /** This relay network's name; the token's `aud` must contain it. */
  audience: string;
  /** Roles accepted here; another role fails with ERR_WARREN_TOKEN_ROLE. Default: all. */
  roles?: readonly Role[];
  /** The current time in milliseconds. Default Date.now; tests inject a clock. */
  now?: () => number;
  /** Tolerated clock difference with the issuer, 0-60 seconds. Default 60. */
  clockSkewSeconds?: number;
  /** Size cap in bytes, checked before anything is decoded. Default 4096. */
  maxBytes?: number;
  /** True when a token id has been revoked. Only called for tokens that carry a `jti`. */
  isRevoked?: (jti: string) => boolean;
}

/** Options for issueToken. */
export interface IssueOptions {
  /** The current time in milliseconds, for the default `iat`. Default Date.now. */
  now?: () => number;
}

/**
 * Signs `claims` with an Ed25519 issuer key and returns the compact JWS. The header is exactly
 * `{"alg":"EdDSA","typ":"JWT","kid":...}`. `iat` defaults to now. Claims that verifyToken would
 * reject as malformed are refused with InvalidArgumentError naming the claim.
 */
export function issueToken(key: IssuerKey, claims: WarrenClaims, options: IssueOptions = {}): string {
  if (key.key.type !== 'private' || key.key.asymmetricKeyType !== 'ed25519') throw new InvalidArgumentError('key.key: not an Ed25519 private key');
  if (typeof key.kid !== 'string' || key.kid.length === 0 || key.kid.length > MAX_KID_LENGTH) throw new InvalidArgumentError(`key.kid: not a string of 1-${MAX_KID_LENGTH} characters`);
  const withIat: Record<string, unknown> = { ...claims, iat: claims.iat ?? Math.floor((options.now ?? Date.now)() / 1000) };
  const problem = claimsProblem(withIat);
  if (problem !== undefined) throw new InvalidArgumentError(`claims: ${problem}`);
  const picked = pickClaims(withIat);
  if (picked.iat !== undefined && picked.exp <= picked.iat) throw new InvalidArgumentError('claims: exp is not after iat');
  const header = Buffer.from(JSON.stringify({ alg: 'EdDSA', typ: 'JWT', kid: key.kid })).toString('base64url');
  const payload = Buffer.from(JSON.stringify(picked)).toString('base64url');
  const signingInput = `${header}.${payload}`;
  return `${signingInput}.${sign(null, Buffer.from(signingInput, 'latin1'), key.key).toString('base64url')}`;
}

/**
 * Verifies a token and returns its claims (frozen; unknown claims left out). Throws TokenError
 * with the code of the first check that fails, in this order: ERR_WARREN_TOKEN_TOO_LARGE,
 * _MALFORMED, _DUPLICATE_KEY (header), _ALGORITHM, _MALFORMED (`crit`, `typ`), _UNKNOWN_KEY,
 * _SIGNATURE, _MALFORMED / _DUPLICATE_KEY (payload), _CLAIMS (times), _EXPIRED, _NOT_YET_VALID,
 * _AUDIENCE, _REVOKED, _ROLE, _CLAIMS. Bad options throw InvalidArgumentError.
 */
export function verifyToken(token: string, options: VerifyOptions): Readonly<WarrenClaims> {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_TOKEN_BYTES;
  const skew = options.clockSkewSeconds ?? MAX_CLOCK_SKEW_SECONDS;
  checkOptions(options, maxBytes, skew);

  // 1. Size and shape, before decoding anything.
  if (typeof token !== 'string') fail('ERR_WARREN_TOKEN_MALFORMED', 'token is not a string');
  if (token.length > maxBytes) fail('ERR_WARREN_TOKEN_TOO_LARGE', `token is longer than ${maxBytes} bytes`);
  const dot1 = token.indexOf('.');
  const dot2 = dot1 < 0 ? -1 : token.indexOf('.', dot1 + 1);
  if (dot2 < 0 || token.indexOf('.', dot2 + 1) >= 0) fail('ERR_WARREN_TOKEN_MALFORMED', 'token is not three dot-separated parts');
  // The signature may be empty here (`alg: none` tokens end in '.'): the alg check names that case.
  if (dot1 === 0 || dot2 === dot1 + 1 || !isCanonicalBase64url(token, 0, dot1) || !isCanonicalBase64url(token, dot1 + 1, dot2) || !isCanonicalBase64url(token, dot2 + 1, token.length)) {
    fail('ERR_WARREN_TOKEN_MALFORMED', 'token part is not canonical unpadded base64url');
  }

  // 2. Header.
  const header = decodeJson(token, 0, dot1, 'header');
  if (header.alg !== 'EdDSA') fail('ERR_WARREN_TOKEN_ALGORITHM', 'token alg is not EdDSA');
  if (header.crit !== undefined) fail('ERR_WARREN_TOKEN_MALFORMED', 'token header has crit; Warren supports no critical extensions');
  if (header.typ !== undefined && (typeof header.typ !== 'string' || header.typ.toUpperCase() !== 'JWT')) {
    fail('ERR_WARREN_TOKEN_MALFORMED', 'token typ is not JWT');
  }
  if (typeof header.kid !== 'string') fail('ERR_WARREN_TOKEN_UNKNOWN_KEY', 'token header has no kid');
  const key = options.keys.get(header.kid);
  if (key === undefined) fail('ERR_WARREN_TOKEN_UNKNOWN_KEY', 'token kid is not a trusted key');

  // 3. Signature over the ASCII bytes of "header.payload".
  const signature = Buffer.from(token.slice(dot2 + 1), 'base64url');
  if (signature.length !== ED25519_SIGNATURE_BYTES) fail('ERR_WARREN_TOKEN_SIGNATURE', 'token signature is not 64 bytes');
  if (!verifySignature(Buffer.from(token.slice(0, dot2), 'latin1'), key, signature)) fail('ERR_WARREN_TOKEN_SIGNATURE', 'token signature does not verify');

  // 4. Claims.
  const c = decodeJson(token, dot1 + 1, dot2, 'claims');
  if (!isNumericDate(c.exp)) fail('ERR_WARREN_TOKEN_CLAIMS', 'token exp is missing or not a number of seconds');
  if (c.nbf !== undefined && !isNumericDate(c.nbf)) fail('ERR_WARREN_TOKEN_CLAIMS', 'token nbf is not a number of seconds');
  if (c.iat !== undefined && !isNumericDate(c.iat)) fail('ERR_WARREN_TOKEN_CLAIMS', 'token iat is not a number of seconds');
  const now = (options.now ?? Date.now)() / 1000;
  // A clock that returns NaN would make every time comparison false: every token would be current.
  if (!Number.isFinite(now)) throw new InvalidArgumentError('now: the clock did not return a finite number of milliseconds');
  if (now > c.exp + skew) fail('ERR_WARREN_TOKEN_EXPIRED', 'token has expired');
  if ((c.nbf !== undefined && c.nbf > now + skew) || (c.iat !== undefined && c.iat > now + skew)) {
    fail('ERR_WARREN_TOKEN_NOT_YET_VALID', 'token is not valid yet (nbf or iat in the future)');
  }
  if (c.aud === undefined) fail('ERR_WARREN_TOKEN_AUDIENCE', 'token has no aud');
  const audience = audienceMatches(c.aud, options.audience);
  if (audience === undefined) fail('ERR_WARREN_TOKEN_CLAIMS', 'token aud is not a string or a non-empty array of strings');
  if (!audience) fail('ERR_WARREN_TOKEN_AUDIENCE', 'token is for another relay network (aud)');
  if (options.isRevoked !== undefined && typeof c.jti === 'string' && options.isRevoked(c.jti)) fail('ERR_WARREN_TOKEN_REVOKED', 'token has been revoked');
  if (!isRole(c.role)) fail('ERR_WARREN_TOKEN_CLAIMS', 'token role is not one of agent, client, viewer');
  if (options.roles !== undefined && !options.roles.includes(c.role)) {
    fail('ERR_WARREN_TOKEN_ROLE', `token role is not accepted here (accepted: ${options.roles.join(', ') || 'none'})`);
  }
  const problem = claimsProblem(c);
  if (problem !== undefined) fail('ERR_WARREN_TOKEN_CLAIMS', `token ${problem}`);
  return pickClaims(c);
}

function fail(code: ErrorCode, message: string): never {
  throw new TokenError(code, message);
}

function checkOptions(options: VerifyOptions, maxBytes: number, skew: number): void {
  if (!(options.keys instanceof Map)) throw new InvalidArgumentError('keys: not a Map of kid to KeyObject (loadTrustedKeys)');
  if (typeof options.audience !== 'string' || options.audience.length === 0) throw new InvalidArgumentError('audience: not a non-empty string');
  if (!Number.isInteger(maxBytes) || maxBytes < 1) throw new InvalidArgumentError(`maxBytes: ${maxBytes} is not a positive integer`);
  if (typeof skew !== 'number' || !(skew >= 0 && skew <= MAX_CLOCK_SKEW_SECONDS)) {
    throw new InvalidArgumentError(`clockSkewSeconds: ${skew} is not between 0 and ${MAX_CLOCK_SKEW_SECONDS}`);
  }
  if (options.roles !== undefined && (!Array.isArray(options.roles) || !options.roles.every((r) => ROLES.includes(r)))) {
    throw new InvalidArgumentError(`roles: not an array of ${ROLES.join(', ')}`);
  }
}

/** Value of each base64url character (A-Z a-z 0-9 - _), or -1. */
const BASE64URL_VALUES = (() => {
  const table = new Int8Array(128).fill(-1);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  for (let i = 0; i < alphabet.length; i++) table[alphabet.charCodeAt(i)] = i;
  return table;
})();

/**
 * True when text[start, end) is unpadded base64url whose unused trailing bits are 0: the one
 * encoding of its bytes. Node's decoder would also take '+', '/', '=' and non-zero trailing
 * bits, letting one token have many spellings.
 */
function isCanonicalBase64url(text: string, start: number, end: number): boolean {
  const length = end - start;
  if (length === 0) return true;
  if (length % 4 === 1) return false;
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c > 127 || BASE64URL_VALUES[c]! < 0) return false;
  }
  const last = BASE64URL_VALUES[text.charCodeAt(end - 1)]!;
  if (length % 4 === 2) return (last & 0x0f) === 0; // 1 byte in the last group: 4 unused bits
  if (length % 4 === 3) return (last & 0x03) === 0; // 2 bytes: 2 unused bits
  return true;
}

const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Decodes one part as UTF-8 JSON holding an object. */
function decodeJson(token: string, start: number, end: number, what: 'header' | 'claims'): Record<string, JsonValue> {
  let value: JsonValue;
  try {
    value = parseStrictJson(UTF8.decode(Buffer.from(token.slice(start, end), 'base64url')), { maxDepth: MAX_TOKEN_JSON_DEPTH });
  } catch (err) {
    if (err instanceof StrictJsonError && err.reason === 'duplicate-key') fail('ERR_WARREN_TOKEN_DUPLICATE_KEY', `token ${what} repeats a JSON key`);
    fail('ERR_WARREN_TOKEN_MALFORMED', `token ${what} is not UTF-8 JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    fail(what === 'header' ? 'ERR_WARREN_TOKEN_MALFORMED' : 'ERR_WARREN_TOKEN_CLAIMS', `token ${what} is not a JSON object`);
  }
  return value;
}

function verifySignature(data: Buffer, key: KeyObject, signature: Buffer): boolean {
  try {
    return verify(null, data, key, signature);
  } catch {
    // A KeyObject that is not Ed25519 in a hand-built TrustedKeys map: no token verifies with it.
    return false;
  }
}

/** What verifying a relay's tokens needs: its keys, its audience and its revocations. */
export interface TokenPolicy {
  keys: TrustedKeys;
  audience: string;
  now?: () => number;
  isRevoked?: (jti: string) => boolean;
}

/** Verifies a token for one of `roles` under `policy`; the thrown TokenError's code says why it was refused. */
export function verifyFor(policy: TokenPolicy, token: string, roles: WarrenClaims['role'][]): WarrenClaims {
  if (token === '') throw new TokenError('ERR_WARREN_TOKEN_MISSING', 'no token was presented in HELLO');
  return verifyToken(token, { keys: policy.keys, audience: policy.audience, roles, now: policy.now, isRevoked: policy.isRevoked });
}
