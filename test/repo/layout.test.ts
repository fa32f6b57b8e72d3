import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import t from 'tap';
import { repoRoot } from '../helpers/paths.js';

// The import rules of docs/ARCHITECTURE.md: roles meet only on the wire. The shared folders (cli: flags
// and the values users type; log: logging; transport: dialing a relay and joining byte streams)
// serve every role and import none of them.
const ROLES_AND_TOOLS = ['relay', 'agent', 'client', 'dev', 'bin', 'bench'];
const FORBIDDEN: Record<string, string[]> = {
  protocol: [...ROLES_AND_TOOLS, 'certs', 'cli', 'log', 'transport'],
  certs: [...ROLES_AND_TOOLS, 'transport'],
  relay: ['agent', 'client', 'dev', 'bin', 'bench'],
  agent: ['relay', 'client', 'dev', 'bin', 'bench'],
  client: ['relay', 'agent', 'dev', 'bin', 'bench'],
  cli: [...ROLES_AND_TOOLS, 'certs', 'log', 'transport'],
  log: [...ROLES_AND_TOOLS, 'certs', 'cli', 'protocol', 'transport'],
  transport: [...ROLES_AND_TOOLS, 'certs', 'cli', 'log'],
};

function existsDir(path: string): boolean {
  return existsSync(path) && statSync(path).isDirectory();
}

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...sources(path));
    else if (name.endsWith('.ts')) out.push(path);
  }
  return out;
}

t.test('library folders import only what docs/ARCHITECTURE.md allows', async (t) => {
  const violations: string[] = [];
  for (const [folder, banned] of Object.entries(FORBIDDEN)) {
    const files = existsDir(join(repoRoot, folder)) ? sources(join(repoRoot, folder)) : [];
    for (const file of files) {
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/from\s+'(\.\.?\/[^']+)'|import\(\s*'(\.\.?\/[^']+)'\s*\)/g)) {
        const target = relative(repoRoot, join(file, '..', m[1] ?? m[2]!)).split('/')[0]!;
        if (banned.includes(target)) violations.push(`${relative(repoRoot, file)} imports ${m[1] ?? m[2]}`);
      }
    }
  }
  t.same(violations, []);
});

t.test('relay/preview/ is a room: it imports nothing of the relay outside it, and is entered through its index.ts', async (t) => {
  const violations: string[] = [];
  const previewDir = join(repoRoot, 'relay', 'preview');
  for (const file of sources(join(repoRoot, 'relay'))) {
    const inside = file.startsWith(`${previewDir}/`);
    for (const m of readFileSync(file, 'utf8').matchAll(/from\s+'(\.\.?\/[^']+)'/g)) {
      const target = join(file, '..', m[1]!);
      const targetInside = target.startsWith(`${previewDir}/`);
      if (inside && !targetInside && target.startsWith(join(repoRoot, 'relay'))) violations.push(`${relative(repoRoot, file)} imports ${m[1]} (outside relay/preview/)`);
      if (!inside && targetInside && !target.endsWith('/preview/index.js')) violations.push(`${relative(repoRoot, file)} imports ${m[1]} (not through relay/preview/index.ts)`);
    }
  }
  t.same(violations, []);
});

t.test('libraries never read process.env or process.argv outside config and CLI files', async (t) => {
  const violations: string[] = [];
  for (const folder of ['protocol', 'certs', 'relay', 'agent', 'client', 'log', 'transport']) {
    const files = existsDir(join(repoRoot, folder)) ? sources(join(repoRoot, folder)) : [];
    for (const file of files) {
      if (/(^|\/)(cli|config|standalone)\.ts$/.test(file)) continue;
      if (/process\.(env|argv)/.test(readFileSync(file, 'utf8'))) violations.push(relative(repoRoot, file));
    }
  }
  t.same(violations, []);
});

// test/README.md: a test lives under the folder of the part it proves, whatever its kind.
/** The folders a test may live in: the source folders, relay/preview for the preview proxy, repo for the repository as a whole. */
const TEST_PARTS = ['agent', 'bench', 'certs', 'client', 'dev', 'protocol', 'relay', 'relay/network', 'relay/preview', 'repo', 'transport'];

t.test('every test lives under the folder of the part it proves', async (t) => {
  const testRoot = join(repoRoot, 'test');
  const misplaced: string[] = [];
  for (const file of sources(testRoot)) {
    const rel = relative(testRoot, file);
    const folder = rel.split('/').slice(0, -1).join('/');
    if (folder === 'helpers' || folder === 'fixtures') {
      if (rel.endsWith('.test.ts')) misplaced.push(`${rel}: a test among the ${folder}`);
      continue;
    }
    if (!TEST_PARTS.includes(folder)) misplaced.push(`${rel}: ${folder || 'test/'} is not a part folder`);
    else if (!rel.endsWith('.test.ts')) misplaced.push(`${rel}: helpers belong in test/helpers`);
    const browser = /helpers\/browser\.js'/.test(readFileSync(file, 'utf8'));
    if (browser !== rel.endsWith('.browser.test.ts')) misplaced.push(`${rel}: a test needs the .browser.test.ts name exactly when it drives Chromium`);
  }
  for (const part of TEST_PARTS) {
    if (part !== 'repo' && !existsDir(join(repoRoot, part.split('/')[0]!))) misplaced.push(`test/${part}: no such source folder`);
  }
  t.same(misplaced, []);
});
