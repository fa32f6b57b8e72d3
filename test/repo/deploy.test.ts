// deploy/: the systemd unit passes `systemd-analyze verify` with nothing to report, its ExecStart
// is a working `warren relay` command line, and deploy/relay.example.yaml passes
// `warren relay --check-config` with real certificate and key files.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { generateIssuerKeys } from '../../certs/keys.js';
import { parseDuration } from '../../cli/parse.js';
import { RELAY_SETTINGS } from '../../relay/config.js';
import { makeTestIdentity } from '../helpers/identity.js';
import { repoRoot } from '../helpers/paths.js';
import { runWarren, startProcess } from '../helpers/process.js';

const unitText = readFileSync(join(repoRoot, 'deploy', 'warren-relay.service'), 'utf8');
const exampleText = readFileSync(join(repoRoot, 'deploy', 'relay.example.yaml'), 'utf8');

const dir = mkdtempSync(join(tmpdir(), 'warren-deploy-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const id = await makeTestIdentity();
t.teardown(() => id.remove());
const nextIssuer = join(dir, 'issuer-next.pub');
writeFileSync(nextIssuer, generateIssuerKeys().publicKeyPem);

/** Replaces each `from` in `text` with its `to`, failing the test when one is absent. */
function substitute(t: Test, text: string, pairs: [string, string][]): string {
  for (const [from, to] of pairs) {
    t.ok(text.includes(from), `the file mentions ${from}`);
    text = text.split(from).join(to);
  }
  return text;
}

/** The example config with its /etc/warren files replaced by real ones made for this test. */
function exampleConfig(t: Test): string {
  const file = join(dir, 'relay.yaml');
  writeFileSync(
    file,
    substitute(t, exampleText, [
      ['/etc/warren/tls/cert.pem', id.certFile],
      ['/etc/warren/tls/key.pem', id.keyFile],
      ['/etc/warren/keys/issuer-2025-01.pub', id.issuerPubFile],
      ['/etc/warren/keys/issuer-2025-07.pub', nextIssuer],
    ]),
  );
  return file;
}

t.test('relay.example.yaml passes --check-config with real files', async (t) => {
  const res = await runWarren(['relay', '--check-config', '--config', exampleConfig(t)]);
  t.equal(res.code, 0, res.lines.join('\n'));
  t.equal(res.stdout, 'config ok: listen 0.0.0.0:443, domain preview.example.dev, 2 trusted key(s)\n');
});

t.test('relay.example.yaml shows every relay setting', async (t) => {
  for (const key of RELAY_SETTINGS) t.match(exampleText, new RegExp(`^(# )?${key}:`, 'm'), `${key} is in the example`);
});

t.test('the unit passes systemd-analyze verify with nothing to report', async (t) => {
  // `systemd-analyze verify` checks that ExecStart's program exists and is executable, so the unit
  // is verified as installed here: /opt/warren becomes this checkout and /usr/bin/node the node
  // running the tests (both real files). Everything else is verified as written. verify exits 0
  // even when it warns (an unknown key, a value it cannot parse), so any output is a failure.
  // No systemd runs as PID 1 here: the hardening is checked as configuration, not run.
  const unitDir = mkdtempSync(join(dir, 'unit-'));
  const unitFile = join(unitDir, 'warren-relay.service');
  const installed = substitute(t, unitText, [
    ['/usr/bin/node', process.execPath],
    ['/opt/warren', repoRoot.replace(/\/$/, '')],
  ]);
  writeFileSync(unitFile, installed);
  const verify = startProcess('systemd-analyze', ['verify', unitFile], { SYSTEMD_LOG_COLOR: '0' });
  t.equal(await verify.exited, 0);
  t.same(verify.lines, [], 'systemd-analyze verify reports no problems');

  // The ExecStart command line is a valid relay invocation: run it with --check-config.
  const exec = /^ExecStart=(.+)$/m.exec(installed)?.[1]?.split(/\s+/) ?? [];
  t.equal(exec[0], process.execPath);
  const args = exec.slice(1).map((a) => (a === '/etc/warren/relay.yaml' ? exampleConfig(t) : a));
  t.same(args.slice(1, 4), ['relay', '--config', join(dir, 'relay.yaml')]);
  const check = startProcess(exec[0]!, [...args, '--check-config']);
  t.equal(await check.exited, 0, check.lines.join('\n'));
  t.match(check.lines.join('\n'), /^config ok/);

  // Its exposure as systemd scores it: a regression in the hardening shows here.
  const security = startProcess('systemd-analyze', ['security', '--offline=true', unitFile], { SYSTEMD_LOG_COLOR: '0' });
  await security.exited;
  const exposure = /Overall exposure level for warren-relay\.service: ([\d.]+)/.exec(security.lines.join('\n'))?.[1];
  t.ok(exposure !== undefined && Number(exposure) <= 2.0, `exposure ${exposure} is at most 2.0`);
});

t.test('the unit keeps its stop timeout above the grace period, and its hardening', async (t) => {
  const setting = (key: string): string[] => [...unitText.matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].map((m) => m[1]!);
  const grace = parseDuration(/^gracePeriod: (\S+)/m.exec(exampleText)![1]!);
  const stop = parseDuration(setting('TimeoutStopSec')[0]!);
  t.ok(stop >= grace + 10_000, `TimeoutStopSec (${stop} ms) leaves the grace period (${grace} ms) time to finish`);
  t.same(setting('Type'), ['simple']);
  t.same(setting('KillSignal'), ['SIGTERM']);
  t.same(setting('Restart'), ['on-failure']);
  t.same(setting('LimitNOFILE'), ['1048576']);
  t.same(setting('CapabilityBoundingSet'), ['CAP_NET_BIND_SERVICE']);
  t.same(setting('AmbientCapabilities'), ['CAP_NET_BIND_SERVICE']);
  for (const [key, value] of [
    ['NoNewPrivileges', 'yes'],
    ['ProtectSystem', 'strict'],
    ['ProtectHome', 'yes'],
    ['PrivateTmp', 'yes'],
    ['ReadOnlyPaths', '/etc/warren'],
  ]) {
    t.same(setting(key!), [value], `${key}=${value}`);
  }
  t.notOk(/^User=root$/m.test(unitText), 'never root');
  t.same(setting('MemoryDenyWriteExecute'), [], "not MemoryDenyWriteExecute: V8's JIT needs it off");
});
