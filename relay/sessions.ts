/**
 * The relay's sessions: every agent and client connection, WebSocket or raw TLS, from its HELLO to
 * its close. A session is authenticated in the HELLO before anything is made for it (agents.ts
 * registers the tunnel, clients.ts checks the client token); what the relay keeps afterwards is
 * one SessionInfo per session, with listeners shared by all of them.
 */
import { acceptSession, ConnectionError, errorCode, type Session, type SessionOptions, type Transport, type WarrenError } from '../protocol/index.js';
import type { TokenPolicy } from '../certs/token.js';
import type { Logger } from '../log/logger.js';
import { emitterListener } from './emitter-listener.js';
import { acceptAgent, type AgentEndpointContext, type AgentWelcome } from './agents.js';
import { acceptClient, serveClientSession } from './clients.js';
import type { RelayMetrics, SessionRole } from './metrics.js';
import type { TunnelRegistry } from './registry.js';
import type { Router } from './router.js';

/** What the session table needs of the relay. Static after construction. */
export interface SessionsContext {
  session: SessionOptions | undefined;
  log: Logger;
  metrics: RelayMetrics;
  policy: TokenPolicy;
  registry: TunnelRegistry;
  router: Router;
  agents: AgentEndpointContext;
  /** True when the tunnel can be reached now (held here, or by a peer of the network). */
  online(tunnelId: string): boolean;
  /** True once the relay drains: new sessions are refused with ERR_WARREN_DRAINING. */
  draining(): boolean;
  /** An agent session is going away (GOAWAY either way, or closed): streams kept for it must let go. */
  agentLeaving(session: Session): void;
}

/** What the relay keeps about an authenticated session. */
interface SessionInfo {
  readonly role: SessionRole;
  /** Fields of every log line about the connection (not a child logger: one lives as long as the session). */
  readonly connId: number;
  readonly remote: string | undefined;
  readonly transport: 'tls' | 'wss';
  readonly tunnelId: string | undefined;
  /** The token's id, for revocation. */
  readonly jti: string | undefined;
  /** Bytes already counted in warren_bytes_total. */
  countedIn: number;
  countedOut: number;
}

/** Every authenticated session of the relay. */
export class RelaySessions {
  private readonly ctx: SessionsContext;
  // Owned by the event loop.
  private readonly sessions = new Map<Session, SessionInfo>();
  /** Bytes of sessions that closed since the last scrape. */
  private closedBytes = { in: 0, out: 0 };
  private nextConnId = 1;

  // Listeners every session shares (the session is their `this`): closures made per session would
  // cost an idle relay a few hundred bytes per agent, for as long as the agent stays.
  private readonly onSessionRtt = (ms: number): void => this.ctx.metrics.keepaliveRttSeconds.observe(ms / 1000);
  private readonly onAgentGoAway = emitterListener((session: Session) => this.ctx.agentLeaving(session));
  private readonly onSessionClose = emitterListener((session: Session, err?: WarrenError) => this.closed(session, err));

  constructor(ctx: SessionsContext) {
    this.ctx = ctx;
  }

  /** Number of authenticated sessions. */
  get size(): number {
    return this.sessions.size;
  }

