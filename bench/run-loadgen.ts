/**
 * Load generator of the memory and scale parts of the whole-system bench: many idle connections
 * from one process. Its configuration is one JSON argument; it prints JSON lines
 * ({"progress":N}, then {"done":N,"failed":F,"firstError":...}) and holds the connections open
 * until it is ended (signal, or stdin closing).
 *
 *   {"mode":"agents", ...}   raw agent sessions over raw TLS (the agent's wire protocol, no local dialing), each
 *                            its own tunnel, spread over the given loopback source addresses
 *   {"mode":"streams", ...}  one agent session and one client session with `count` idle streams
 *   {"mode":"bare", ...}     plain WebSockets over TLS (or TLS sockets) to a bare server
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { WebSocket } from 'ws';
import { parseIssuerKey } from '../certs/keys.js';
import { issueToken, type Role } from '../certs/token.js';
import { WarrenClient } from '../client/client.js';
import { ALPN_AGENT, connectSession, socketTransport, WS_MAX_MESSAGE_BYTES, type MuxStream, type Session } from '../protocol/index.js';

/** What to open. */
export type LoadConfig =
  | { mode: 'agents'; relayPort: number; caFile: string; issuerKeyFile: string; tunnelPrefix: string; first: number; count: number; localAddresses: string[]; concurrency: number; appPort: number }
  | { mode: 'streams'; relayPort: number; caFile: string; issuerKeyFile: string; tunnel: string; count: number; appPort: number }
  | { mode: 'bare'; kind: 'wss' | 'tls'; port: number; caFile: string; count: number; concurrency: number };

const say = (o: Record<string, unknown>): void => console.log(JSON.stringify(o));
const held: unknown[] = [];

function wsOpen(url: string, protocols: string[], ca: string, localAddress?: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols, { ca, perMessageDeflate: false, maxPayload: WS_MAX_MESSAGE_BYTES + 64 * 1024, skipUTF8Validation: true, localAddress, handshakeTimeout: 30_000 });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
  });
}

function tokenMaker(issuerKeyFile: string): (role: Role, tunnel: string, ports: number[]) => string {
  const issuer = parseIssuerKey(readFileSync(issuerKeyFile, 'utf8'), 'issuer.key');
  return (role, tunnel, ports) => {
    const now = Math.floor(Date.now() / 1000);
    return issueToken(issuer, { sub: tunnel, role, ports, aud: 'warren', iat: now, exp: now + 6 * 3600, jti: randomBytes(8).toString('hex') });
  };
}

/** An agent session over raw TLS (ALPN warren.v1.agent), the transport agents choose by default. */
async function agentSession(relayPort: number, ca: string, token: string, appPort: number, localAddress?: string): Promise<Session> {
  const socket = await new Promise<TLSSocket>((resolve, reject) => {
    const s = tlsConnect({ socket: netConnect({ host: '127.0.0.1', port: relayPort, localAddress }), host: '127.0.0.1', ca, ALPNProtocols: [ALPN_AGENT] });
    s.once('secureConnect', () => (s.alpnProtocol === ALPN_AGENT ? resolve(s) : reject(new Error('the relay did not select the raw TLS transport'))));
    s.once('error', reject);
  });
  socket.setNoDelay(true);
  return connectSession(socketTransport(socket), { token, software: 'warren-bench-loadgen/0.1.0', app: { ports: [{ port: appPort, private: false, tcp: false, allow: [] }] } });
}

/** Runs `count` tasks with at most `concurrency` at once, reporting progress every 1,000. */
async function pool(count: number, concurrency: number, task: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  let done = 0;
  let failed = 0;
  let firstError: string | undefined;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      try {
        held.push(await task(i));
      } catch (err) {
        failed++;
        firstError ??= (err as Error).message;
      }
      if (++done % 1000 === 0) say({ progress: done });
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  say({ done: done - failed, failed, firstError });
}

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2] ?? '{}') as LoadConfig;
  process.title = `bench-loadgen-${config.mode}`;
  const ca = readFileSync(config.caFile, 'utf8');
  if (config.mode === 'agents') {
    const token = tokenMaker(config.issuerKeyFile);
    await pool(config.count, config.concurrency, async (i) => {
      const session = await agentSession(config.relayPort, ca, token('agent', `${config.tunnelPrefix}${config.first + i}`, [config.appPort]), config.appPort, config.localAddresses[i % config.localAddresses.length]);
      session.on('error', () => {});
      return session;
    });
  } else if (config.mode === 'streams') {
    const token = tokenMaker(config.issuerKeyFile);
    const agent = await agentSession(config.relayPort, ca, token('agent', config.tunnel, [config.appPort]), config.appPort);
    let accepted = 0;
    let allAccepted: () => void = () => {};
    const all = new Promise<void>((resolve) => (allAccepted = resolve));
    agent.on('stream', (s: MuxStream) => {
      s.on('error', () => {});
      s.accept();
      held.push(s);
      if (++accepted === config.count) allAccepted();
    });
    const client = await WarrenClient.open({ relay: `wss://127.0.0.1:${config.relayPort}`, token: token('client', config.tunnel, [config.appPort]), tunnel: config.tunnel, ports: [config.appPort], ca });
    for (let i = 0; i < config.count; i++) {
      const s = client.connect(config.appPort);
      s.on('error', () => {});
      held.push(s);
    }
    const timeout = new Promise<void>((resolve) => setTimeout(resolve, 30_000).unref());
    await Promise.race([all, timeout]);
    say({ done: accepted, failed: config.count - accepted });
  } else {
    await pool(config.count, config.concurrency, (_i) =>
      config.kind === 'wss'
        ? wsOpen(`wss://127.0.0.1:${config.port}/`, [], ca)
        : new Promise((resolve, reject) => {
            const s = tlsConnect({ port: config.port, host: '127.0.0.1', ca }, () => resolve(s));
            s.once('error', reject);
          }),
    );
  }
  process.stdin.resume();
  process.stdin.on('end', () => process.exit(0));
}

main().catch((err: unknown) => {
  say({ fatal: (err as Error).message });
  process.exit(1);
});
