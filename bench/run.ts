/**
 * The whole-system benchmark: Warren side by side with direct TCP, a crypto-free Node relay chain,
 * OpenSSH `ssh -R` and the pure-JS ssh2 package, all on loopback in one run, with real relay and
 * agent processes (the built CLI). See bench/README.md for what each path and measure means.
 *
 * Usage: npm run bench -- [--quick] [--out DIR] [--only PATHS] [--agents N] [--no-mux] [--runs N]
 *        [--size SIZE] [--duration S] [--compare OTHER/dist/bin/warren.js] [--prof-dir DIR]
 *        [--hold] [--render FILE] [--help]     (bench/run-options.ts says what each does)
 *
 * Progress goes to stderr; the results to DIR/<date>-<host>.json, DIR/<date>-<host>.md and SVG
 * charts in DIR (default bench/results/); a full run into the default folder also writes the
 * committed summary, bench/RESULTS.md. With --compare, a second build's relay, agent and connect
 * run beside this build's and its Warren paths and preview are measured in the same run,
 * interleaved (bench/run-compare.ts makes the table of the two). The relay network's paths,
 * previews and directory lookups (the part `network`) come from bench/run-network.ts.
 */
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, hostname, loadavg, release, totalmem } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeTestIdentity } from '../test/helpers/identity.js';
import type { Sshd } from '../test/helpers/peers.js';
import { loadHttp, httpTool } from './run-http.js';
import { newStream, pingPong, throughput } from './run-measure.js';
import { measureMemory, measureScale } from './run-memory.js';
import { compareRows } from './run-compare.js';
import { HELP, parseRunOptions, UsageError } from './run-options.js';
import { measureDirectory, natsMissing, networkHttpTargets, startNetwork, startNetworkPath } from './run-network.js';
import { BENCH_DOMAIN, BENCH_TUNNEL, COMPARE_PATHS, NETWORK_PATH_NAMES, PATH_LABELS, PATH_NAMES, sshMissing, startPath, startScript, type AnyPathName, type NetworkPathName, type PathHandle, startWarrenSetup, type Stage, type WarrenSetup } from './run-paths.js';
import { renderReport } from './run-report.js';
import { runMuxBench } from './run-mux.js';
import type { HttpCase, HttpRun, PathResult, Results, Settings } from './run-types.js';
import { Children, cpuMeter, log, round, type Role } from './run-util.js';

const MIB = 1024 * 1024;
const GIB = 1024 * MIB;

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

const isNetworkPath = (name: AnyPathName): name is NetworkPathName => (NETWORK_PATH_NAMES as readonly string[]).includes(name);

/** Starts `names` (ssh paths skipped where ssh is missing, network paths where nats-server is); what could not start is in `skipped`. */
async function startPaths(stage: Stage, names: AnyPathName[], shared: { sshd?: Sshd }): Promise<{ handles: PathHandle[]; skipped: Map<AnyPathName, string> }> {
  const handles: PathHandle[] = [];
  const skipped = new Map<AnyPathName, string>();
  const ssh = sshMissing();
  const nats = natsMissing();
  for (const name of names) {
    const missing = name.startsWith('ssh-') ? ssh : isNetworkPath(name) ? nats : null;
    if (missing) {
      skipped.set(name, missing);
      log(`${name}: skipped: ${missing}`);
      continue;
    }
    try {
      handles.push(isNetworkPath(name) ? await startNetworkPath(stage, name) : await startPath(stage, name, shared));
      log(`${name}: started`);
    } catch (err) {
      skipped.set(name, `could not start: ${(err as Error).message}`);
      log(`${name}: ${skipped.get(name)}`);
    }
  }
  return { handles, skipped };
}

