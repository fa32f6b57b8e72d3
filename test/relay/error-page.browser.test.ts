/**
 * The relay's error pages as a person sees them in Chromium: clear pages for a tunnel that is
 * offline, a port that is not exposed and an app that is not listening yet, and pages that
 * reload by themselves and show the app as soon as it answers (the app starting after the page
 * was opened; the sandbox connecting after the page was opened).
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import t from 'tap';
import type { Page } from 'playwright-core';
import { ERROR_PAGE_RETRY_SECONDS } from '../../relay/preview/error-page.js';
import { freePort } from '../helpers/apps.js';
import { launchBrowser, waitForText } from '../helpers/browser.js';
import { makeTestIdentity } from '../helpers/identity.js';
import { INPROCESS_DOMAIN, previewPorts, startAgent, startRelay } from '../helpers/inprocess.js';

const id = await makeTestIdentity();
t.teardown(() => id.remove());
const { relay, url, httpPort } = await startRelay(id);
t.teardown(() => relay.close());
const browser = await launchBrowser(t, 'error-pages');
const preview = (port: number, tunnel: string): string => `http://${port}-${tunnel}.${INPROCESS_DOMAIN}:${httpPort}/`;

/** Starts an app on `port` that answers a page saying it is up. */
async function startApp(port: number): Promise<Server> {
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><title>the app</title><h1 id="app">the app is up</h1>');
  });
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return server;
}

/** The page's visible text. */
const text = (page: Page): Promise<string> => page.locator('body').innerText();

t.test('tunnel offline: a clear page that says no sandbox is connected, and reloads by itself', async (t) => {
  const page = await browser.page();
  const res = await page.goto(preview(3000, 'nobody'));
  t.equal(res?.status(), 502);
  t.equal(await page.title(), 'Sandbox not connected (502)');
  const body = await text(page);
  t.match(body, /No sandbox is connected for tunnel nobody\./);
  t.match(body, /reloads every 2 seconds/);
  t.match(body, /ERR_WARREN_TUNNEL_OFFLINE/);
  t.equal(await page.locator('meta[http-equiv="refresh"]').getAttribute('content'), String(ERROR_PAGE_RETRY_SECONDS));
  await browser.screenshot(page, 'tunnel-offline');
});

t.test('port not exposed: a clear page that names the port and the flag to expose it', async (t) => {
  const app = await freePort();
  const agent = await startAgent(id, url, 'exposed', previewPorts([app]));
  t.teardown(() => agent.stop(100));
  const page = await browser.page();
  const res = await page.goto(preview(1, 'exposed'));
  t.equal(res?.status(), 404);
  t.equal(await page.title(), 'Port not exposed (404)');
  const body = await text(page);
  t.match(body, /does not expose port 1\./);
  t.match(body, /--port 1/);
  t.equal(await page.locator('meta[http-equiv="refresh"]').count(), 0, 'no reload: it will not fix itself');
  await browser.screenshot(page, 'port-not-exposed');
});

t.test('app not listening yet: the page retries by itself and shows the app once it is up', async (t) => {
  const port = await freePort();
  const agent = await startAgent(id, url, 'starting', previewPorts([port]));
  t.teardown(() => agent.stop(100));
  const page = await browser.page();
  const res = await page.goto(preview(port, 'starting'));
  t.equal(res?.status(), 502);
  t.equal(await page.title(), 'App not listening yet (502)');
  t.match(await text(page), new RegExp(`The app is not listening on port ${port} yet\\.`));
  await browser.screenshot(page, 'app-not-listening');
  // The page is open on the error; now the app starts, and the page's own reload finds it.
  await startApp(port);
  t.equal(await waitForText(page, '#app', /the app is up/, 10_000), 'the app is up');
  t.equal(page.url(), preview(port, 'starting'), 'same address');
  await browser.screenshot(page, 'app-up-after-retry');
});

t.test('tunnel offline, then the sandbox connects: the open page shows the app', async (t) => {
  const port = await freePort();
  await startApp(port);
  const page = await browser.page();
  t.equal((await page.goto(preview(port, 'late')))?.status(), 502);
  t.equal(await page.title(), 'Sandbox not connected (502)');
  const agent = await startAgent(id, url, 'late', previewPorts([port]));
  t.teardown(() => agent.stop(100));
  t.equal(await waitForText(page, '#app', /the app is up/, 10_000), 'the app is up');
  await browser.screenshot(page, 'sandbox-connected-after-retry');
});
