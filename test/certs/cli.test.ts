import { execFile } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createServer } from 'node:tls';
import t from 'tap';
import { loadTrustedKeys } from '../../certs/keys.js';
import { verifyToken } from '../../certs/token.js';
import { warrenBin } from '../helpers/paths.js';

const dir = await mkdtemp(join(tmpdir(), 'warren-certs-cli-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));

// The child gets no WARREN_* variables from whoever runs the tests, only the ones a test sets.
const baseEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('WARREN_')));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `warren ARGS` as a child process in the test directory. */
function warren(args: string[], env: Record<string, string> = {}, input?: string): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [warrenBin, ...args], { cwd: dir, env: { ...baseEnv, ...env } }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
    child.stdin?.end(input);
  });
}

const mode = (path: string) => statSync(join(dir, path)).mode & 0o777;

t.test('keys generate → token issue → verify', async (t) => {
  const generated = await warren(['keys', 'generate', '--out', 'keys', '--json']);
  t.equal(generated.code, 0, generated.stderr);
  const info = JSON.parse(generated.stdout) as { event: string; kid: string; privateKey: string; publicKey: string };
  t.equal(info.event, 'keys.generated');
  t.same([info.privateKey, info.publicKey], [join('keys', 'issuer.key'), join('keys', 'issuer.pub')]);
  t.equal(mode('keys/issuer.key'), 0o600, 'private key is 0600');
  t.equal(mode('keys/issuer.pub'), 0o644);

  const issued = await warren(['token', 'issue', '--key', 'keys/issuer.key', '--role', 'agent', '--tunnel', 'ab12cd', '--ports', '3000,5173', '--ttl', '1h']);
  t.equal(issued.code, 0, issued.stderr);
  t.match(issued.stdout, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\n$/, 'the token alone on stdout, so $(warren token issue ...) works');
  t.equal(issued.stderr, '');
  const keys = await loadTrustedKeys([join(dir, 'keys', 'issuer.pub')]);
  t.same([...keys.keys()], [info.kid], 'the printed kid is the key id relays compute');
  const claims = verifyToken(issued.stdout.trim(), { keys, audience: 'warren', roles: ['agent'] });
  t.match(claims, { sub: 'ab12cd', role: 'agent', ports: [3000, 5173], aud: 'warren' });
  t.ok(claims.exp - claims.iat! === 3600, 'ttl 1h');
  t.match(claims.jti, /^[A-Za-z0-9_-]{22}$/, 'a random jti');

  const viaEnv = await warren(['token', 'issue', '--role', 'viewer', '--ports', '3000,8080', '--private', '8080', '--viewer', 'ada@example.com', '--json'], {
    WARREN_KEY: 'keys/issuer.key',
    WARREN_TUNNEL: 'ab12cd',
    WARREN_TTL: '15m',
    WARREN_AUD: 'staging',
  });
  t.equal(viaEnv.code, 0, viaEnv.stderr);
  const out = JSON.parse(viaEnv.stdout) as { token: string; kid: string; jti: string };
  t.equal(out.kid, info.kid);
  const viewer = verifyToken(out.token, { keys, audience: 'staging' });
  t.match(viewer, { role: 'viewer', private: [8080], viewer: 'ada@example.com', jti: out.jti });
  t.not(viewer.jti, claims.jti);

  const verified = await warren(['token', 'verify', '--trust-key', 'keys/issuer.pub', '--json'], { WARREN_TOKEN: issued.stdout.trim() });
  t.equal(verified.code, 0, verified.stderr);
  t.match(JSON.parse(verified.stdout), { event: 'token.verified', claims: { sub: 'ab12cd' } });
  const fromStdin = await warren(['token', 'verify', '--trust-key', 'keys/issuer.pub', '--token', '-', '--role', 'client'], {}, issued.stdout);
  t.equal(fromStdin.code, 1, 'a token that does not verify exits 1');
  t.match(fromStdin.stderr, /token role is not accepted here \(accepted: client\) \(ERR_WARREN_TOKEN_ROLE\)/);
  t.notMatch(fromStdin.stderr, issued.stdout.trim().split('.')[1]!, 'the token is not echoed');
});

t.test('keys generate refuses to overwrite unless --force', async (t) => {
  const first = await warren(['keys', 'generate', '--out', 'rotate']);
  t.equal(first.code, 0);
  t.match(first.stdout, /^kid: +[A-Za-z0-9_-]{43}\nprivate key: rotate\/issuer\.key/);
  const before = readFileSync(join(dir, 'rotate', 'issuer.key'), 'utf8');
  const again = await warren(['keys', 'generate', '--out', 'rotate']);
  t.equal(again.code, 2);
  t.match(again.stderr, 'rotate/issuer.key already exists; pass --force to replace it');
  t.equal(readFileSync(join(dir, 'rotate', 'issuer.key'), 'utf8'), before, 'nothing was written');
  const forced = await warren(['keys', 'generate', '--out', 'rotate', '--force']);
  t.equal(forced.code, 0, forced.stderr);
  t.not(readFileSync(join(dir, 'rotate', 'issuer.key'), 'utf8'), before);
  t.equal(mode('rotate/issuer.key'), 0o600);
});

