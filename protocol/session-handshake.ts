/**
 * Running the handshake on a transport: connectSession() for the dialer (agent, client),
 * acceptSession() for the acceptor (the relay). Both resolve with an open Session once the HELLO
 * exchange is done. The HELLO messages themselves are parsed in handshake.ts.
 */
import { ConnectionError, WarrenError } from './errors.js';
import type { SessionOptions } from './config.js';
import type { ClientHello } from './handshake.js';
import { Session } from './session.js';
import type { Transport } from './transport.js';

/** Options for connectSession(): session options plus what the dialer's HELLO says. */
export interface ConnectSessionOptions extends SessionOptions {
  token: string;
  software?: string;
  app?: Record<string, unknown>;
}

/**
 * Runs the dialer's side of the handshake on `transport`. Resolves with the open session; rejects
 * with the relay's GOAWAY code (for example ERR_WARREN_TOKEN_EXPIRED) or a handshake error.
 */
export function connectSession(transport: Transport, options: ConnectSessionOptions): Promise<Session> {
  const { token, software, app, ...sessionOptions } = options;
  const session = new Session(transport, 'dialer', sessionOptions);
  return new Promise((resolve, reject) => {
    session.once('open', () => {
      session.removeListener('close', onClose);
      resolve(session);
    });
    const onClose = (err?: WarrenError): void => reject(err ?? new ConnectionError('ERR_WARREN_HANDSHAKE', 'the relay closed the connection during the handshake'));
    session.once('close', onClose);
    session.sendClientHello({ token, software, app: app ?? {} });
  });
}

/** Decides on a dialer's HELLO: returns the `app` fields of the answer, or throws a WarrenError to refuse. */
export type Authenticate = (hello: ClientHello, session: Session) => Promise<Record<string, unknown>> | Record<string, unknown>;

/**
 * Runs the acceptor's side of the handshake: waits for HELLO, calls `authenticate`, answers.
 * A thrown WarrenError is sent to the dialer as GOAWAY with its code; the promise rejects with it.
 */
export function acceptSession(transport: Transport, options: SessionOptions & { authenticate: Authenticate }): Promise<Session> {
  const { authenticate, ...sessionOptions } = options;
  const session = new Session(transport, 'acceptor', sessionOptions);
  return new Promise((resolve, reject) => {
    const onClose = (err?: WarrenError): void => reject(err ?? new ConnectionError('ERR_WARREN_HANDSHAKE', 'the peer closed the connection during the handshake'));
    session.once('close', onClose);
    session.once('hello', (hello: ClientHello) => {
      Promise.resolve()
        .then(() => authenticate(hello, session))
        .then(
          (app) => {
            // A session that failed meanwhile (handshake timeout, the dialer's GOAWAY) stays
            // closed: the promise rejects with its reason when it closes.
            if (!session.sendServerHello(app)) return;
            session.removeListener('close', onClose);
            resolve(session);
          },
          (err: unknown) => {
            const failure = err instanceof WarrenError ? err : new ConnectionError('ERR_WARREN_INTERNAL', 'authentication failed', { cause: err });
            session.fail(failure);
          },
        );
    });
  });
}
