// Client streams and raw TCP endpoints with real peers: redis-server and redis-benchmark,
// OpenSSH through `warren connect --stdio` as ProxyCommand, a 1 GiB transfer, half-close and
// reset, and tokens that must not open anything. Relay, agent and `warren connect` run as the
// built CLI in child processes.
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect as netConnect, createServer, type AddressInfo, type Socket } from 'node:net';
import { promisify } from 'node:util';
import t from 'tap';
import { makeTestIdentity } from '../helpers/identity.js';
import { startAgentProcess, startRelayProcess } from '../helpers/cluster.js';
import { freePort, startRedis, startSshd } from '../helpers/peers.js';
import { runWarren, startWarren, type Proc } from '../helpers/process.js';
import { warrenBin } from '../helpers/paths.js';

const run = promisify(execFile);
const id = await makeTestIdentity();
t.teardown(() => id.remove());
const tcpFirst = 20000 + Math.floor(Math.random() * 10000);
const relay = await startRelayProcess(id, ['--tcp-ports', `${tcpFirst}-${tcpFirst + 50}`]);
t.teardown(() => relay.proc.stop());
const redis = await startRedis();
t.teardown(() => redis.proc.stop());
const sshd = await startSshd();
t.teardown(() => sshd.stop());

// A TCP app: `bulk` sends 1 GiB; `halfclose` answers only after the client's FIN; counts accepts.
const block = randomBytes(16 * 1024 * 1024);
const BULK_BLOCKS = 64; // 64 × 16 MiB = 1 GiB
let expectedBulkHash = '';
{
  const h = createHash('sha256');
  for (let i = 0; i < BULK_BLOCKS; i++) h.update(block);
  expectedBulkHash = h.digest('hex');
}
const accepted: Socket[] = [];
const app = createServer({ allowHalfOpen: true }, (socket) => {
  accepted.push(socket);
  socket.on('error', () => {});
  socket.once('data', (first: Buffer) => {
    const cmd = first.toString().split('\n')[0];
    if (cmd === 'bulk') {
      let i = 0;
      const write = (): void => {
        while (i < BULK_BLOCKS) {
          i++;
          if (!socket.write(block)) return void socket.once('drain', write);
        }
        socket.end();
      };
      write();
    } else if (cmd === 'halfclose') {
      let received = first.length;
      socket.on('data', (c: Buffer) => (received += c.length));
      socket.on('end', () => socket.end(Buffer.concat([Buffer.from(`got ${received}\n`), Buffer.alloc(2 * 1024 * 1024, 0x62)])));
    } else if (cmd === 'reset') {
      socket.resetAndDestroy();
    } else {
      socket.on('data', () => {});
    }
  });
});
app.listen(0, '127.0.0.1');
await once(app, 'listening');
t.teardown(() => app.close());
const appPort = (app.address() as AddressInfo).port;

const tunnel = 'dbbox';
const agent = await startAgentProcess(id, relay, id.token('agent', tunnel, [redis.port, sshd.port, appPort]), ['--port', String(appPort), '--port', String(sshd.port), '--tcp', String(redis.port)]);
t.teardown(() => agent.stop());
const clientToken = id.token('client', tunnel, [redis.port, sshd.port, appPort]);

/** Starts `warren connect TUNNEL:PORT --listen 127.0.0.1:0`; resolves with the local port. */
async function connectListen(target: string, token = clientToken): Promise<{ proc: Proc; port: number }> {
  const proc = startWarren(['connect', target, '--relay', relay.url, '--ca', id.caFile, '--listen', '127.0.0.1:0', '--json'], { WARREN_TOKEN: token });
  const line = await proc.waitFor(/"event":"listening"/);
  const port = Number((JSON.parse(line) as { listen: string }).listen.split(':').pop());
  return { proc, port };
}

t.test('the agent prints the raw TCP endpoint for --tcp ports', async (t) => {
  t.ok(agent.lines.some((l) => new RegExp(`tcp://127\\.0\\.0\\.1:\\d+\\s+-> 127\\.0\\.0\\.1:${redis.port}`).test(l)), agent.lines.join('\n'));
});

