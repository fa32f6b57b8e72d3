/**
 * Small pieces both benchmark drivers (bench/run.ts, bench/mux.ts) share: progress
 * lines, per-process CPU and memory read from /proc, process trees (sshd forks per connection),
 * quantiles and medians (one rank rule), sizes typed on the command line, and a registry of every
 * child process so that all of them are killed at the end, even on error.
 */
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Proc } from '../test/helpers/process.js';

/** Writes one progress line to stderr. */
export function log(line: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
}

const CLOCK_TICKS_PER_SEC = 100;
const PAGE_BYTES = 4096;

/** User + system CPU seconds of `pid` so far (from /proc/PID/stat); 0 when it is gone (or undefined: never started). */
export function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SEC;
  } catch {
    return 0;
  }
}

/** Resident set size of `pid` in bytes (from /proc/PID/statm); 0 when it is gone. */
export function rssBytes(pid: number): number {
  try {
    return Number(readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')[1]) * PAGE_BYTES;
  } catch {
    return 0;
  }
}

/** `pid` and all its descendants alive now (from the ppid field of every /proc/N/stat). */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(name));
      children.set(ppid, list);
    } catch {
      // Exited while we looked.
    }
  }
  const out: number[] = [];
  const todo = [pid];
  while (todo.length > 0 && out.length < 10_000) {
    const p = todo.pop()!;
    out.push(p);
    todo.push(...(children.get(p) ?? []));
  }
  return out;
}

/** A named group of processes whose CPU is measured together (one role of a path: "relay", "sshd"). */
export interface Role {
  name: string;
  /** Root pid; its descendants count too. */
  pid: number;
}

/** CPU seconds per role, taken before a measurement; finish() gives the seconds used since. */
export function cpuMeter(roles: Role[]): { finish(): Record<string, number> } {
  const before = new Map<number, number>();
  for (const r of roles) for (const p of processTree(r.pid)) before.set(p, cpuSeconds(p));
  return {
    finish() {
      const used: Record<string, number> = {};
      for (const r of roles) {
        let sum = 0;
        for (const p of processTree(r.pid)) sum += cpuSeconds(p) - (before.get(p) ?? 0);
        used[r.name] = Math.max(0, sum);
      }
      return used;
    },
  };
}

/** The value at quantile q (0..1) of `values` (nearest rank); 0 for none. */
export function quantile(values: number[], q: number): number {
  if (values.length === 0) return 0;
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/** The median of `values`: quantile 0.5 (the lower middle value of an even count); 0 for none. */
export function median(values: number[]): number {
  return quantile(values, 0.5);
}

const SIZE_UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 * 1024, g: 1024 * 1024 * 1024 };

/** Parses a size flag: bytes, or a number with k, m or g (binary units; `1.5g`, `512MiB` too). */
export function parseSize(text: string, flag = '--size'): number {
  const m = /^(\d+(?:\.\d+)?)([kmg]?)i?b?$/i.exec(text.trim());
  if (!m) throw new Error(`${flag}: expected a size such as 256m or 1g; got ${text}`);
  return Math.round(Number(m[1]) * SIZE_UNITS[m[2]!.toLowerCase()]!);
}

/** Rounds to `digits` decimals. */
export const round = (x: number, digits = 1): number => Math.round(x * 10 ** digits) / 10 ** digits;

/** Resolves once something accepts TCP connections on host:port; rejects after `timeoutMs`. */
export async function waitForPort(port: number, host = '127.0.0.1', timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, host);
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`nothing listens on ${host}:${port} after ${timeoutMs} ms`);
}

/** Every child process the bench started; stopAll() ends them and their descendants. */
export class Children {
  private readonly procs = new Set<Proc>();
  /** Temporary folders (keys, configs) removed by killAllNow() when the bench is interrupted. */
  private readonly dirs = new Set<string>();

  /** Registers a temporary folder to remove if the bench is interrupted. */
  addDir(dir: string): void {
    this.dirs.add(dir);
  }

  /** Registers `proc` for the final cleanup and returns it. */
  add(proc: Proc): Proc {
    this.procs.add(proc);
    void proc.exited.then(() => this.procs.delete(proc));
    return proc;
  }

  /** Ends one process and its descendants: SIGTERM, then SIGKILL after `graceMs`. */
  async stop(proc: Proc, graceMs = 3_000): Promise<void> {
    const pid = proc.child.pid;
    const tree = pid === undefined ? [] : processTree(pid);
    for (const p of tree) {
      try {
        process.kill(p, 'SIGTERM');
      } catch {
        // Already gone.
      }
    }
    const timer = setTimeout(() => {
      for (const p of tree) {
        try {
          process.kill(p, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
    }, graceMs);
    await proc.exited;
    clearTimeout(timer);
    this.procs.delete(proc);
  }

  /** Ends every registered process (in reverse start order), each as stop() does. */
  async stopAll(graceMs?: number): Promise<void> {
    for (const p of [...this.procs].reverse()) await this.stop(p, graceMs);
  }

  /** Synchronous last resort on exit: SIGKILL whatever is left and remove the registered folders. */
  killAllNow(): void {
    for (const dir of this.dirs) rmSync(dir, { recursive: true, force: true });
    for (const p of this.procs) {
      const pid = p.child.pid;
      if (pid === undefined) continue;
      for (const q of processTree(pid)) {
        try {
          process.kill(q, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
    }
  }
}
