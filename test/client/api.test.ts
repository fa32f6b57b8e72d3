// The client library as a platform would use it: connect() resolves to a Duplex that reaches a
// port inside the sandbox; refusals carry their codes. Relay and agent run in this process over
// real TLS on loopback.
import { once } from 'node:events';
import t from 'tap';
import { connect, WarrenClient } from '../../client/client.js';
import type { StreamResetError } from '../../protocol/index.js';
import { makeTestIdentity } from '../helpers/identity.js';
import { startEchoTunnel } from '../helpers/inprocess.js';

const id = await makeTestIdentity();
t.teardown(() => id.remove());
const { url, port } = await startEchoTunnel(t, id, 'libtest', [1]);

t.test('connect() resolves to a Duplex that reaches the port in the sandbox', async (t) => {
  const stream = await connect({ relay: url, ca: id.caPem, token: id.token('client', 'libtest', [port]), tunnel: 'libtest', port });
  stream.end('ping through the tunnel');
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  t.equal(Buffer.concat(chunks).toString(), 'ping through the tunnel');
});

t.test('a client token for another tunnel is refused with ERR_WARREN_FORBIDDEN', async (t) => {
  await t.rejects(WarrenClient.open({ relay: url, ca: id.caPem, token: id.token('client', 'libtest', [port]), tunnel: 'other' }), { code: 'ERR_WARREN_FORBIDDEN' });
});

t.test('a port the token does not grant is refused before any stream opens', async (t) => {
  await t.rejects(connect({ relay: url, ca: id.caPem, token: id.token('client', 'libtest', [port]), tunnel: 'libtest', port: 1 }), { code: 'ERR_WARREN_FORBIDDEN' });
});

t.test('an app that is not listening fails the stream with ERR_WARREN_APP_UNREACHABLE', async (t) => {
  const client = await WarrenClient.open({ relay: url, ca: id.caPem, token: id.token('client', 'libtest', [port, 1]), tunnel: 'libtest' });
  t.teardown(() => client.close());
  const stream = client.connect(1);
  stream.write('hello?');
  const [err] = (await once(stream, 'error')) as [StreamResetError];
  t.equal(err.code, 'ERR_WARREN_APP_UNREACHABLE');
  t.equal(err.retryable, true);
});

t.test('an untrusted relay certificate is ERR_WARREN_TLS, not retryable', async (t) => {
  await t.rejects(WarrenClient.open({ relay: url, token: id.token('client', 'libtest', [port]) }), { code: 'ERR_WARREN_TLS', retryable: false });
});
