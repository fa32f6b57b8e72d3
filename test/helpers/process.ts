import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { appendFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { warrenBin } from './paths.js';

/** A child process whose output lines are kept and can be waited for. */
export interface Proc {
  child: ChildProcess;
  /** Every stdout and stderr line so far. */
  lines: string[];
  /**
   * Resolves with the first line matching `pattern` at index `after` or later (past or future
   * lines); rejects if the process exits first.
   */
  waitFor(pattern: RegExp, timeoutMs?: number, after?: number): Promise<string>;
  /** Resolves with the exit code (or the signal's name). */
  exited: Promise<number | string>;
  /** Sends `signal` and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<number | string>;
}

/** Starts `command args` with `env` added; output is collected line by line. */
export function startProcess(command: string, args: string[], env: Record<string, string> = {}, cwd?: string): Proc {
  const child = spawn(command, args, { env: { ...process.env, ...env }, cwd, stdio: ['pipe', 'pipe', 'pipe'] });
  const lines: string[] = [];
  // npm test collects every child's output so the suite can prove no secret was ever logged.
  const logDir = process.env.WARREN_TEST_LOG_DIR;
  const logFile = logDir ? join(logDir, `${process.pid}-${child.pid ?? 'x'}-${Date.now()}.log`) : undefined;
  const waiters: { pattern: RegExp; after: number; resolve: (l: string) => void }[] = [];
  const onLine = (line: string): void => {
    lines.push(line);
    if (logFile) appendFileSync(logFile, `${line}\n`);
    for (const w of [...waiters]) {
      if (lines.length - 1 >= w.after && w.pattern.test(line)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  };
  createInterface({ input: child.stdout }).on('line', onLine);
  createInterface({ input: child.stderr }).on('line', onLine);
  const exited = once(child, 'exit').then(([code, signal]) => (code as number | null) ?? (signal as string));
  return {
    child,
    lines,
    exited,
    waitFor(pattern, timeoutMs = 20_000, after = 0) {
      const seen = lines.slice(after).find((l) => pattern.test(l));
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no line matching ${pattern} within ${timeoutMs} ms; output:\n${lines.join('\n')}`)), timeoutMs);
        const w = {
          pattern,
          after,
          resolve: (l: string) => {
            clearTimeout(timer);
            resolve(l);
          },
        };
        waiters.push(w);
        void exited.then((code) => {
          clearTimeout(timer);
          if (waiters.includes(w)) reject(new Error(`process exited (${code}) before a line matching ${pattern}; output:\n${lines.join('\n')}`));
        });
      });
    },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

let socketDir: string | undefined;
let socketCount = 0;

/**
 * A fresh path for an agent's status socket, in a folder of this test process that is removed
 * when it exits. Test files run in parallel on one machine, so every agent needs its own socket,
 * as agents in separate sandboxes have.
 */
export function uniqueStatusSocket(): string {
  if (!socketDir) {
    const dir = mkdtempSync(join(tmpdir(), 'warren-sock-'));
    socketDir = dir;
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  }
  return join(socketDir, `agent-${++socketCount}.sock`);
}

/**
 * Starts the built `warren` CLI with `args`. An agent (`warren agent ...`, not `agent status`) gets
 * its own status socket unless `args` or `env` name one.
 */
export function startWarren(args: string[], env: Record<string, string> = {}, cwd?: string): Proc {
  const runsAgent = args[0] === 'agent' && args[1] !== 'status';
  const namesSocket = args.includes('--status-socket') || env.WARREN_STATUS_SOCKET !== undefined;
  const extra: Record<string, string> = runsAgent && !namesSocket ? { WARREN_STATUS_SOCKET: uniqueStatusSocket() } : {};
  return startProcess(process.execPath, [warrenBin, ...args], { ...extra, ...env }, cwd);
}

/** Runs the `warren` CLI to completion; resolves with its exit code and output. */
export async function runWarren(args: string[], env: Record<string, string> = {}, cwd?: string): Promise<{ code: number | string; stdout: string; lines: string[] }> {
  const p = startWarren(args, env, cwd);
  const out: Buffer[] = [];
  p.child.stdout!.on('data', (c: Buffer) => out.push(c));
  const code = await p.exited;
  return { code, stdout: Buffer.concat(out).toString('utf8'), lines: p.lines };
}
