// The two transports to a relay: raw TLS (the ALPN id names the endpoint) and WebSocket over TLS.
// A real relay offers both on one port; `auto` takes raw TLS and falls back to WebSocket against a
// server that offers only HTTP (an older relay, a TLS-terminating front end).
import { once } from 'node:events';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import t from 'tap';
import { WebSocketServer } from 'ws';
import { WarrenClient } from '../../client/client.js';
import { dialRelay, type RelayTransport } from '../../transport/dial.js';
import { acceptSession, ALPN_AGENT, ALPN_CONNECT, webSocketTransport, WS_SUBPROTOCOL } from '../../protocol/index.js';
import { makeTestIdentity } from '../helpers/identity.js';
import { startEchoTunnel } from '../helpers/inprocess.js';

const id = await makeTestIdentity();
t.teardown(() => id.remove());
const { relay, url, port } = await startEchoTunnel(t, id, 'transports');

/** The protocol the relay selects when a client offers `offered`. */
async function negotiated(offered: string[]): Promise<string | false | null> {
  const socket = tlsConnect({ host: '127.0.0.1', port: relay.address().listen.port, ca: id.caPem, ALPNProtocols: offered });
  await once(socket, 'secureConnect');
  const chosen = socket.alpnProtocol;
  socket.destroy();
  return chosen;
}

t.test('the relay selects a Warren ALPN id only for a peer that offers it; browsers get HTTP/1.1', async (t) => {
  t.equal(await negotiated([ALPN_AGENT, 'http/1.1']), ALPN_AGENT);
  t.equal(await negotiated([ALPN_CONNECT, 'http/1.1']), ALPN_CONNECT);
  t.equal(await negotiated(['h2', 'http/1.1']), 'http/1.1');
});

for (const transport of ['tls', 'wss', 'auto'] as RelayTransport[]) {
  t.test(`a client stream over --transport ${transport} echoes its bytes`, async (t) => {
    const client = await WarrenClient.open({ relay: url, ca: id.caPem, token: id.token('client', 'transports', [port]), tunnel: 'transports', ports: [port], transport });
    t.teardown(() => client.destroy());
    const stream = client.connect(port);
    const payload = Buffer.alloc(3 * 1024 * 1024, transport);
    stream.end(payload);
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    t.ok(Buffer.concat(chunks).equals(payload), `${payload.length} bytes back intact`);
  });
}

t.test('against a server that offers only HTTP, auto falls back to WebSocket and tls is refused with ERR_WARREN_VERSION', async (t) => {
  const https = createHttpsServer({ cert: id.certPem, key: id.keyPem, minVersion: 'TLSv1.3' });
  const wss = new WebSocketServer({ server: https, handleProtocols: (offered) => (offered.has(WS_SUBPROTOCOL) ? WS_SUBPROTOCOL : false) });
  let webSockets = 0;
  wss.on('connection', (ws) => {
    webSockets++;
    acceptSession(webSocketTransport(ws), { authenticate: () => ({}) }).catch(() => undefined);
  });
  https.listen(0, '127.0.0.1');
  await once(https, 'listening');
  t.teardown(() => {
    wss.close();
    https.closeAllConnections();
    https.close();
  });
  const httpOnly = `wss://127.0.0.1:${(https.address() as AddressInfo).port}`;
  const dial = (transport: RelayTransport) => dialRelay({ relay: httpOnly, path: '/v1/connect', token: 'unused', ca: id.caPem, transport });

  const session = await dial('auto');
  t.equal(webSockets, 1, 'auto reached the server over WebSocket');
  session.destroy();
  await t.rejects(dial('tls'), { code: 'ERR_WARREN_VERSION' });
  t.equal(webSockets, 1, 'tls never tried WebSocket');
});
