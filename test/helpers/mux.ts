import { once } from 'node:events';
import { connect as tlsConnect, createServer as createTlsServer, type TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { acceptSession, connectSession, socketTransport, type Session, type SessionOptions } from '../../protocol/index.js';
import { duplexPair } from './duplex-pair.js';
import { testTlsIdentity } from './tls.js';

/** A dialer and an acceptor session joined by some transport. */
export interface SessionPair {
  dialer: Session;
  acceptor: Session;
  /** The dialer's and the acceptor's ends of the transport. */
  sockets: [Duplex, Duplex];
  close(): Promise<void>;
}

/** A session pair over an in-memory duplex pair (unit tests). */
export async function memorySessionPair(dialerOptions: SessionOptions = {}, acceptorOptions: SessionOptions = dialerOptions): Promise<SessionPair> {
  const [a, b] = duplexPair();
  const accepted = acceptSession(socketTransport(b), { ...acceptorOptions, authenticate: () => ({}) });
  const dialer = await connectSession(socketTransport(a), { ...dialerOptions, token: 'test' });
  const acceptor = await accepted;
  return { dialer, acceptor, sockets: [a, b], close: async () => closeBoth(dialer, acceptor) };
}

async function closeBoth(...sessions: Session[]): Promise<void> {
  await Promise.all(
    sessions.map(async (s) => {
      if (s.closed) return;
      // Streams a test left open fail with the session; that is expected at teardown.
      for (const stream of s.listStreams()) stream.on('error', () => {});
      const closed = once(s, 'close');
      s.destroy();
      await closed;
    }),
  );
}

/** A session pair over a real TLS 1.3 connection on 127.0.0.1 (integration tests). */
export async function tlsSessionPair(dialerOptions: SessionOptions = {}, acceptorOptions: SessionOptions = dialerOptions): Promise<SessionPair & { sockets: [TLSSocket, TLSSocket] }> {
  const id = await testTlsIdentity();
  const server = createTlsServer({ cert: id.certPem, key: id.keyPem, minVersion: 'TLSv1.3' });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const acceptedSocket = once(server, 'secureConnection') as Promise<[TLSSocket]>;
  const client = tlsConnect({ host: '127.0.0.1', port, ca: id.caPem, servername: 'localhost', minVersion: 'TLSv1.3' });
  await once(client, 'secureConnect');
  const [serverSocket] = await acceptedSocket;
  server.close();
  const accepted = acceptSession(socketTransport(serverSocket), { ...acceptorOptions, authenticate: () => ({}) });
  const dialer = await connectSession(socketTransport(client), { ...dialerOptions, token: 'test' });
  const acceptor = await accepted;
  return { dialer, acceptor, sockets: [client, serverSocket], close: async () => closeBoth(dialer, acceptor) };
}
