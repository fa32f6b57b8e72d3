/**
 * The command line of the whole-system bench (bench/run.ts): parsed, checked (every bad flag is
 * a UsageError, exit code 2) and turned into the sizes of the run.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { NETWORK_PATH_NAMES, PATH_NAMES } from './run-paths.js';
import type { Settings } from './run-types.js';
import { parseSize } from './run-util.js';

const MIB = 1024 * 1024;

/** The parts that --only can name beside the paths. */
export const PARTS = ['http', 'memory', 'scale', 'mux', 'network'] as const;

/** The text of --help. */
export const HELP = `Usage: npm run bench -- [options]   (or: node dist/bench/run.js [options])

Runs every path on loopback and writes the results (JSON, markdown, SVG charts).

Options:
  --quick          every path on small sizes (under a minute); for checks, not for numbers
  --out DIR        where the results go (default bench/results/; bench/RESULTS.md is updated
                   only with the default)
  --only PATHS     comma-separated paths, of: ${[...PATH_NAMES, ...NETWORK_PATH_NAMES].join(', ')};
                   and the parts ${PARTS.join(', ')} (default: everything); network is
                   the relay network: its two paths, its preview at the holder and through the
                   forwarding relay (1 KiB), and the directory lookups (needs nats-server)
  --agents N       idle agents for the scale part (default 20000, --quick 200)
  --no-mux         skip the multiplexer bench (bench/mux.ts) in a full run
  --runs N         runs of the interleaved measures: the bulk transfers (default 5, --quick 1)
                   and the HTTP cases (default 1); the medians are reported
  --size SIZE      bytes per bulk transfer, such as 64m or 1g (default 512m, --quick 16m)
  --duration S     seconds per HTTP case (default 10, --quick 1)
  --compare CLI    a second build's CLI (OTHER/dist/bin/warren.js, built): its relay, agent and
                   connect run beside this build's, and warren-tcp, warren-connect and the preview
                   are measured for both, interleaved, in the same run (the A/B test of a change);
                   memory, scale and mux measure this build only
  --prof-dir DIR   the Warren relays, agents and connect write CPU profiles into DIR when they
                   exit (node --cpu-prof; named ROLE-BUILD.cpuprofile, BUILD this or other)
  --hold           start the paths, print their ports as one JSON line on stdout and keep them
                   up until SIGINT (Ctrl-C), for probing by hand; measures nothing
  --render FILE    render the markdown and charts again from a saved JSON, into its folder
                   (bench/RESULTS.md too when FILE is a full run in bench/results/)
  --help           this text
`;

/** A usage error: exit code 2. */
export class UsageError extends Error {}

/** The checked command line. */
export interface RunOptions {
  help: boolean;
  /** --render FILE: render again, measure nothing. */
  render?: string;
  /** --out DIR, undefined for the default folder. */
  out?: string;
  /** The paths and parts named by --only; undefined for everything. */
  only?: string[];
  settings: Settings;
  noMux: boolean;
  /** The --compare build's CLI, an absolute path to an existing file. */
  compare?: string;
  /** The --prof-dir folder, absolute and created. */
  profDir?: string;
  hold: boolean;
}

function positiveInteger(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`${flag}: expected a positive integer; got ${text}`);
  return n;
}

/** The sizes of a full or a --quick run, with the counts the flags override. */
export function settingsFor(quick: boolean, over: { agents?: number; runs?: number; bulkBytes?: number; httpSeconds?: number } = {}): Settings {
  const requested = over.agents ?? (quick ? 200 : 20_000);
  return {
    quick,
    bulkBytes: over.bulkBytes ?? (quick ? 16 * MIB : 512 * MIB),
    runs: over.runs ?? (quick ? 1 : 5),
    streams: [1, 64],
    pingPongCount: quick ? 300 : 20_000,
    newStreamCount: quick ? 30 : 1_000,
    httpSeconds: over.httpSeconds ?? (quick ? 1 : 10),
    httpRuns: over.runs ?? 1,
    httpConnections: { '1k': quick ? 8 : 32, '1m': 8 },
    memoryAgents: quick ? 100 : 1_000,
    memoryStreams: quick ? 100 : 1_000,
    scaleAgents: requested,
    scaleRequested: requested,
    directoryRecords: quick ? 2_000 : 20_000,
    directoryCalls: quick ? 200_000 : 5_000_000,
  };
}

/** Parses and checks `args` (process.argv without node and the script); throws UsageError. */
export function parseRunOptions(args: string[]): RunOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        quick: { type: 'boolean', default: false },
        out: { type: 'string' },
        only: { type: 'string' },
        agents: { type: 'string' },
        'no-mux': { type: 'boolean', default: false },
        runs: { type: 'string' },
        size: { type: 'string' },
        duration: { type: 'string' },
        compare: { type: 'string' },
        'prof-dir': { type: 'string' },
        hold: { type: 'boolean', default: false },
        render: { type: 'string' },
        help: { type: 'boolean', default: false },
      },
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const only = values.only?.split(',').map((s) => s.trim()).filter(Boolean);
  const known: readonly string[] = [...PATH_NAMES, ...NETWORK_PATH_NAMES, ...PARTS];
  const unknown = only?.filter((w) => !known.includes(w)) ?? [];
  if (unknown.length > 0) throw new UsageError(`--only: unknown ${unknown.join(', ')}; known: ${known.join(', ')}`);
  let bulkBytes: number | undefined;
  try {
    bulkBytes = values.size === undefined ? undefined : parseSize(values.size);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (bulkBytes !== undefined && bulkBytes < 64 * 1024) throw new UsageError(`--size: at least 64k; got ${values.size}`);
  const httpSeconds = positiveInteger('--duration', values.duration);
  const settings = settingsFor(values.quick, { agents: positiveInteger('--agents', values.agents), runs: positiveInteger('--runs', values.runs), bulkBytes, httpSeconds });
  const compare = values.compare === undefined ? undefined : resolve(values.compare);
  if (compare !== undefined && !existsSync(compare)) throw new UsageError(`--compare: no file at ${compare}; name another build's CLI, OTHER/dist/bin/warren.js, after npm run build there`);
  if (compare !== undefined && only && !only.some((w) => ['warren-tcp', 'warren-connect', 'http'].includes(w))) throw new UsageError(`--compare measures warren-tcp, warren-connect and http; --only ${only.join(',')} names none of them`);
  if (values.hold && values.render) throw new UsageError('--hold and --render: --render measures nothing, so there is nothing to hold');
  const profDir = values['prof-dir'] === undefined ? undefined : resolve(values['prof-dir']);
  if (profDir) mkdirSync(profDir, { recursive: true });
  return { help: values.help, render: values.render, out: values.out, only, settings, noMux: values['no-mux'], compare, profDir, hold: values.hold };
}
