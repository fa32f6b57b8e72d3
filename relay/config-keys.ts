/**
 * The relay configuration's key files that relays of a fleet share: the private-preview session
 * key and the viewer-token signing key. Each reader reports its problems into `issues`, by setting
 * name, and returns undefined for a file it cannot use.
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { MIN_SESSION_KEY_BYTES } from './preview/index.js';

/**
 * The private-preview session key: the file's bytes as they are, at least MIN_SESSION_KEY_BYTES
 * (`head -c 32 /dev/urandom > session.key`). Relays that share it accept each other's viewer
 * cookies. Problems go to `issues`.
 */
export async function readSessionKey(file: string, issues: string[]): Promise<Buffer | undefined> {
  try {
    const key = await readFile(file);
    if (key.length < MIN_SESSION_KEY_BYTES) issues.push(`sessionKey: ${file} holds ${key.length} bytes; a session key needs at least ${MIN_SESSION_KEY_BYTES} random bytes (head -c 32 /dev/urandom > ${file})`);
    return key;
  } catch (err) {
    issues.push(`sessionKey: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    return undefined;
  }
}

/**
 * The Ed25519 private key (PEM, as `warren keys generate` writes issuer.key) that signs the viewer
 * identity apps receive. Relays that share it publish one JWK Set. Problems go to `issues`.
 */
export async function readViewerTokenKey(file: string, issues: string[]): Promise<KeyObject | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    issues.push(`viewerTokenKey: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    return undefined;
  }
  try {
    const key = createPrivateKey(text);
    if (key.asymmetricKeyType !== 'ed25519') {
      issues.push(`viewerTokenKey: ${file} is a ${key.asymmetricKeyType ?? 'non-asymmetric'} key; viewer tokens are signed with Ed25519 (warren keys generate)`);
      return undefined;
    }
    return key;
  } catch {
    issues.push(`viewerTokenKey: ${file} is not a PEM private key (warren keys generate writes one)`);
    return undefined;
  }
}
