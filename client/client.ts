/**
 * The client library: reach a port inside a sandbox from anywhere that can reach the relay.
 *
 *   const stream = await connect({ relay: 'wss://relay.example.dev', token, tunnel: 'ab12cd', port: 5432 });
 *   pipeline(socket, stream, socket, done);
 *
 * The token (role client) names the tunnel and the ports it may reach; a token for another tunnel
 * or port is refused during the handshake (ERR_WARREN_FORBIDDEN), before the agent is asked to
 * dial anything. Streams open with no round trip: write at once. If the app refuses, the stream
 * fails with ERR_WARREN_APP_UNREACHABLE, as a socket would with ECONNREFUSED.
 */
import { WarrenError, type MuxStream, type Session, type SessionOptions } from '../protocol/index.js';
import { dialRelay, type RelayTransport } from '../transport/dial.js';

/** Where and how to connect. */
export interface ClientOptions {
  /** Relay URL, `wss://host[:port]`. */
  relay: string;
  /** Client token (role client) for the tunnel. */
  token: string;
  /** The tunnel to reach; checked against the token's subject. Default: the token's. */
  tunnel?: string;
  /** Ports this client intends to open; refused at once when the token does not grant them. */
  ports?: number[];
  /** PEM CA to trust for the relay. */
  ca?: string;
  session?: SessionOptions;
  software?: string;
  /** How to reach the relay; default `auto` (raw TLS, else WebSocket). */
  transport?: RelayTransport;
}

/** A session with a relay on which streams to one tunnel's ports are opened. */
export class WarrenClient {
  /** The tunnel this client reaches. */
  readonly tunnel: string;
  /** Ports the token grants. */
  readonly ports: readonly number[];
  /** Whether the tunnel's agent was connected when this client connected. */
  readonly online: boolean;

  private constructor(readonly session: Session) {
    const app = session.serverHello?.app ?? {};
    this.tunnel = typeof app.tunnel === 'string' ? app.tunnel : '';
    this.ports = Array.isArray(app.ports) ? (app.ports as number[]) : [];
    this.online = app.online === true;
  }

  /** Connects to the relay and authenticates; rejects with the refusal's code. */
  static async open(options: ClientOptions): Promise<WarrenClient> {
    const session = await dialRelay({
      relay: options.relay,
      path: '/v1/connect',
      token: options.token,
      ca: options.ca,
      software: options.software ?? 'warren-client/0.1.0',
      session: options.session,
      app: { tunnel: options.tunnel, ports: options.ports ?? [] },
      transport: options.transport,
    });
    return new WarrenClient(session);
  }

  /** True once the session has ended (the relay went away); open a new client then. */
  get closed(): boolean {
    return this.session.closed;
  }

  /** Opens a stream to `port` in the sandbox. Synchronous and 0-RTT; failures arrive as 'error'. */
  connect(port: number, metadata: Record<string, string> = {}): MuxStream {
    if (this.ports.length > 0 && !this.ports.includes(port)) {
      throw new WarrenError('ERR_WARREN_FORBIDDEN', `the client token allows ports ${this.ports.join(', ')}, not ${port}`);
    }
    return this.session.open(port, metadata);
  }

  /**
   * Ends the session gracefully once its streams are done; streams still open after `graceMs`
   * are reset (their local sockets see a reset, not a clean end).
   */
  close(graceMs = Infinity): Promise<void> {
    const closed = this.session.close();
    if (Number.isFinite(graceMs)) {
      const timer = setTimeout(() => this.session.destroy(), graceMs);
      timer.unref();
      void closed.then(() => clearTimeout(timer));
    }
    return closed;
  }

  /** Ends the session now: every open stream is reset. */
  destroy(): void {
    this.session.destroy();
  }
}

/**
 * Opens a one-stream client: resolves with a Duplex to `port` in the tunnel's sandbox. The
 * session closes when the stream does.
 */
export async function connect(options: ClientOptions & { port: number }): Promise<MuxStream> {
  const client = await WarrenClient.open({ ...options, ports: [options.port] });
  const stream = client.connect(options.port);
  stream.once('close', () => void client.close());
  return stream;
}