t.test('certs init → certs issue → a real TLS handshake', async (t) => {
  const init = await warren(['certs', 'init', '--out', 'ca']);
  t.equal(init.code, 0, init.stderr);
  t.equal(mode('ca/ca.key'), 0o600);
  const issue = await warren(['certs', 'issue', '--ca', 'ca', '--host', '*.preview.example.dev', '--host', '127.0.0.1', '--out', 'relay-tls', '--json']);
  t.equal(issue.code, 0, issue.stderr);
  t.match(JSON.parse(issue.stdout), { event: 'certs.issued', usage: 'server', hosts: ['*.preview.example.dev', '127.0.0.1'] });
  t.equal(mode('relay-tls/key.pem'), 0o600);

  const server = createServer({ cert: readFileSync(join(dir, 'relay-tls', 'cert.pem')), key: readFileSync(join(dir, 'relay-tls', 'key.pem')) }, (s) => s.end('hi'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const { port } = server.address() as { port: number };
  const reply = await new Promise<string>((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, ca: readFileSync(join(dir, 'ca', 'ca.pem')), servername: '3000-ab12cd.preview.example.dev' });
    let data = '';
    socket.on('data', (chunk: Buffer) => (data += chunk.toString()));
    socket.on('error', reject);
    socket.on('close', () => resolve(data));
  });
  t.equal(reply, 'hi', 'the client trusts the relay certificate through ca.pem');

  const client = await warren(['certs', 'issue', '--ca', 'ca', '--host', 'ci-runner', '--client', '--out', 'client-tls']);
  t.equal(client.code, 0, client.stderr);
  t.match(client.stdout, /\(client; ci-runner\)/);
});

// Usage errors: exit 2 and a message that names the flag.
const usageErrors: [string, string[], RegExp][] = [
  ['missing --key', ['token', 'issue', '--role', 'agent', '--tunnel', 'ab', '--ports', '1', '--ttl', '1h'], /required option '--key <file>' not specified/],
  ['bad --role', ['token', 'issue', '--key', 'k', '--role', 'admin', '--tunnel', 'ab', '--ports', '1', '--ttl', '1h'], /option '--role <role>' argument 'admin' is invalid/],
  ['bad --ports', ['token', 'issue', '--key', 'keys/issuer.key', '--role', 'agent', '--tunnel', 'ab', '--ports', '3000,70000', '--ttl', '1h'], /--ports: "70000" is not a port number/],
  ['bad --ttl', ['token', 'issue', '--key', 'keys/issuer.key', '--role', 'agent', '--tunnel', 'ab', '--ports', '1', '--ttl', 'soon'], /--ttl: "soon" is not a duration/],
  ['bad --tunnel', ['token', 'issue', '--key', 'keys/issuer.key', '--role', 'agent', '--tunnel', 'Ab_1', '--ports', '1', '--ttl', '1h'], /--tunnel: "Ab_1" is not a tunnel id/],
  ['--private outside --ports', ['token', 'issue', '--key', 'keys/issuer.key', '--role', 'agent', '--tunnel', 'ab', '--ports', '1', '--ttl', '1h', '--private', '2'], /--private: every private port must also be in --ports/],
  ['a public key as --key', ['token', 'issue', '--key', 'keys/issuer.pub', '--role', 'agent', '--tunnel', 'ab', '--ports', '1', '--ttl', '1h'], /keys\/issuer\.pub: is not a private key/],
  ['missing --key file', ['token', 'issue', '--key', 'nope.key', '--role', 'agent', '--tunnel', 'ab', '--ports', '1', '--ttl', '1h'], /nope\.key: cannot be read \(ENOENT\)/],
  ['missing --out', ['keys', 'generate'], /required option '--out <dir>' not specified/],
  ['unknown flag', ['keys', 'generate', '--out', 'x', '--nope'], /unknown option '--nope'/],
  ['bad --host', ['certs', 'issue', '--ca', 'ca', '--host', 'a..b', '--out', 'x'], /--host: "a\.\.b" is not a DNS name or IP address/],
  ['bad --days', ['certs', 'init', '--out', 'x', '--days', '0'], /--days: "0" is not a whole number of days/],
  ['--client with --usage', ['certs', 'issue', '--ca', 'ca', '--host', 'a', '--out', 'x', '--client', '--usage', 'both'], /option '--client' cannot be used with option '--usage <kind>'/],
  ['missing CA', ['certs', 'issue', '--ca', 'no-ca', '--host', 'a', '--out', 'x'], /no-ca\/ca\.pem: cannot be read \(ENOENT\); create a CA with: warren certs init/],
];

t.test('bad flags exit 2 with a message naming the flag', async (t) => {
  for (const [name, args, message] of usageErrors) {
    const run = await warren(args);
    t.equal(run.code, 2, `${name}: exit 2`);
    t.match(run.stderr, message, name);
    t.equal(run.stdout, '', `${name}: nothing on stdout`);
  }
});

t.test('--json errors are one JSON line on stdout', async (t) => {
  const run = await warren(['token', 'issue', '--key', 'keys/issuer.key', '--role', 'agent', '--tunnel', 'ab', '--ports', '0', '--ttl', '1h', '--json']);
  t.equal(run.code, 2);
  t.match(JSON.parse(run.stdout), { event: 'error', code: 'ERR_WARREN_USAGE', message: /--ports/ });
});

t.test('help shows examples', async (t) => {
  for (const command of [['keys', 'generate'], ['token', 'issue'], ['token', 'verify'], ['certs', 'init'], ['certs', 'issue']]) {
    const run = await warren([...command, '--help']);
    t.equal(run.code, 0);
    t.match(run.stdout, /\nExamples:\n {2}.*warren /, command.join(' '));
  }
});