t.test('redis-benchmark through `warren connect --listen` completes with no errors', async (t) => {
  const fwd = await connectListen(`${tunnel}:${redis.port}`);
  t.teardown(() => fwd.proc.stop());
  const out = await run('redis-benchmark', ['-h', '127.0.0.1', '-p', String(fwd.port), '-n', '2000', '-c', '20', '-t', 'set,get,incr,lpush', '-q']);
  t.notMatch(out.stdout + out.stderr, /error/i);
  t.equal(out.stdout.match(/requests per second/g)?.length, 4, out.stdout);
});

t.test('redis-benchmark through the raw TCP endpoint completes with no errors', async (t) => {
  const line = agent.lines.find((l) => l.includes(`-> 127.0.0.1:${redis.port}`) && l.includes('tcp://'))!;
  const endpointPort = Number(/tcp:\/\/[^:]+:(\d+)/.exec(line)![1]);
  t.ok(endpointPort >= tcpFirst && endpointPort <= tcpFirst + 50, 'the endpoint port is in the configured range');
  const out = await run('redis-benchmark', ['-h', '127.0.0.1', '-p', String(endpointPort), '-n', '2000', '-c', '20', '-t', 'set,get', '-q']);
  t.notMatch(out.stdout + out.stderr, /error/i);
  t.equal(out.stdout.match(/requests per second/g)?.length, 2, out.stdout);
});

t.test('ssh with `warren connect --stdio` as ProxyCommand runs a command on sshd', async (t) => {
  const proxy = `${process.execPath} ${warrenBin} connect ${tunnel}:${sshd.port} --stdio --relay ${relay.url} --ca ${id.caFile}`;
  const out = await run(
    'ssh',
    ['-o', `ProxyCommand=${proxy}`, '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR', '-i', sshd.clientKey, `${sshd.user}@sandbox`, 'echo', 'hello-from-sshd'],
    { env: { ...process.env, WARREN_TOKEN: clientToken }, timeout: 30_000 },
  );
  t.equal(out.stdout.trim(), 'hello-from-sshd');
});

t.test('a 1 GiB transfer through `warren connect` is byte-identical', async (t) => {
  const fwd = await connectListen(`${tunnel}:${appPort}`);
  t.teardown(() => fwd.proc.stop());
  const socket = netConnect(fwd.port, '127.0.0.1');
  socket.write('bulk\n');
  const hash = createHash('sha256');
  let bytes = 0;
  socket.on('data', (c: Buffer) => {
    hash.update(c);
    bytes += c.length;
  });
  await once(socket, 'end');
  t.equal(bytes, BULK_BLOCKS * block.length);
  t.equal(hash.digest('hex'), expectedBulkHash);
});

t.test('half-close: a client that shuts its write side still gets the whole answer', async (t) => {
  const fwd = await connectListen(`${tunnel}:${appPort}`);
  t.teardown(() => fwd.proc.stop());
  const socket = netConnect({ port: fwd.port, host: '127.0.0.1', allowHalfOpen: true });
  socket.end(Buffer.concat([Buffer.from('halfclose\n'), Buffer.alloc(100_000, 1)]));
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  await once(socket, 'end');
  const answer = Buffer.concat(chunks);
  t.equal(answer.subarray(0, answer.indexOf(10)).toString(), `got ${10 + 100_000}`);
  t.equal(answer.length, answer.indexOf(10) + 1 + 2 * 1024 * 1024);
});

t.test('a reset by the app reaches the client as a reset', async (t) => {
  const fwd = await connectListen(`${tunnel}:${appPort}`);
  t.teardown(() => fwd.proc.stop());
  const socket = netConnect(fwd.port, '127.0.0.1');
  socket.write('reset\n');
  const [err] = (await once(socket, 'error')) as [NodeJS.ErrnoException];
  t.equal(err.code, 'ECONNRESET');
});

t.test('a reset by the client reaches the app as a reset', async (t) => {
  const fwd = await connectListen(`${tunnel}:${appPort}`);
  t.teardown(() => fwd.proc.stop());
  const arrived = once(app, 'connection') as Promise<[Socket]>;
  const socket = netConnect(fwd.port, '127.0.0.1');
  socket.write('hold\n');
  const [appSide] = await arrived;
  // Reset only once the bytes before it have been read at every hop: libuv reports a reset that
  // arrives in the same poll as unread data as a plain end of stream, on any TCP peer.
  await once(appSide, 'data');
  const failed = once(appSide, 'error') as Promise<[NodeJS.ErrnoException]>;
  socket.resetAndDestroy();
  const [err] = await failed;
  t.equal(err.code, 'ECONNRESET');
});

