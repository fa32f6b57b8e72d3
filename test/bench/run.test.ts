// The whole-system benchmark must never rot: run it in --quick mode as a real process and check
// that every path and part produced positive numbers and that the files exist. No timing
// assertions: this machine's speed is not under test. npm test installs openssh-server and
// nats-server, so the ssh -R paths and the relay network must run here too.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { repoRoot } from '../helpers/paths.js';

const run = promisify(execFile);

interface Percentiles {
  p50: number;
  p99: number;
}

interface Report {
  paths: { name: string; skipped?: string; bulk: Record<string, { mbPerSec: number; cpuSecPerGiB: { total: number } }>; pingPongUs?: Percentiles; newStreamMs?: Percentiles }[];
  http?: { cases: { path: string; size: string; result: { requestsPerSec: number; p99Ms: number } }[] };
  memory?: { relayPerAgentBytes: { rss: number }; relayPerStreamBytes: { rss: number }; bare: { perWssBytes: number } };
  scale?: { agents: number; failed: number; relay: { withAgents: { rss: number } }; busyTunnel: { loadedPingPongUs: Percentiles } };
  network?: { skipped?: string; directory?: { records: number; propagateSeconds: number; coldLoadSeconds: number; hitOpsPerSec: number; missOpsPerSec: number } };
  errors: { part: string; message: string }[];
}

const PATHS = ['direct', 'node-chain', 'ssh-aes', 'ssh-chacha', 'ssh2', 'warren-tcp', 'warren-connect', 'warren-connect-holder', 'warren-connect-fwd'];

