// `warren dev` as a user runs it: one process, a preview URL that works with curl, Ctrl-C exits
// cleanly, and the URL stays the same on the next start.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { startWarren } from '../helpers/process.js';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'warren-dev-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

async function startDev(): Promise<{ url: string; stop(): Promise<number | string>; lines: string[] }> {
  const proc = startWarren(['dev', '--http-port', '0'], {}, dir);
  const line = await proc.waitFor(/Preview\s+http:\/\//);
  const url = /(http:\/\/\S+)/.exec(line)![1]!;
  return { url, stop: () => proc.stop('SIGINT'), lines: proc.lines };
}

t.test('warren dev prints a preview URL that curl can open', async (t) => {
  const dev = await startDev();
  t.match(dev.url, /^http:\/\/\d+-[a-z0-9]+\.localhost:\d+\/$/);
  // curl resolves *.localhost to loopback by itself, as browsers do.
  const page = await run('curl', ['-sS', '--max-time', '10', dev.url]);
  t.match(page.stdout, /Hello from the sandbox/);
  const info = await run('curl', ['-sS', '--max-time', '10', `${dev.url}api/info`]);
  t.equal((JSON.parse(info.stdout) as { url: string }).url, '/api/info');
  const sse = await run('curl', ['-sS', '-N', '--max-time', '1.5', `${dev.url}events`]).catch((e: { stdout: string }) => e);
  t.match(sse.stdout, /^data: \d{4}-\d\d-\d\dT/m, 'Server-Sent Events stream through the preview');
  t.equal(await dev.stop(), 0, 'Ctrl-C exits 0');
  t.ok(existsSync(join(dir, '.warren', 'ca.pem')), 'the dev CA is kept under .warren/');
});

t.test('a second start reuses the identities: same tunnel, same URL host', async (t) => {
  const first = await startDev();
  await first.stop();
  const second = await startDev();
  t.equal(new URL(second.url).hostname, new URL(first.url).hostname);
  await second.stop();
});
