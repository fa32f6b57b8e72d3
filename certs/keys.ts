/**
 * Ed25519 issuer keys: the private key that signs tokens and the public keys relays trust.
 *
 * A key id (`kid`) is the RFC 7638 JWK thumbprint of the public key: base64url(SHA-256) of
 * `{"crv":"Ed25519","kty":"OKP","x":"<base64url public key>"}`, so any JOSE tool computes the
 * same id from the same key. A JWK that carries its own `kid` keeps it (rotation schemes that
 * name keys by date or version work as they are).
 *
 * Files are PEM (PKCS#8 private, SPKI public), a JWK, or a JWK Set `{"keys":[...]}`.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { ConfigError } from '../protocol/errors.js';
import { StrictJsonError, parseStrictJson, type JsonValue } from './strict-json.js';

/** Trusted public keys by key id; relays verify tokens against these. */
export type TrustedKeys = ReadonlyMap<string, KeyObject>;

/** A private key that signs tokens, with the key id written into each token header. */
export interface IssuerKey {
  /** An Ed25519 private KeyObject. */
  readonly key: KeyObject;
  /** The key id; relays look the public key up by it. */
  readonly kid: string;
}

/** A freshly generated issuer key pair, as PEM text. */
export interface GeneratedIssuerKeys {
  /** PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`): keep it secret, mode 0600. */
  readonly privateKeyPem: string;
  /** SPKI PEM (`-----BEGIN PUBLIC KEY-----`): give it to relays (`--trust-key`). */
  readonly publicKeyPem: string;
  /** RFC 7638 thumbprint of the public key. */
  readonly kid: string;
}

/** Longest key id accepted from a JWK; thumbprints are 43 characters. */
export const MAX_KID_LENGTH = 128;

/** Generates an Ed25519 key pair for signing tokens. */
export function generateIssuerKeys(): GeneratedIssuerKeys {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privateKeyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    publicKeyPem: publicKey.export({ format: 'pem', type: 'spki' }).toString(),
    kid: jwkThumbprint(publicKey),
  };
}

/** The RFC 7638 JWK thumbprint (base64url SHA-256) of an Ed25519 public or private key. */
export function jwkThumbprint(key: KeyObject): string {
  const publicKey = key.type === 'private' ? createPublicKey(key) : key;
  if (publicKey.asymmetricKeyType !== 'ed25519') throw new TypeError('jwkThumbprint: the key is not an Ed25519 key');
  const { x } = publicKey.export({ format: 'jwk' });
  // Members in lexicographic order, no whitespace: the form RFC 7638 section 3.2 requires.
  return createHash('sha256').update(`{"crv":"Ed25519","kty":"OKP","x":"${x}"}`).digest('base64url');
}

/**
 * Reads trusted public keys from files (PEM, JWK or JWK Set) and returns them by kid. Every
 * problem in every file is collected before failing: ConfigError with code ERR_WARREN_KEY, one
 * issue per problem, each naming its file. Private keys are refused: relays need public keys
 * only. No files gives an empty map; the caller decides whether that is allowed.
 */
export async function loadTrustedKeys(files: readonly string[]): Promise<TrustedKeys> {
  const texts = await Promise.all(files.map(async (file) => ({ file, text: await readKeyFile(file).catch((err: ConfigError) => err) })));
  const keys = new Map<string, KeyObject>();
  const where = new Map<string, string>();
  const issues: string[] = [];
  for (const { file, text } of texts) {
    if (text instanceof ConfigError) {
      issues.push(...text.issues);
      continue;
    }
    try {
      for (const { kid, key } of parsePublicKeys(text, file)) {
        const earlier = where.get(kid);
        if (earlier !== undefined) {
          issues.push(`${file}: key id "${kid}" is also used by a key in ${earlier}; every trusted key needs its own kid`);
          continue;
        }
        keys.set(kid, key);
        where.set(kid, file);
      }
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      issues.push(...err.issues);
    }
  }
  if (issues.length > 0) throw new ConfigError(issues, 'ERR_WARREN_KEY');
  return keys;
}

/**
 * Parses the public keys in one file's text (`source` names it in errors): a PEM public key, a
 * JWK, or a JWK Set. Throws ConfigError (ERR_WARREN_KEY) listing every problem.
 */
export function parsePublicKeys(text: string, source = 'key'): { kid: string; key: KeyObject }[] {
  const trimmed = text.trim();
  if (trimmed.startsWith('-----BEGIN')) {
    if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(trimmed)) {
      throw keyError(source, 'is a private key; relays trust the public key (issuer.pub), never the private one');
    }
    const key = pemKey(source, () => createPublicKey(trimmed));
    return [{ kid: jwkThumbprint(key), key }];
  }
  const json = parseKeyJson(trimmed, source);
  if (isObject(json) && 'keys' in json) {
    if (!Array.isArray(json.keys)) throw keyError(source, '"keys" is not an array of JWKs');
    const out: { kid: string; key: KeyObject }[] = [];
    const issues: string[] = [];
    json.keys.forEach((jwk, i) => {
      try {
        out.push(publicJwk(jwk, `${source}: keys[${i}]`, false));
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        issues.push(...err.issues);
      }
    });
    if (issues.length > 0) throw new ConfigError(issues, 'ERR_WARREN_KEY');
    return out;
  }
  return [publicJwk(json, source, false)];
}

