/**
 * Conventions every `warren` subcommand shares: flags that also read `WARREN_<FLAG>` from the
 * environment, repeatable flags, and one way to turn an error into a message and an exit code
 * (0 ok, 1 runtime failure, 2 usage or config error).
 */
import { readFile } from 'node:fs/promises';
import { Option } from 'commander';
import { ConfigError, WarrenError, errorCode } from '../protocol/errors.js';

/** The environment variable a long flag reads: `--trust-key` → `WARREN_TRUST_KEY`. */
export function envName(flags: string): string {
  const long = /--([a-z0-9-]+)/.exec(flags)?.[1];
  if (!long) throw new Error(`flag "${flags}" has no long name`);
  return `WARREN_${long.replace(/-/g, '_').toUpperCase()}`;
}

/** A flag that also reads its `WARREN_*` environment variable. */
export function envOption(flags: string, description: string): Option {
  return new Option(flags, description).env(envName(flags));
}

/**
 * A repeatable flag (`--port 3000 --port 5173`) that also reads its environment variable as a
 * comma-separated list (`WARREN_PORT=3000,5173`).
 */
export function repeatableOption(flags: string, description: string): Option {
  return envOption(flags, description)
    .argParser((value: string, previous: string[] | undefined) => [...(previous ?? []), ...value.split(',').map((v) => v.trim()).filter(Boolean)])
    .default(undefined);
}

/** Exit code for an error: 2 for usage and configuration errors, 1 for everything else. */
export function exitCodeFor(err: unknown): 1 | 2 {
  if (err instanceof ConfigError) return 2;
  if (err instanceof WarrenError && ['ERR_WARREN_USAGE', 'ERR_WARREN_CONFIG', 'ERR_WARREN_NO_TRUST_KEYS', 'ERR_WARREN_INVALID_ARGUMENT'].includes(err.code)) return 2;
  return 1;
}

/** One line (or a JSON object with `--json`) that tells the user what failed and its code. */
export function describeError(err: unknown, json: boolean): string {
  const code = errorCode(err);
  const message = err instanceof Error ? err.message : String(err);
  if (json) return JSON.stringify({ event: 'error', code, message });
  return `warren: ${message} (${code})`;
}

/**
 * Runs a subcommand's action: a thrown error becomes a message on stderr (JSON on stdout with
 * `--json`) and exit code 1 or 2. An action that returns a number exits with it; one that
 * returns nothing leaves the process running (servers) or lets it end naturally.
 */
export function runAction<A extends unknown[]>(action: (...args: A) => Promise<number | void>, json: (...args: A) => boolean = () => false) {
  return async (...args: A): Promise<void> => {
    try {
      const code = await action(...args);
      if (typeof code === 'number') process.exit(code);
    } catch (err) {
      const asJson = json(...args);
      if (asJson) process.stdout.write(`${describeError(err, true)}\n`);
      else process.stderr.write(`${describeError(err, false)}\n`);
      process.exitCode = exitCodeFor(err);
      // Give pending log lines a moment to flush, then exit even if sockets remain open.
      setTimeout(() => process.exit(exitCodeFor(err)), 50).unref();
    }
  };
}

/**
 * Runs `parse`; a ConfigError it throws joins `problems` (so a command reports every problem at
 * once) and undefined is returned. Other errors pass through.
 */
export function collectProblem<T>(problems: string[], parse: () => T): T | undefined {
  try {
    return parse();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    problems.push(...err.issues);
    return undefined;
  }
}

/** Reads the file a flag names (a CA certificate, a key); ConfigError naming the flag when it cannot. */
export async function readFlagFile(flag: string, path: string | undefined): Promise<string | undefined> {
  if (path === undefined) return undefined;
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError([`${flag}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`]);
  }
}
