// The agent's status server and its formatting, in process, on real Unix sockets.
import { mkdtempSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { AgentSnapshot } from '../../agent/agent.js';
import { defaultStatusSocketPath, fetchAgentStatus, formatAgentStatus, StatusServer, type AgentStatusReport } from '../../agent/status.js';
import { WarrenError } from '../../protocol/index.js';

const dir = mkdtempSync(join(tmpdir(), 'warren-status-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const connected: AgentSnapshot = {
  status: 'connected',
  relay: 'wss://relay.example.dev',
  tunnel: 'ab12cd',
  rttMs: 12.4,
  connectedSince: '2025-01-01T00:00:00.000Z',
  lastError: undefined,
  previews: [{ port: 3000, url: 'https://3000-ab12cd.preview.example.dev/', private: false }],
  tcp: [{ port: 5432, endpoint: 'relay.example.dev:20001' }],
  streamsOpen: 1,
  streamsServed: 7,
  streamsRefused: 2,
};

const source = (snapshot: AgentSnapshot) => ({ measuredSnapshot: async () => snapshot });

function get(socketPath: string, path: string, method = 'GET'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

t.test('the default socket is in XDG_RUNTIME_DIR when set, else per uid in the temp folder', async (t) => {
  t.equal(defaultStatusSocketPath('/run/user/1000', 1000, '/tmp'), '/run/user/1000/warren-agent.sock');
  t.equal(defaultStatusSocketPath(undefined, 1000, '/tmp'), '/tmp/warren-agent-1000.sock');
});

t.test('GET /status answers the snapshot with the pid; other paths and methods are refused', async (t) => {
  const path = join(dir, 'a.sock');
  const server = await StatusServer.listen(path, source(connected), 'warren-agent/test');
  t.teardown(() => server.close());
  t.equal(statSync(path).mode & 0o777, 0o600);
  const report = await fetchAgentStatus(path);
  // JSON leaves out fields that are undefined (lastError while connected).
  t.strictSame(report, JSON.parse(JSON.stringify({ ...connected, pid: process.pid, software: 'warren-agent/test' })));
  t.notOk('lastError' in report);
  t.equal((await get(path, '/nope')).status, 404);
  const post = await get(path, '/status', 'POST');
  t.equal(post.status, 405);
  t.equal((JSON.parse(post.body) as { error: { code: string } }).error.code, 'ERR_WARREN_BAD_REQUEST');
  await server.close();
  t.notOk(existsSync(path), 'close() removes the socket');
});

t.test('a file that is not a socket is never replaced', async (t) => {
  const path = join(dir, 'file.sock');
  writeFileSync(path, 'keep me');
  await t.rejects(StatusServer.listen(path, source(connected)), { code: 'ERR_WARREN_LISTEN', message: /not a socket/ });
  t.ok(existsSync(path));
});

t.test('a second server on a live socket fails; fetch of a missing socket says so', async (t) => {
  const path = join(dir, 'live.sock');
  const first = await StatusServer.listen(path, source(connected));
  t.teardown(() => first.close());
  await t.rejects(StatusServer.listen(path, source(connected)), { code: 'ERR_WARREN_LISTEN', message: /another agent is running/ });
  const missing = fetchAgentStatus(join(dir, 'missing.sock'));
  await t.rejects(missing, WarrenError);
  await t.rejects(missing, { code: 'ERR_WARREN_AGENT_UNREACHABLE', message: /no status socket there/ });
});

t.test('the table for people', async (t) => {
  const report: AgentStatusReport = { ...connected, pid: 42, software: 'warren-agent/0.1.0' };
  const text = formatAgentStatus(report, Date.parse('2025-01-01T00:02:05.000Z'));
  t.equal(
    text,
    [
      'status   connected for 2m 5s',
      'relay    wss://relay.example.dev',
      'tunnel   ab12cd',
      'rtt      12 ms',
      'streams  1 open, 7 served, 2 refused',
      'agent    pid 42, warren-agent/0.1.0',
      '',
      'PORT  KIND     ADDRESS',
      '3000  preview  https://3000-ab12cd.preview.example.dev/',
      '5432  tcp      relay.example.dev:20001',
    ].join('\n'),
  );
  const down = formatAgentStatus({ ...report, status: 'reconnecting', rttMs: undefined, connectedSince: undefined, lastError: { code: 'ERR_WARREN_RELAY_UNREACHABLE', message: 'connect ECONNREFUSED' }, previews: [], tcp: [] });
  t.match(down, /^status +reconnecting$/m);
  t.match(down, /^rtt +-$/m);
  t.match(down, /^last error +connect ECONNREFUSED \(ERR_WARREN_RELAY_UNREACHABLE\)$/m);
  t.notMatch(down, /PORT/);
});