  /** A new agent or client connection (WebSocket, or raw TLS): authenticate in HELLO, then serve. */
  accept(role: SessionRole, transport: Transport, remote: string | undefined, kind: 'tls' | 'wss'): void {
    const { metrics, log } = this.ctx;
    const connId = this.nextConnId++;
    const started = performance.now();
    let agentWelcome: AgentWelcome | undefined;
    let client: ReturnType<typeof acceptClient> | undefined;
    // Nothing made here outlives the handshake: what the relay keeps is the SessionInfo, and the
    // session's listeners are shared.
    acceptSession(transport, {
      ...this.ctx.session,
      authenticate: async (hello, session) => {
        // An upgrade is refused before this point; a raw TLS session learns it here, with a code.
        if (this.ctx.draining()) throw new ConnectionError('ERR_WARREN_DRAINING', 'this relay is draining; connect to another one');
        if (role === 'agent') return (agentWelcome = await acceptAgent(this.ctx.agents, hello, session));
        client = acceptClient(this.ctx.policy, (tunnelId) => this.ctx.online(tunnelId), hello);
        return client.welcome;
      },
    }).then(
      (session) => {
        metrics.handshakeSeconds.observe({ role }, (performance.now() - started) / 1000);
        const tunnelId = agentWelcome?.tunnel ?? client?.claims.sub;
        const jti = role === 'agent' ? this.ctx.registry.get(tunnelId ?? '')?.jti : client?.claims.jti;
        const info: SessionInfo = { role, connId, remote, transport: kind, tunnelId, jti, countedIn: 0, countedOut: 0 };
        this.sessions.set(session, info);
        (role === 'agent' ? metrics.agentsConnected : metrics.clientSessions).inc();
        if (role === 'agent') {
          session.on('rtt', this.onSessionRtt);
          session.on('goaway', this.onAgentGoAway);
        } else serveClientSession(session, client!.claims, this.ctx.router, remote);
        // 'close' is emitted once: on() rather than once(), which would wrap the listener per session.
        session.on('close', this.onSessionClose);
        log.info({ ...logFields(info), event: `${role}_connected`, tunnelId, sessionId: session.id, ports: agentWelcome?.previews.map((p) => p.port) }, `${role} connected`);
      },
      (err: unknown) => {
        metrics.handshakeFailed(role, errorCode(err));
        log.info({ connId, remote, peer: role, transport: kind, event: `${role}_refused`, code: errorCode(err), reason: (err as Error).message }, `${role} refused`);
      },
    );
  }

  /** Closes every session that authenticated with the token `jti`; returns how many. */
  failByToken(jti: string, err: WarrenError): number {
    let closed = 0;
    for (const [session, info] of this.sessions) {
      if (info.jti === jti) {
        session.fail(err);
        closed++;
      }
    }
    return closed;
  }

  /** Sends GOAWAY to every session; resolves once all of them have closed. */
  goAwayAll(hint: string | undefined): Promise<void> {
    const sessions = [...this.sessions.keys()];
    for (const s of sessions) s.goAway('ERR_WARREN_DRAINING', { hint, message: 'the relay is draining' });
    return Promise.all(sessions.filter((s) => !s.closed).map((s) => new Promise<void>((resolve) => s.once('close', () => resolve())))).then(() => undefined);
  }

  /** Ends every session at once. */
  destroyAll(): void {
    for (const s of this.sessions.keys()) s.destroy();
  }

  /** Bytes moved since the previous call, for warren_bytes_total. */
  bytesSinceLastScrape(): { in: number; out: number } {
    const d = this.closedBytes;
    this.closedBytes = { in: 0, out: 0 };
    for (const [session, info] of this.sessions) {
      d.in += session.bytesIn - info.countedIn;
      d.out += session.bytesOut - info.countedOut;
      info.countedIn = session.bytesIn;
      info.countedOut = session.bytesOut;
    }
    return d;
  }

  private closed(session: Session, err: WarrenError | undefined): void {
    const info = this.sessions.get(session);
    if (!info) return;
    this.sessions.delete(session);
    (info.role === 'agent' ? this.ctx.metrics.agentsConnected : this.ctx.metrics.clientSessions).dec();
    if (info.role === 'agent') this.ctx.agentLeaving(session);
    this.closedBytes.in += session.bytesIn - info.countedIn;
    this.closedBytes.out += session.bytesOut - info.countedOut;
    this.ctx.log.info({ ...logFields(info), event: `${info.role}_disconnected`, tunnelId: info.tunnelId, code: err?.code }, `${info.role} disconnected`);
  }
}

function logFields(info: SessionInfo): { connId: number; remote: string | undefined; peer: SessionRole; transport: 'tls' | 'wss' } {
  return { connId: info.connId, remote: info.remote, peer: info.role, transport: info.transport };
}
