/**
 * The preview proxy carries HTTP between a browser and an app: headers, bodies both ways,
 * streaming, concurrency, disconnects. Everything runs over real sockets on 127.0.0.1.
 *
 * The backend is a stand-in for the multiplexer (built separately): openStream() returns a real
 * net.connect() socket to a real app server on loopback, or for ports marked `duplex` a plain
 * Duplex around such a socket, as the multiplexer's streams will be (see preview-helpers.ts).
 */
import { createHash, randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { request, type IncomingMessage, type ServerResponse } from 'node:http';
import t from 'tap';
import { fetchVia, once, rawValues, startApp, startProxy } from '../../helpers/preview.js';

const HOST = '3000-ab12cd.preview.test';
const MB = 1024 * 1024;

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

/** Writes `buffer` `times` times, waiting for 'drain' whenever the socket says so. */
async function writeRepeated(res: NodeJS.WritableStream & { writableEnded?: boolean; destroyed?: boolean }, buffer: Buffer, times: number): Promise<void> {
  for (let i = 0; i < times; i++) {
    if (res.destroyed) return;
    if (res.write(buffer)) continue;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        res.off('drain', done);
        res.off('close', done);
        resolve();
      };
      res.on('drain', done);
      res.on('close', done);
    });
  }
}

t.test('a GET keeps header case, repeated headers and Set-Cookie both ways; Host stays the preview host', async (t) => {
  let seen: IncomingMessage | undefined;
  const app = await startApp(t, (req, res) => {
    seen = req;
    res.writeHead(200, ['X-App-Header', 'One', 'set-cookie', 'a=1; Path=/', 'Set-Cookie', 'b=2; HttpOnly', 'x-lower', 'v', 'Content-Type', 'text/plain']);
    res.end('hello');
  });
  const { backend, port } = await startProxy(t);
  backend.expose('ab12cd', 3000, app.port);
  const res = await fetchVia(port, HOST, { path: '/some/path?q=1&r=%20', headers: { 'X-Repeat': ['first', 'second'], 'X-MiXeD-Case': 'yes', Cookie: 'sid=abc' } });
  t.equal(res.status, 200);
  t.equal(res.body.toString(), 'hello');
  t.same(rawValues(res.rawHeaders, 'set-cookie'), ['a=1; Path=/', 'b=2; HttpOnly'], 'both cookies, in order');
  t.ok(res.rawHeaders.includes('X-App-Header') && res.rawHeaders.includes('x-lower') && res.rawHeaders.includes('set-cookie'), 'header names keep their case');
  t.equal(seen?.url, '/some/path?q=1&r=%20');
  t.same(rawValues(seen!.rawHeaders, 'x-repeat'), ['first', 'second']);
  t.ok(seen!.rawHeaders.includes('X-MiXeD-Case'));
  t.same(rawValues(seen!.rawHeaders, 'host'), [HOST], 'Host is the preview host, once');
  t.same(rawValues(seen!.rawHeaders, 'cookie'), ['sid=abc']);
  t.same(backend.calls.map((c) => c.target), [{ tunnelId: 'ab12cd', port: 3000 }]);
  t.same(backend.calls[0]!.info, { remoteAddress: '127.0.0.1', secure: false, host: HOST });
  const stream = backend.streams[0]!;
  if (!stream.destroyed) await once(stream, 'close');
  t.ok(stream.destroyed, 'the stream is closed once the exchange is complete');
});

t.test('X-Forwarded-* are replaced, never appended; Forwarded and X-Warren-* from outside are dropped', async (t) => {
  let seen: string[] = [];
  const app = await startApp(t, (req, res) => {
    seen = req.rawHeaders;
    res.end();
  });
  const { backend, port } = await startProxy(t);
  backend.expose('ab12cd', 3000, app.port);
  await fetchVia(port, HOST, {
    headers: {
      'X-Forwarded-For': '6.6.6.6',
      'x-forwarded-for': '7.7.7.7',
      'X-Forwarded-Proto': 'https',
      'X-Forwarded-Host': 'evil.example',
      'X-Forwarded-Port': '1',
      Forwarded: 'for=6.6.6.6;proto=https',
      'X-Warren-Tunnel': 'other',
      'x-warren-viewer': 'admin',
    },
  });
  t.same(rawValues(seen, 'x-forwarded-for'), ['127.0.0.1']);
  t.same(rawValues(seen, 'x-forwarded-proto'), ['http']);
  t.same(rawValues(seen, 'x-forwarded-host'), [HOST]);
  t.same(rawValues(seen, 'x-forwarded-port'), []);
  t.same(rawValues(seen, 'forwarded'), []);
  t.same(seen.filter((_, i) => i % 2 === 0 && /^x-warren-/i.test(seen[i]!)), []);
});