/** Reads an issuer's private key (PKCS#8 PEM, or a JWK with `d`) from a file. */
export async function loadIssuerKey(file: string): Promise<IssuerKey> {
  return parseIssuerKey(await readKeyFile(file), file);
}

/**
 * Parses an issuer's private key from text (`source` names it in errors): PKCS#8 PEM, or a JWK
 * with `d` (its `kid` is used when present, else the thumbprint). Throws ConfigError (ERR_WARREN_KEY).
 */
export function parseIssuerKey(text: string, source = 'key'): IssuerKey {
  const trimmed = text.trim();
  if (trimmed.startsWith('-----BEGIN')) {
    if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(trimmed)) throw keyError(source, 'is not a private key (expected -----BEGIN PRIVATE KEY-----)');
    const key = pemKey(source, () => createPrivateKey(trimmed));
    return { key, kid: jwkThumbprint(key) };
  }
  const jwk = parseKeyJson(trimmed, source);
  if (!isObject(jwk) || typeof jwk.d !== 'string') throw keyError(source, 'is not a private key (a JWK needs "d")');
  const { kid } = publicJwk(jwk, source, true); // checks kty, crv, x and kid
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: { kty: 'OKP', crv: 'Ed25519', x: jwk.x as string, d: jwk.d }, format: 'jwk' });
  } catch (err) {
    throw keyError(source, 'has a "d" that is not an Ed25519 private key', err);
  }
  if (createPublicKey(key).export({ format: 'jwk' }).x !== jwk.x) throw keyError(source, 'has "x" and "d" that do not belong together');
  return { key, kid };
}

async function readKeyFile(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    throw keyError(file, `cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`, err);
  }
}

function pemKey(source: string, make: () => KeyObject): KeyObject {
  let key: KeyObject;
  try {
    key = make();
  } catch (err) {
    throw keyError(source, 'is not a readable PEM key', err);
  }
  if (key.asymmetricKeyType !== 'ed25519') throw keyError(source, `is a ${key.asymmetricKeyType ?? 'non-asymmetric'} key; Warren tokens use Ed25519`);
  return key;
}

function parseKeyJson(text: string, source: string): JsonValue {
  try {
    return parseStrictJson(text, { maxDepth: 8 });
  } catch (err) {
    if (!(err instanceof StrictJsonError)) throw err;
    throw keyError(source, `is neither a PEM key nor a JWK (${err.message})`, err);
  }
}

/** Validates one Ed25519 JWK and returns its kid and public key; `d` is refused unless `allowPrivate`. */
function publicJwk(jwk: JsonValue | undefined, source: string, allowPrivate: boolean): { kid: string; key: KeyObject } {
  if (!isObject(jwk)) throw keyError(source, 'is not a JWK object');
  if (!allowPrivate && jwk.d !== undefined) throw keyError(source, 'is a private key (it has "d"); relays trust the public key only');
  if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519') {
    throw keyError(source, `is not an Ed25519 key (kty ${JSON.stringify(jwk.kty)}, crv ${JSON.stringify(jwk.crv)}; need kty "OKP", crv "Ed25519")`);
  }
  if (jwk.use !== undefined && jwk.use !== 'sig') throw keyError(source, 'has "use" other than "sig"');
  if (jwk.alg !== undefined && jwk.alg !== 'EdDSA' && jwk.alg !== 'Ed25519') throw keyError(source, 'has "alg" other than "EdDSA"');
  if (typeof jwk.x !== 'string' || !/^[A-Za-z0-9_-]{43}$/.test(jwk.x)) throw keyError(source, 'has no valid "x" (43 base64url characters)');
  if (jwk.kid !== undefined && (typeof jwk.kid !== 'string' || jwk.kid.length === 0 || jwk.kid.length > MAX_KID_LENGTH)) {
    throw keyError(source, `has a "kid" that is not a string of 1-${MAX_KID_LENGTH} characters`);
  }
  let key: KeyObject;
  try {
    key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: jwk.x }, format: 'jwk' });
  } catch (err) {
    throw keyError(source, 'has an "x" that is not an Ed25519 public key', err);
  }
  return { kid: jwk.kid ?? jwkThumbprint(key), key };
}

function isObject(value: JsonValue | undefined): value is { [key: string]: JsonValue } {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function keyError(source: string, problem: string, cause?: unknown): ConfigError {
  return new ConfigError([`${source}: ${problem}`], 'ERR_WARREN_KEY', { cause });
}
