/**
 * What a dev server needs from a preview, in a real Chromium: a WebSocket chat between two tabs,
 * Server-Sent Events that arrive while the response stays open, and a 20 MB download that arrives
 * byte for byte. Relay and agent run in this process; the app is a Node server on loopback.
 */
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { WebSocketServer } from 'ws';
import { launchBrowser, waitForText } from '../../helpers/browser.js';
import { makeTestIdentity } from '../../helpers/identity.js';
import { INPROCESS_DOMAIN, previewPorts, startAgent, startRelay } from '../../helpers/inprocess.js';

/** The chat page's global (the suite compiles without the DOM library). */
interface ChatWindow {
  send(text: string): void;
}

const DOWNLOAD_BYTES = 20 * 1024 * 1024;
const download = randomBytes(DOWNLOAD_BYTES);
const downloadSha = createHash('sha256').update(download).digest('hex');

const CHAT_PAGE = `<!doctype html><meta charset="utf-8"><title>chat</title>
<ul id="log"></ul><p id="state">connecting</p>
<script>
const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/chat-ws');
window.send = (text) => ws.send(text);
ws.onopen = () => { document.getElementById('state').textContent = 'open'; };
ws.onclose = () => { document.getElementById('state').textContent = 'closed'; };
ws.onmessage = (e) => { const li = document.createElement('li'); li.textContent = e.data; document.getElementById('log').append(li); };
</script>`;

const SSE_PAGE = `<!doctype html><meta charset="utf-8"><title>sse</title>
<ol id="events"></ol>
<script>
const es = new EventSource('/events');
es.onmessage = (e) => { const li = document.createElement('li'); li.textContent = e.data; document.getElementById('events').append(li); };
</script>`;

const DOWNLOAD_PAGE = `<!doctype html><meta charset="utf-8"><title>download</title>
<a id="dl" href="/big.bin" download>download</a><p id="count">counting</p>
<script>
(async () => {
  const res = await fetch('/big.bin');
  const reader = res.body.getReader();
  let n = 0;
  for (;;) { const { done, value } = await reader.read(); if (done) break; n += value.length; }
  document.getElementById('count').textContent = 'bytes ' + n;
})();
</script>`;

// The app: pages above, a broadcast WebSocket, an event stream whose second event waits for the
// test (so the page can only show the first if the stream is not buffered), and the download.
const sseClients = new Set<ServerResponse>();
const app = createServer((req, res) => {
  const html = (body: string): void => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(body);
  };
  if (req.url === '/chat') return html(CHAT_PAGE);
  if (req.url === '/sse') return html(SSE_PAGE);
  if (req.url === '/download') return html(DOWNLOAD_PAGE);
  if (req.url === '/events') {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.write('data: event one\n\n');
    sseClients.add(res);
    res.on('close', () => sseClients.delete(res));
    return;
  }
  if (req.url === '/big.bin') {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(DOWNLOAD_BYTES), 'content-disposition': 'attachment; filename="big.bin"' });
    res.end(download);
    return;
  }
  res.writeHead(404);
  res.end();
});
const wss = new WebSocketServer({ server: app, path: '/chat-ws', perMessageDeflate: false });
wss.on('connection', (ws) =>
  ws.on('message', (data, isBinary) => {
    for (const client of wss.clients) client.send(data, { binary: isBinary });
  }),
);
app.listen(0, '127.0.0.1');
await once(app, 'listening');
t.teardown(() => {
  for (const c of wss.clients) c.terminate();
  for (const r of sseClients) r.destroy();
  app.closeAllConnections();
  app.close();
});
const appPort = (app.address() as AddressInfo).port;

const id = await makeTestIdentity();
t.teardown(() => id.remove());
const { relay, url, httpPort } = await startRelay(id);
t.teardown(() => relay.close());
const agent = await startAgent(id, url, 'traffic', previewPorts([appPort]));
t.teardown(() => agent.stop(100));
const origin = `http://${appPort}-traffic.${INPROCESS_DOMAIN}:${httpPort}`;
const browser = await launchBrowser(t, 'traffic');

t.test('two tabs chat through the app\'s WebSocket server over the tunnel', async (t) => {
  const context = await browser.context();
  const [alice, bob] = [await context.newPage(), await context.newPage()];
  const sockets: string[] = [];
  for (const page of [alice, bob]) {
    page.on('websocket', (ws) => sockets.push(ws.url()));
    await page.goto(`${origin}/chat`);
    await waitForText(page, '#state', /^open$/);
  }
  t.same(sockets, [`ws://${appPort}-traffic.${INPROCESS_DOMAIN}:${httpPort}/chat-ws`, `ws://${appPort}-traffic.${INPROCESS_DOMAIN}:${httpPort}/chat-ws`], 'both sockets go to the preview host');
  await alice.evaluate(() => (globalThis as unknown as ChatWindow).send('hello from alice'));
  t.equal(await waitForText(bob, '#log', /hello from alice/), 'hello from alice', 'bob sees alice\'s message');
  await bob.evaluate(() => (globalThis as unknown as ChatWindow).send('hi alice'));
  t.match(await waitForText(alice, '#log', /hi alice/), /hello from alicehi alice/, 'alice sees both, in order');
  await browser.screenshot(alice, 'chat-alice');
  await browser.screenshot(bob, 'chat-bob');
});

t.test('Server-Sent Events reach the page as the app writes them', async (t) => {
  const page = await browser.page();
  await page.goto(`${origin}/sse`);
  t.equal(await waitForText(page, '#events', /event one/), 'event one', 'the first event shows while the response is still open');
  for (const r of sseClients) r.write('data: event two\n\n');
  t.equal(await waitForText(page, '#events', /event two/), 'event oneevent two');
  t.equal(await page.locator('#events li').count(), 2);
  await browser.screenshot(page, 'sse');
});

t.test('a 20 MB download arrives whole: byte count in the page, sha256 of the saved file', async (t) => {
  const page = await browser.page({ acceptDownloads: true });
  await page.goto(`${origin}/download`);
  t.equal(await waitForText(page, '#count', /^bytes /, 30_000), `bytes ${DOWNLOAD_BYTES}`);
  const [saved] = await Promise.all([page.waitForEvent('download'), page.click('#dl')]);
  t.equal(saved.suggestedFilename(), 'big.bin');
  const path = await saved.path();
  const bytes = await readFile(path);
  t.equal(bytes.length, DOWNLOAD_BYTES);
  t.equal(createHash('sha256').update(bytes).digest('hex'), downloadSha);
  await browser.screenshot(page, 'download');
});
