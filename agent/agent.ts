/**
 * The in-sandbox agent: holds one session to a relay, serves the streams the relay opens by
 * dialing loopback ports it exposes, and reconnects after any failure with full-jitter backoff.
 *
 * Life cycle (status): connecting → connected → reconnecting → connected … → stopped. Status is
 * `connecting` until the first session is up (attempts and the waits between them), and
 * `reconnecting` from the loss of a session until the next one is up.
 * A relay that sends a graceful GOAWAY (drain) is left at once for the hinted relay or the next
 * one in the list, while the streams it still carries finish. A GOAWAY saying another agent took
 * the tunnel stops this agent once the streams it carries have finished (within
 * REPLACED_GRACE_MS): two sandboxes fighting over one tunnel would flap forever.
 */
import { EventEmitter, once } from 'node:events';
import { ConnectionError, DEFAULT_SESSION_CONFIG, WarrenError, isRetryable, type Rate, type ErrorCode, type GoAwayInfo, type MuxStream, type Session, type SessionOptions } from '../protocol/index.js';
import { dialRelay, type RelayTransport } from '../transport/dial.js';
import { joinSocket } from '../transport/join.js';
import { Backoff, systemClock, type BackoffOptions, type Clock } from './backoff.js';
import { dialLoopback } from './local-dial.js';

/** A rate no relay reaches: the agent's session leaves reset budgets to the relay. */
const UNBUDGETED: Rate = { perSecond: 1e9, burst: 1e9 };

/** Codes that end one session for a wire fault; the agent reconnects after them. */
const SESSION_FAULTS: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'ERR_WARREN_PROTOCOL',
  'ERR_WARREN_FRAME_TOO_LARGE',
  'ERR_WARREN_UNKNOWN_FRAME',
  'ERR_WARREN_FLOW_CONTROL',
  'ERR_WARREN_FLOOD',
  'ERR_WARREN_METADATA_TOO_LARGE',
  'ERR_WARREN_INTERNAL',
]);

/**
 * How long an agent replaced by another agent of its tunnel keeps serving the streams it already
 * carries (requests in flight) before it stops.
 */
export const REPLACED_GRACE_MS = 10_000;

/** One port the agent exposes. */
export interface PortSpec {
  port: number;
  /** Given with --port: print its preview URL. */
  preview: boolean;
  /** The preview needs a viewer token. */
  private: boolean;
  /** Ask the relay for a public raw TCP endpoint for this port. */
  tcp: boolean;
  /** With `tcp`: CIDRs allowed to connect to the endpoint (empty: anyone). */
  allow: string[];
}

/** Agent settings. */
export interface AgentOptions {
  /** Relay URLs, tried in order; the list is plural for failover. */
  relays: string[];
  token: string;
  /** PEM CA to trust for the relays. */
  ca?: string;
  ports: PortSpec[];
  session?: SessionOptions;
  clock?: Clock;
  backoff?: BackoffOptions;
  /** A session that lasted this long resets the backoff; default 10 s. */
  stableAfterMs?: number;
  /** Time allowed for a local connection; default 5 s. */
  localDialTimeoutMs?: number;
  software?: string;
  /** How to reach the relays; default `auto` (raw TLS, else WebSocket). */
  transport?: RelayTransport;
}

/** A preview URL the relay gave for a port. */
export interface Preview {
  port: number;
  url: string;
  private: boolean;
}

/** A raw TCP endpoint the relay allocated for a port. */
export interface TcpEndpoint {
  port: number;
  endpoint: string;
}

/** What the agent reports, for people (the CLI) and scripts (--json). */
export type AgentEvent =
  | { event: 'connecting'; relay: string; attempt: number }
  | { event: 'connected'; relay: string; tunnel: string; sessionId: string; previews: Preview[]; tcp: TcpEndpoint[] }
  | { event: 'disconnected'; relay: string; code: ErrorCode; message: string; retryInMs: number }
  | { event: 'moving'; relay: string; to: string; message: string }
  | { event: 'stopped'; code?: ErrorCode; message?: string };

/** Where the agent is in its life cycle. */
export type AgentStatus = 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'stopped';

