#!/usr/bin/env node
// `npm test`: installs the Debian packages the suites need, builds, lints, then runs every tap
// suite (or the files named on the command line) and ends with the line `N passed, N failed`.
// Build and lint count as one test each.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
let passed = 0;
let failed = 0;

function step(name, command, args) {
  const started = Date.now();
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit' });
  const ok = result.status === 0;
  console.log(`${ok ? 'ok    ' : 'FAIL  '}${name} (${((Date.now() - started) / 1000).toFixed(1)}s)`);
  if (ok) passed++;
  else failed++;
  return ok;
}

function finish() {
  const summary = `${passed} passed, ${failed} failed`;
  console.log(summary);
  try {
    writeFileSync(join(root, "dist", "test-summary.txt"), `${summary}\n`);
  } catch {
    // dist/ may not exist when the build failed; the line above is the summary.
  }
  process.exit(failed === 0 ? 0 : 1);
}

if (!step('system packages', 'bash', ['scripts/ensure-system-deps.sh'])) finish();
if (!step('build', 'npm', ['run', 'build', '--silent'])) finish();
step('lint', 'npm', ['run', 'lint', '--silent']);

// Test files may be named as sources (test/protocol/codec.test.ts); tap runs the compiled files.
const files = process.argv.slice(2).map((f) => f.replace(/^(\.\/)?(?!dist\/)/, 'dist/').replace(/\.ts$/, '.js'));
const dir = mkdtempSync(join(tmpdir(), 'warren-tap-'));
const tallyFile = join(dir, 'tally.json');
const logDir = join(dir, 'logs');
const secretsFile = join(dir, 'secrets.jsonl');
mkdirSync(logDir);
writeFileSync(secretsFile, '');
const started = Date.now();
// Suites that hold many sockets (reconnect storms, 1,000 streams) need more than the default 1,024 descriptors.
const tap = spawnSync('bash', ['-c', 'ulimit -n 20000 2>/dev/null || ulimit -n 4096 2>/dev/null; exec npx tap --reporter=./scripts/tap-report.mjs "$@"', 'tap', ...files], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, WARREN_TAP_TALLY: tallyFile, WARREN_TEST_LOG_DIR: logDir, WARREN_TEST_SECRETS_FILE: secretsFile },
});
let tally;
try {
  tally = JSON.parse(readFileSync(tallyFile, 'utf8'));
} catch {
  tally = { passed: 0, failed: 1, skipped: 0, files: 0, failedFiles: ['(tap produced no report)'] };
}
if (tap.status !== 0 && tally.failed === 0) tally.failed = 1;
passed += tally.passed;
failed += tally.failed;
// One more test over the whole suite: no process output contains a token or key it used.
step('no token or key fragment in any log line of the suite', 'node', ['scripts/check-secrets.mjs', secretsFile, logDir]);
rmSync(dir, { recursive: true, force: true });
console.log(`tap: ${tally.files} files, ${tally.skipped} skipped, ${((Date.now() - started) / 1000).toFixed(0)}s${tally.failedFiles.length ? `; failed: ${tally.failedFiles.join(', ')}` : ''}`);
finish();
