/**
 * The demo app `warren dev` serves when the user names no app of their own: one page that shows
 * a request's path through the tunnel, a Server-Sent Events clock and a WebSocket echo, so the
 * three kinds of traffic a dev server needs can be seen working in a browser.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';

const PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Warren demo app</title>
<style>
 body{font:16px/1.5 system-ui,sans-serif;max-width:44rem;margin:3rem auto;padding:0 1rem;color:#1d2430}
 h1{font-size:1.6rem} code,pre{background:#f1f3f6;border-radius:4px;padding:.1rem .3rem}
 pre{padding:.8rem;overflow:auto} .ok{color:#0a7a3a} .box{border:1px solid #dde1e7;border-radius:8px;padding:1rem;margin:1rem 0}
</style></head>
<body>
<h1>Hello from the sandbox</h1>
<p>This page is served by the demo app on <code>127.0.0.1:__PORT__</code> inside the sandbox, through a Warren agent and relay.</p>
<div class="box"><b>Server-Sent Events</b>: <span id="clock">waiting…</span></div>
<div class="box"><b>WebSocket echo</b>: <span id="ws">connecting…</span></div>
<div class="box"><b>What the app saw</b><pre id="info">loading…</pre></div>
<script>
const es = new EventSource('/events');
es.onmessage = (e) => { document.getElementById('clock').textContent = 'server time ' + e.data; document.getElementById('clock').className = 'ok'; };
const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws');
ws.onopen = () => ws.send('ping ' + Date.now());
ws.onmessage = (e) => { const el = document.getElementById('ws'); el.textContent = 'echoed "' + e.data + '"'; el.className = 'ok'; };
ws.onerror = () => { document.getElementById('ws').textContent = 'WebSocket failed'; };
fetch('/api/info').then((r) => r.json()).then((j) => { document.getElementById('info').textContent = JSON.stringify(j, null, 2); });
</script>
</body></html>
`;

/** A running demo app. */
export interface DemoApp {
  port: number;
  close(): Promise<void>;
}

/** Starts the demo app on 127.0.0.1, on `port` when free, else on any free port. */
export async function startDemoApp(port = 3000): Promise<DemoApp> {
  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://app').pathname;
    if (path === '/events') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      const tick = (): boolean => res.write(`data: ${new Date().toISOString()}\n\n`);
      tick();
      const timer = setInterval(tick, 1000);
      req.on('close', () => clearInterval(timer));
      return;
    }
    if (path === '/api/info') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ method: req.method, url: req.url, headers: req.headers }));
      return;
    }
    if (path === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(PAGE.replace('__PORT__', String((server.address() as AddressInfo).port)));
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found\n');
  });
  const listen = async (p: number): Promise<void> => {
    server.listen(p, '127.0.0.1');
    await Promise.race([once(server, 'listening'), once(server, 'error').then(([e]) => Promise.reject(e as Error))]);
  };
  try {
    await listen(port);
  } catch {
    await listen(0);
  }
  // Attached once listening: ws re-emits the server's listen errors, and the first try may fail.
  const wss = new WebSocketServer({ server, path: '/ws' });
  wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise((resolve) => {
        for (const c of wss.clients) c.terminate();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