/** A snapshot for `warren agent status`. */
export interface AgentSnapshot {
  status: AgentStatus;
  /** The relay of the current session, or the one being tried. */
  relay: string | undefined;
  tunnel: string | undefined;
  /** Smoothed round-trip time of the session's keepalive PINGs; undefined when not connected. */
  rttMs: number | undefined;
  /** When the current session came up (ISO 8601); undefined when not connected. */
  connectedSince: string | undefined;
  /** Why the last session ended or the last attempt failed; cleared once connected. */
  lastError: { code: ErrorCode; message: string } | undefined;
  previews: Preview[];
  tcp: TcpEndpoint[];
  streamsOpen: number;
  streamsServed: number;
  streamsRefused: number;
}

type Outcome =
  | { kind: 'closed'; err: WarrenError | undefined }
  | { kind: 'moving'; info: GoAwayInfo }
  | { kind: 'replaced'; err: WarrenError }
  | { kind: 'stopped' };

/** The agent. Call start(); it resolves when the agent stops, and rejects on an error retrying cannot fix. */
export class Agent extends EventEmitter {
  // Static after construction.
  private readonly options: AgentOptions;
  private readonly clock: Clock;
  private readonly backoff: Backoff;
  private readonly allowed: ReadonlySet<number>;
  /** Ports exposed with a preview (not only as raw TCP endpoints). */
  private readonly previewPorts: ReadonlySet<number>;

  // Owned by the connection loop.
  private statusValue: AgentStatus = 'idle';
  private current: Session | null = null;
  private currentRelay: string | undefined;
  private hint: string | undefined;
  private relayIndex = 0;
  private stopping = false;
  private wake: (() => void) | null = null;
  private lastConnected: Extract<AgentEvent, { event: 'connected' }> | null = null;
  private connectedSince: number | undefined;
  private lastError: { code: ErrorCode; message: string } | undefined;
  /** A session has been up at least once: later attempts are reconnects. */
  private everConnected = false;
  /** Loopback address that answered last, per port: tried first next time. */
  private readonly preferredHost = new Map<number, string>();
  private readonly sessions = new Set<Session>();
  private streamsOpen = 0;
  /** Connections to local apps being dialed or open, until each socket has closed. */
  private localConnections = 0;
  private streamsServed = 0;
  private streamsRefused = 0;

  constructor(options: AgentOptions) {
    super();
    if (options.relays.length === 0) throw new WarrenError('ERR_WARREN_USAGE', 'at least one relay is needed');
    if (options.ports.length === 0) throw new WarrenError('ERR_WARREN_USAGE', 'at least one port is needed');
    this.options = options;
    this.clock = options.clock ?? systemClock;
    this.backoff = new Backoff(options.backoff);
    this.allowed = new Set(options.ports.map((p) => p.port));
    this.previewPorts = new Set(options.ports.filter((p) => p.preview).map((p) => p.port));
  }

  /** Current status. */
  get status(): AgentStatus {
    return this.statusValue;
  }

  /** What the agent is doing now. */
  snapshot(): AgentSnapshot {
    return {
      status: this.statusValue,
      relay: this.currentRelay,
      tunnel: this.lastConnected?.tunnel,
      rttMs: this.current?.rttMs,
      connectedSince: this.current && this.connectedSince !== undefined ? new Date(this.connectedSince).toISOString() : undefined,
      lastError: this.lastError,
      // Ports given only as raw TCP endpoints have no preview to show, as in the CLI's output.
      previews: (this.lastConnected?.previews ?? []).filter((p) => this.previewPorts.has(p.port)),
      tcp: this.lastConnected?.tcp ?? [],
      streamsOpen: this.streamsOpen,
      streamsServed: this.streamsServed,
      streamsRefused: this.streamsRefused,
    };
  }

  /**
   * Like snapshot(), but when a session is up and no PONG has come back yet (its first moments),
   * waits for one keepalive round trip (at most `timeoutMs`) so the RTT is known.
   */
  async measuredSnapshot(timeoutMs = 1_000): Promise<AgentSnapshot> {
    const session = this.current;
    if (session && session.rttMs === undefined) {
      try {
        await session.ping(timeoutMs);
      } catch {
        // No PONG in time (or the session ended): report what is known.
      }
    }
    return this.snapshot();
  }

  private report(e: AgentEvent): void {
    this.emit('event', e);
  }

