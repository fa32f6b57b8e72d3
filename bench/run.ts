/**
 * The whole-system benchmark: Warren side by side with direct TCP, a crypto-free Node relay chain,
 * OpenSSH `ssh -R` and the pure-JS ssh2 package, all on loopback in one run, with real relay and
 * agent processes (the built CLI). See bench/README.md for what each path and measure means.
 *
 * Usage: npm run bench -- [--quick] [--out DIR] [--only PATHS] [--agents N] [--no-mux] [--help]
 *
 * Progress goes to stderr; the results to DIR/<date>-<host>.json, DIR/<date>-<host>.md and SVG
 * charts in DIR (default bench/results/); a full run into the default folder also writes the
 * committed summary, bench/RESULTS.md.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, hostname, loadavg, release, totalmem } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { makeTestIdentity } from '../test/helpers/identity.js';
import type { Sshd } from '../test/helpers/peers.js';
import { loadHttp, httpTool } from './run-http.js';
import { newStream, pingPong, throughput } from './run-measure.js';
import { measureMemory, measureScale } from './run-memory.js';
import { BENCH_DOMAIN, BENCH_TUNNEL, PATH_LABELS, PATH_NAMES, sshMissing, startPath, startScript, type PathHandle, type PathName, startWarrenSetup, type Stage, type WarrenSetup } from './run-paths.js';
import { renderReport } from './run-report.js';
import { runMuxBench } from './run-mux.js';
import type { PathResult, Results, Settings } from './run-types.js';
import { Children, cpuMeter, log, round } from './run-util.js';

const MIB = 1024 * 1024;
const GIB = 1024 * MIB;

const HELP = `Usage: npm run bench -- [options]   (or: node dist/bench/run.js [options])

Runs every path on loopback and writes the results (JSON, markdown, SVG charts).

Options:
  --quick          every path on small sizes (under a minute); for checks, not for numbers
  --out DIR        where the results go (default bench/results/; bench/RESULTS.md is updated
                   only with the default)
  --only PATHS     comma-separated paths, of: ${PATH_NAMES.join(', ')};
                   and the parts http, memory, scale, mux (default: everything)
  --agents N       idle agents for the scale part (default 20000, --quick 200)
  --no-mux         skip the multiplexer bench (bench/mux.ts) in a full run
  --render FILE    render the markdown and charts again from a saved JSON, into its folder
                   (bench/RESULTS.md too when FILE is a full run in bench/results/)
  --help           this text
`;

function settingsFor(quick: boolean, agents: number | undefined): Settings {
  const requested = agents ?? (quick ? 200 : 20_000);
  return {
    quick,
    bulkBytes: quick ? 16 * MIB : 512 * MIB,
    runs: quick ? 1 : 5,
    streams: [1, 64],
    pingPongCount: quick ? 300 : 20_000,
    newStreamCount: quick ? 30 : 1_000,
    httpSeconds: quick ? 1 : 10,
    httpConnections: { '1k': quick ? 8 : 32, '1m': 8 },
    memoryAgents: quick ? 100 : 1_000,
    memoryStreams: quick ? 100 : 1_000,
    scaleAgents: requested,
    scaleRequested: requested,
  };
}

function median<T>(items: T[], key: (t: T) => number): T {
  const sorted = [...items].sort((a, b) => key(a) - key(b));
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}

function machineInfo(): Record<string, unknown> {
  const version = (command: string): string => {
    try {
      return execFileSync('bash', ['-c', `${command} 2>&1 | head -n 1`], { encoding: 'utf8' }).trim();
    } catch {
      return 'missing';
    }
  };
  let fdLimit = 0;
  try {
    fdLimit = Number(execFileSync('bash', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).trim());
  } catch {
    // Unknown.
  }
  return {
    hostname: hostname(),
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memTotalBytes: totalmem(),
    kernel: release(),
    loadavgStart: loadavg().map((x) => round(x, 2)),
    fdHardLimit: fdLimit,
    openssh: version('/usr/bin/ssh -V'),
    wrk: version('wrk --version'),
  };
}

async function measurePaths(stage: Stage, settings: Settings, names: PathName[], results: Results, appPid: number): Promise<void> {
  const shared: { warren?: WarrenSetup; sshd?: Sshd } = { warren: stage.warren };
  const handles: PathHandle[] = [];
  const ssh = sshMissing();
  for (const name of names) {
    const result: PathResult = { name, label: PATH_LABELS[name], bulk: {} };
    results.paths.push(result);
    if (ssh && name.startsWith('ssh-')) {
      result.skipped = ssh;
      log(`${name}: skipped: ${ssh}`);
      continue;
    }
    try {
      handles.push(await startPath(stage, name, shared));
      log(`${name}: started`);
    } catch (err) {
      result.skipped = `could not start: ${(err as Error).message}`;
      log(`${name}: ${result.skipped}`);
    }
  }
  try {
    const byName = (n: PathName): PathResult => results.paths.find((p) => p.name === n)!;
    const roleOf = (h: PathHandle): { name: string; pid: number }[] => [...h.roles, { name: '_client', pid: process.pid }, { name: '_app', pid: appPid }];
    // Runs interleave the paths so that drift on a shared machine spreads over all of them alike.
    for (let run = 1; run <= settings.runs; run++) {
      for (const h of handles) {
        for (const streams of settings.streams) {
          const meter = cpuMeter(roleOf(h));
          try {
            const t = await throughput(h.port, settings.bulkBytes, streams);
            const used = meter.finish();
            const { _client: client = 0, _app: app = 0, ...cpu } = used;
            const key = String(streams);
            const r = byName(h.name);
            r.bulk[key] ??= { runs: [], mbPerSec: 0, cpuSecPerGiB: { total: 0 } };
            r.bulk[key].runs.push({ ...t, cpuSeconds: cpu, clientCpuSeconds: round(client, 2), appCpuSeconds: round(app, 2) });
            log(`bulk run ${run}/${settings.runs} ${h.name.padEnd(14)} ${String(streams).padStart(2)} stream(s) ${t.mbPerSec.toFixed(0).padStart(6)} MB/s`);
          } catch (err) {
            results.errors.push({ part: `${h.name} bulk ${streams}`, message: (err as Error).message });
            log(`${h.name}: bulk ${streams} failed: ${(err as Error).message}`);
          }
        }
      }
    }
    for (const r of results.paths) {
      for (const b of Object.values(r.bulk)) {
        const mid = median(b.runs, (x) => x.mbPerSec);
        b.mbPerSec = mid.mbPerSec;
        const gib = mid.bytes / GIB;
        const per: Record<string, number> = {};
        for (const [role, s] of Object.entries(mid.cpuSeconds)) per[role] = round(s / gib, 2);
        b.cpuSecPerGiB = { ...per, total: round(Object.values(mid.cpuSeconds).reduce((a, c) => a + c, 0) / gib, 2) };
      }
    }
    for (const h of handles) {
      const r = byName(h.name);
      try {
        r.pingPongUs = await pingPong(h.port, settings.pingPongCount);
        r.newStreamMs = await newStream(h.port, settings.newStreamCount);
        log(`latency ${h.name.padEnd(14)} ping-pong p50 ${r.pingPongUs.p50} µs p99 ${r.pingPongUs.p99} µs; new stream p50 ${r.newStreamMs.p50} ms`);
      } catch (err) {
        results.errors.push({ part: `${h.name} latency`, message: (err as Error).message });
        log(`${h.name}: latency failed: ${(err as Error).message}`);
      }
    }
  } finally {
    // sshd's folder holds its keys: removed even when a measurement failed.
    if (shared.sshd) await shared.sshd.stop();
  }
  stage.warren = shared.warren;
}

async function measureHttp(stage: Stage, settings: Settings, results: Results, appPid: number): Promise<void> {
  const warren = stage.warren;
  if (!warren) throw new Error('the preview needs the Warren relay and agent');
  const host = `${stage.appHttpPort}-${BENCH_TUNNEL}.${BENCH_DOMAIN}`;
  const cases: NonNullable<Results['http']>['cases'] = [];
  for (const size of ['1k', '1m'] as const) {
    for (const path of ['direct', 'warren-preview'] as const) {
      const port = path === 'direct' ? stage.appHttpPort : warren.relay.httpPort;
      const roles = [{ name: 'app', pid: appPid }, ...(path === 'direct' ? [] : [{ name: 'relay', pid: warren.relay.proc.child.pid! }, { name: 'agent', pid: warren.agent.child.pid! }])];
      const meter = cpuMeter(roles);
      const result = await loadHttp(`http://127.0.0.1:${port}/${size}`, path === 'direct' ? undefined : host, settings.httpConnections[size], settings.httpSeconds);
      const cpuSeconds = meter.finish();
      const pathCpu = (cpuSeconds.relay ?? 0) + (cpuSeconds.agent ?? 0);
      cases.push({ path, size, result, cpuSeconds: Object.fromEntries(Object.entries(cpuSeconds).map(([k, v]) => [k, round(v, 2)])), pathCpuMsPerRequest: result.requests > 0 ? round((1000 * pathCpu) / result.requests, 3) : 0 });
      log(`http ${size} ${path.padEnd(14)} ${result.requestsPerSec.toFixed(0).padStart(7)} req/s  p99 ${result.p99Ms} ms${result.errors ? `  ${result.errors} errors` : ''}`);
    }
  }
  results.http = { tool: httpTool(), cases };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      out: { type: 'string' },
      only: { type: 'string' },
      agents: { type: 'string' },
      'no-mux': { type: 'boolean', default: false },
      render: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  if (values.render) {
    await rerender(values.render);
    return;
  }
  const parts = ['http', 'memory', 'scale', 'mux'];
  const wanted = values.only?.split(',').map((s) => s.trim()).filter(Boolean);
  const unknown = wanted?.filter((w) => !(PATH_NAMES as readonly string[]).includes(w) && !parts.includes(w)) ?? [];
  if (unknown.length > 0) throw new UsageError(`--only: unknown ${unknown.join(', ')}; known: ${[...PATH_NAMES, ...parts].join(', ')}`);
  const agents = values.agents === undefined ? undefined : Number(values.agents);
  if (agents !== undefined && (!Number.isInteger(agents) || agents < 1)) throw new UsageError(`--agents: expected a positive integer; got ${values.agents}`);
  const settings = settingsFor(values.quick, agents);
  const names = PATH_NAMES.filter((n) => !wanted || wanted.includes(n));
  const want = (part: string): boolean => !wanted || wanted.includes(part);
  const defaultOut = fileURLToPath(new URL('../../bench/results/', import.meta.url));
  const outDir = values.out ?? defaultOut;
  mkdirSync(outDir, { recursive: true });

  const children = new Children();
  const onSignal = (): void => {
    children.killAllNow();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  process.once('exit', () => children.killAllNow());

  const date = new Date().toISOString();
  const stem = `${date.slice(0, 10)}-${hostname()}${settings.quick ? '-quick' : ''}`;
  const results: Results = { bench: 'run', date, host: hostname(), machine: machineInfo(), settings, paths: [], errors: [] };
  log(`whole-system bench${settings.quick ? ' (quick)' : ''}: ${names.length} paths, ${(settings.bulkBytes / MIB).toFixed(0)} MiB per transfer, ${settings.runs} run(s); load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  const id = await makeTestIdentity();
  children.addDir(id.dir);
  try {
    const app = startScript(children, 'run-app.js', []);
    const ports = JSON.parse(await app.waitFor(/"ready"/)) as { tcpPort: number; httpPort: number };
    const stage: Stage = { children, id, appTcpPort: ports.tcpPort, appHttpPort: ports.httpPort };
    const step = async (part: string, fn: () => Promise<void>): Promise<void> => {
      try {
        await fn();
      } catch (err) {
        results.errors.push({ part, message: (err as Error).message });
        log(`${part}: failed: ${(err as Error).message}`);
      }
    };
    await step('paths', () => measurePaths(stage, settings, names, results, app.child.pid!));
    if (want('http')) {
      await step('http', async () => {
        stage.warren ??= await startWarrenSetup(stage);
        await measureHttp(stage, settings, results, app.child.pid!);
      });
    }
    await children.stopAll();
    if (want('memory')) await step('memory', async () => void (results.memory = await measureMemory({ children, id }, settings)));
    if (want('scale')) await step('scale', async () => void (results.scale = await measureScale({ children, id }, settings, startScript(children, 'run-app.js', []))));
    if (want('mux') && !settings.quick && !values['no-mux']) await step('mux', async () => void (results.mux = await runMuxBench(outDir, stem, id.dir, ['--runs', '1'])));
  } finally {
    await children.stopAll();
    id.remove();
  }
  results.machine.loadavgEnd = loadavg().map((x) => round(x, 2));
  writeFileSync(join(outDir, `${stem}.json`), `${JSON.stringify(results, null, 2)}\n`);
  // bench/RESULTS.md is the committed summary: only a complete full run into the default folder replaces it.
  const summary = values.out === undefined && !settings.quick && !wanted ? fileURLToPath(new URL('../../bench/RESULTS.md', import.meta.url)) : undefined;
  const files = await renderReport(results, outDir, stem, summary);
  log(`wrote ${join(outDir, `${stem}.json`)}, ${files.join(', ')}${summary ? `, ${summary}` : ''}`);
  if (results.errors.length > 0) log(`${results.errors.length} part(s) failed: ${results.errors.map((e) => e.part).join(', ')}`);
}

/** Renders the markdown and charts again from a saved JSON (after a change to the report), into its folder. */
async function rerender(file: string): Promise<void> {
  const results = JSON.parse(readFileSync(file, 'utf8')) as Results;
  const stem = basename(file).replace(/\.json$/, '');
  const isDefault = resolve(dirname(file)) === resolve(fileURLToPath(new URL('../../bench/results/', import.meta.url)));
  const summary = isDefault && !results.settings.quick ? fileURLToPath(new URL('../../bench/RESULTS.md', import.meta.url)) : undefined;
  const files = await renderReport(results, dirname(file), stem, summary);
  log(`rendered ${files.join(', ')}${summary ? `, ${summary}` : ''} from ${file}`);
}

/** A usage error: exit code 2. */
class UsageError extends Error {}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(err instanceof UsageError ? 2 : 1);
});
