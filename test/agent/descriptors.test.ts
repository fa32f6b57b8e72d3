// Regression: the agent's connection to the app must be closed after each preview request. The
// relay ends a request's stream with a reset once the answer is complete; the agent's socket to
// the app had already sent its FIN by then, and a reset of a socket that is shutting down leaked
// its descriptor on Node 20 (and made the process spin at exit). Relay, agent and app run in
// this process, so the descriptor count covers all three.
import { existsSync, readdirSync } from 'node:fs';
import { request } from 'node:http';
import t from 'tap';
import { startTestApp } from '../helpers/apps.js';
import { makeTestIdentity } from '../helpers/identity.js';
import { INPROCESS_DOMAIN, previewPorts, startAgent, startRelay } from '../helpers/inprocess.js';

const REQUESTS = 100;

t.test('a hundred preview requests leave no descriptor open', { skip: existsSync('/proc/self/fd') ? false : 'needs /proc/self/fd' }, async (t) => {
  const id = await makeTestIdentity();
  t.teardown(() => id.remove());
  const { relay, url, httpPort } = await startRelay(id);
  t.teardown(() => relay.close());
  const app = await startTestApp();
  t.teardown(() => app.close());
  const agent = await startAgent(id, url, 'fdcheck', previewPorts([app.port]));
  t.teardown(() => agent.stop(100));
  const host = `${app.port}-fdcheck.${INPROCESS_DOMAIN}`;
  const get = (): Promise<number> =>
    new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: httpPort, path: '/', headers: { host }, agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.end();
    });
  const open = (): number => readdirSync('/proc/self/fd').length;
  t.equal(await get(), 200);
  // Closing is asynchronous: poll the real count for a bounded time rather than sleep.
  const settle = async (limit: number): Promise<number> => {
    const deadline = Date.now() + 5_000;
    let n = open();
    while (n > limit && Date.now() < deadline) {
      await new Promise((resolve) => setImmediate(resolve));
      n = open();
    }
    return n;
  };
  const before = open();
  let ok = 0;
  for (let i = 0; i < REQUESTS; i++) if ((await get()) === 200) ok++;
  t.equal(ok, REQUESTS, 'every request answered 200');
  const after = await settle(before + 5);
  t.ok(after <= before + 5, `descriptors before ${before}, after ${REQUESTS} requests ${after}`);
});
