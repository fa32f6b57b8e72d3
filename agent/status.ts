/**
 * The agent's local status endpoint: an HTTP server on a Unix socket (never a network listener),
 * mode 0600, that answers `GET /status` with the agent's snapshot as JSON. `warren agent status`
 * reads it with fetchAgentStatus() and prints it with formatAgentStatus().
 *
 * One socket, one agent: a socket file left by an agent that died is replaced; one that still
 * answers belongs to a live agent and is an error (give the second agent its own path). The
 * server removes its socket when it closes, and removeSync() does so on process exit.
 */
import { chmodSync, lstatSync, unlinkSync, type Stats } from 'node:fs';
import { lstat, unlink } from 'node:fs/promises';
import { once } from 'node:events';
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { ConfigError, WarrenError } from '../protocol/index.js';
import type { AgentSnapshot } from './agent.js';

/** The longest Unix socket path Linux accepts (sun_path is 108 bytes with the NUL). */
export const MAX_SOCKET_PATH_BYTES = 107;

/** How long `warren agent status` waits for an answer by default. */
export const STATUS_TIMEOUT_MS = 3_000;

/** What GET /status answers: the agent's snapshot, plus who answers. */
export interface AgentStatusReport extends AgentSnapshot {
  /** Process id of the agent. */
  pid: number;
  /** Software name and version of the agent. */
  software: string | undefined;
}

/** What the status server asks of the agent (the Agent class provides it). */
export interface StatusSource {
  measuredSnapshot(): Promise<AgentSnapshot>;
}

/**
 * The default status socket path: `$XDG_RUNTIME_DIR/warren-agent.sock` when a runtime directory is
 * set (it is private to the user), else `<tmpdir>/warren-agent-<uid>.sock`.
 */
export function defaultStatusSocketPath(runtimeDir: string | undefined, uid: number, tmp: string): string {
  return runtimeDir ? join(runtimeDir, 'warren-agent.sock') : join(tmp, `warren-agent-${uid}.sock`);
}

/** Throws ConfigError when `path` cannot be a Unix socket path. */
export function checkSocketPath(path: string, what = '--status-socket'): void {
  if (path.length === 0) throw new ConfigError([`${what}: empty path`]);
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) {
    throw new ConfigError([`${what}: "${path}" is ${Buffer.byteLength(path)} bytes; Unix socket paths are at most ${MAX_SOCKET_PATH_BYTES}`]);
  }
}

function statOrUndefined(path: string): Promise<Stats | undefined> {
  return lstat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
}

/** Whether something answers on the Unix socket at `path`: 'live', 'stale' (nobody listens) or 'gone'. */
function probeSocket(path: string): Promise<'live' | 'stale' | 'gone'> {
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    socket.once('connect', () => {
      socket.destroy();
      resolve('live');
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED') resolve('stale');
      else if (err.code === 'ENOENT') resolve('gone');
      else reject(err);
    });
  });
}

function listenError(path: string, detail: string, cause?: unknown): WarrenError {
  return new WarrenError('ERR_WARREN_LISTEN', `cannot serve the agent status on ${path}: ${detail}`, { cause });
}

/** The status server of one agent. Create with StatusServer.listen(). */
export class StatusServer {
  // Static after listen().
  /** The socket path served. */
  readonly path: string;
  private readonly server: Server;
  /** Device and inode of the socket this server bound: removeSync() only removes that file. */
  private identity: { dev: number; ino: number } | undefined;

  private constructor(path: string, server: Server) {
    this.path = path;
    this.server = server;
  }

  /**
   * Serves `source` on a Unix socket at `path` with mode 0600. Replaces a stale socket file;
   * throws ERR_WARREN_LISTEN when a live process answers there or the path is not a socket.
   */
  static async listen(path: string, source: StatusSource, software?: string): Promise<StatusServer> {
    checkSocketPath(path);
    const server = createServer((req, res) => {
      handle(req, res, source, software).catch(() => res.destroy());
    });
    server.headersTimeout = 5_000;
    server.requestTimeout = 10_000;
    const status = new StatusServer(path, server);
    for (let attempt = 0; ; attempt++) {
      try {
        await bind(server, path);
        break;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'EADDRINUSE' || attempt > 0) throw listenError(path, (err as Error).message, err);
      }
      const st = await statOrUndefined(path);
      if (st && !st.isSocket()) throw listenError(path, 'the path exists and is not a socket; remove it or choose another --status-socket');
      let state: 'live' | 'stale' | 'gone' = 'gone';
      try {
        if (st) state = await probeSocket(path);
      } catch (err) {
        throw listenError(path, (err as Error).message, err);
      }
      if (state === 'live') throw listenError(path, 'another agent is running and answers there; stop it, or give this agent its own --status-socket');
      // A socket file left behind by an agent that died: replace it.
      if (state === 'stale') await unlink(path).catch(() => undefined);
    }
    // The socket was created under umask 0177; set 0600 again in case the file system ignores it.
    chmodSync(path, 0o600);
    const st = lstatSync(path);
    status.identity = { dev: st.dev, ino: st.ino };
    return status;
  }

  /** Stops answering and removes the socket file. */
  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
    this.removeSync();
  }

  /** Removes the socket file if it is still the one this server created (for process exit). */
  removeSync(): void {
    if (!this.identity) return;
    try {
      const st = lstatSync(this.path);
      if (st.dev === this.identity.dev && st.ino === this.identity.ino) unlinkSync(this.path);
    } catch {
      // Already gone.
    }
    this.identity = undefined;
  }
}

