// The single-file agent (dist/warren-agent.mjs) runs with plain node and no node_modules, as it
// would in a sandbox image, and serves a preview through a real relay.
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { makeTestIdentity } from '../helpers/identity.js';
import { startTestApp } from '../helpers/apps.js';
import { previewRequest, startRelayProcess, TEST_DOMAIN } from '../helpers/cluster.js';
import { startProcess, uniqueStatusSocket } from '../helpers/process.js';
import { repoRoot } from '../helpers/paths.js';

t.test('the bundled agent serves a preview from a folder without node_modules', async (t) => {
  const id = await makeTestIdentity();
  t.teardown(() => id.remove());
  const relay = await startRelayProcess(id);
  t.teardown(() => relay.proc.stop());
  const app = await startTestApp();
  t.teardown(() => app.close());
  const dir = mkdtempSync(join(tmpdir(), 'warren-bundle-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  copyFileSync(join(repoRoot, 'dist', 'warren-agent.mjs'), join(dir, 'warren-agent.mjs'));
  copyFileSync(id.caFile, join(dir, 'ca.pem'));
  const statusSocket = uniqueStatusSocket();
  const env = { WARREN_TOKEN: id.token('agent', 'bundled', [app.port]), WARREN_STATUS_SOCKET: statusSocket, NODE_PATH: '' };
  const agent = startProcess(process.execPath, ['warren-agent.mjs', '--relay', relay.url, '--ca', 'ca.pem', '--port', String(app.port)], env, dir);
  t.teardown(() => agent.stop());
  await agent.waitFor(/is online via/);
  const res = await previewRequest(relay, `${app.port}-bundled.${TEST_DOMAIN}`, '/');
  t.equal(res.status, 200);
  t.equal(res.body.toString(), 'hello from the app\n');

  // `node warren-agent.mjs status` is `warren agent status`.
  const status = startProcess(process.execPath, ['warren-agent.mjs', 'status', '--json'], { WARREN_STATUS_SOCKET: statusSocket, NODE_PATH: '' }, dir);
  t.equal(await status.exited, 0, status.lines.join('\n'));
  const report = JSON.parse(status.lines.join('\n')) as { status: string; tunnel: string };
  t.equal(report.status, 'connected');
  t.equal(report.tunnel, 'bundled');
});
