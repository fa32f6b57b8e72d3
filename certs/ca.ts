/**
 * A development certificate authority and the certificates it issues: relay server certificates
 * (one wildcard covers every preview host) and, later, mesh certificates for relay-to-relay mTLS.
 *
 * Everything is ECDSA P-256 with SHA-256: TLS handshakes with it cost a fraction of RSA's, which
 * matters when 20,000 agents reconnect at once. Certificates are built with @peculiar/x509 on
 * Node's WebCrypto; keys are PKCS#8 PEM that `tls.createSecureContext` reads as they are.
 */
import 'reflect-metadata'; // @peculiar/x509 resolves its algorithms through tsyringe, which needs it
import * as x509 from '@peculiar/x509';
import { X509Certificate as NodeX509Certificate, createPrivateKey, createPublicKey, randomBytes, webcrypto, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { ConfigError, InvalidArgumentError } from '../protocol/errors.js';

// The library's types expect the DOM's Crypto; Node's webcrypto is the same API.
x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGNING_ALGORITHM = { name: 'ECDSA', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;
/** Certificates start this long before they are made, so a peer whose clock is behind accepts them. */
const BACKDATE_MS = 5 * 60_000;
/** Longest validity accepted for any certificate, in days (about ten years). */
export const MAX_VALID_DAYS = 3650;
/** Longest subject common name X.520 allows; a longer first host leaves CN out (SAN carries it). */
const MAX_COMMON_NAME_LENGTH = 64;

/** A certificate and its private key, both PEM (the key PKCS#8). */
export interface CertificateAndKey {
  readonly certPem: string;
  readonly keyPem: string;
}

/** A certificate authority: its certificate and the key that signs what it issues. */
export type CertificateAuthority = CertificateAndKey;

/** Options for createDevCa. */
export interface DevCaOptions {
  /** Subject common name. Default "Warren dev CA". */
  commonName?: string;
  /** Validity in days, 1-3650. Default 3650. */
  validDays?: number;
}

/** What a certificate may be used for: a TLS server, a TLS client, or both (relay mesh links). */
export type CertificateUsage = 'server' | 'client' | 'both';

/** Options for issueCertificate. */
export interface IssueCertificateOptions {
  /**
   * DNS names and IP addresses the certificate covers, at least one. A leftmost `*` label makes a
   * wildcard (`*.preview.example.dev`); IP literals (IPv6 with or without brackets) become IP
   * SANs. The first host is the subject common name.
   */
  hosts: readonly string[];
  /** Validity in days, 1-3650, and never past the CA's own expiry. Default 90. */
  validDays?: number;
  /** Extended key usage. Default 'server'. */
  usage?: CertificateUsage;
}

/** Creates a self-signed ECDSA P-256 CA certificate (CA:true, pathlen 0, keyCertSign + cRLSign). */
export async function createDevCa(options: DevCaOptions = {}): Promise<CertificateAuthority> {
  const commonName = options.commonName ?? 'Warren dev CA';
  if (typeof commonName !== 'string' || commonName.length === 0 || commonName.length > MAX_COMMON_NAME_LENGTH) {
    throw new InvalidArgumentError(`commonName: not a string of 1-${MAX_COMMON_NAME_LENGTH} characters`);
  }
  const validDays = checkValidDays(options.validDays ?? MAX_VALID_DAYS);
  const keys = await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']);
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: [{ CN: [commonName] }],
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(now + validDays * DAY_MS),
    signingAlgorithm: SIGNING_ALGORITHM,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString('pem'), keyPem: await privateKeyPem(keys.privateKey) };
}

/**
 * Issues a leaf certificate signed by `ca`: a new P-256 key, CA:false, keyUsage
 * digitalSignature, extKeyUsage per `usage`, the hosts as SANs and a random serial. Throws
 * InvalidArgumentError naming a bad host or option, ConfigError (ERR_WARREN_CERT) for an unusable CA.
 */
export async function issueCertificate(ca: CertificateAuthority, options: IssueCertificateOptions): Promise<CertificateAndKey> {
  const names = checkHosts(options.hosts);
  const validDays = checkValidDays(options.validDays ?? 90);
  const usage = options.usage ?? 'server';
  if (usage !== 'server' && usage !== 'client' && usage !== 'both') throw new InvalidArgumentError(`usage: "${String(usage)}" is not server, client or both`);
  const caCert = parseCaCertificate(ca, 'CA');
  const caKey = await webcrypto.subtle.importKey('pkcs8', caKeyObject(ca, caCert, 'CA').export({ format: 'der', type: 'pkcs8' }), EC_P256, false, ['sign']);
  const keys = await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']);
  const now = Date.now();
  const notAfter = Math.min(now + validDays * DAY_MS, caCert.notAfter.getTime());
  const first = names[0]!.value;
  const hasSubject = first.length <= MAX_COMMON_NAME_LENGTH;
  const usages = { server: [x509.ExtendedKeyUsage.serverAuth], client: [x509.ExtendedKeyUsage.clientAuth], both: [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth] }[usage];
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: hasSubject ? [{ CN: [first] }] : [],
    issuer: caCert.subjectName,
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(notAfter),
    signingAlgorithm: SIGNING_ALGORITHM,
    publicKey: keys.publicKey,
    signingKey: caKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension(usages, false),
      // RFC 5280 4.2.1.6: SAN is critical when the subject is empty.
      new x509.SubjectAlternativeNameExtension(names, !hasSubject),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(caCert.publicKey),
    ],
  });
  return { certPem: cert.toString('pem'), keyPem: await privateKeyPem(keys.privateKey) };
}