t.test('behind a TLS-terminating front end, requests on the plain listener are forwarded as https', async (t) => {
  let seen: string[] = [];
  const app = await startApp(t, (req, res) => {
    seen = req.rawHeaders;
    res.end();
  });
  const { backend, port } = await startProxy(t, {}, { tlsTerminatedInFront: true });
  backend.expose('ab12cd', 3000, app.port);
  await fetchVia(port, HOST, { headers: { 'X-Forwarded-Proto': 'http' } });
  t.same(rawValues(seen, 'x-forwarded-proto'), ['https']);
});

t.test('hop-by-hop headers are stripped both ways, including those named in Connection', async (t) => {
  let seen: string[] = [];
  const app = await startApp(t, (req, res) => {
    seen = req.rawHeaders;
    res.writeHead(200, ['Connection', 'X-App-Hop', 'X-App-Hop', 'secret', 'Keep-Alive', 'timeout=99', 'Proxy-Authenticate', 'Basic', 'Trailer', 'X-Sum', 'Upgrade', 'foo', 'X-Kept', 'yes', 'X-Warren-Error', 'spoofed']);
    res.end('body');
  });
  const { backend, port } = await startProxy(t);
  backend.expose('ab12cd', 3000, app.port);
  const res = await fetchVia(port, HOST, {
    method: 'POST',
    body: Buffer.from('posted'),
    headers: {
      'Transfer-Encoding': 'chunked',
      Connection: 'close, X-Client-Hop',
      'X-Client-Hop': 'secret',
      'Keep-Alive': 'timeout=99',
      'Proxy-Connection': 'keep-alive',
      'Proxy-Authorization': 'Basic c2VjcmV0',
      TE: 'trailers',
      Trailer: 'X-Sum',
      Upgrade: 'h2c',
      'X-Kept': 'yes',
    },
  });
  for (const name of ['x-client-hop', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'te', 'trailer', 'upgrade']) t.same(rawValues(seen, name), [], `request: no ${name}`);
  t.same(rawValues(seen, 'connection'), ['keep-alive'], 'the app sees only the proxy\'s own Connection');
  t.same(rawValues(seen, 'transfer-encoding'), ['chunked'], 'the body is framed again by the proxy');
  t.same(rawValues(seen, 'x-kept'), ['yes']);
  for (const name of ['x-app-hop', 'proxy-authenticate', 'trailer', 'upgrade', 'x-warren-error']) t.same(rawValues(res.rawHeaders, name), [], `response: no ${name}`);
  t.notOk(res.rawHeaders.includes('timeout=99'), 'the app\'s Keep-Alive is not forwarded');
  t.same(rawValues(res.rawHeaders, 'x-kept'), ['yes']);
  t.equal(res.body.toString(), 'body');
});

t.test('a 10 MB chunked POST streams to the app as it arrives and arrives intact', async (t) => {
  const progress = new EventEmitter();
  const app = await startApp(t, (req, res) => {
    const hash = createHash('sha256');
    let bytes = 0;
    req.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      bytes += chunk.length;
      progress.emit('bytes', bytes);
    });
    req.on('end', () => res.end(JSON.stringify({ bytes, sha256: hash.digest('hex') })));
  });
  const { backend, port } = await startProxy(t);
  backend.expose('ab12cd', 3000, app.port, true);
  const body = randomBytes(10 * MB);
  const firstMegabyteArrived = new Promise<void>((resolve) => {
    const onBytes = (n: number): void => {
      if (n < MB) return;
      progress.off('bytes', onBytes);
      resolve();
    };
    progress.on('bytes', onBytes);
  });
  const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/upload', headers: { host: HOST }, agent: false });
  const response = once<IncomingMessage>(req, 'response');
  req.write(body.subarray(0, MB));
  // The rest is sent only once the app holds the first megabyte: a proxy that buffered the
  // whole body before forwarding it would never get there.
  await firstMegabyteArrived;
  await writeRepeated(req, body.subarray(MB), 1);
  req.end();
  const res = await response;
  let text = '';
  for await (const chunk of res) text += String(chunk);
  t.same(JSON.parse(text), { bytes: body.length, sha256: sha256(body) });
});

