/**
 * The preview proxy's own answers: each failure gets its status, its ERR_WARREN_* code in
 * `X-Warren-Error`, an HTML page for browsers and JSON for tools; failures after the response
 * started cut the connection instead. Real sockets on 127.0.0.1.
 *
 * The backend is a stand-in for the multiplexer (built separately): it returns a real
 * net.connect() socket to a real app on loopback, or a plain Duplex around one that turns a
 * refused connection into WarrenError ERR_WARREN_APP_UNREACHABLE (see preview-helpers.ts).
 */
import type { IncomingMessage } from 'node:http';
import { request } from 'node:http';
import type { Duplex } from 'node:stream';
import t, { type Test } from 'tap';
import type { ErrorCode } from '../../../protocol/errors.js';
import { fetchVia, once, rawExchange, startApp, startProxy, unusedPort, type FullResponse } from '../../helpers/preview.js';

const HTML = 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8';
const JSON_ACCEPT = 'application/json';

function checkHtml(t: Test, res: FullResponse, status: number, code: ErrorCode, text: RegExp, reloads: boolean): void {
  t.equal(res.status, status, `${code}: status`);
  t.equal(res.headers['x-warren-error'], code, `${code}: X-Warren-Error`);
  t.match(res.headers['content-type'], /^text\/html/);
  const html = res.body.toString();
  t.match(html, /^<!doctype html>/);
  t.match(html, new RegExp(code));
  t.match(html, text);
  t.equal(/http-equiv="refresh"/.test(html), reloads, `${code}: ${reloads ? 'reloads by itself' : 'does not reload'}`);
}

function checkJson(t: Test, res: FullResponse, status: number, code: ErrorCode): void {
  t.equal(res.status, status);
  t.equal(res.headers['x-warren-error'], code);
  const body = JSON.parse(res.body.toString()) as { error: { code: string; message: string; status: number } };
  t.equal(body.error.code, code);
  t.equal(body.error.status, status);
  t.type(body.error.message, 'string');
}

t.test('tunnel offline: 502 ERR_WARREN_TUNNEL_OFFLINE, a page that retries', async (t) => {
  const { port } = await startProxy(t);
  const host = '3000-gone.preview.test';
  checkHtml(t, await fetchVia(port, host, { headers: { accept: HTML } }), 502, 'ERR_WARREN_TUNNEL_OFFLINE', /No sandbox is connected for tunnel gone/, true);
  checkJson(t, await fetchVia(port, host, { headers: { accept: JSON_ACCEPT } }), 502, 'ERR_WARREN_TUNNEL_OFFLINE');
  const text = await fetchVia(port, host);
  t.match(text.body.toString(), /^502 ERR_WARREN_TUNNEL_OFFLINE: /);
  const post = await fetchVia(port, host, { method: 'POST', headers: { accept: HTML }, body: Buffer.from('x') });
  t.notMatch(post.body.toString(), /http-equiv="refresh"/, 'a POST is never replayed by a reload');
  const head = await fetchVia(port, host, { method: 'HEAD', headers: { accept: HTML } });
  t.equal(head.status, 502);
  t.equal(head.body.length, 0, 'HEAD gets no body');
});

t.test('port not exposed: 404 ERR_WARREN_PORT_NOT_EXPOSED', async (t) => {
  const { backend, port } = await startProxy(t);
  backend.expose('ab12cd', 3000, await unusedPort());
  const host = '8080-ab12cd.preview.test';
  checkHtml(t, await fetchVia(port, host, { headers: { accept: HTML } }), 404, 'ERR_WARREN_PORT_NOT_EXPOSED', /does not expose port 8080/, false);
  checkJson(t, await fetchVia(port, host, { headers: { accept: JSON_ACCEPT } }), 404, 'ERR_WARREN_PORT_NOT_EXPOSED');
});

t.test('app not listening: 502 ERR_WARREN_APP_UNREACHABLE, its own page that retries', async (t) => {
  const { backend, port } = await startProxy(t);
  const free = await unusedPort();
  backend.expose('ab12cd', 3000, free, true); // a Duplex that reports ERR_WARREN_APP_UNREACHABLE
  backend.expose('ab12cd', 3001, free, false); // a plain socket that fails with ECONNREFUSED
  for (const appPort of [3000, 3001]) {
    const host = `${appPort}-ab12cd.preview.test`;
    checkHtml(t, await fetchVia(port, host, { headers: { accept: HTML } }), 502, 'ERR_WARREN_APP_UNREACHABLE', new RegExp(`The app is not listening on port ${appPort} yet`), true);
    checkJson(t, await fetchVia(port, host, { headers: { accept: JSON_ACCEPT } }), 502, 'ERR_WARREN_APP_UNREACHABLE');
  }
});

