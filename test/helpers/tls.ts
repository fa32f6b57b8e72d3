import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A throwaway CA and a leaf for localhost / 127.0.0.1 / ::1, ECDSA P-256. */
export interface TestTlsIdentity {
  caPem: string;
  certPem: string;
  keyPem: string;
}

let cached: TestTlsIdentity | undefined;

/**
 * Makes (once per process) a CA and a server certificate with the system's openssl, for mux
 * tests that need real TLS but not Warren's own certificate code.
 */
export async function testTlsIdentity(): Promise<TestTlsIdentity> {
  if (cached) return cached;
  const dir = mkdtempSync(join(tmpdir(), 'warren-tls-'));
  try {
    const run = (...args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
    run('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ca.key');
    run('req', '-x509', '-new', '-key', 'ca.key', '-subj', '/CN=warren test CA', '-days', '2', '-out', 'ca.pem');
    run('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'leaf.key');
    run('pkcs8', '-topk8', '-nocrypt', '-in', 'leaf.key', '-out', 'leaf.pk8');
    run('req', '-new', '-key', 'leaf.key', '-subj', '/CN=localhost', '-out', 'leaf.csr');
    writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=DNS:localhost,DNS:*.localhost,IP:127.0.0.1,IP:::1\nbasicConstraints=CA:FALSE\n');
    run('x509', '-req', '-in', 'leaf.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', 'ext.cnf', '-out', 'leaf.pem');
    cached = {
      caPem: readFileSync(join(dir, 'ca.pem'), 'utf8'),
      certPem: readFileSync(join(dir, 'leaf.pem'), 'utf8'),
      keyPem: readFileSync(join(dir, 'leaf.pk8'), 'utf8'),
    };
    return cached;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
