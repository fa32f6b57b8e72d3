// Relay drain with real processes, beyond the one-relay drain of test/relay/operations.test.ts: an
// agent given two --relay URLs moves to the second at once when the first drains (SIGTERM, no
// drain hint), and an agent with one relay comes back to it after a restart on the same port. In
// both, a slow POST to a real app, in flight through the draining relay, finishes within the grace
// period with the app's answer for every byte, and the app sees that POST exactly once: nothing is
// replayed.
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { request } from 'node:http';
import t from 'tap';
import { makeTestIdentity } from '../helpers/identity.js';
import { freePort, startTestApp } from '../helpers/apps.js';
import { previewRequest, startRelayProcess, TEST_DOMAIN, type RelayProc } from '../helpers/cluster.js';
import { startWarren } from '../helpers/process.js';

const GRACE_MS = 15_000;
/** The POST body: PIECES pieces, one every PIECE_MS, most of them sent after the drain began. */
const PIECES = 12;
const PIECE_BYTES = 4096;
const PIECE_MS = 150;

const id = await makeTestIdentity();
t.teardown(() => id.remove());
const app = await startTestApp();
t.teardown(() => app.close());

const posts = (): number => app.requests.filter((r) => r.method === 'POST').length;
const escape = (s: string): string => s.replace(/[.]/g, '\\.');

/**
 * Starts a slow POST /sha256 through `relay` for `host`; resolves once the app has the request
 * (its head), with a function that sends the rest of the body and resolves with the answer.
 */
async function slowPost(relay: RelayProc, host: string): Promise<{ finish(): Promise<{ status: number; body: string; sha256: string }> }> {
  const body = randomBytes(PIECES * PIECE_BYTES);
  const arrived = once(app.server, 'request');
  let pending: ReturnType<typeof request> | undefined;
  const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: relay.httpPort, method: 'POST', path: '/sha256', headers: { host, 'content-length': body.length }, agent: false }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    req.write(body.subarray(0, PIECE_BYTES));
    pending = req;
  });
  await arrived;
  return {
    async finish() {
      for (let i = 1; i < PIECES; i++) {
        await new Promise((resolve) => setTimeout(resolve, PIECE_MS));
        pending!.write(body.subarray(i * PIECE_BYTES, (i + 1) * PIECE_BYTES));
      }
      pending!.end();
      return { ...(await answer), sha256: createHash('sha256').update(body).digest('hex') };
    },
  };
}

t.test('an agent with two relays moves to the second when the first drains; the POST in flight finishes once', async (t) => {
  const first = await startRelayProcess(id, ['--grace-period', `${GRACE_MS}ms`]);
  t.teardown(() => first.proc.stop('SIGKILL'));
  const second = await startRelayProcess(id);
  t.teardown(() => second.proc.stop('SIGKILL'));
  const agent = startWarren(['agent', '--relay', first.url, '--relay', second.url, '--ca', id.caFile, '--port', String(app.port)], { WARREN_TOKEN: id.token('agent', 'twinned', [app.port]) });
  t.teardown(() => agent.stop());
  await agent.waitFor(new RegExp(`is online via ${escape(first.url)}`));
  const host = `${app.port}-twinned.${TEST_DOMAIN}`;
  const postsBefore = posts();
  const post = await slowPost(first, host);

  const signalled = performance.now();
  first.proc.child.kill('SIGTERM');
  const mark = agent.lines.length;
  await agent.waitFor(/is going away/, 10_000, mark);
  await agent.waitFor(new RegExp(`is online via ${escape(second.url)}`), 10_000, mark);
  const movedMs = performance.now() - signalled;
  t.ok(movedMs < 5_000, `the agent is online via the second relay ${Math.round(movedMs)} ms after SIGTERM, with no backoff`);
  t.equal((await previewRequest(second, host, '/')).status, 200, 'new requests go through the second relay meanwhile');

  const answer = await post.finish();
  t.equal(answer.status, 200, 'the POST in flight through the draining relay completes');
  t.same(JSON.parse(answer.body), { sha256: answer.sha256, length: PIECES * PIECE_BYTES }, 'the app got every byte of it');
  t.equal(await first.proc.exited, 0, 'the drained relay exits 0');
  const drainedMs = performance.now() - signalled;
  t.ok(drainedMs < GRACE_MS, `it exited ${Math.round(drainedMs)} ms after SIGTERM, within the ${GRACE_MS} ms grace period`);
  t.match(first.proc.lines.find((l) => l.includes('"event":"drained"')) ?? '', /"outcome":"done"/, 'every session finished before the grace period ran out');
  t.equal(posts() - postsBefore, 1, 'the app saw the POST exactly once');
});

t.test('an agent with one relay comes back to it after a restart on the same port; the POST in flight finishes once', async (t) => {
  const port = await freePort();
  const args = ['--listen', `127.0.0.1:${port}`, '--grace-period', `${GRACE_MS}ms`];
  const before = await startRelayProcess(id, args);
  t.teardown(() => before.proc.stop('SIGKILL'));
  const agent = startWarren(['agent', '--relay', before.url, '--ca', id.caFile, '--port', String(app.port)], { WARREN_TOKEN: id.token('agent', 'restarted', [app.port]) });
  t.teardown(() => agent.stop());
  await agent.waitFor(/is online via/);
  const host = `${app.port}-restarted.${TEST_DOMAIN}`;
  const postsBefore = posts();
  const post = await slowPost(before, host);

  before.proc.child.kill('SIGTERM');
  const mark = agent.lines.length;
  await agent.waitFor(/is going away/, 10_000, mark);
  const answer = await post.finish();
  t.equal(answer.status, 200, 'the POST in flight completes through the draining relay');
  t.same(JSON.parse(answer.body), { sha256: answer.sha256, length: PIECES * PIECE_BYTES }, 'the app got every byte of it');
  t.equal(await before.proc.exited, 0, 'the drained relay exits 0');

  const after = await startRelayProcess(id, args);
  t.teardown(() => after.proc.stop('SIGKILL'));
  t.equal(after.url, before.url, 'the restarted relay listens where the first did');
  const back = agent.lines.length;
  await agent.waitFor(/is online via/, 40_000, back);
  t.equal((await previewRequest(after, host, '/')).status, 200, 'the preview works through the restarted relay');
  t.equal(posts() - postsBefore, 1, 'the app saw the POST exactly once');
});