  /** Runs until stop(); rejects with the error when one cannot be fixed by retrying (a bad token, an untrusted certificate). */
  async start(): Promise<void> {
    try {
      await this.loop();
      this.statusValue = 'stopped';
      this.report({ event: 'stopped' });
    } catch (err) {
      this.statusValue = 'stopped';
      const e = err instanceof WarrenError ? err : new ConnectionError('ERR_WARREN_INTERNAL', String(err), { cause: err });
      this.report({ event: 'stopped', code: e.code, message: e.message });
      throw e;
    }
  }

  /** Ends `session` gracefully: open streams may finish within `graceMs`, then it is destroyed. */
  private async finish(session: Session, graceMs: number): Promise<void> {
    if (session.closed) return;
    const closed = once(session, 'close');
    const timer = this.clock.setTimeout(() => session.destroy(), graceMs);
    void session.close();
    await closed;
    this.clock.clearTimeout(timer);
  }

  /** Stops: the session ends gracefully (open streams may finish within `graceMs`), no reconnect. */
  async stop(graceMs = 5_000): Promise<void> {
    this.stopping = true;
    this.wake?.();
    await Promise.all(
      [...this.sessions].map(async (s) => {
        const timer = this.clock.setTimeout(() => s.destroy(), graceMs);
        await s.close();
        this.clock.clearTimeout(timer);
      }),
    );
  }

  private nextRelay(): string {
    if (this.hint) {
      const hint = this.hint;
      this.hint = undefined;
      return hint;
    }
    const relays = this.options.relays;
    return relays[this.relayIndex++ % relays.length]!;
  }

  private async loop(): Promise<void> {
    while (!this.stopping) {
      // A drain hint is advice from a relay: when it cannot be used (not a wss:// URL, an
      // untrusted certificate, any refusal), the agent goes on with its own relay list.
      const hinted = this.hint !== undefined;
      const relay = this.nextRelay();
      this.statusValue = this.everConnected ? 'reconnecting' : 'connecting';
      this.report({ event: 'connecting', relay, attempt: this.backoff.attempts + 1 });
      let session: Session;
      try {
        session = await dialRelay({
          relay,
          path: '/v1/agent',
          token: this.options.token,
          ca: this.options.ca,
          software: this.options.software,
          transport: this.options.transport,
          // The relay forwards the resets and refusals of every user of the tunnel (browsers,
          // clients) and budgets each user's own session; a budget here would let one user's
          // rapid resets take the tunnel offline for all. Connections to the apps stay capped.
          session: { resetRate: UNBUDGETED, ...this.options.session },
          app: { ports: this.options.ports.map((p) => ({ port: p.port, private: p.private, tcp: p.tcp, allow: p.allow })) },
        });
      } catch (err) {
        if (this.stopping) return;
        if (!isRetryable(err) && !hinted) throw err;
        await this.pause(relay, err instanceof WarrenError ? err : new ConnectionError('ERR_WARREN_RELAY_UNREACHABLE', String(err), { cause: err }));
        continue;
      }
      if (this.stopping) {
        await session.close();
        return;
      }
      const connectedAt = this.clock.now();
      const outcome = await this.serveSession(session, relay);
      if (outcome.kind === 'stopped' || this.stopping) return;
      if (outcome.kind === 'replaced') {
        // The relay sends nothing new to this session; let the streams it carries finish first.
        await this.finish(session, REPLACED_GRACE_MS);
        throw outcome.err;
      }
      if (outcome.kind === 'moving') {
        // Drain: move now, no backoff; the old session finishes its streams meanwhile.
        this.hint = outcome.info.hint || undefined;
        this.lastError = { code: outcome.info.error?.code ?? 'ERR_WARREN_GOING_AWAY', message: outcome.info.message || 'the relay is draining' };
        this.report({ event: 'moving', relay, to: outcome.info.hint || 'the next relay', message: outcome.info.message || 'relay is draining' });
        this.backoff.reset();
        continue;
      }
      // A revoked or expired token will be refused again: stop instead of retrying. A session
      // that broke the protocol (a relay bug, a corrupting middlebox) says nothing about the next
      // connection: reconnect, with backoff.
      if (outcome.err && !outcome.err.retryable && !SESSION_FAULTS.has(outcome.err.code)) throw outcome.err;
      if (this.clock.now() - connectedAt >= (this.options.stableAfterMs ?? 10_000)) this.backoff.reset();
      await this.pause(relay, outcome.err ?? new ConnectionError('ERR_WARREN_SESSION_CLOSED', 'the relay closed the session'));
    }
  }