t.test('a 10 MB POST with Content-Length arrives intact', async (t) => {
  const app = await startApp(t, (req, res) => {
    const hash = createHash('sha256');
    req.on('data', (chunk: Buffer) => hash.update(chunk));
    req.on('end', () => res.end(`${req.headers['content-length']} ${req.headers['transfer-encoding'] ?? '-'} ${hash.digest('hex')}`));
  });
  const { backend, port } = await startProxy(t);
  backend.expose('ab12cd', 3000, app.port);
  const body = randomBytes(10 * MB);
  const res = await fetchVia(port, HOST, { method: 'POST', headers: { 'Content-Length': String(body.length) }, body });
  t.equal(res.body.toString(), `${body.length} - ${sha256(body)}`);
});

t.test('a 50 MB download is byte-identical', async (t) => {
  const block = randomBytes(MB);
  const expected = createHash('sha256');
  for (let i = 0; i < 50; i++) expected.update(block);
  const app = await startApp(t, (_req, res) => {
    res.writeHead(200, { 'Content-Length': String(50 * MB), 'Content-Type': 'application/octet-stream' });
    void writeRepeated(res, block, 50).then(() => res.end());
  });
  const { backend, port } = await startProxy(t);
  backend.expose('ab12cd', 3000, app.port);
  const res = await fetchVia(port, HOST, { path: '/big.bin' });
  t.equal(res.headers['content-length'], String(50 * MB));
  t.equal(res.body.length, 50 * MB);
  t.equal(sha256(res.body), expected.digest('hex'));
});

t.test('a chunked response reaches the client chunk by chunk', async (t) => {
  const next = new EventEmitter();
  const app = await startApp(t, (_req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.write('one;');
    next.once('two', () => res.write('two;'));
    next.once('end', () => res.end('three'));
  });
  const { backend, port } = await startProxy(t, {});
  backend.expose('ab12cd', 3000, app.port, true);
  const req = request({ host: '127.0.0.1', port, path: '/', headers: { host: HOST }, agent: false }).end();
  const res = await once<IncomingMessage>(req, 'response');
  t.equal(res.headers['transfer-encoding'], 'chunked');
  res.setEncoding('utf8');
  const read = (): Promise<string> => once<string>(res, 'data');
  t.equal(await read(), 'one;', 'the first chunk arrives while the app holds the rest');
  next.emit('two');
  t.equal(await read(), 'two;');
  next.emit('end');
  let rest = '';
  for await (const chunk of res) rest += String(chunk);
  t.equal(rest, 'three');
});

t.test('a Server-Sent Event reaches the client while the app still holds the response open', async (t) => {
  let appRes: ServerResponse | undefined;
  const finish = new EventEmitter();
  const app = await startApp(t, (_req, res) => {
    appRes = res;
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
    res.write('event: hello\ndata: first\n\n');
    finish.once('go', () => {
      res.write('data: second\n\n');
      res.end();
    });
  });
  const { backend, port } = await startProxy(t);
  backend.expose('ab12cd', 3000, app.port);
  const req = request({ host: '127.0.0.1', port, path: '/events', headers: { host: HOST, accept: 'text/event-stream' }, agent: false }).end();
  const res = await once<IncomingMessage>(req, 'response');
  t.equal(res.headers['content-type'], 'text/event-stream');
  res.setEncoding('utf8');
  const first = await once<string>(res, 'data');
  t.equal(first, 'event: hello\ndata: first\n\n');
  t.equal(appRes?.writableEnded, false, 'the app has not ended its response');
  finish.emit('go');
  let rest = '';
  for await (const chunk of res) rest += String(chunk);
  t.equal(rest, 'data: second\n\n');
});

