/**
 * The bare server of the memory part: a WebSocket-over-TLS server (`ws` on `https`, no compression)
 * and a TLS server with the bench's relay certificate, each keeping its idle connections and doing
 * nothing else. Its RSS per connection is the floor the relay's memory per agent is compared with.
 *
 *   node dist/bench/run-bare.js CERT KEY    prints {"wssPort":N,"tlsPort":M}
 */
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { WebSocketServer, type WebSocket } from 'ws';

async function main(): Promise<void> {
  process.title = 'bench-bare';
  const [certFile, keyFile] = process.argv.slice(2);
  const cert = readFileSync(certFile!, 'utf8');
  const key = readFileSync(keyFile!, 'utf8');
  const held = new Set<WebSocket | TLSSocket>();
  const https = createHttpsServer({ cert, key });
  const wss = new WebSocketServer({ server: https, perMessageDeflate: false });
  wss.on('connection', (ws) => {
    held.add(ws);
    ws.on('close', () => held.delete(ws));
  });
  const tls = createTlsServer({ cert, key }, (s) => {
    held.add(s);
    s.on('error', () => {});
    s.on('close', () => held.delete(s));
  });
  https.listen(0, '127.0.0.1');
  tls.listen(0, '127.0.0.1');
  await Promise.all([once(https, 'listening'), once(tls, 'listening')]);
  console.log(JSON.stringify({ wssPort: (https.address() as AddressInfo).port, tlsPort: (tls.address() as AddressInfo).port }));
  process.stdin.resume();
  process.stdin.on('end', () => process.exit(0));
}

void main();