  /** Reports a failure and waits out the backoff (cut short by stop()). */
  private async pause(relay: string, err: WarrenError): Promise<void> {
    const delay = this.backoff.next();
    this.statusValue = this.everConnected ? 'reconnecting' : 'connecting';
    this.lastError = { code: err.code, message: err.message };
    this.report({ event: 'disconnected', relay, code: err.code, message: err.message, retryInMs: delay });
    await new Promise<void>((resolve) => {
      const timer = this.clock.setTimeout(() => {
        this.wake = null;
        resolve();
      }, delay);
      this.wake = () => {
        this.clock.clearTimeout(timer);
        this.wake = null;
        resolve();
      };
    });
  }

  /** Serves one session until it closes, drains, or is replaced. */
  private serveSession(session: Session, relay: string): Promise<Outcome> {
    this.sessions.add(session);
    this.current = session;
    this.currentRelay = relay;
    this.statusValue = 'connected';
    this.everConnected = true;
    this.connectedSince = this.clock.now();
    this.lastError = undefined;
    const app = session.serverHello?.app ?? {};
    const connected: Extract<AgentEvent, { event: 'connected' }> = {
      event: 'connected',
      relay,
      tunnel: typeof app.tunnel === 'string' ? app.tunnel : '',
      sessionId: session.id,
      previews: Array.isArray(app.previews) ? (app.previews as Preview[]) : [],
      tcp: Array.isArray(app.tcp) ? (app.tcp as TcpEndpoint[]) : [],
    };
    this.lastConnected = connected;
    this.report(connected);
    session.on('stream', (stream: MuxStream) => this.serveStream(stream));
    return new Promise<Outcome>((resolve) => {
      let settled = false;
      const settle = (o: Outcome): void => {
        if (settled) return;
        settled = true;
        if (this.current === session) this.current = null;
        resolve(o);
      };
      session.on('goaway', (info: GoAwayInfo) => {
        if (this.current !== session) return;
        if (info.error?.code === 'ERR_WARREN_TUNNEL_REPLACED') {
          settle({ kind: 'replaced', err: info.error });
          return;
        }
        if (!info.error || info.error.retryable) settle({ kind: 'moving', info });
      });
      session.once('close', (err?: WarrenError) => {
        this.sessions.delete(session);
        settle(this.stopping ? { kind: 'stopped' } : { kind: 'closed', err });
      });
    });
  }

  /** One stream from the relay: check the port, dial loopback, then pipe both ways. */
  private serveStream(stream: MuxStream): void {
    stream.on('error', () => {
      // Stream errors end the stream only; the pipeline below tears down the local socket.
    });
    if (!this.allowed.has(stream.port)) {
      this.streamsRefused++;
      stream.reset('ERR_WARREN_DIAL_DENIED', `port ${stream.port} is not exposed by this agent`);
      return;
    }
    // A stream's slot frees when its RST arrives, its local socket only once closed: counted on
    // their own, connections to the apps never exceed the stream limit, however fast the relay
    // opens and resets streams.
    const cap = this.options.session?.maxStreams ?? DEFAULT_SESSION_CONFIG.maxStreams;
    if (this.localConnections >= cap) {
      this.streamsRefused++;
      stream.reset('ERR_WARREN_STREAM_REFUSED', `this agent has ${this.localConnections} connections to its apps open, the most allowed`);
      return;
    }
    this.localConnections++;
    this.streamsOpen++;
    stream.once('close', () => this.streamsOpen--);
    dialLoopback(stream.port, this.options.localDialTimeoutMs, this.preferredHost.get(stream.port)).then(
      (socket) => {
        socket.once('close', () => this.localConnections--);
        if (stream.destroyed) {
          // Reset while the dial was completing: the app sees a reset too, as it would have
          // a moment later through joinSocket.
          socket.on('error', () => {});
          socket.resetAndDestroy();
          return;
        }
        if (socket.remoteAddress) this.preferredHost.set(stream.port, socket.remoteAddress);
        this.streamsServed++;
        stream.accept();
        joinSocket(socket, stream);
      },
      (err: NodeJS.ErrnoException) => {
        this.localConnections--;
        this.streamsRefused++;
        stream.reset('ERR_WARREN_APP_UNREACHABLE', `nothing answered on port ${stream.port} (${err.code ?? err.message})`);
      },
    );
  }
}