async function measurePaths(stage: Stage, settings: Settings, names: AnyPathName[], results: Results, appPid: number): Promise<void> {
  const shared: { sshd?: Sshd } = {};
  try {
    const { handles, skipped } = await startPaths(stage, names, shared);
    for (const name of names) results.paths.push({ name, label: PATH_LABELS[name], bulk: {}, ...(skipped.has(name) ? { skipped: skipped.get(name) } : {}) });
    const byName = (n: AnyPathName): PathResult => results.paths.find((p) => p.name === n)!;
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
}

/**
 * The HTTP part: each size against the app directly and through the preview of this build (and of
 * the --compare build), settings.httpRuns times interleaved; the median run by requests/s counts.
 * With `parts.network`, the 1 KiB size also goes through the relay network's preview at the holder
 * and at the edge (alone, without `parts.http`: direct and those two, 1 KiB only).
 */
async function measureHttp(stage: Stage, settings: Settings, results: Results, appPid: number, parts: { http: boolean; network: boolean }): Promise<void> {
  const previews: { path: HttpCase['path']; setup: WarrenSetup }[] = [];
  if (parts.http) previews.push({ path: 'warren-preview', setup: (stage.warren ??= await startWarrenSetup(stage, 'this')) });
  if (parts.http && stage.compareBin) previews.push({ path: 'other-preview', setup: (stage.other ??= await startWarrenSetup(stage, 'other')) });
  const host = `${stage.appHttpPort}-${BENCH_TUNNEL}.${BENCH_DOMAIN}`;
  const app: Role = { name: 'app', pid: appPid };
  // A network that does not start fails its own cases, not the rest of the HTTP part.
  const hops = parts.network
    ? await networkHttpTargets(stage, app).catch((err: unknown) => {
        results.errors.push({ part: 'http network', message: (err as Error).message });
        log(`http: the network's previews failed: ${(err as Error).message}`);
        return [];
      })
    : [];
  const targets = [
    { path: 'direct' as const, port: stage.appHttpPort, roles: [app] },
    ...previews.map((p) => ({ path: p.path, port: p.setup.relay.httpPort, roles: [app, { name: 'relay', pid: p.setup.relay.proc.child.pid! }, { name: 'agent', pid: p.setup.agent.child.pid! }] })),
  ];
  const cases: HttpCase[] = [];
  for (const size of parts.http ? (['1k', '1m'] as const) : (['1k'] as const)) {
    const sizeTargets = size === '1k' ? [...targets, ...hops] : targets;
    const runs = new Map<HttpCase['path'], HttpRun[]>(sizeTargets.map((x) => [x.path, []]));
    for (let run = 1; run <= settings.httpRuns; run++) {
      for (const { path, port, roles } of sizeTargets) {
        const meter = cpuMeter(roles);
        const result = await loadHttp(`http://127.0.0.1:${port}/${size}`, path === 'direct' ? undefined : host, settings.httpConnections[size], settings.httpSeconds);
        const cpuSeconds = meter.finish();
        // Every process of the path: relay and agent, and through the network the edge too.
        const pathCpu = Object.entries(cpuSeconds).reduce((sum, [role, s]) => (role === 'app' ? sum : sum + s), 0);
        runs.get(path)!.push({ result, cpuSeconds: Object.fromEntries(Object.entries(cpuSeconds).map(([k, v]) => [k, round(v, 2)])), pathCpuMsPerRequest: result.requests > 0 ? round((1000 * pathCpu) / result.requests, 3) : 0 });
        const of = settings.httpRuns > 1 ? ` run ${run}/${settings.httpRuns}` : '';
        log(`http ${size} ${path.padEnd(14)}${of} ${result.requestsPerSec.toFixed(0).padStart(7)} req/s  p99 ${result.p99Ms} ms${result.errors ? `  ${result.errors} errors` : ''}`);
      }
    }
    for (const [path, all] of runs) cases.push({ path, size, ...median(all, (x) => x.result.requestsPerSec), ...(all.length > 1 ? { runs: all } : {}) });
  }
  results.http = { tool: httpTool(), cases };
}

/**
 * --hold: starts the paths (and the previews), prints their ports as one JSON line on stdout and
 * keeps everything up until SIGINT; the caller's cleanup then stops every process gracefully.
 */
async function hold(stage: Stage, names: AnyPathName[], http: boolean, onSignal: () => void): Promise<void> {
  const shared: { sshd?: Sshd } = {};
  try {
    const { handles } = await startPaths(stage, names, shared);
    if (http) {
      stage.warren ??= await startWarrenSetup(stage, 'this');
      if (stage.compareBin) stage.other ??= await startWarrenSetup(stage, 'other');
    }
    const relay = (w: WarrenSetup | undefined): unknown => (w ? { url: w.relay.url, httpPort: w.relay.httpPort, adminPort: w.relay.adminPort, tcpEndpointPort: w.tcpEndpointPort } : undefined);
    const ports = {
      hold: true,
      app: { tcpPort: stage.appTcpPort, httpPort: stage.appHttpPort },
      paths: Object.fromEntries(handles.map((h) => [h.name, h.port])),
      previewHost: `${stage.appHttpPort}-${BENCH_TUNNEL}.${BENCH_DOMAIN}`,
      relays: { this: relay(stage.warren), other: relay(stage.other), holder: relay(stage.network?.holder), edge: stage.network ? { url: stage.network.edge.url, httpPort: stage.network.edge.httpPort, adminPort: stage.network.edge.adminPort } : undefined },
    };
    process.stdout.write(`${JSON.stringify(ports)}\n`);
    log('holding: ports on stdout; Ctrl-C stops every process');
    // SIGINT ends the hold and lets the processes exit on their own (profiles are written on exit);
    // a second one during that cleanup kills them at once.
    process.removeListener('SIGINT', onSignal);
    await once(process, 'SIGINT');
    process.once('SIGINT', onSignal);
    log('stopping');
  } finally {
    if (shared.sshd) await shared.sshd.stop();
  }
}

async function main(): Promise<void> {
  const opts = parseRunOptions(process.argv.slice(2));
  if (opts.help) {
    process.stdout.write(HELP);
    return;
  }
  if (opts.render) {
    await rerender(opts.render);
    return;
  }
  const { settings, only } = opts;
  // With --compare, each Warren path is followed by the same path through the other build.
  const names: AnyPathName[] = [...PATH_NAMES, ...NETWORK_PATH_NAMES].filter((n) => !only || only.includes(n) || (only.includes('network') && isNetworkPath(n))).flatMap((n) => (opts.compare && n in COMPARE_PATHS ? [n, COMPARE_PATHS[n as keyof typeof COMPARE_PATHS]] : [n]));
  const want = (part: string): boolean => !only || only.includes(part);
  const defaultOut = fileURLToPath(new URL('../../bench/results/', import.meta.url));
  const outDir = opts.out ?? defaultOut;
  if (!opts.hold) mkdirSync(outDir, { recursive: true });

  const children = new Children();
  const onSignal = (): void => {
    children.killAllNow();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  process.once('exit', () => children.killAllNow());
  // Profiled processes write their profile on exit: give them time to.
  const stopGraceMs = opts.profDir ? 15_000 : undefined;

  const date = new Date().toISOString();
  const stem = `${date.slice(0, 10)}-${hostname()}${settings.quick ? '-quick' : ''}${opts.compare ? '-compare' : ''}`;
  const results: Results = { bench: 'run', date, host: hostname(), machine: machineInfo(), settings, ...(opts.compare ? { compare: { bin: opts.compare } } : {}), paths: [], errors: [] };
  log(`whole-system bench${settings.quick ? ' (quick)' : ''}${opts.hold ? ' (--hold: measuring nothing)' : ''}: ${names.length} paths, ${(settings.bulkBytes / MIB).toFixed(0)} MiB per transfer, ${settings.runs} run(s)${opts.compare ? `, against ${opts.compare}` : ''}; load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  const id = await makeTestIdentity();
  children.addDir(id.dir);
  try {
    const app = startScript(children, 'run-app.js', []);
    const ports = JSON.parse(await app.waitFor(/"ready"/)) as { tcpPort: number; httpPort: number };
    const stage: Stage = { children, id, appTcpPort: ports.tcpPort, appHttpPort: ports.httpPort, compareBin: opts.compare, profDir: opts.profDir };
    if (opts.hold) {
      await hold(stage, names, want('http'), onSignal);
      return;
    }
    const step = async (part: string, fn: () => Promise<void>): Promise<void> => {
      try {
        await fn();
      } catch (err) {
        results.errors.push({ part, message: (err as Error).message });
        log(`${part}: failed: ${(err as Error).message}`);
      }
    };
    await step('paths', () => measurePaths(stage, settings, names, results, app.child.pid!));
    // The relay network needs nats-server: without it, only its part is skipped (its paths say so too).
    const natsAbsent = want('network') ? natsMissing() : null;
    const network = want('network') && !natsAbsent;
    if (natsAbsent) {
      results.network = { skipped: natsAbsent };
      log(`network: skipped: ${natsAbsent}`);
    }
    if (want('http') || network) await step('http', () => measureHttp(stage, settings, results, app.child.pid!, { http: want('http'), network }));
    if (network) await step('network', async () => void (results.network = { directory: await measureDirectory((stage.network ??= await startNetwork(stage)), settings.directoryRecords, settings.directoryCalls) }));
    await children.stopAll(stopGraceMs);
    if (want('memory')) await step('memory', async () => void (results.memory = await measureMemory({ children, id }, settings)));
    if (want('scale')) await step('scale', async () => void (results.scale = await measureScale({ children, id }, settings, startScript(children, 'run-app.js', []))));
    if (want('mux') && !settings.quick && !opts.noMux) await step('mux', async () => void (results.mux = await runMuxBench(outDir, stem, id.dir, ['--runs', '1'])));
  } finally {
    await children.stopAll(stopGraceMs);
    id.remove();
  }
  if (opts.profDir) log(`CPU profiles in ${opts.profDir}`);
  results.machine.loadavgEnd = loadavg().map((x) => round(x, 2));
  writeFileSync(join(outDir, `${stem}.json`), `${JSON.stringify(results, null, 2)}\n`);
  // bench/RESULTS.md is the committed summary: only a complete full run of this build alone into the default folder replaces it.
  const summary = opts.out === undefined && !settings.quick && !only && !opts.compare ? fileURLToPath(new URL('../../bench/RESULTS.md', import.meta.url)) : undefined;
  const files = await renderReport(results, outDir, stem, summary);
  if (results.compare) for (const row of compareRows(results)) log(`compare: ${row.join('  ')}`);
  log(`wrote ${join(outDir, `${stem}.json`)}, ${files.join(', ')}${summary ? `, ${summary}` : ''}`);
  if (results.errors.length > 0) log(`${results.errors.length} part(s) failed: ${results.errors.map((e) => e.part).join(', ')}`);
}

/** Renders the markdown and charts again from a saved JSON (after a change to the report), into its folder. */
async function rerender(file: string): Promise<void> {
  const results = JSON.parse(readFileSync(file, 'utf8')) as Results;
  const stem = basename(file).replace(/\.json$/, '');
  const isDefault = resolve(dirname(file)) === resolve(fileURLToPath(new URL('../../bench/results/', import.meta.url)));
  const summary = isDefault && !results.settings.quick && !results.compare ? fileURLToPath(new URL('../../bench/RESULTS.md', import.meta.url)) : undefined;
  const files = await renderReport(results, dirname(file), stem, summary);
  log(`rendered ${files.join(', ')}${summary ? `, ${summary}` : ''} from ${file}`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(err instanceof UsageError ? 2 : 1);
});
