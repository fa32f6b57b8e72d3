/**
 * Builds and checks compact JWS tokens by hand with node:crypto and plain JSON, the way `jose`
 * or PyJWT would, without Warren's token code: for interop tests and for tokens Warren's own
 * issuer refuses to make (bad algorithms, repeated keys, broken signatures).
 */
import { createHmac, sign, verify, type KeyObject } from 'node:crypto';

/** base64url of a string's UTF-8 bytes or of raw bytes. */
export function b64url(data: string | Buffer): string {
  return Buffer.from(data).toString('base64url');
}

/**
 * Signs a header and payload with Ed25519. Objects are serialized with JSON.stringify; strings
 * are used as they are (to test repeated keys or odd spacing).
 */
export function mintEdDSA(header: object | string, payload: object | string, key: KeyObject): string {
  const input = `${b64url(typeof header === 'string' ? header : JSON.stringify(header))}.${b64url(typeof payload === 'string' ? payload : JSON.stringify(payload))}`;
  return `${input}.${b64url(sign(null, Buffer.from(input), key))}`;
}

/** An HS256 token whose HMAC secret is `secret` (the classic key-confusion attack uses the public key). */
export function mintHS256(header: object, payload: object, secret: Buffer): string {
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`;
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
}

/** A minimal verifier independent of Warren's: splits, checks the Ed25519 signature, parses both JSON parts. */
export function verifyIndependently(token: string, publicKey: KeyObject): { header: Record<string, unknown>; payload: Record<string, unknown> } | undefined {
  const [h, p, s] = token.split('.');
  if (h === undefined || p === undefined || s === undefined) return undefined;
  if (!verify(null, Buffer.from(`${h}.${p}`), publicKey, Buffer.from(s, 'base64url'))) return undefined;
  return {
    header: JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) as Record<string, unknown>,
    payload: JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as Record<string, unknown>,
  };
}

/** Ed25519's group order L = 2^252 + 27742317777372353535851937790883648493. */
export const ED25519_L = 2n ** 252n + 27742317777372353535851937790883648493n;

/** The same token with S + L in place of S: a non-canonical signature that lenient verifiers accept. */
export function withNonCanonicalS(token: string): string {
  const dot = token.lastIndexOf('.');
  const sig = Buffer.from(token.slice(dot + 1), 'base64url');
  let s = 0n;
  for (let i = 63; i >= 32; i--) s = (s << 8n) | BigInt(sig[i]!);
  s += ED25519_L; // S < L < 2^253, so S + L still fits in 32 bytes
  for (let i = 32; i < 64; i++) {
    sig[i] = Number(s & 0xffn);
    s >>= 8n;
  }
  return `${token.slice(0, dot)}.${sig.toString('base64url')}`;
}
