import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createServer, type ConnectionOptions, type TLSSocket, type TlsOptions } from 'node:tls';
import t, { type Test } from 'tap';
import { certificateHost, createDevCa, issueCertificate, loadCertificateAuthority } from '../../certs/ca.js';
// After certs/ca.js, which loads the Reflect polyfill @peculiar/x509 needs.
import * as x509 from '@peculiar/x509';

const ca = await createDevCa({ commonName: 'Test CA' });
const otherCa = await createDevCa();
const server = await issueCertificate(ca, { hosts: ['*.preview.example.dev', 'relay.example.dev', '127.0.0.1', '::1'] });

/** How one TLS handshake on 127.0.0.1 ended on each side: 'ok' or the error code. */
interface Outcome {
  client: string;
  server: string;
}

async function handshake(t: Test, serverOptions: TlsOptions, clientOptions: ConnectionOptions): Promise<Outcome> {
  let serverOutcome!: (result: string) => void;
  const serverSide = new Promise<string>((resolve) => (serverOutcome = resolve));
  const tlsServer = createServer({ minVersion: 'TLSv1.3', ...serverOptions }, (socket) => {
    // With requestCert and rejectUnauthorized false, the server sees why a client certificate failed.
    serverOutcome(socket.authorized || !serverOptions.requestCert ? 'ok' : String(socket.authorizationError));
    socket.end('hello');
  });
  tlsServer.on('tlsClientError', (err: NodeJS.ErrnoException) => serverOutcome(err.code ?? err.message));
  await new Promise<void>((resolve) => tlsServer.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => tlsServer.close(() => resolve())));
  const { port } = tlsServer.address() as { port: number };
  const clientSide = new Promise<string>((resolve) => {
    // In TLS 1.3 the server checks a client certificate after the client's handshake is done, so
    // a refused client learns it from an alert (an error) or a close before any data.
    const socket: TLSSocket = connect({ host: '127.0.0.1', port, minVersion: 'TLSv1.3', ...clientOptions });
    let received = '';
    socket.on('data', (data: Buffer) => (received += data.toString()));
    socket.once('error', (err: NodeJS.ErrnoException) => {
      socket.destroy();
      resolve(err.code ?? err.message);
    });
    socket.once('close', () => resolve(received === 'hello' ? 'ok' : 'closed before data'));
  });
  const client = await clientSide;
  // A client that gave up first (it refused the server) leaves the server with a reset or an alert.
  const server = await Promise.race([serverSide, new Promise<string>((resolve) => tlsServer.once('close', () => resolve('no handshake')))]);
  return { client, server };
}

/** The client's view of a handshake: 'ok' or the code of its error. */
async function clientView(t: Test, serverOptions: TlsOptions, clientOptions: ConnectionOptions): Promise<string> {
  return (await handshake(t, serverOptions, clientOptions)).client;
}

