/**
 * The multiplexer bench (bench/mux.ts: the Warren session alone over TLS and wss, no relay) as a
 * part of the whole-system bench: run as its own process, its JSON kept beside the run's.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { log } from './run-util.js';

const run = promisify(execFile);

/** The summary kept in the run's JSON. */
export interface MuxSummary {
  /** The mux bench's own JSON, in the output folder. */
  file: string;
  cases: { name: string; mbPerSec: number; ratioToRaw: number | null; cpuSecPerGB: number }[];
}

/**
 * Runs bench/mux.js with `args`, writes its JSON to OUT/STEM-mux.json and returns the summary; the
 * copy mux.js keeps of every run goes to `scratchDir`, not beside the run's files.
 */
export async function runMuxBench(outDir: string, stem: string, scratchDir: string, args: string[]): Promise<MuxSummary> {
  const file = `${stem}-mux.json`;
  log(`mux: running bench/mux.js ${args.join(' ')}`);
  const script = fileURLToPath(new URL('./mux.js', import.meta.url));
  const child = run(process.execPath, [script, '--json', join(outDir, file), '--results-dir', scratchDir, ...args], { timeout: 900_000, maxBuffer: 64 * 1024 * 1024 });
  child.child.stderr?.on('data', (c: Buffer) => process.stderr.write(c));
  await child;
  const json = JSON.parse(readFileSync(join(outDir, file), 'utf8')) as { cases: MuxSummary['cases'] };
  return { file, cases: json.cases.map((c) => ({ name: c.name, mbPerSec: c.mbPerSec, ratioToRaw: c.ratioToRaw, cpuSecPerGB: c.cpuSecPerGB })) };
}
