// `warren agent status`: a real relay and agent as processes, the status read over the agent's
// Unix socket by the CLI, as a person or a script on the sandbox would.
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import t from 'tap';
import { makeTestIdentity } from '../helpers/identity.js';
import { startTestApp } from '../helpers/apps.js';
import { startRelayProcess, TEST_DOMAIN } from '../helpers/cluster.js';
import { freePort } from '../helpers/peers.js';
import { runWarren, startWarren, uniqueStatusSocket, type Proc } from '../helpers/process.js';

interface Report {
  status: string;
  relay?: string;
  tunnel?: string;
  rttMs?: number;
  connectedSince?: string;
  lastError?: { code: string; message: string };
  previews: { port: number; url: string; private: boolean }[];
  tcp: { port: number; endpoint: string }[];
  streamsOpen: number;
  streamsServed: number;
  streamsRefused: number;
  pid: number;
}

const id = await makeTestIdentity();
t.teardown(() => id.remove());
const app = await startTestApp();
t.teardown(() => app.close());

/** Runs `warren agent status --json` against `socket`. */
async function statusJson(socket: string): Promise<{ code: number | string; report: Report }> {
  const res = await runWarren(['agent', 'status', '--json', '--status-socket', socket]);
  return { code: res.code, report: JSON.parse(res.stdout) as Report };
}

/** Starts an agent for `tunnel` with its status on `socket`; resolves once the tunnel is online. */
async function startAgent(relayUrl: string, tunnel: string, socket: string, extra: string[] = []): Promise<Proc> {
  const agent = startWarren(['agent', '--relay', relayUrl, '--ca', id.caFile, '--port', String(app.port), '--status-socket', socket, ...extra], {
    WARREN_TOKEN: id.token('agent', tunnel, [app.port, ...extra.filter((a) => /^\d+$/.test(a)).map(Number)]),
  });
  await agent.waitFor(/is online via/);
  return agent;
}

t.test('a connected agent reports its relay, tunnel, preview URL, TCP endpoint and keepalive RTT', async (t) => {
  const tcpPort = await freePort();
  const relay = await startRelayProcess(id, ['--tcp-ports', `${tcpPort}-${tcpPort}`, '--grace-period', '2s']);
  t.teardown(() => relay.proc.stop());
  const redisLike = createServer((s) => s.end('+PONG\r\n'));
  await new Promise<void>((resolve) => redisLike.listen(0, '127.0.0.1', resolve));
  t.teardown(() => redisLike.close());
  const innerTcp = (redisLike.address() as { port: number }).port;
  const socket = uniqueStatusSocket();
  const agent = await startAgent(relay.url, 'statusme', socket, ['--tcp', String(innerTcp)]);
  t.teardown(() => agent.stop());

  t.equal(statSync(socket).mode & 0o777, 0o600, 'the status socket is private to its user');

  const { code, report } = await statusJson(socket);
  t.equal(code, 0);
  t.equal(report.status, 'connected');
  t.equal(report.relay, relay.url);
  t.equal(report.tunnel, 'statusme');
  t.equal(report.pid, agent.child.pid);
  t.type(report.rttMs, 'number', 'the RTT of the keepalive PINGs is known');
  t.ok(report.rttMs! > 0 && report.rttMs! < 1_000, `a loopback RTT (${report.rttMs} ms)`);
  t.ok(report.connectedSince && Date.parse(report.connectedSince) <= Date.now());
  t.equal(report.lastError, undefined);
  t.same(
    report.previews.map((p) => p.port),
    [app.port],
  );
  t.match(report.previews[0]!.url, new RegExp(`^https://${app.port}-statusme\\.${TEST_DOMAIN.replace('.', '\\.')}:${relay.port}/$`));
  t.same(report.tcp, [{ port: innerTcp, endpoint: `127.0.0.1:${tcpPort}` }]);
  t.same([report.streamsOpen, report.streamsServed, report.streamsRefused], [0, 0, 0]);

  // The same, for people: a small table.
  const text = await runWarren(['agent', 'status', '--status-socket', socket]);
  t.equal(text.code, 0);
  t.match(text.stdout, /^status\s+connected for \d+s$/m);
  t.match(text.stdout, new RegExp(`^relay\\s+${relay.url}$`, 'm'));
  t.match(text.stdout, /^tunnel\s+statusme$/m);
  t.match(text.stdout, /^rtt\s+\d+(\.\d+)? ms$/m);
  t.match(text.stdout, /^streams\s+0 open, 0 served, 0 refused$/m);
  t.match(text.stdout, new RegExp(`^${app.port}\\s+preview\\s+${report.previews[0]!.url}$`, 'm'));
  t.match(text.stdout, new RegExp(`^${innerTcp}\\s+tcp\\s+127\\.0\\.0\\.1:${tcpPort}$`, 'm'));

  // After the relay stops the agent keeps trying, and says so.
  await relay.proc.stop();
  await agent.waitFor(/retrying in/);
  const after = await statusJson(socket);
  t.equal(after.code, 0);
  t.equal(after.report.status, 'reconnecting');
  t.equal(after.report.rttMs, undefined, 'no RTT without a session');
  t.equal(after.report.connectedSince, undefined);
  t.equal(after.report.relay, relay.url);
  t.equal(after.report.lastError?.code, 'ERR_WARREN_RELAY_UNREACHABLE');
  const afterText = await runWarren(['agent', 'status', '--status-socket', socket]);
  t.match(afterText.stdout, /^status\s+reconnecting$/m);
  t.match(afterText.stdout, /^last error\s+.+\(ERR_WARREN_RELAY_UNREACHABLE\)$/m);

  // On exit the agent removes its socket.
  t.equal(await agent.stop(), 0);
  t.notOk(existsSync(socket), 'the socket is removed on exit');
});

