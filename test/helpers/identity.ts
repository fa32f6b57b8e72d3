import { randomBytes } from 'node:crypto';
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDevCa, issueCertificate } from '../../certs/ca.js';
import { generateIssuerKeys, parseIssuerKey, parsePublicKeys, type TrustedKeys } from '../../certs/keys.js';
import { issueToken, type Role, type WarrenClaims } from '../../certs/token.js';

/** Hosts the test relay certificate covers. */
export const TEST_RELAY_HOSTS = ['localhost', '127.0.0.1', '::1', 'relay.test', '*.preview.test'];

/** Records a secret for npm test's after-suite check that no log line of the suite contains it. */
export function recordSecret(secret: string): void {
  const file = process.env.WARREN_TEST_SECRETS_FILE;
  if (file) appendFileSync(file, `${JSON.stringify(secret)}\n`);
}

/** A dev CA, a relay certificate, an issuer key pair, all written to a temporary folder. */
export interface TestIdentity {
  dir: string;
  caFile: string;
  certFile: string;
  keyFile: string;
  issuerKeyFile: string;
  issuerPubFile: string;
  caPem: string;
  certPem: string;
  keyPem: string;
  trustedKeys: TrustedKeys;
  kid: string;
  /** Mints a token signed by the issuer key (ttl in seconds, default 1 h). */
  token(role: Role, tunnel: string, ports: number[], extra?: Partial<WarrenClaims> & { ttl?: number }): string;
  remove(): void;
}

/** Makes a fresh identity in a temporary folder (call remove() in teardown). */
export async function makeTestIdentity(): Promise<TestIdentity> {
  const dir = mkdtempSync(join(tmpdir(), 'warren-id-'));
  const ca = await createDevCa({ commonName: 'Warren test CA', validDays: 2 });
  const leaf = await issueCertificate(ca, { hosts: TEST_RELAY_HOSTS, validDays: 1 });
  const keys = generateIssuerKeys();
  const files = {
    caFile: join(dir, 'ca.pem'),
    certFile: join(dir, 'relay.pem'),
    keyFile: join(dir, 'relay.key'),
    issuerKeyFile: join(dir, 'issuer.key'),
    issuerPubFile: join(dir, 'issuer.pub'),
  };
  writeFileSync(files.caFile, ca.certPem);
  writeFileSync(files.certFile, leaf.certPem);
  writeFileSync(files.keyFile, leaf.keyPem, { mode: 0o600 });
  writeFileSync(files.issuerKeyFile, keys.privateKeyPem, { mode: 0o600 });
  writeFileSync(files.issuerPubFile, keys.publicKeyPem);
  const issuer = parseIssuerKey(keys.privateKeyPem, 'issuer.key');
  recordSecret(keys.privateKeyPem);
  recordSecret(leaf.keyPem);
  recordSecret(ca.keyPem);
  return {
    dir,
    ...files,
    caPem: ca.certPem,
    certPem: leaf.certPem,
    keyPem: leaf.keyPem,
    trustedKeys: new Map(parsePublicKeys(keys.publicKeyPem, 'issuer.pub').map((k) => [k.kid, k.key])),
    kid: keys.kid,
    token(role, tunnel, ports, extra = {}) {
      const { ttl = 3600, ...claims } = extra;
      const now = Math.floor(Date.now() / 1000);
      const token = issueToken(issuer, { sub: tunnel, role, ports, aud: 'warren', iat: now, exp: now + ttl, jti: randomBytes(8).toString('hex'), ...claims });
      recordSecret(token);
      return token;
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