/** Listens on `path` with a umask that makes the socket 0600 from the start (bind is synchronous). */
async function bind(server: Server, path: string): Promise<void> {
  const previous = process.umask(0o177);
  try {
    server.listen(path);
  } finally {
    process.umask(previous);
  }
  await Promise.race([once(server, 'listening'), once(server, 'error').then(([err]) => Promise.reject(err as Error))]);
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

async function handle(req: IncomingMessage, res: ServerResponse, source: StatusSource, software: string | undefined): Promise<void> {
  const path = new URL(req.url ?? '/', 'http://agent').pathname;
  if (path !== '/status') {
    sendJson(res, 404, { error: { code: 'ERR_WARREN_BAD_REQUEST', message: `no such endpoint: ${path} (try GET /status)`, status: 404 } });
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('allow', 'GET, HEAD');
    sendJson(res, 405, { error: { code: 'ERR_WARREN_BAD_REQUEST', message: `${req.method} is not allowed on /status`, status: 405 } });
    return;
  }
  const report: AgentStatusReport = { ...(await source.measuredSnapshot()), pid: process.pid, software };
  sendJson(res, 200, report);
}

function unreachable(path: string, detail: string, cause?: unknown): WarrenError {
  return new WarrenError('ERR_WARREN_AGENT_UNREACHABLE', `no agent answered on ${path}: ${detail}`, { cause });
}

/**
 * Asks the agent serving `path` for its status. Throws ERR_WARREN_AGENT_UNREACHABLE (saying why)
 * when no agent answers within `timeoutMs`.
 */
export async function fetchAgentStatus(path: string, timeoutMs = STATUS_TIMEOUT_MS): Promise<AgentStatusReport> {
  checkSocketPath(path);
  const st = await statOrUndefined(path).catch((err: NodeJS.ErrnoException) => {
    throw unreachable(path, err.code ?? err.message, err);
  });
  if (!st) throw unreachable(path, 'no status socket there (is `warren agent` running? it may use another --status-socket)');
  if (!st.isSocket()) throw unreachable(path, 'the path is not a socket');
  const uid = process.getuid?.();
  if (uid !== undefined && uid !== 0 && st.uid !== uid) throw unreachable(path, `the socket belongs to uid ${st.uid}, not to you (uid ${uid})`);
  const body = await new Promise<string>((resolve, reject) => {
    const req = request({ socketPath: path, path: '/status', method: 'GET', headers: { accept: 'application/json' }, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        if (res.statusCode !== 200) reject(unreachable(path, `the socket answered HTTP ${res.statusCode}, not an agent status`));
        else resolve(Buffer.concat(chunks).toString('utf8'));
      });
      res.on('error', (err) => reject(unreachable(path, err.message, err)));
    });
    req.on('timeout', () => req.destroy(unreachable(path, `no answer within ${timeoutMs} ms`)));
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err instanceof WarrenError) reject(err);
      else if (err.code === 'ECONNREFUSED') reject(unreachable(path, 'the socket is left over from an agent that is no longer running', err));
      else if (err.code === 'EACCES') reject(unreachable(path, 'permission denied (the agent runs as another user?)', err));
      else reject(unreachable(path, err.code ?? err.message, err));
    });
    req.end();
  });
  let report: unknown;
  try {
    report = JSON.parse(body);
  } catch {
    throw unreachable(path, 'the answer is not JSON');
  }
  if (report === null || typeof report !== 'object' || typeof (report as { status?: unknown }).status !== 'string') throw unreachable(path, 'the answer is not an agent status');
  return report as AgentStatusReport;
}

/** Formats milliseconds as people read them: 0.42 ms, 12 ms, 1.5 s. */
function formatMs(ms: number): string {
  if (ms < 10) return `${ms.toFixed(2)} ms`;
  if (ms < 1_000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(1)} s`;
}

/** Formats a duration in whole units: 45s, 12m 3s, 5h 2m, 3d 4h. */
function formatAge(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86_400)}d ${Math.floor((s % 86_400) / 3600)}h`;
}

/** Pads the columns of `rows` to equal widths, two spaces apart. */
function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ').trimEnd());
}

/** The status as a small table for people (what `warren agent status` prints without --json). */
export function formatAgentStatus(r: AgentStatusReport, nowMs = Date.now()): string {
  const since = r.connectedSince ? ` for ${formatAge(nowMs - Date.parse(r.connectedSince))}` : '';
  const summary: string[][] = [
    ['status', `${r.status}${since}`],
    ['relay', r.relay ?? '-'],
    ['tunnel', r.tunnel ?? '-'],
    ['rtt', r.rttMs === undefined ? '-' : formatMs(r.rttMs)],
    ['streams', `${r.streamsOpen} open, ${r.streamsServed} served, ${r.streamsRefused} refused`],
  ];
  if (r.lastError) summary.push(['last error', `${r.lastError.message} (${r.lastError.code})`]);
  summary.push(['agent', `pid ${r.pid}${r.software ? `, ${r.software}` : ''}`]);
  const lines = table(summary);
  const endpoints = [
    ...r.previews.map((p) => [String(p.port), p.private ? 'preview (private)' : 'preview', p.url]),
    ...r.tcp.map((t) => [String(t.port), 'tcp', t.endpoint]),
  ].sort((a, b) => Number(a[0]) - Number(b[0]));
  if (endpoints.length > 0) lines.push('', ...table([['PORT', 'KIND', 'ADDRESS'], ...endpoints]));
  return lines.join('\n');
}
