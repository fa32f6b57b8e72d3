// A reconnect storm: 5,000 agents (the agent module, run as swarms of 2,500 in two processes of
// test/fixtures/agent-swarm.ts, each with its own tunnel and token) hold sessions to one
// `warren relay` process. The relay is killed (SIGKILL: a crash, every session lost at once) and
// started again on the same port. With their full-jitter backoff every agent must come back,
// counted by the restarted relay's warren_agents_connected gauge and by the swarms themselves,
// and previews must work again through the new sessions.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { makeTestIdentity } from '../helpers/identity.js';
import { freePort, startTestApp } from '../helpers/apps.js';
import { previewRequest, TEST_DOMAIN, type RelayProc } from '../helpers/cluster.js';
import { startProcess, type Proc } from '../helpers/process.js';
import { warrenBin } from '../helpers/paths.js';
import { cpuSeconds } from '../../bench/run-util.js';

const SWARMS = 2;
const AGENTS_PER_SWARM = 2_500;
const AGENTS = SWARMS * AGENTS_PER_SWARM;
/** How long every agent may take to come back once the relay listens again. */
const BACK_WITHIN_MS = 60_000;
const swarmScript = fileURLToPath(new URL('../fixtures/agent-swarm.js', import.meta.url));
/** Each process holds thousands of sockets: raise its descriptor limit first. */
const RAISE_FD_LIMIT = 'ulimit -n 20000 2>/dev/null || ulimit -n 12000; exec "$@"';

const id = await makeTestIdentity();
t.teardown(() => id.remove());
const app = await startTestApp();
t.teardown(() => app.close());
const relayPort = await freePort();

/** Starts `warren relay` on the fixed port with an admin listener. */
async function startRelay(): Promise<RelayProc & { admin: string }> {
  const args = ['relay', '--listen', `127.0.0.1:${relayPort}`, '--http-listen', '127.0.0.1:0', '--admin', '127.0.0.1:0'];
  args.push('--cert', id.certFile, '--key', id.keyFile, '--domain', TEST_DOMAIN, '--trust-key', id.issuerPubFile);
  const proc = startProcess('bash', ['-c', RAISE_FD_LIMIT, 'relay', process.execPath, warrenBin, ...args]);
  const info = JSON.parse(await proc.waitFor(/"event":"listening"/)) as { listen: { port: number }; httpListen: { port: number }; admin: { port: number } };
  return { proc, port: info.listen.port, httpPort: info.httpListen.port, url: `wss://127.0.0.1:${info.listen.port}`, admin: `http://127.0.0.1:${info.admin.port}` };
}

/** The kernel's count of connections dropped because a listener's accept queue was full (all listeners). */
function listenOverflows(): number {
  const lines = readFileSync('/proc/net/netstat', 'utf8').split('\n').filter((l) => l.startsWith('TcpExt:'));
  const names = lines[0]!.split(' ');
  return Number(lines[1]!.split(' ')[names.indexOf('ListenOverflows')]);
}

async function metric(relay: { admin: string }, name: string): Promise<number> {
  const text = await (await fetch(`${relay.admin}/metrics`)).text();
  return [...text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+(?:\\.\\d+)?)$`, 'gm'))].reduce((sum, m) => sum + Number(m[1]), 0);
}

/** Waits until the relay's gauge says `n` agents (checked on each scrape, every 250 ms). */
async function untilAgents(relay: { admin: string }, n: number, timeoutMs: number): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const seen = await metric(relay, 'warren_agents_connected');
    if (seen === n || performance.now() > deadline) return seen;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

let relay = await startRelay();
t.teardown(() => relay.proc.stop('SIGKILL'));
const swarms: Proc[] = [];
for (let s = 0; s < SWARMS; s++) {
  const config = { relay: relay.url, caFile: id.caFile, issuerKeyFile: id.issuerKeyFile, count: AGENTS_PER_SWARM, prefix: `swarm${s}`, port: app.port, concurrency: 100 };
  const swarm = startProcess('bash', ['-c', RAISE_FD_LIMIT, 'swarm', process.execPath, swarmScript, JSON.stringify(config)]);
  t.teardown(() => swarm.stop('SIGKILL'));
  swarms.push(swarm);
}

t.test(`${AGENTS} agents connect`, async (t) => {
  const started = performance.now();
  await Promise.all(swarms.map((s) => s.waitFor(/"event":"all_connected","generation":1/, 90_000)));
  t.comment(`${AGENTS} agents connected in ${Math.round(performance.now() - started)} ms; CPU: relay ${cpuSeconds(relay.proc.child.pid)} s, swarms ${swarms.map((s) => cpuSeconds(s.child.pid)).join(' s, ')} s`);
  t.equal(await untilAgents(relay, AGENTS, 10_000), AGENTS, 'the relay counts every agent');
});

t.test(`after a relay crash and restart, all ${AGENTS} agents come back with jittered reconnects`, async (t) => {
  const marks = swarms.map((s) => s.lines.length);
  const overflowsBefore = listenOverflows();
  await relay.proc.stop('SIGKILL');
  // Restarted at once, as a supervisor would; each swarm reports once every one of its agents has
  // lost its session and found a new one.
  relay = await startRelay();
  const listening = performance.now();
  const back = await Promise.all(swarms.map((s, i) => s.waitFor(/"event":"reconnects"/, BACK_WITHIN_MS + 10_000, marks[i])));
  const allBackMs = performance.now() - listening;
  t.ok(allBackMs < BACK_WITHIN_MS, `every agent was back ${Math.round(allBackMs)} ms after the relay listened again (bound ${BACK_WITHIN_MS} ms)`);
  t.equal(await untilAgents(relay, AGENTS, 10_000), AGENTS, 'the restarted relay counts every agent');
  t.notOk(swarms.some((s) => s.lines.some((l) => l.includes('"event":"failed"'))), 'no agent gave up');

  // Full jitter: the reconnects are spread out, not a thundering herd in lockstep.
  const reports = back.map((l) => JSON.parse(l) as { delaysMs: number[]; failures: Record<string, number> });
  const delays = reports.flatMap((r) => r.delaysMs).sort((a, b) => a - b);
  t.comment(`failed attempts while the relay was away or busy: ${JSON.stringify(reports.map((r) => r.failures))}`);
  t.equal(delays.length, AGENTS, 'every agent reported its reconnect');
  const at = (q: number): number => delays[Math.floor(q * (delays.length - 1))]!;
  t.comment(`reconnect delays: p10 ${at(0.1)} ms, p50 ${at(0.5)} ms, p90 ${at(0.9)} ms, max ${at(1)} ms`);
  t.ok(at(0.9) - at(0.1) >= 1_000, `reconnects spread over ${at(0.9) - at(0.1)} ms between p10 and p90`);
  t.comment(`connections dropped by full accept queues meanwhile (whole machine): ${listenOverflows() - overflowsBefore}`);
  t.comment(`CPU of the restarted relay: ${cpuSeconds(relay.proc.child.pid)} s; swarms so far ${swarms.map((s) => cpuSeconds(s.child.pid)).join(' s, ')} s`);
  const failures = await metric(relay, 'warren_handshake_failures_total');
  t.comment(`handshake failures at the restarted relay: ${failures}`);

  for (const tunnel of ['swarm0-0', `swarm${SWARMS - 1}-${AGENTS_PER_SWARM - 1}`]) {
    t.equal((await previewRequest(relay, `${app.port}-${tunnel}.${TEST_DOMAIN}`, '/')).status, 200, `the preview of ${tunnel} works through its new session`);
  }
});