t.test('SIGTERM stops `warren connect`: a finished connection exits at once, one left open is reset after the grace period', async (t) => {
  const idle = await connectListen(`${tunnel}:${appPort}`);
  t.equal(await idle.proc.stop('SIGTERM'), 0, 'no connection open: exits 0 at once');

  const fwd = await connectListen(`${tunnel}:${appPort}`);
  t.teardown(() => fwd.proc.stop('SIGKILL'));
  const arrived = once(app, 'connection') as Promise<[Socket]>;
  const socket = netConnect(fwd.port, '127.0.0.1');
  socket.write('hold\n');
  const [appSide] = await arrived;
  await once(appSide, 'data');
  const appError = once(appSide, 'error') as Promise<[NodeJS.ErrnoException]>;
  const socketError = once(socket, 'error') as Promise<[NodeJS.ErrnoException]>;
  const stoppedAt = performance.now();
  const code = await fwd.proc.stop('SIGTERM');
  const elapsed = performance.now() - stoppedAt;
  t.equal(code, 0);
  t.ok(elapsed >= 4_500 && elapsed < 15_000, `exited after the 5 s grace period (${Math.round(elapsed)} ms)`);
  t.ok(fwd.proc.lines.some((l) => l.includes('"event":"stopping"')), 'said it is stopping');
  const [err] = await socketError;
  t.equal(err.code, 'ECONNRESET', 'the connection still open was reset, not ended cleanly');
  const [appErr] = await appError;
  t.equal(appErr.code, 'ECONNRESET', 'and so was its connection to the app');
});

t.test('a token for another tunnel or port is refused, and the agent never dials', async (t) => {
  const before = accepted.length;
  const otherTunnel = await runWarren(['connect', `othertunnel:${appPort}`, '--relay', relay.url, '--ca', id.caFile, '--stdio'], { WARREN_TOKEN: clientToken });
  t.equal(otherTunnel.code, 1);
  t.match(otherTunnel.lines.join('\n'), /ERR_WARREN_FORBIDDEN/);
  const narrow = id.token('client', tunnel, [redis.port]);
  const otherPort = await runWarren(['connect', `${tunnel}:${appPort}`, '--relay', relay.url, '--ca', id.caFile, '--stdio'], { WARREN_TOKEN: narrow });
  t.equal(otherPort.code, 1);
  t.match(otherPort.lines.join('\n'), /ERR_WARREN_FORBIDDEN/);
  const agentToken = id.token('agent', tunnel, [appPort]);
  const wrongRole = await runWarren(['connect', `${tunnel}:${appPort}`, '--relay', relay.url, '--ca', id.caFile, '--stdio'], { WARREN_TOKEN: agentToken });
  t.equal(wrongRole.code, 1);
  t.match(wrongRole.lines.join('\n'), /ERR_WARREN_TOKEN_ROLE/);
  t.equal(accepted.length, before, 'the app saw no connection');
});

t.test('an endpoint with an allowlist closes other sources before opening a stream', async (t) => {
  const port = await freePort();
  const listener = createServer((s) => s.end('never'));
  listener.listen(port, '127.0.0.1');
  await once(listener, 'listening');
  t.teardown(() => listener.close());
  let reached = 0;
  listener.on('connection', () => reached++);
  const guarded = await startAgentProcess(id, relay, id.token('agent', 'guarded', [port]), ['--tcp', `${port}:allow=10.0.0.0/8`]);
  t.teardown(() => guarded.stop());
  const line = guarded.lines.find((l) => l.includes('tcp://'))!;
  const endpointPort = Number(/tcp:\/\/[^:]+:(\d+)/.exec(line)![1]);
  const socket = netConnect(endpointPort, '127.0.0.1');
  socket.on('error', () => {});
  await once(socket, 'close');
  t.equal(reached, 0, 'a source outside 10.0.0.0/8 never reaches the app');
});
