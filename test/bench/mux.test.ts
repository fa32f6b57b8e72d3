// The multiplexer benchmark must never rot: run it in --quick mode as a real process and check
// that its JSON has every case with positive numbers. No timing assertions: this machine's
// speed is not under test.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { repoRoot } from '../helpers/paths.js';

const run = promisify(execFile);

interface CaseReport {
  name: string;
  mode: string;
  streams: number;
  mbPerSec: number;
  framesPerSec: number | null;
  ratioToRaw: number | null;
  runs: { bytes: number; seconds: number }[];
}

t.test('bench/mux --quick reports every case with positive numbers', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'warren-bench-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const jsonFile = join(dir, 'mux.json');
  const { stdout } = await run(process.execPath, ['dist/bench/mux.js', '--quick', '--json', jsonFile, '--results-dir', dir], { cwd: repoRoot, timeout: 120_000 });
  const report = JSON.parse(readFileSync(jsonFile, 'utf8')) as { baseline: string; verify: boolean; cases: CaseReport[] };
  t.equal(report.verify, true, 'quick mode checks the bytes end to end');
  const names = report.cases.map((c) => c.name);
  t.same(names, ['tls-raw', 'tls-mux-1', 'tls-mux-64', 'wss-raw', 'wss-mux-1', 'wss-mux-64']);
  for (const c of report.cases) {
    t.ok(c.mbPerSec > 0, `${c.name}: MB/s ${c.mbPerSec}`);
    t.ok(c.ratioToRaw !== null && c.ratioToRaw > 0, `${c.name}: ratio to raw ${c.ratioToRaw}`);
    t.ok(c.runs.length > 0 && c.runs.every((r) => r.bytes > 0 && r.seconds > 0), `${c.name}: runs recorded`);
    if (c.mode === 'mux') t.ok(c.framesPerSec !== null && c.framesPerSec > 0, `${c.name}: frames/s ${c.framesPerSec}`);
    t.match(stdout, new RegExp(`^${c.name}\\s`, 'm'), `${c.name} is in the table`);
  }
  t.ok(
    readdirSync(dir).some((f) => /^mux-.*-quick\.json$/.test(f)),
    'the run is also written to the results directory',
  );
});
