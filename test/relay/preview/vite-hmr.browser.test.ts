/**
 * A real Vite dev server in the sandbox, opened in Chromium through relay and agent: the page
 * renders, and an edit to a module updates the page through Vite's HMR WebSocket, which runs over
 * the tunnel, without a full reload.
 *
 * Vite is installed with npm on first use (cached under the temp directory, see helpers/vite.ts).
 * On a machine that cannot reach the npm registry the test is skipped with the install error.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { launchBrowser, waitForText } from '../../helpers/browser.js';
import { makeTestIdentity } from '../../helpers/identity.js';
import { INPROCESS_DOMAIN, previewPorts, startAgent, startRelay } from '../../helpers/inprocess.js';
import { installVite, startVite, VITE_SPEC } from '../../helpers/vite.js';

const PROJECT: Record<string, string> = {
  'index.html': '<!doctype html>\n<html><head><meta charset="utf-8"><title>vite sandbox</title></head>\n<body><h1 id="app">loading</h1><script type="module" src="/main.js"></script></body></html>\n',
  'main.js': [
    "import { message } from './message.js';",
    "const render = (text) => { document.getElementById('app').textContent = text; };",
    'render(message);',
    "if (import.meta.hot) import.meta.hot.accept('./message.js', (mod) => { if (mod) render(mod.message); });",
    '',
  ].join('\n'),
  'message.js': "export const message = 'version one';\n",
  // Vite answers only Host names it allows; previews keep the preview host in Host.
  'vite.config.js': "export default { server: { allowedHosts: ['.preview.test'] }, clearScreen: false };\n",
};

let viteBin = '';
let installError: string | false = false;
try {
  viteBin = await installVite();
} catch (err) {
  installError = `cannot install ${VITE_SPEC} from the npm registry: ${(err as Error).message}`;
}

t.test('a Vite app renders through the preview and hot-updates over the tunnel without a reload', { skip: installError }, async (t) => {
  const vite = await startVite(viteBin, PROJECT);
  t.teardown(() => vite.stop());
  const id = await makeTestIdentity();
  t.teardown(() => id.remove());
  const { relay, url, httpPort } = await startRelay(id);
  t.teardown(() => relay.close());
  const agent = await startAgent(id, url, 'vite', previewPorts([vite.port]));
  t.teardown(() => agent.stop(100));
  const browser = await launchBrowser(t, 'vite-hmr');

  const host = `${vite.port}-vite.${INPROCESS_DOMAIN}:${httpPort}`;
  const page = await browser.page();
  const sockets: string[] = [];
  page.on('websocket', (ws) => sockets.push(ws.url()));
  let navigations = 0;
  page.on('framenavigated', (frame) => {
    if (frame === page.mainFrame()) navigations++;
  });
  const hmrConnected = page.waitForEvent('console', { predicate: (m) => /\[vite\] connected/.test(m.text()), timeout: 15_000 });
  const res = await page.goto(`http://${host}/`);
  t.equal(res?.status(), 200);
  t.equal(await waitForText(page, '#app', /version one/), 'version one', 'the page renders');
  // Vite's client logs once its HMR socket is open: an edit before that would be missed.
  await hmrConnected;
  t.ok(sockets.some((s) => s.startsWith(`ws://${host}/`)), `the HMR WebSocket goes through the preview host (${sockets.join(', ')})`);
  t.notOk(sockets.some((s) => s.includes('127.0.0.1')), 'and not straight to the dev server');
  await browser.screenshot(page, 'vite-before-edit');

  await page.evaluate(() => {
    (globalThis as unknown as { __marker: number }).__marker = 1;
  });
  const navigationsBefore = navigations;
  writeFileSync(join(vite.dir, 'message.js'), "export const message = 'version two, hot';\n");
  t.equal(await waitForText(page, '#app', /version two/, 20_000), 'version two, hot', 'the edit shows');
  t.equal(await page.evaluate(() => (globalThis as unknown as { __marker?: number }).__marker), 1, 'window state survived: no full reload');
  t.equal(navigations, navigationsBefore, 'no navigation happened');
  t.ok(vite.proc.lines.some((l) => /hmr update/i.test(l)), 'Vite sent an HMR update');
  await browser.screenshot(page, 'vite-after-hmr');
});