t.test('bench/run --quick measures every path and part and writes the results', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'warren-bench-run-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const { stderr } = await run(process.execPath, ['dist/bench/run.js', '--quick', '--out', dir], { cwd: repoRoot, timeout: 180_000 });
  t.match(stderr, /\[bench .*\] wrote /, 'progress lines go to stderr');
  const json = readdirSync(dir).find((f) => /^\d{4}-\d\d-\d\d-.*-quick\.json$/.test(f));
  t.ok(json, 'the JSON is written as <date>-<host>-quick.json');
  const report = JSON.parse(readFileSync(join(dir, json!), 'utf8')) as Report;
  t.same(report.errors, [], 'no part failed');
  t.same(report.paths.map((p) => p.name), PATHS, 'every path is in the report');
  for (const p of report.paths) {
    t.equal(p.skipped, undefined, `${p.name} ran`);
    for (const streams of ['1', '64']) t.ok((p.bulk[streams]?.mbPerSec ?? 0) > 0, `${p.name}: ${streams} stream(s) MB/s ${p.bulk[streams]?.mbPerSec}`);
    if (p.name !== 'direct') t.ok((p.bulk['1']?.cpuSecPerGiB.total ?? 0) > 0, `${p.name}: CPU per GiB measured`);
    t.ok((p.pingPongUs?.p50 ?? 0) > 0 && (p.pingPongUs?.p99 ?? 0) > 0, `${p.name}: ping-pong percentiles`);
    t.ok((p.newStreamMs?.p50 ?? 0) > 0, `${p.name}: new-stream latency`);
  }
  t.same(
    report.http?.cases.map((c) => `${c.path} ${c.size}`),
    ['direct 1k', 'warren-preview 1k', 'preview-holder 1k', 'preview-fwd 1k', 'direct 1m', 'warren-preview 1m'],
    'HTTP: direct and preview, 1 KiB and 1 MiB; the network preview at the holder and through the edge, 1 KiB',
  );
  for (const c of report.http?.cases ?? []) t.ok(c.result.requestsPerSec > 0 && c.result.p99Ms > 0, `HTTP ${c.path} ${c.size}: ${c.result.requestsPerSec} req/s`);
  const fwd = report.http?.cases.find((c) => c.path === 'preview-fwd') as { cpuSeconds?: Record<string, number> } | undefined;
  t.ok((fwd?.cpuSeconds?.edge ?? 0) > 0 && (fwd?.cpuSeconds?.relay ?? 0) > 0, 'the forwarded preview counts the CPU of both relays');
  const directory = report.network?.directory;
  t.equal(report.network?.skipped, undefined, 'the network part ran');
  t.ok(directory && directory.records > 0 && directory.propagateSeconds > 0 && directory.coldLoadSeconds > 0 && directory.hitOpsPerSec > 0 && directory.missOpsPerSec > 0, `directory: ${JSON.stringify(directory)}`);
  t.ok((report.memory?.relayPerAgentBytes.rss ?? 0) > 0, 'memory per idle agent');
  t.ok((report.memory?.relayPerStreamBytes.rss ?? 0) > 0, 'memory per idle stream');
  t.ok((report.memory?.bare.perWssBytes ?? 0) > 0, 'memory per bare wss connection');
  t.ok((report.scale?.agents ?? 0) > 0 && report.scale?.failed === 0, `scale: ${report.scale?.agents} agents`);
  t.ok((report.scale?.relay.withAgents.rss ?? 0) > 0 && (report.scale?.busyTunnel.loadedPingPongUs.p99 ?? 0) > 0, 'scale: relay RSS and busy-tunnel latency');
  const markdown = readFileSync(join(dir, json!.replace(/\.json$/, '.md')), 'utf8');
  t.match(markdown, /## Targets/, 'the markdown has the targets');
  t.match(markdown, /## The relay network: one forwarding hop\n[^#]*\| connect, bulk 1 stream\(s\), MB\/s \| \d+ \| \d+ \| [\d.]+× \|/, 'the markdown has the hop table with figures');
  t.match(markdown, /holders\(\) of a held tunnel .*M\/s/, 'and the directory lookups');
  for (const chart of ['throughput', 'latency', 'http']) {
    const file = join(dir, json!.replace(/\.json$/, `-${chart}.svg`));
    t.ok(existsSync(file) && readFileSync(file, 'utf8').startsWith('<svg'), `${chart} chart is an SVG`);
  }
});

t.test('bench/run --compare measures a second build beside this one in the same run', async (t) => {
  // The build against itself, on --quick sizes and one cheap path: both builds must be measured
  // and the A/B table written.
  const dir = mkdtempSync(join(tmpdir(), 'warren-bench-compare-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  await run(process.execPath, ['dist/bench/run.js', '--quick', '--only', 'warren-tcp', '--compare', 'dist/bin/warren.js', '--out', dir], { cwd: repoRoot, timeout: 60_000 });
  const json = readdirSync(dir).find((f) => /-quick-compare\.json$/.test(f));
  t.ok(json, 'the JSON is written as <date>-<host>-quick-compare.json');
  const report = JSON.parse(readFileSync(join(dir, json!), 'utf8')) as Report & { compare?: { bin: string } };
  t.same(report.errors, [], 'no part failed');
  t.equal(report.compare?.bin, join(repoRoot, 'dist/bin/warren.js'), 'the JSON names the --compare build');
  t.same(report.paths.map((p) => p.name), ['warren-tcp', 'other-tcp'], 'the path of this build and the same path of the other build');
  for (const p of report.paths) {
    for (const streams of ['1', '64']) t.ok((p.bulk[streams]?.mbPerSec ?? 0) > 0, `${p.name}: ${streams} stream(s) MB/s ${p.bulk[streams]?.mbPerSec}`);
    t.ok((p.bulk['1']?.cpuSecPerGiB.total ?? 0) > 0, `${p.name}: CPU per GiB measured`);
    t.ok((p.newStreamMs?.p50 ?? 0) > 0, `${p.name}: new-stream latency`);
  }
  const markdown = readFileSync(join(dir, json!.replace(/\.json$/, '.md')), 'utf8');
  t.match(markdown, /## This build against the --compare build/, 'the markdown has the A/B table');
  t.match(markdown, /raw TCP endpoint, 1 stream\(s\): MB\/s \| \d+ \| \d+ \|/, 'with figures of both builds');
});

t.test('bench/run --help and a bad --only', async (t) => {
  const help = await run(process.execPath, ['dist/bench/run.js', '--help'], { cwd: repoRoot });
  t.match(help.stdout, /--quick/);
  const bad = await run(process.execPath, ['dist/bench/run.js', '--only', 'nope'], { cwd: repoRoot }).then(
    () => ({ code: 0, stderr: '' }),
    (err: { code: number; stderr: string }) => err,
  );
  t.equal(bad.code, 2, 'usage errors exit 2');
  t.match(bad.stderr, /--only: unknown nope/);
  const missing = await run(process.execPath, ['dist/bench/run.js', '--compare', join(tmpdir(), 'no-such-build', 'warren.js')], { cwd: repoRoot }).then(
    () => ({ code: 0, stderr: '' }),
    (err: { code: number; stderr: string }) => err,
  );
  t.equal(missing.code, 2, 'a --compare build that is not there is a usage error');
  t.match(missing.stderr, /--compare: no file at/);
});
