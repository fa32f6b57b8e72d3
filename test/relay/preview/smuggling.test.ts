// Request smuggling and Host confusion against a real `warren relay` process, in exact bytes over
// raw sockets: its plain-HTTP preview listener (net) and its TLS listener (tls, with chosen SNI).
// Every request in the corpus is answered 400 or 421 with its code and reaches no agent: the apps
// behind two live tunnels see no request and warren_streams_opened_total on the admin /metrics
// does not move. test/relay/preview/guard.test.ts runs a similar corpus against the proxy
// alone, with a stand-in backend.
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import t from 'tap';
import { makeTestIdentity } from '../../helpers/identity.js';
import { startTestApp } from '../../helpers/apps.js';
import { startAgentProcess, startRelayProcess, TEST_DOMAIN } from '../../helpers/cluster.js';

const id = await makeTestIdentity();
t.teardown(() => id.remove());
const relay = await startRelayProcess(id, ['--admin', '127.0.0.1:0']);
t.teardown(() => relay.proc.stop('SIGKILL'));
const adminPort = (JSON.parse(relay.proc.lines.find((l) => l.includes('"event":"listening"'))!) as { admin: { port: number } }).admin.port;
const victim = await startTestApp();
t.teardown(() => victim.close());
const other = await startTestApp();
t.teardown(() => other.close());
const agents = await Promise.all([
  startAgentProcess(id, relay, id.token('agent', 'ab12cd', [victim.port]), ['--port', String(victim.port)]),
  startAgentProcess(id, relay, id.token('agent', 'other', [other.port]), ['--port', String(other.port)]),
]);
t.teardown(() => Promise.all(agents.map((a) => a.stop())));

const HOST = `${victim.port}-ab12cd.${TEST_DOMAIN}`;
const OTHER = `${other.port}-other.${TEST_DOMAIN}`;

/** Sends `bytes` on a fresh TCP connection to the relay's HTTP listener; resolves with everything read until close. */
function overTcp(bytes: string): Promise<string> {
  return exchange(netConnect({ port: relay.httpPort, host: '127.0.0.1' }), 'connect', bytes);
}

/** The same over TLS to the relay's TLS listener, with `servername` as SNI. */
function overTls(servername: string, bytes: string): Promise<string> {
  return exchange(tlsConnect({ port: relay.port, host: '127.0.0.1', servername, ca: id.caPem, minVersion: 'TLSv1.3' }), 'secureConnect', bytes);
}

function exchange(socket: ReturnType<typeof netConnect>, ready: string, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', reject);
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    socket.once(ready, () => socket.write(bytes, 'latin1'));
  });
}

/** Streams opened to agents for previews, from the admin /metrics. */
async function previewStreamsOpened(): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  const m = /^warren_streams_opened_total\{kind="preview"\} (\d+)$/m.exec(text);
  return m ? Number(m[1]) : 0;
}

/** Statuses and codes of every answer in a raw exchange (pipelined requests get several). */
function answers(raw: string): { status: number; code: string | undefined }[] {
  return [...raw.matchAll(/HTTP\/1\.1 (\d{3}) [^\r\n]*\r\n((?:[^\r\n]+\r\n)*)\r\n/g)].map((m) => ({ status: Number(m[1]), code: /^x-warren-error: (\S+)\r$/im.exec(m[2]!)?.[1] }));
}

const UPGRADE = 'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n';
const BAD = 'ERR_WARREN_BAD_REQUEST';
const MISDIRECTED = 'ERR_WARREN_MISDIRECTED';

