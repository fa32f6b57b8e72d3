/**
 * HTTP through a preview URL against the same app reached directly: requests per second and
 * latency percentiles with keep-alive connections, from wrk (Debian) when installed, else from
 * autocannon (npm devDependency).
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { round } from './run-util.js';

const run = promisify(execFile);

/** One load run's result. */
export interface HttpResult {
  tool: 'wrk' | 'autocannon';
  connections: number;
  seconds: number;
  requestsPerSec: number;
  /** Requests completed in the run. */
  requests: number;
  p50Ms: number;
  p99Ms: number;
  /** Non-2xx answers and socket errors. */
  errors: number;
}

function toMs(value: string, unit: string): number {
  const n = Number(value);
  return unit === 'us' ? n / 1000 : unit === 's' ? n * 1000 : n;
}

async function wrk(url: string, host: string | undefined, connections: number, seconds: number): Promise<HttpResult> {
  const args = ['-t', '1', '-c', String(connections), '-d', `${seconds}s`, '--latency', ...(host ? ['-H', `Host: ${host}`] : []), url];
  const { stdout } = await run('wrk', args, { timeout: (seconds + 30) * 1000 });
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(stdout);
  const p50 = /\s50%\s+([\d.]+)(us|ms|s)/.exec(stdout);
  const p99 = /\s99%\s+([\d.]+)(us|ms|s)/.exec(stdout);
  if (!rps || !p50 || !p99) throw new Error(`cannot read wrk's output:\n${stdout}`);
  const requests = /(\d+) requests in/.exec(stdout);
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(stdout);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout);
  const errors = Number(non2xx?.[1] ?? 0) + (sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0);
  return { tool: 'wrk', connections, seconds, requestsPerSec: round(Number(rps[1])), requests: Number(requests?.[1] ?? 0), p50Ms: round(toMs(p50[1]!, p50[2]!), 3), p99Ms: round(toMs(p99[1]!, p99[2]!), 3), errors };
}

async function autocannon(url: string, host: string | undefined, connections: number, seconds: number): Promise<HttpResult> {
  const bin = fileURLToPath(new URL('../../node_modules/autocannon/autocannon.js', import.meta.url));
  const args = [bin, '--json', '-c', String(connections), '-d', String(seconds), ...(host ? ['-H', `host=${host}`] : []), url];
  const { stdout } = await run(process.execPath, args, { timeout: (seconds + 30) * 1000, maxBuffer: 16 * 1024 * 1024 });
  const r = JSON.parse(stdout) as { requests: { average: number; total: number }; latency: { p50: number; p99: number }; non2xx: number; errors: number };
  return { tool: 'autocannon', connections, seconds, requestsPerSec: round(r.requests.average), requests: r.requests.total, p50Ms: r.latency.p50, p99Ms: r.latency.p99, errors: r.non2xx + r.errors };
}

/** The load tool this machine has. */
export function httpTool(): 'wrk' | 'autocannon' {
  return existsSync('/usr/bin/wrk') ? 'wrk' : 'autocannon';
}

/** Loads `url` (with a Host header when given) for `seconds` over `connections` keep-alive connections. */
export function loadHttp(url: string, host: string | undefined, connections: number, seconds: number): Promise<HttpResult> {
  return httpTool() === 'wrk' ? wrk(url, host, connections, seconds) : autocannon(url, host, connections, seconds);
}