t.test('an app that starts later is shown by the next reload', async (t) => {
  const { backend, port } = await startProxy(t);
  const free = await unusedPort();
  backend.expose('ab12cd', 3000, free, true);
  const before = await fetchVia(port, '3000-ab12cd.preview.test', { headers: { accept: HTML } });
  t.equal(before.status, 502);
  const app = await startApp(t, (_req, res) => res.end('up'));
  backend.expose('ab12cd', 3000, app.port, true);
  const after = await fetchVia(port, '3000-ab12cd.preview.test', { headers: { accept: HTML } });
  t.equal(after.status, 200);
  t.equal(after.body.toString(), 'up');
});

t.test('bad request: 400 ERR_WARREN_BAD_REQUEST in HTML and JSON', async (t) => {
  const { backend, port } = await startProxy(t);
  for (const [accept, type] of [[HTML, 'text/html'], [JSON_ACCEPT, 'application/json']] as const) {
    const raw = await rawExchange(port, `GET / HTTP/1.1\r\nHost: 3000-ab12cd.preview.test\r\nHost: 3000-other.preview.test\r\nAccept: ${accept}\r\n\r\n`);
    t.match(raw, /^HTTP\/1\.1 400 /);
    t.match(raw, /\r\nX-Warren-Error: ERR_WARREN_BAD_REQUEST\r\n/);
    t.match(raw, new RegExp(`\\r\\nContent-Type: ${type.replace('/', '\\/')}`));
    t.match(raw, /more than one Host header/);
    t.notMatch(raw, /3000-other/, 'the Host values are not echoed');
  }
  t.equal(backend.calls.length, 0);
});

t.test('misdirected: 421 ERR_WARREN_MISDIRECTED in HTML and JSON, the Host never echoed', async (t) => {
  const { backend, port } = await startProxy(t);
  const host = '<script>alert(1)</script>.example.com';
  const html = await rawExchange(port, `GET / HTTP/1.1\r\nHost: evil.example.com\r\nAccept: ${HTML}\r\n\r\n`);
  t.match(html, /^HTTP\/1\.1 421 /);
  t.match(html, /X-Warren-Error: ERR_WARREN_MISDIRECTED/);
  t.notMatch(html, /evil\.example\.com/);
  checkJson(t, await fetchVia(port, 'other.example.com', { headers: { accept: JSON_ACCEPT } }), 421, 'ERR_WARREN_MISDIRECTED');
  const odd = await rawExchange(port, `GET / HTTP/1.1\r\nHost: ${host}\r\nAccept: ${HTML}\r\n\r\n`);
  t.notMatch(odd, /<script>/);
  t.equal(backend.calls.length, 0);
});

t.test('an app that closes without answering: 502 ERR_WARREN_APP_RESPONSE', async (t) => {
  const app = await startApp(t, (req) => req.socket.destroy());
  const { backend, port } = await startProxy(t);
  backend.expose('ab12cd', 3000, app.port, true);
  checkJson(t, await fetchVia(port, '3000-ab12cd.preview.test', { headers: { accept: JSON_ACCEPT } }), 502, 'ERR_WARREN_APP_RESPONSE');
  checkHtml(t, await fetchVia(port, '3000-ab12cd.preview.test', { headers: { accept: HTML } }), 502, 'ERR_WARREN_APP_RESPONSE', /closed the connection/, false);
});

t.test('a backend that fails unexpectedly: 500 ERR_WARREN_INTERNAL', async (t) => {
  const { backend, port } = await startProxy(t);
  backend.openStream = (): Duplex => {
    throw new Error('bug');
  };
  checkJson(t, await fetchVia(port, '3000-ab12cd.preview.test', { headers: { accept: JSON_ACCEPT } }), 500, 'ERR_WARREN_INTERNAL');
});

t.test('a stream that fails after the response started cuts the client connection, with no page', async (t) => {
  const app = await startApp(t, (req, res) => {
    res.writeHead(200, { 'Content-Length': '100000' });
    res.write('partial body', () => req.socket.destroy());
  });
  const { backend, port } = await startProxy(t);
  backend.expose('ab12cd', 3000, app.port, true);
  const req = request({ host: '127.0.0.1', port, path: '/', headers: { host: '3000-ab12cd.preview.test', accept: HTML }, agent: false }).end();
  const res = await once<IncomingMessage>(req, 'response');
  t.equal(res.statusCode, 200);
  let body = '';
  res.on('data', (chunk: Buffer) => (body += chunk.toString()));
  const aborted = new Promise<string>((resolve) => {
    res.on('error', (err: Error & { code?: string }) => resolve(err.code ?? err.message));
    res.on('end', () => resolve('end'));
  });
  t.equal(await aborted, 'ECONNRESET', 'the client sees the connection cut');
  t.equal(body, 'partial body');
  t.notMatch(body, /ERR_WARREN/);
});