/** Requests for the plain-HTTP listener, with the status and code each must get. */
const TCP_CORPUS: { name: string; bytes: string; status: number; code: string }[] = [
  { name: 'Content-Length and Transfer-Encoding (CL.TE)', bytes: `POST / HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG`, status: 400, code: BAD },
  { name: 'Transfer-Encoding then Content-Length (TE.CL)', bytes: `POST / HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n`, status: 400, code: BAD },
  { name: 'two different Content-Length headers', bytes: `POST / HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 0\r\nContent-Length: 44\r\n\r\n`, status: 400, code: BAD },
  { name: 'Transfer-Encoding with a space before the colon', bytes: `POST / HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n`, status: 400, code: BAD },
  { name: 'Transfer-Encoding whose last coding is not chunked', bytes: `POST / HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n`, status: 400, code: BAD },
  { name: 'negative Content-Length', bytes: `POST / HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: -1\r\n\r\n`, status: 400, code: BAD },
  { name: 'bare LF line endings', bytes: `GET / HTTP/1.1\nHost: ${HOST}\n\n`, status: 400, code: BAD },
  { name: 'NUL in a header value', bytes: `GET / HTTP/1.1\r\nHost: ${HOST}\r\nX-A: a\0b\r\n\r\n`, status: 400, code: BAD },
  { name: 'duplicate Host naming another tunnel', bytes: `GET / HTTP/1.1\r\nHost: ${HOST}\r\nHost: ${OTHER}\r\n\r\n`, status: 400, code: BAD },
  { name: 'duplicate Host, same value in another case', bytes: `GET / HTTP/1.1\r\nHost: ${HOST}\r\nhost: ${HOST.toUpperCase()}\r\n\r\n`, status: 400, code: BAD },
  { name: 'no Host (HTTP/1.0)', bytes: 'GET / HTTP/1.0\r\n\r\n', status: 400, code: BAD },
  { name: 'absolute-form URI for another tunnel than Host', bytes: `GET http://${OTHER}/ HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`, status: 400, code: BAD },
  { name: 'absolute-form URI with user information', bytes: `GET http://user:pw@${HOST}/ HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`, status: 400, code: BAD },
  { name: 'absolute-form URI for a foreign host', bytes: `GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`, status: 400, code: BAD },
  { name: 'Host not under the domain', bytes: 'GET / HTTP/1.1\r\nHost: example.com\r\n\r\n', status: 421, code: MISDIRECTED },
  { name: 'Host with the preview label over another domain', bytes: `GET / HTTP/1.1\r\nHost: ${HOST}.evil.example\r\n\r\n`, status: 421, code: MISDIRECTED },
  { name: 'Host with two labels before the domain', bytes: `GET / HTTP/1.1\r\nHost: x.${HOST}\r\n\r\n`, status: 421, code: MISDIRECTED },
  { name: 'Host that is an IP address', bytes: 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n', status: 421, code: MISDIRECTED },
  { name: 'WebSocket upgrade for a foreign Host', bytes: `GET / HTTP/1.1\r\nHost: example.com\r\n${UPGRADE}\r\n`, status: 421, code: MISDIRECTED },
  { name: 'WebSocket upgrade with a duplicate Host', bytes: `GET / HTTP/1.1\r\nHost: ${HOST}\r\nHost: ${OTHER}\r\n${UPGRADE}\r\n`, status: 400, code: BAD },
];

/** Requests for the TLS listener: SNI and bytes. */
const TLS_CORPUS: { name: string; sni: string; bytes: string; status: number; code: string }[] = [
  { name: 'CL.TE over TLS', sni: HOST, bytes: `POST / HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG`, status: 400, code: BAD },
  { name: 'duplicate Host over TLS', sni: HOST, bytes: `GET / HTTP/1.1\r\nHost: ${HOST}\r\nHost: ${OTHER}\r\n\r\n`, status: 400, code: BAD },
  { name: 'absolute-form URI for another tunnel over TLS', sni: HOST, bytes: `GET https://${OTHER}/ HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`, status: 400, code: BAD },
  { name: 'SNI of one tunnel, Host of another', sni: HOST, bytes: `GET / HTTP/1.1\r\nHost: ${OTHER}\r\n\r\n`, status: 421, code: MISDIRECTED },
  { name: 'SNI of one port, Host of another port of the same tunnel', sni: HOST, bytes: `GET / HTTP/1.1\r\nHost: 1-ab12cd.${TEST_DOMAIN}\r\n\r\n`, status: 421, code: MISDIRECTED },
  { name: 'SNI of a tunnel, Host not under the domain', sni: HOST, bytes: 'GET /x HTTP/1.1\r\nHost: example.com\r\n\r\n', status: 421, code: MISDIRECTED },
  { name: 'SNI of a tunnel, Host of the relay itself', sni: HOST, bytes: 'GET /v1/agent HTTP/1.1\r\nHost: relay.test\r\n\r\n', status: 421, code: MISDIRECTED },
  { name: 'SNI of a tunnel, upgrade for another tunnel', sni: HOST, bytes: `GET / HTTP/1.1\r\nHost: ${OTHER}\r\n${UPGRADE}\r\n`, status: 421, code: MISDIRECTED },
];

t.test('the corpus over the plain-HTTP listener: 400 or 421 with a code, and no stream to any agent', async (t) => {
  const before = await previewStreamsOpened();
  for (const { name, bytes, status, code } of TCP_CORPUS) {
    const got = answers(await overTcp(bytes));
    t.same(got, [{ status, code }], `${name}: ${status} ${code}`);
  }
  t.equal(victim.requests.length + other.requests.length, 0, 'neither app saw a request');
  t.equal(await previewStreamsOpened(), before, `warren_streams_opened_total{kind="preview"} stayed at ${before}`);
});

t.test('the corpus over the TLS listener, SNI against Host: 400 or 421 with a code, and no stream', async (t) => {
  const before = await previewStreamsOpened();
  for (const { name, sni, bytes, status, code } of TLS_CORPUS) {
    const got = answers(await overTls(sni, bytes));
    t.same(got, [{ status, code }], `${name}: ${status} ${code}`);
  }
  t.equal(victim.requests.length + other.requests.length, 0, 'neither app saw a request');
  t.equal(await previewStreamsOpened(), before, `warren_streams_opened_total{kind="preview"} stayed at ${before}`);
});

t.test('a request pipelined behind a valid one is checked on its own: 200, then 400', async (t) => {
  const before = await previewStreamsOpened();
  const pipelined = `GET /first HTTP/1.1\r\nHost: ${HOST}\r\n\r\nGET /second HTTP/1.1\r\nHost: ${HOST}\r\nHost: ${OTHER}\r\n\r\n`;
  t.same(answers(await overTcp(pipelined)), [{ status: 200, code: undefined }, { status: 400, code: BAD }], 'answers in order');
  t.same(victim.requests.map((r) => r.url), ['/first'], 'the victim app saw only the valid request');
  t.equal(other.requests.length, 0, 'the other tunnel saw nothing');
  t.equal(await previewStreamsOpened(), before + 1, 'exactly one stream was opened');
});

t.test('a CL.TE request pipelined behind a valid one never reaches an app', async (t) => {
  const before = await previewStreamsOpened();
  const seen = victim.requests.length;
  // Node's parser refuses the second head while the first request may still be in flight: the
  // connection gets a 400 and closes, which may also cut the first (the sender's own) request.
  const smuggled = `GET /third HTTP/1.1\r\nHost: ${HOST}\r\n\r\nPOST /smuggled HTTP/1.1\r\nHost: ${OTHER}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled-too HTTP/1.1\r\nHost: ${OTHER}\r\n\r\n`;
  const got = answers(await overTcp(smuggled));
  t.same(got.at(-1), { status: 400, code: BAD }, 'the connection ends with a 400');
  t.ok(got.length <= 2, `${got.length} answers`);
  t.notOk(victim.requests.slice(seen).some((r) => r.url.startsWith('/smuggled')), 'no smuggled request reached the victim app');
  t.equal(other.requests.length, 0, 'no smuggled request reached the other app');
  t.ok((await previewStreamsOpened()) - before <= 1, 'at most the valid request opened a stream');
});

t.test('the same hosts answer 200 when asked properly, over both listeners', async (t) => {
  const before = await previewStreamsOpened();
  t.same(answers(await overTcp(`GET /ok HTTP/1.1\r\nHost: ${OTHER}\r\nConnection: close\r\n\r\n`)), [{ status: 200, code: undefined }]);
  t.same(answers(await overTls(HOST, `GET /ok HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`)), [{ status: 200, code: undefined }]);
  t.equal(await previewStreamsOpened(), before + 2, 'one stream per request');
});