t.test('200 concurrent requests all succeed', async (t) => {
  const app = await startApp(t, (req, res) => res.end(`echo ${req.url}`));
  const { backend, port } = await startProxy(t);
  backend.expose('ab12cd', 3000, app.port);
  backend.expose('ab12cd', 3001, app.port, true);
  const results = await Promise.all(
    Array.from({ length: 200 }, (_, i) => fetchVia(port, `${i % 2 ? 3001 : 3000}-ab12cd.preview.test`, { path: `/r/${i}` })),
  );
  t.same(results.map((r) => r.status), Array<number>(200).fill(200));
  t.same(results.map((r) => r.body.toString()), Array.from({ length: 200 }, (_, i) => `echo /r/${i}`));
  t.equal(backend.calls.length, 200, 'one stream per request');
});

t.test('a browser that leaves mid-download destroys the backend stream', async (t) => {
  const appClosed = new EventEmitter();
  const app = await startApp(t, (_req, res) => {
    res.on('close', () => appClosed.emit('closed', res.writableFinished));
    res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
    void writeRepeated(res, Buffer.alloc(64 * 1024, 7), 100_000);
  });
  for (const duplex of [false, true]) {
    const { backend, port } = await startProxy(t);
    backend.expose('ab12cd', 3000, app.port, duplex);
    const req = request({ host: '127.0.0.1', port, path: '/endless', headers: { host: HOST }, agent: false }).end();
    req.on('error', () => undefined);
    const res = await once<IncomingMessage>(req, 'response');
    await once(res, 'data');
    const stream = backend.streams[0]!;
    const streamClosed = once(stream, 'close');
    const appSaw = once<boolean>(appClosed, 'closed');
    req.destroy();
    await streamClosed;
    t.ok(stream.destroyed, `the backend stream is destroyed (${duplex ? 'Duplex' : 'net.Socket'})`);
    t.equal(await appSaw, false, 'the app sees its response cut short');
  }
});

t.test('HEAD answers carry the app\'s headers and no body', async (t) => {
  const app = await startApp(t, (_req, res) => {
    res.writeHead(200, { 'Content-Length': '12345', 'X-Head': 'yes' });
    res.end();
  });
  const { backend, port } = await startProxy(t);
  backend.expose('ab12cd', 3000, app.port);
  const res = await fetchVia(port, HOST, { method: 'HEAD' });
  t.equal(res.status, 200);
  t.equal(res.headers['content-length'], '12345');
  t.equal(res.headers['x-head'], 'yes');
  t.equal(res.body.length, 0);
});

t.test('a browser that leaves before the app answers destroys the backend stream', async (t) => {
  const arrived = new EventEmitter();
  const app = await startApp(t, (req) => arrived.emit('request', req)); // never answers
  const { backend, port } = await startProxy(t);
  backend.expose('ab12cd', 3000, app.port, true);
  const req = request({ host: '127.0.0.1', port, path: '/slow', headers: { host: HOST }, agent: false }).end();
  req.on('error', () => undefined);
  const appReq = await once<IncomingMessage>(arrived, 'request');
  const stream = backend.streams[0]!;
  const streamClosed = once(stream, 'close');
  const appSocketClosed = once(appReq.socket, 'close');
  req.destroy();
  await streamClosed;
  await appSocketClosed;
  t.ok(stream.destroyed, 'the backend stream is destroyed');
  t.ok(appReq.socket.destroyed, 'the app sees its connection closed');
});

t.test('an app that answers before the upload ends: the client gets the answer, then the connection closes', async (t) => {
  const app = await startApp(t, (_req, res) => {
    res.writeHead(413, { 'Content-Type': 'text/plain' });
    res.end('too large');
  });
  const { backend, port } = await startProxy(t);
  backend.expose('ab12cd', 3000, app.port, true);
  const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/upload', headers: { host: HOST, 'content-length': String(64 * MB) }, agent: false });
  req.on('error', () => undefined); // the rest of the upload may hit a closed connection
  const response = once<IncomingMessage>(req, 'response');
  req.write(Buffer.alloc(MB));
  const res = await response;
  t.equal(res.statusCode, 413);
  t.equal(res.headers.connection, 'close');
  let body = '';
  for await (const chunk of res) body += String(chunk);
  t.equal(body, 'too large');
  req.destroy();
});
