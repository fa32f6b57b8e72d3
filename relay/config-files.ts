/**
 * The pieces of configuration validation that gather problems instead of throwing: each reports
 * into `issues`, starting with the setting's name, and returns undefined for what it cannot use.
 * Files: PEM certificates and keys, the TLS identity they make, and the key files that relays of a
 * fleet share (the private-preview session key, the viewer-token signing key).
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import { ConfigError } from '../protocol/index.js';
import { MIN_SESSION_KEY_BYTES } from './preview/index.js';

/** Runs `fn`; a thrown error (a ConfigError's issues, or any message) goes to `issues`, and the result is undefined. */
export function attemptInto<T>(issues: string[], fn: () => T): T | undefined {
  try {
    return fn();
  } catch (err) {
    issues.push(err instanceof ConfigError ? err.issues.join('; ') : (err as Error).message);
    return undefined;
  }
}

/** The file a setting names, as text; "cannot read" goes to `issues`. */
export async function readSettingFile(setting: string, file: string, issues: string[]): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    issues.push(`${setting}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    return undefined;
  }
}

/** A PEM file a setting names; "cannot read" and "not a PEM file" go to `issues`. */
export async function readPemSetting(setting: string, file: string, issues: string[]): Promise<string | undefined> {
  const text = await readSettingFile(setting, file, issues);
  if (text !== undefined && !text.includes('-----BEGIN')) issues.push(`${setting}: ${file} is not a PEM file`);
  return text;
}

/**
 * Checks that a certificate and its key (and a CA, for mutual TLS) make a usable TLS identity, as
 * the listener will load them at start, so --check-config catches a key of another certificate.
 * Does nothing unless every part is PEM text (their own problems are reported already).
 */
export function checkTlsIdentity(issues: string[], setting: string, files: { cert: string; key: string }, pem: { cert?: string; key?: string; ca?: string }, withCa = false): void {
  const { cert, key, ca } = pem;
  if (!cert?.includes('-----BEGIN') || !key?.includes('-----BEGIN') || (withCa && !ca?.includes('-----BEGIN'))) return;
  try {
    createSecureContext(withCa ? { cert, key, ca } : { cert, key });
  } catch (err) {
    issues.push(`${setting}: ${files.cert} with key ${files.key} is not a usable TLS identity: ${(err as Error).message.replace(/^error:[0-9A-F]+:[^:]*::/, '')}`);
  }
}

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
  const text = await readSettingFile('viewerTokenKey', file, issues);
  if (text === undefined) return undefined;
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
