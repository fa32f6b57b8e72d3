// Stream-open floods and rapid open/reset (HTTP/2 Rapid Reset style) through real processes: a
// client session (the client library, in this process) floods a tunnel whose `warren agent`
// process runs with --max-streams 50, through a `warren relay` process. The app counts the
// connections it holds at once; a second tenant's preview is requested during and after.
//
// The app counts a connection as gone at its first 'end', 'error' or 'close': 'close' comes a
// loop phase after the reset that ends a connection, and a new connection accepted meanwhile
// would be counted against a connection that is already gone.
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import t from 'tap';
import { WarrenClient } from '../../client/client.js';
import type { MuxStream, WarrenError } from '../../protocol/index.js';
import { makeTestIdentity } from '../helpers/identity.js';
import { startTestApp } from '../helpers/apps.js';
import { previewRequest, startAgentProcess, startRelayProcess, TEST_DOMAIN } from '../helpers/cluster.js';

const CAP = 50;
const OPEN_FLOOD = 1000;
const RESET_FLOOD = 5000;
/** Relay RSS growth allowed over both floods: 8 KiB per flooded stream. */
const RSS_GROWTH_LIMIT = (OPEN_FLOOD + RESET_FLOOD) * 8 * 1024;

const id = await makeTestIdentity();
t.teardown(() => id.remove());

/** An app that greets and holds every connection, and counts how many it holds at once. */
const held = new Set<Socket>();
let live = 0;
let peak = 0;
let accepted = 0;
/** Waiters for the moment the app holds no connection. */
const emptied: (() => void)[] = [];
const app = createServer((socket) => {
  accepted++;
  held.add(socket);
  peak = Math.max(peak, ++live);
  let gone = false;
  const leave = (): void => {
    if (gone) return;
    gone = true;
    live--;
    held.delete(socket);
    if (live === 0) for (const wake of emptied.splice(0)) wake();
  };
  socket.on('end', leave);
  socket.on('error', leave);
  socket.on('close', leave);
  socket.resume();
  socket.write('k'); // the stream's opener learns it reached the app
});
app.listen(0, '127.0.0.1');
await once(app, 'listening');
const port = (app.address() as AddressInfo).port;
t.teardown(() => {
  for (const s of held) s.destroy();
  app.close();
});
const bystanderApp = await startTestApp();
t.teardown(() => bystanderApp.close());

const relay = await startRelayProcess(id);
t.teardown(() => relay.proc.stop('SIGKILL'));
const rss = (): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${relay.proc.child.pid}/status`, 'utf8'))![1]) * 1024;
const flooded = await startAgentProcess(id, relay, id.token('agent', 'flooded', [port]), ['--port', String(port), '--max-streams', String(CAP)]);
t.teardown(() => flooded.stop());
const bystander = await startAgentProcess(id, relay, id.token('agent', 'bystander', [bystanderApp.port]), ['--port', String(bystanderApp.port)]);
t.teardown(() => bystander.stop());
const bystanderHost = `${bystanderApp.port}-bystander.${TEST_DOMAIN}`;

const openClient = (): Promise<WarrenClient> => WarrenClient.open({ relay: relay.url, token: id.token('client', 'flooded', [port]), ca: id.caPem, ports: [port] });

/** Resolves with 'open' once the app's first byte arrived, or with the code the stream was reset with. */
function outcome(stream: MuxStream): Promise<string> {
  return new Promise((resolve) => {
    stream.once('error', (err: WarrenError) => resolve(err.code));
    stream.once('data', () => resolve('open'));
  });
}

/** Resolves once no connection to the app is left. */
function drained(): Promise<void> {
  return live === 0 ? Promise.resolve() : new Promise<void>((resolve) => emptied.push(resolve));
}

// Measured once both agents are up; the first floods warm the relay up as well.
const rssBefore = rss();

t.test(`${OPEN_FLOOD} streams opened at once: the app never holds more than --max-streams ${CAP}; the rest are refused, retryably`, async (t) => {
  const client = await openClient();
  t.teardown(() => client.destroy());
  const streams = Array.from({ length: OPEN_FLOOD }, () => {
    const s = client.connect(port);
    s.write('x');
    return s;
  });
  const during = previewRequest(relay, bystanderHost, '/');
  const outcomes = await Promise.all(streams.map(outcome));
  const open = outcomes.filter((o) => o === 'open').length;
  const refused = outcomes.filter((o) => o === 'ERR_WARREN_STREAM_REFUSED').length;
  t.ok(peak <= CAP, `the app held at most ${peak} connections at once (cap ${CAP})`);
  t.ok(open <= CAP && open > 0, `${open} streams reached the app`);
  t.equal(open + refused, OPEN_FLOOD, `the other ${refused} were refused with ERR_WARREN_STREAM_REFUSED`);
  t.equal((await during).status, 200, "the bystander's preview answered during the flood");
  for (const s of streams) s.destroy();
  await drained();
  t.pass('every app connection closed once the streams were reset');
});

t.test(`rapid open/reset: ${RESET_FLOOD} streams opened and reset at once never exceed the cap at the app; the relay ends the flood`, async (t) => {
  peak = 0;
  const client = await openClient();
  t.teardown(() => client.destroy());
  const closed = once(client.session, 'close') as Promise<[WarrenError | undefined]>;
  let sent = 0;
  for (; sent < RESET_FLOOD && !client.closed; sent++) {
    let s: MuxStream;
    try {
      s = client.connect(port);
    } catch {
      break; // the session is going away: the relay ended the flood
    }
    s.on('error', () => undefined);
    s.write('x');
    s.reset();
    // Let the writer flush and the relay answer now and then, as a real client's loop would.
    if (sent % 100 === 99) await new Promise<void>((resolve) => setImmediate(resolve));
  }
  const [err] = await closed;
  t.equal(err?.code, 'ERR_WARREN_FLOOD', `the relay ended the session with ERR_WARREN_FLOOD after ${sent} open/reset pairs`);
  t.ok(peak <= CAP, `the app held at most ${peak} connections at once (cap ${CAP}; ${accepted} accepted in all)`);
  await drained();
  t.pass('every app connection closed');
});

t.test('after both floods: the flooded tunnel and the bystander serve, the agents run on, relay memory stays flat', async (t) => {
  t.equal((await previewRequest(relay, bystanderHost, '/')).status, 200, "the bystander's preview answers");
  const client = await openClient();
  t.teardown(() => client.destroy());
  // Refusals are retryable: the agent takes new streams again as soon as the flood's connections
  // to the app have closed on its side too, which may trail the app's view by a moment.
  const deadline = Date.now() + 5_000;
  let result = '';
  let attempts = 0;
  while (result !== 'open' && Date.now() < deadline) {
    const s = client.connect(port);
    s.write('x');
    result = await outcome(s);
    attempts++;
    s.destroy();
    if (result !== 'ERR_WARREN_STREAM_REFUSED') break;
  }
  t.equal(result, 'open', `a new stream reaches the flooded app (attempt ${attempts})`);
  t.equal(flooded.child.exitCode, null, 'the flooded agent runs on');
  t.equal(flooded.lines.filter((l) => l.includes('is online via')).length, 1, 'on the one session it opened: no flood ended it');
  t.equal(bystander.child.exitCode, null, 'the bystander runs on');
  const growth = rss() - rssBefore;
  t.ok(growth < RSS_GROWTH_LIMIT, `relay RSS grew ${(growth / 1024 / 1024).toFixed(1)} MiB over ${OPEN_FLOOD + RESET_FLOOD} flooded streams (limit ${RSS_GROWTH_LIMIT / 1024 / 1024} MiB)`);
});
