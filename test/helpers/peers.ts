import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { startProcess, type Proc } from './process.js';

/** A port that was free a moment ago (bound to 0 and released), for peers that need a number. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const probe = createServer();
  probe.listen(0, host);
  await once(probe, 'listening');
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((r) => probe.close(() => r()));
  return port;
}

/** redis-server on 127.0.0.1, no persistence; resolves once it accepts connections. */
export async function startRedis(): Promise<{ port: number; proc: Proc }> {
  const port = await freePort();
  const proc = startProcess('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
  await proc.waitFor(/Ready to accept connections/);
  return { port, proc };
}

/** OpenSSH sshd on 127.0.0.1 with its own host key and an authorized client key. */
export interface Sshd {
  port: number;
  proc: Proc;
  /** Private key file that sshd accepts for `user`. */
  clientKey: string;
  user: string;
  dir: string;
  stop(): Promise<void>;
}

/** Starts sshd in the foreground with a config of its own (MACHINE-NOTES.md). */
export async function startSshd(): Promise<Sshd> {
  const dir = mkdtempSync(join(tmpdir(), 'warren-sshd-'));
  mkdirSync('/run/sshd', { recursive: true });
  const keygen = (file: string): void => void execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', file], { stdio: 'ignore' });
  keygen(join(dir, 'host_ed25519'));
  keygen(join(dir, 'id_ed25519'));
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(join(dir, 'id_ed25519.pub')));
  const port = await freePort();
  writeFileSync(
    join(dir, 'sshd_config'),
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${join(dir, 'host_ed25519')}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      `PidFile ${join(dir, 'sshd.pid')}`,
      'UsePAM no',
      'StrictModes no',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PermitRootLogin prohibit-password',
      'LogLevel INFO',
      '',
    ].join('\n'),
  );
  const proc = startProcess('/usr/sbin/sshd', ['-D', '-e', '-f', join(dir, 'sshd_config')]);
  await proc.waitFor(/Server listening on/);
  return {
    port,
    proc,
    clientKey: join(dir, 'id_ed25519'),
    user: userInfo().username,
    dir,
    stop: async () => {
      await proc.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
