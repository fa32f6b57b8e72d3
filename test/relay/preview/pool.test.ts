/**
 * Streams to apps are kept alive per tunnel port: a relay and an agent in this process, an HTTP app
 * on loopback that counts the connections it accepts (each pooled stream is one connection to the
 * app inside the sandbox), and browsers played by keep-alive clients on the relay's plain listener.
 */
import { once } from 'node:events';
import { Agent as HttpAgent, createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { makeTestIdentity } from '../../helpers/identity.js';
import { INPROCESS_DOMAIN, previewPorts, startAgent, startRelay } from '../../helpers/inprocess.js';

const id = await makeTestIdentity();
t.teardown(() => id.remove());
const { relay, url, httpPort } = await startRelay(id);
t.teardown(() => relay.close());

/** Requests wait here until `release()`: so many are in flight at once. */
let held: ServerResponse[] = [];
let waitingFor = 0;
let allArrived: () => void = () => {};
let connections = 0;
const app = createServer((req: IncomingMessage, res: ServerResponse) => {
  req.resume();
  if (waitingFor === 0) {
    res.end('ok');
    return;
  }
  held.push(res);
  if (held.length === waitingFor) allArrived();
});
app.on('connection', () => connections++);
app.listen(0, '127.0.0.1');
await once(app, 'listening');
t.teardown(() => app.close());
const appPort = (app.address() as AddressInfo).port;
const agent = await startAgent(id, url, 'pool01', previewPorts([appPort]));
t.teardown(() => agent.stop(100));
const host = `${appPort}-pool01.${INPROCESS_DOMAIN}`;

function get(client: HttpAgent): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: httpPort, path: '/', headers: { host }, agent: client }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve(`${res.statusCode} ${Buffer.concat(parts).toString()}`));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** `n` requests in flight at once (the app answers once all have arrived). */
async function concurrent(client: HttpAgent, n: number): Promise<string[]> {
  waitingFor = n;
  const arrived = new Promise<void>((resolve) => (allArrived = resolve));
  const answers = Promise.all(Array.from({ length: n }, () => get(client)));
  await arrived;
  for (const res of held) res.end('ok');
  held = [];
  waitingFor = 0;
  return answers;
}

t.test('sequential requests share one stream and one connection to the app', async (t) => {
  const client = new HttpAgent({ keepAlive: true, maxSockets: 1 });
  t.teardown(() => client.destroy());
  const before = connections;
  for (let i = 0; i < 20; i++) t.equal(await get(client), '200 ok');
  t.equal(connections - before, 1, 'the app accepted one connection for 20 requests');
});

t.test('64 requests at once, twice: the second round reuses every stream of the first', async (t) => {
  const client = new HttpAgent({ keepAlive: true, maxSockets: 64 });
  t.teardown(() => client.destroy());
  const before = connections;
  t.same(await concurrent(client, 64), Array(64).fill('200 ok'));
  const afterFirst = connections - before;
  t.ok(afterFirst <= 64, `the first round opened ${afterFirst} connections to the app`);
  t.same(await concurrent(client, 64), Array(64).fill('200 ok'));
  t.equal(connections - before, afterFirst, 'the second round opened none');
});
