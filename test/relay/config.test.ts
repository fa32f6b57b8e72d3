// Relay configuration checks that --check-config relies on: the certificate and key are loaded as
// the TLS listener will load them, so a key of another certificate is caught before a restart.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { loadRelayConfig } from '../../relay/config.js';
import { ConfigError } from '../../protocol/index.js';
import { makeTestIdentity } from '../helpers/identity.js';

const a = await makeTestIdentity();
const b = await makeTestIdentity();
t.teardown(() => {
  a.remove();
  b.remove();
});

t.test('a certificate with its own key is a valid TLS identity', async (t) => {
  const config = await loadRelayConfig({ listen: '127.0.0.1:0', cert: a.certFile, key: a.keyFile, domain: 'preview.test', trustKey: [a.issuerPubFile] });
  t.equal(config.certFile, a.certFile);
});

t.test('a key of another certificate is reported with both file names, with the other problems', async (t) => {
  const err = await loadRelayConfig({ listen: '127.0.0.1:0', cert: a.certFile, key: b.keyFile, domain: 'preview.test', trustKey: [a.issuerPubFile], gracePeriod: 'soon' }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.type(err, ConfigError);
  const issues = (err as ConfigError).issues;
  t.ok(issues.some((i) => i.startsWith(`cert: ${a.certFile} with key ${b.keyFile} is not a usable TLS identity: key values mismatch`)), issues.join('\n'));
  t.ok(issues.some((i) => i.startsWith('gracePeriod:')), 'every problem is reported at once');
});

t.test('the shared preview keys are loaded from their files, and bad ones reported by name', async (t) => {
  const base = { listen: '127.0.0.1:0', cert: a.certFile, key: a.keyFile, domain: 'preview.test', trustKey: [a.issuerPubFile] };
  const session = join(a.dir, 'session.key');
  writeFileSync(session, randomBytes(48));
  const viewer = join(a.dir, 'viewer.key');
  writeFileSync(viewer, generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const config = await loadRelayConfig({ ...base, sessionKey: session, viewerTokenKey: viewer });
  t.equal(config.previewSessionKey?.length, 48);
  t.equal(config.viewerTokenKey?.asymmetricKeyType, 'ed25519');
  t.equal((await loadRelayConfig(base)).previewSessionKey, undefined, 'absent: the relay makes its own');
  const err = (await loadRelayConfig({ ...base, sessionKey: join(a.dir, 'missing.key'), viewerTokenKey: a.certFile }).catch((e: unknown) => e)) as ConfigError;
  t.type(err, ConfigError);
  t.ok(err.issues.some((i) => i.startsWith('sessionKey: cannot read')), err.issues.join('\n'));
  t.ok(err.issues.some((i) => i.startsWith('viewerTokenKey:') && i.includes('not a PEM private key')), err.issues.join('\n'));
});