/**
 * Reads a CA from a directory made by `warren certs init` (ca.pem, ca.key) and checks that the
 * certificate is a CA and the key is its own. Throws ConfigError (ERR_WARREN_CERT) naming the file.
 */
export async function loadCertificateAuthority(dir: string): Promise<CertificateAuthority> {
  const read = async (name: string): Promise<string> => {
    const path = join(dir, name);
    try {
      return await readFile(path, 'utf8');
    } catch (err) {
      throw new ConfigError([`${path}: cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'}); create a CA with: warren certs init --out ${dir}`], 'ERR_WARREN_CERT', { cause: err });
    }
  };
  const ca = { certPem: await read('ca.pem'), keyPem: await read('ca.key') };
  caKeyObject(ca, parseCaCertificate(ca, join(dir, 'ca.pem')), join(dir, 'ca.key'));
  return ca;
}

/** A host as a SAN entry: lowercase DNS name (wildcard allowed) or IP address. Throws InvalidArgumentError. */
export function certificateHost(host: string, what = 'host'): { type: 'dns' | 'ip'; value: string } {
  if (typeof host !== 'string') throw new InvalidArgumentError(`${what}: not a string`);
  const unbracketed = /^\[.*\]$/.test(host) ? host.slice(1, -1) : host;
  if (isIP(unbracketed) !== 0) return { type: 'ip', value: unbracketed };
  const name = host.toLowerCase().replace(/\.$/, '');
  const labels = name.split('.');
  const wildcard = labels[0] === '*';
  const ok =
    name.length > 0 &&
    name.length <= 253 &&
    labels.every((label, i) => (i === 0 && wildcard) || /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/.test(label)) &&
    (!wildcard || labels.length >= 3);
  if (!ok) {
    throw new InvalidArgumentError(
      `${what}: "${host}" is not a DNS name or IP address (a wildcard is a whole leftmost label over at least two more, like *.preview.example.dev)`,
    );
  }
  return { type: 'dns', value: name };
}

function checkHosts(hosts: readonly string[]): { type: 'dns' | 'ip'; value: string }[] {
  if (!Array.isArray(hosts) || hosts.length === 0) throw new InvalidArgumentError('hosts: at least one DNS name or IP address is needed');
  const names = hosts.map((h, i) => certificateHost(h, `hosts[${i}]`));
  return names.filter((n, i) => names.findIndex((m) => m.type === n.type && m.value === n.value) === i);
}

function checkValidDays(days: number): number {
  if (!Number.isInteger(days) || days < 1 || days > MAX_VALID_DAYS) throw new InvalidArgumentError(`validDays: ${days} is not a whole number of days from 1 to ${MAX_VALID_DAYS}`);
  return days;
}

function parseCaCertificate(ca: CertificateAuthority, source: string): x509.X509Certificate {
  let cert: x509.X509Certificate;
  try {
    cert = new x509.X509Certificate(ca.certPem);
  } catch (err) {
    throw new ConfigError([`${source}: the certificate is not readable PEM`], 'ERR_WARREN_CERT', { cause: err });
  }
  if (!new NodeX509Certificate(Buffer.from(cert.rawData)).ca) throw new ConfigError([`${source}: the certificate is not a CA (basicConstraints CA:false)`], 'ERR_WARREN_CERT');
  if (cert.notAfter.getTime() <= Date.now()) throw new ConfigError([`${source}: the CA certificate expired on ${cert.notAfter.toISOString()}`], 'ERR_WARREN_CERT');
  return cert;
}

/** The CA's private key as a KeyObject, after checking it is P-256 and matches the certificate. */
function caKeyObject(ca: CertificateAuthority, cert: x509.X509Certificate, source: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(ca.keyPem);
  } catch (err) {
    throw new ConfigError([`${source}: the CA key is not a readable PEM private key`], 'ERR_WARREN_CERT', { cause: err });
  }
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new ConfigError([`${source}: the CA key is not an ECDSA P-256 key`], 'ERR_WARREN_CERT');
  }
  const fromKey = createPublicKey(key).export({ format: 'der', type: 'spki' });
  if (!fromKey.equals(Buffer.from(cert.publicKey.rawData))) throw new ConfigError([`${source}: the CA key does not belong to the CA certificate`], 'ERR_WARREN_CERT');
  return key;
}

/** 16 random bytes with the top bit clear (a positive INTEGER) and the next set (no leading zero byte). */
function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x40;
  return bytes.toString('hex');
}

async function privateKeyPem(key: webcrypto.CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
  return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }).export({ format: 'pem', type: 'pkcs8' }).toString();
}