t.test('the CA certificate is a P-256 CA with pathlen 0', async (t) => {
  const cert = new X509Certificate(ca.certPem);
  t.ok(cert.ca);
  t.equal(cert.subject, 'CN=Test CA');
  t.ok(cert.checkIssued(cert), 'self-signed');
  t.equal(cert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  t.equal(createPrivateKey(ca.keyPem).asymmetricKeyType, 'ec');
  t.match(ca.keyPem, /^-----BEGIN PRIVATE KEY-----\n/, 'PKCS#8');
  t.ok(new Date(cert.validTo).getTime() > Date.now() + 3000 * 86_400_000, 'valid for about ten years by default');
});

t.test('a leaf certificate carries the SANs, usages and constraints it should', async (t) => {
  const cert = new X509Certificate(server.certPem);
  t.notOk(cert.ca, 'CA:false');
  t.equal(cert.subject, 'CN=*.preview.example.dev', 'CN is the first host');
  t.equal(cert.subjectAltName, 'DNS:*.preview.example.dev, DNS:relay.example.dev, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1');
  t.same(cert.keyUsage, ['1.3.6.1.5.5.7.3.1'], 'extKeyUsage serverAuth');
  t.ok(cert.checkIssued(new X509Certificate(ca.certPem)));
  t.ok(cert.verify(new X509Certificate(ca.certPem).publicKey), 'signed by the CA key');
  t.ok(cert.checkPrivateKey(createPrivateKey(server.keyPem)), 'the key is the certificate key');
  t.ok(new Date(cert.validTo).getTime() < Date.now() + 91 * 86_400_000, '90 days by default');
  const again = new X509Certificate((await issueCertificate(ca, { hosts: ['a.example.dev'] })).certPem);
  t.not(again.serialNumber, cert.serialNumber, 'serials are random');
  t.equal(cert.serialNumber.length, 32, '16-byte serial');
});

t.test('usage client and both set the extended key usages', async (t) => {
  const client = new X509Certificate((await issueCertificate(ca, { hosts: ['relay-eu-1'], usage: 'client' })).certPem);
  t.same(client.keyUsage, ['1.3.6.1.5.5.7.3.2']);
  const both = new X509Certificate((await issueCertificate(ca, { hosts: ['relay-eu-1'], usage: 'both' })).certPem);
  t.same(both.keyUsage?.sort(), ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
});

t.test('Node accepts the leaf against the CA for a wildcard host, an exact host and an IP', async (t) => {
  const serverOptions = { cert: server.certPem, key: server.keyPem };
  t.equal(await clientView(t, serverOptions, { ca: ca.certPem, servername: '3000-ab12cd.preview.example.dev' }), 'ok', 'wildcard');
  t.equal(await clientView(t, serverOptions, { ca: ca.certPem, servername: 'relay.example.dev' }), 'ok', 'exact name');
  t.equal(await clientView(t, serverOptions, { ca: ca.certPem }), 'ok', 'IP SAN 127.0.0.1');
});

t.test('Node rejects the leaf for another CA, a name it does not cover, and a two-level wildcard match', async (t) => {
  const serverOptions = { cert: server.certPem, key: server.keyPem };
  t.equal(await clientView(t, serverOptions, { ca: otherCa.certPem, servername: 'x.preview.example.dev' }), 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'another CA');
  t.equal(await clientView(t, serverOptions, { servername: 'x.preview.example.dev' }), 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'system CAs only');
  t.equal(await clientView(t, serverOptions, { ca: ca.certPem, servername: 'evil.example.com' }), 'ERR_TLS_CERT_ALTNAME_INVALID', 'uncovered name');
  t.equal(await clientView(t, serverOptions, { ca: ca.certPem, servername: 'a.b.preview.example.dev' }), 'ERR_TLS_CERT_ALTNAME_INVALID', 'wildcards cover one label');
  const otherLeaf = await issueCertificate(otherCa, { hosts: ['relay.example.dev'] });
  t.equal(await clientView(t, { cert: otherLeaf.certPem, key: otherLeaf.keyPem }, { ca: ca.certPem, servername: 'relay.example.dev' }), 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'a leaf of another CA');
});

t.test('mutual TLS: a client certificate is accepted only from the CA and only with clientAuth', async (t) => {
  const mtlsServer = { cert: server.certPem, key: server.keyPem, ca: ca.certPem, requestCert: true, rejectUnauthorized: true };
  // The same server, telling why it refuses a client instead of closing silently.
  const explaining = { ...mtlsServer, rejectUnauthorized: false };
  const client = { ca: ca.certPem, servername: 'relay.example.dev' };
  const mesh = await issueCertificate(ca, { hosts: ['relay-us-1'], usage: 'both' });
  t.same(await handshake(t, mtlsServer, { ...client, cert: mesh.certPem, key: mesh.keyPem }), { client: 'ok', server: 'ok' }, 'mesh certificate');
  const serverOnly = await issueCertificate(ca, { hosts: ['relay-us-1'] });
  t.equal(await clientView(t, mtlsServer, { ...client, cert: serverOnly.certPem, key: serverOnly.keyPem }), 'closed before data', 'serverAuth only: refused');
  t.equal((await handshake(t, explaining, { ...client, cert: serverOnly.certPem, key: serverOnly.keyPem })).server, 'INVALID_PURPOSE');
  const foreign = await issueCertificate(otherCa, { hosts: ['relay-us-1'], usage: 'client' });
  t.equal(await clientView(t, mtlsServer, { ...client, cert: foreign.certPem, key: foreign.keyPem }), 'closed before data', 'another CA: refused');
  t.equal((await handshake(t, explaining, { ...client, cert: foreign.certPem, key: foreign.keyPem })).server, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
  t.not(await clientView(t, mtlsServer, client), 'ok', 'no certificate: refused');
});

t.test('hosts are checked: DNS names, wildcards as a whole leftmost label, IP literals', async (t) => {
  t.same(certificateHost('Relay.Example.DEV.'), { type: 'dns', value: 'relay.example.dev' });
  t.same(certificateHost('[::1]'), { type: 'ip', value: '::1' });
  t.same(certificateHost('localhost'), { type: 'dns', value: 'localhost' });
  for (const bad of ['', '*', '*.dev', 'a.*.example.dev', 'w*.example.dev', 'bad_name.dev', '-a.dev', 'a..b', 'a b', `${'a'.repeat(64)}.dev`, '1.2.3.4:80']) {
    t.throws(() => certificateHost(bad), { code: 'ERR_WARREN_INVALID_ARGUMENT' }, JSON.stringify(bad));
  }
  await t.rejects(issueCertificate(ca, { hosts: ['ok.dev', 'bad..dev'] }), { message: /hosts\[1\]: "bad\.\.dev" is not a DNS name/ });
  await t.rejects(issueCertificate(ca, { hosts: [] }), { message: /hosts: at least one/ });
  await t.rejects(issueCertificate(ca, { hosts: ['a.dev'], validDays: 0 }), { message: /validDays/ });
  await t.rejects(issueCertificate(ca, { hosts: ['a.dev'], usage: 'peer' as 'both' }), { message: /usage/ });
});

t.test('a long first host leaves CN out and makes the SAN critical', async (t) => {
  const long = `${'a'.repeat(60)}.example.dev`;
  const cert = new X509Certificate((await issueCertificate(ca, { hosts: [long] })).certPem);
  t.equal(cert.subject, undefined, 'no subject');
  t.equal(cert.subjectAltName, `DNS:${long}`);
  t.equal(new x509.X509Certificate(cert.raw).getExtension(x509.SubjectAlternativeNameExtension)?.critical, true);
  const short = new x509.X509Certificate((await issueCertificate(ca, { hosts: ['a.dev'] })).certPem);
  t.equal(short.getExtension(x509.SubjectAlternativeNameExtension)?.critical, false, 'not critical beside a subject');
});

t.test('a leaf never outlives its CA', async (t) => {
  const shortCa = await createDevCa({ validDays: 2 });
  const leaf = new X509Certificate((await issueCertificate(shortCa, { hosts: ['a.dev'], validDays: 90 })).certPem);
  t.equal(leaf.validTo, new X509Certificate(shortCa.certPem).validTo);
});

t.test('a CA directory is loaded and checked', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'warren-ca-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  await t.rejects(loadCertificateAuthority(dir), { code: 'ERR_WARREN_CERT', message: /ca\.pem: cannot be read \(ENOENT\); create a CA with: warren certs init/ });
  writeFileSync(join(dir, 'ca.pem'), ca.certPem);
  writeFileSync(join(dir, 'ca.key'), ca.keyPem);
  t.same(await loadCertificateAuthority(dir), ca);
  writeFileSync(join(dir, 'ca.key'), otherCa.keyPem);
  await t.rejects(loadCertificateAuthority(dir), { code: 'ERR_WARREN_CERT', message: /ca\.key: the CA key does not belong to the CA certificate/ });
  writeFileSync(join(dir, 'ca.pem'), server.certPem);
  await t.rejects(loadCertificateAuthority(dir), { message: /ca\.pem: the certificate is not a CA/ });
  writeFileSync(join(dir, 'ca.pem'), 'junk');
  await t.rejects(loadCertificateAuthority(dir), { message: /ca\.pem: the certificate is not readable PEM/ });
});