t.test('status without an agent exits 1 with ERR_WARREN_AGENT_UNREACHABLE', async (t) => {
  const socket = uniqueStatusSocket();
  const text = await runWarren(['agent', 'status', '--status-socket', socket]);
  t.equal(text.code, 1);
  t.match(text.lines.join('\n'), /no agent answered on .*agent-\d+\.sock: no status socket there.*\(ERR_WARREN_AGENT_UNREACHABLE\)/);
  const json = await runWarren(['agent', 'status', '--json'], { WARREN_STATUS_SOCKET: socket });
  t.equal(json.code, 1);
  t.equal((JSON.parse(json.stdout) as { code: string }).code, 'ERR_WARREN_AGENT_UNREACHABLE');
  writeFileSync(socket, 'not a socket');
  const notSocket = await runWarren(['agent', 'status', '--status-socket', socket]);
  t.equal(notSocket.code, 1);
  t.match(notSocket.lines.join('\n'), /not a socket/);
});

t.test('a socket left by a killed agent is replaced; a live agent keeps its socket', async (t) => {
  const relay = await startRelayProcess(id, ['--grace-period', '2s']);
  t.teardown(() => relay.proc.stop());
  const socket = uniqueStatusSocket();
  const killed = await startAgent(relay.url, 'stale', socket);
  await killed.stop('SIGKILL');
  t.ok(existsSync(socket), 'SIGKILL leaves the socket file behind');
  const left = await runWarren(['agent', 'status', '--status-socket', socket]);
  t.equal(left.code, 1);
  t.match(left.lines.join('\n'), /left over from an agent that is no longer running \(ERR_WARREN_AGENT_UNREACHABLE\)/);

  const second = await startAgent(relay.url, 'stale', socket);
  t.teardown(() => second.stop());
  const { code, report } = await statusJson(socket);
  t.equal(code, 0);
  t.equal(report.pid, second.child.pid, 'the new agent answers on the old path');

  const third = startWarren(['agent', '--relay', relay.url, '--ca', id.caFile, '--port', String(app.port), '--status-socket', socket], { WARREN_TOKEN: id.token('agent', 'other', [app.port]) });
  t.equal(await third.exited, 1, 'a second agent on a live socket exits 1');
  t.match(third.lines.join('\n'), /another agent is running and answers there.*\(ERR_WARREN_LISTEN\)/);
  t.equal((await statusJson(socket)).report.pid, second.child.pid, 'the live agent still answers');

  // `--status-socket off`: no socket at all, for sandboxes without a writable folder for one.
  const quiet = startWarren(['agent', '--relay', relay.url, '--ca', id.caFile, '--port', String(app.port), '--status-socket', 'off'], { WARREN_TOKEN: id.token('agent', 'quiet', [app.port]) });
  t.teardown(() => quiet.stop());
  await quiet.waitFor(/is online via/);
  t.notOk(existsSync('off'), 'no socket named "off" either');
  t.equal((await statusJson(socket)).report.pid, second.child.pid, "it took nobody's socket");
});

t.test('an agent refuses a status socket path that is too long, before connecting', async (t) => {
  const res = await runWarren(['agent', '--relay', 'wss://127.0.0.1:1', '--port', String(app.port), '--status-socket', `/tmp/${'x'.repeat(120)}.sock`], {
    WARREN_TOKEN: id.token('agent', 'long', [app.port]),
  });
  t.equal(res.code, 2);
  t.match(res.lines.join('\n'), /--status-socket: .* Unix socket paths are at most 107/);
});
