// deploy/Dockerfile and .dockerignore. No Docker engine runs on this machine, so the image is not
// built here; instead this checks what a build would trip on: every COPY source exists and is in
// the build context (.dockerignore), every folder the relay's code imports is copied, the npm
// scripts and files the RUN steps use exist and are copied first, the runtime's production
// dependencies cover every package the code imports, and the HEALTHCHECK script works against a
// real relay's admin listener.
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative } from 'node:path';
import t from 'tap';
import { makeTestIdentity } from '../helpers/identity.js';
import { startRelayProcess } from '../helpers/cluster.js';
import { repoRoot } from '../helpers/paths.js';
import { startProcess } from '../helpers/process.js';

interface Instruction {
  op: string;
  args: string;
}

/** The Dockerfile's instructions, continuation lines joined, comments left out. */
function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let pending = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (pending === '' && (line === '' || line.startsWith('#'))) continue;
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1).trim()} `;
      continue;
    }
    const full = pending + line;
    pending = '';
    const m = /^([A-Z]+)\s+(.*)$/.exec(full);
    if (m) out.push({ op: m[1]!, args: m[2]! });
  }
  return out;
}

/** Splits instructions into build stages by FROM. */
function stages(instructions: Instruction[]): { from: string; name: string | undefined; steps: Instruction[] }[] {
  const out: { from: string; name: string | undefined; steps: Instruction[] }[] = [];
  for (const i of instructions) {
    if (i.op === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(i.args)!;
      out.push({ from: m[1]!, name: m[2], steps: [] });
    } else {
      out.at(-1)?.steps.push(i);
    }
  }
  return out;
}

/** A COPY's flags, sources and destination. */
function parseCopy(args: string): { from: string | undefined; sources: string[]; dest: string } {
  const words = args.trim().startsWith('[') ? (JSON.parse(args) as string[]) : args.trim().split(/\s+/);
  const flags = words.filter((w) => w.startsWith('--'));
  const rest = words.filter((w) => !w.startsWith('--'));
  return { from: flags.find((f) => f.startsWith('--from='))?.slice('--from='.length), sources: rest.slice(0, -1), dest: rest.at(-1)! };
}

/** Whether .dockerignore leaves `path` in the build context (last matching pattern wins; a match on a parent folder counts). */
function inContext(patterns: string[], path: string): boolean {
  const toRegExp = (p: string): RegExp =>
    new RegExp(
      `^${p
        .split('**')
        .map((part) => part.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]'))
        .join('.*')}$`,
    );
  const prefixes = path.split('/').map((_, i, parts) => parts.slice(0, i + 1).join('/'));
  let excluded = false;
  for (const raw of patterns) {
    const negate = raw.startsWith('!');
    const re = toRegExp((negate ? raw.slice(1) : raw).replace(/\/$/, ''));
    if (prefixes.some((p) => re.test(p))) excluded = !negate;
  }
  return !excluded;
}

const dockerfile = readFileSync(join(repoRoot, 'deploy', 'Dockerfile'), 'utf8');
const instructions = parseDockerfile(dockerfile);
const [build, runtime] = stages(instructions);
const ignore = readFileSync(join(repoRoot, '.dockerignore'), 'utf8')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l !== '' && !l.startsWith('#'));
const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { scripts: Record<string, string>; dependencies: Record<string, string> };

/** Top-level folders of the repository that the code reachable from `entry` (a .ts file) lives in, and the packages it imports. */
function reachable(entry: string): { folders: Set<string>; packages: Set<string> } {
  const folders = new Set<string>();
  const packages = new Set<string>();
  const seen = new Set<string>();
  const visit = (file: string): void => {
    if (seen.has(file)) return;
    seen.add(file);
    folders.add(relative(repoRoot, file).split('/')[0]!);
    const text = readFileSync(file, 'utf8');
    // Value imports only: `import type` leaves nothing in the compiled JavaScript.
    for (const m of text.matchAll(/^\s*(?:import|export)\s+(?!type\s)(?:[^'";]*?\sfrom\s+)?'([^']+)'/gm)) {
      const spec = m[1]!;
      if (spec.startsWith('.')) visit(join(dirname(file), spec.replace(/\.js$/, '.ts')));
      else if (!spec.startsWith('node:') && !builtinModules.includes(spec)) packages.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!);
    }
  };
  visit(join(repoRoot, entry));
  return { folders, packages };
}

t.test('two stages: a build on Node 20, a slim or distroless Node 20 runtime', async (t) => {
  t.ok(build && runtime, 'two stages');
  t.equal(build!.name, 'build');
  t.match(build!.from, /^node:20[.-]/);
  t.match(runtime!.from, /^(node:20[.-].*slim|gcr\.io\/distroless\/nodejs20)/);
});

t.test('every COPY source exists and is in the build context', async (t) => {
  const copies = instructions.filter((i) => i.op === 'COPY').map((i) => parseCopy(i.args)).filter((c) => c.from === undefined);
  t.ok(copies.length > 5);
  for (const c of copies) {
    for (const source of c.sources) {
      t.ok(existsSync(join(repoRoot, source)), `${source} exists`);
      t.ok(inContext(ignore, source.replace(/\/$/, '')), `${source} is not left out by .dockerignore`);
    }
  }
  for (const outside of ['node_modules', 'dist', '.git', '.warren', 'test', 'deploy/relay.example.yaml']) t.notOk(inContext(ignore, outside), `${outside} stays out of the build context`);
});

t.test('the build stage copies every folder the CLI imports, and the runtime copies each compiled', async (t) => {
  const { folders } = reachable('bin/warren.ts');
  const buildCopied = new Set(build!.steps.filter((s) => s.op === 'COPY').flatMap((s) => parseCopy(s.args).sources.map((x) => x.replace(/\/$/, ''))));
  const runtimeCopied = new Set(
    runtime!.steps
      .filter((s) => s.op === 'COPY')
      .map((s) => parseCopy(s.args))
      .filter((c) => c.from === 'build')
      .flatMap((c) => c.sources.map((x) => relative('/src/dist', x))),
  );
  for (const folder of folders) {
    t.ok(buildCopied.has(folder), `${folder}/ is copied into the build stage`);
    t.ok(runtimeCopied.has(folder), `dist/${folder} is copied into the runtime`);
    t.ok(statSync(join(repoRoot, 'dist', folder)).isDirectory(), `npm run build makes dist/${folder}`);
  }
});

t.test('RUN steps use npm scripts that exist, after the files those scripts read are copied', async (t) => {
  const runs = instructions.filter((i) => i.op === 'RUN').map((i) => i.args);
  const scripts = runs.flatMap((r) => [...r.matchAll(/npm run (\S+)/g)].map((m) => m[1]!));
  t.same(scripts, ['build']);
  for (const s of scripts) t.ok(pkg.scripts[s], `npm run ${s} exists in package.json`);
  // The build script's own inputs (tsconfig.json, scripts/bundle-agent.mjs) are copied before it runs.
  const buildIndex = build!.steps.findIndex((s) => s.op === 'RUN' && s.args.includes('npm run build'));
  const copiedBefore = build!.steps.slice(0, buildIndex).filter((s) => s.op === 'COPY').flatMap((s) => parseCopy(s.args).sources);
  for (const file of pkg.scripts.build!.match(/[\w./-]+\.(?:json|mjs|js)/g) ?? []) t.ok(copiedBefore.includes(file), `${file} is copied before npm run build`);
  t.ok(runs.some((r) => /npm ci\b(?=.*--omit=dev)/.test(r)), 'the runtime installs production dependencies only');
  t.ok(copiedBefore.includes('package-lock.json'), 'npm ci has the lock file');
});

t.test("production dependencies cover every package the relay's code imports", async (t) => {
  const { packages } = reachable('bin/warren.ts');
  t.ok(packages.size > 3);
  for (const p of packages) t.ok(p in pkg.dependencies, `${p} is a production dependency`);
});

t.test('runtime: non-root, port 443, the relay as entry point, a health check that is copied', async (t) => {
  const op = (name: string): string[] => runtime!.steps.filter((s) => s.op === name).map((s) => s.args);
  t.ok(op('USER').length === 1 && !['root', '0'].includes(op('USER')[0]!), `runs as ${op('USER')[0]}`);
  t.ok(op('EXPOSE').some((e) => e.split(/\s+/).includes('443')), 'EXPOSE 443');
  t.same(JSON.parse(op('ENTRYPOINT')[0]!), ['node', '/app/dist/bin/warren.js', 'relay']);
  t.ok(existsSync(join(repoRoot, 'dist', 'bin', 'warren.js')));
  const health = op('HEALTHCHECK')[0] ?? '';
  const cmd = JSON.parse(/CMD (\[.*\])$/.exec(health)![1]!) as string[];
  t.same(cmd, ['node', '/app/healthcheck.mjs']);
  const copied = runtime!.steps.filter((s) => s.op === 'COPY').map((s) => parseCopy(s.args));
  t.ok(copied.some((c) => c.sources.includes('deploy/healthcheck.mjs') && c.dest === './healthcheck.mjs'), 'the health check script is in /app');
  t.same(op('WORKDIR'), ['/app']);
});

t.test('the health check asks a real relay admin listener for /healthz', async (t) => {
  const script = join(repoRoot, 'deploy', 'healthcheck.mjs');
  const check = async (env: Record<string, string>): Promise<{ code: number | string; out: string }> => {
    const p = startProcess(process.execPath, [script], env);
    const code = await p.exited;
    return { code, out: p.lines.join('\n') };
  };
  const id = await makeTestIdentity();
  t.teardown(() => id.remove());
  const relay = await startRelayProcess(id, ['--admin', '127.0.0.1:0']);
  const listening = JSON.parse(relay.proc.lines.find((l) => l.includes('"event":"listening"'))!) as { admin: { port: number } };
  const healthy = await check({ WARREN_ADMIN: `0.0.0.0:${listening.admin.port}` });
  t.same(healthy, { code: 0, out: '/healthz: 200' }, 'a wildcard admin address is asked on loopback');
  t.same(await check({ WARREN_ADMIN: '' }), { code: 0, out: 'no admin listener (WARREN_ADMIN unset): nothing to check' });
  await relay.proc.stop();
  const down = await check({ WARREN_ADMIN: `127.0.0.1:${listening.admin.port}` });
  t.equal(down.code, 1, 'a relay that is gone is unhealthy');
  t.match(down.out, /ECONNREFUSED/);
});

t.test('the Dockerfile reads well to Docker: known instructions only', async (t) => {
  const known = new Set(['FROM', 'RUN', 'COPY', 'ENV', 'WORKDIR', 'USER', 'EXPOSE', 'HEALTHCHECK', 'ENTRYPOINT', 'CMD', 'ARG', 'LABEL', 'STOPSIGNAL']);
  t.same(
    instructions.filter((i) => !known.has(i.op)).map((i) => i.op),
    [],
  );
  t.notOk(readdirSync(join(repoRoot, 'deploy')).includes('Dockerfile.dockerignore'), 'one .dockerignore, at the context root');
});
