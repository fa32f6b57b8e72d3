/**
 * The relay daemon, put together: listeners (listeners.ts) hand connections to sessions
 * (sessions.ts: agents register tunnels, clients ask for streams) and requests to the preview
 * proxy (preview/); every edge opens its streams through the router (router.ts), which finds the
 * tunnel's route: an agent session of this relay today. Raw TCP endpoints (tcp-endpoints.ts) and
 * the admin listener (admin.ts) hang off the same parts.
 *
 * Security defaults: the relay will not start without trusted token keys; sessions are
 * authenticated in the HELLO before any tunnel or stream state is created; tokens are never
 * logged.
 *
 * Drain (SIGTERM): stop accepting, GOAWAY every session with a reconnect hint so agents move
 * at once, let open streams finish within the grace period, then close.
 */
import { Registry } from 'prom-client';
import { WarrenError, type Session } from '../protocol/index.js';
import type { TokenPolicy } from '../certs/token.js';
import type { HostPort } from '../cli/parse.js';
import { silentLogger, type Logger } from '../log/logger.js';
import { AdminServer, type AdminBackend } from './admin.js';
import type { AgentEndpointContext } from './agents.js';
import { RelayListeners } from './listeners.js';
import { RelayMetrics } from './metrics.js';
import { PreviewAccessControl, PreviewProxy, ViewerSessions, ViewerTokenSigner } from './preview/index.js';
import { exposedPort, TunnelRegistry } from './registry.js';
import type { DrainOptions, RelayOptions } from './relay-options.js';
import { LocalRoutes, Router, type RouteSource } from './router.js';
import { RelayNetwork } from './network/network.js';
import { RelaySessions } from './sessions.js';
import { TcpEndpoints } from './tcp-endpoints.js';

export type { DrainOptions, RelayOptions, RelayTimeouts } from './relay-options.js';
export { LISTEN_BACKLOG } from './listeners.js';

/** The relay. start() opens the listeners; drain() or close() ends them. */
export class Relay {
  // Static after construction.
  readonly registry = new TunnelRegistry();
  /** Metrics on the injected registry. */
  readonly metrics: RelayMetrics;
  /** Where every edge opens its streams. */
  readonly router: Router;
  /** Raw TCP endpoints, when a port range is configured. */
  readonly tcp: TcpEndpoints | undefined;
  /** Signs the viewer identity private previews' apps receive; its keys are served at JWKS_PATH. */
  readonly viewerTokens: ViewerTokenSigner;
  private readonly options: RelayOptions;
  private readonly log: Logger;
  private readonly policy: TokenPolicy;
  private readonly revoked: Set<string>;
  private readonly preview: PreviewProxy;
  private readonly sessions: RelaySessions;
  private readonly listeners: RelayListeners;
  private readonly admin: AdminServer | null;
  /** The relay network's directory and mesh, when this relay is part of one. */
  private readonly network: RelayNetwork | undefined;

  // Owned by the event loop.
  private listening = false;
  private drainPromise: Promise<void> | null = null;

  constructor(options: RelayOptions) {
    if (options.trustedKeys.size === 0) throw new WarrenError('ERR_WARREN_NO_TRUST_KEYS', 'the relay needs at least one trusted token key (--trust-key); it will not accept unauthenticated agents');
    this.options = options;
    this.log = options.logger ?? silentLogger();
    this.revoked = new Set(options.revokedJtis ?? []);
    this.policy = {
      keys: options.trustedKeys,
      audience: options.audience ?? 'warren',
      now: options.now,
      isRevoked: (jti) => this.revoked.has(jti),
    };
    this.metrics = new RelayMetrics(options.metricsRegistry ?? new Registry(), { collectBytes: () => this.sessions.bytesSinceLastScrape() });
    // Tunnels held here first; with a network, the mesh for the rest. A forwarded open is served
    // by the local router only, so a stream crosses at most one mesh link.
    const local = new LocalRoutes(this.registry);
    const sources: RouteSource[] = [local];
    if (options.network) {
      this.network = new RelayNetwork(options.network, {
        registry: this.registry,
        local: new Router([local], this.metrics),
        log: this.log,
        metrics: this.metrics.registry,
        onRouteGone: (key) => this.preview.releaseRoute(key),
      });
      sources.push(this.network.mesh);
    }
    this.router = new Router(sources, this.metrics);
    this.admin = options.admin ? new AdminServer(this.adminBackend(), options.adminToken, this.log) : null;
    this.viewerTokens = new ViewerTokenSigner({ key: options.viewerTokenKey, issuer: options.viewerTokenIssuer });
    this.preview = new PreviewProxy({
      domain: options.domain,
      logger: this.log,
      upgradeIdleTimeoutMs: options.timeouts?.idleMs,
      tlsTerminatedInFront: options.tlsTerminatedInFront,
      access: new PreviewAccessControl({
        policy: this.policy,
        isPrivate: (target) => {
          const entry = this.registry.get(target.tunnelId);
          if (entry !== undefined) return exposedPort(entry, target.port)?.private === true;
          // Held by a peer: its directory record says which ports are private.
          return this.network?.holder(target.tunnelId)?.ports.some((p) => p.port === target.port && p.private) === true;
        },
        sessions: new ViewerSessions(options.previewSessionKey),
        signer: this.viewerTokens,
        logger: this.log,
      }),
      backend: {
        // A pooled stream carries requests of many browsers: their addresses go in X-Forwarded-For.
        openStream: (target, info) => this.router.open({ tunnelId: target.tunnelId, port: target.port, kind: 'preview', clientAddress: info.shared ? undefined : info.remoteAddress }),
        route: (target) => this.router.route({ tunnelId: target.tunnelId, port: target.port, kind: 'preview' }).key,
      },
    });
    if (options.tcpPorts) {
      const wildcard = options.listen.host === '0.0.0.0' || options.listen.host === '::';
      this.tcp = new TcpEndpoints({
        range: options.tcpPorts,
        bindHost: options.listen.host,
        publicHost: options.tcpHost ?? (wildcard ? options.domain : options.listen.host),
        registry: this.registry,
        logger: this.log,
        lingerMs: options.tcpLingerMs,
        openStream: (tunnelId, port, ip) => this.router.open({ tunnelId, port, kind: 'tcp', clientAddress: ip }),
        onConnection: (result) => this.metrics.tcpConnections.inc({ result }),
      });
    }
    const agents: AgentEndpointContext = { policy: this.policy, registry: this.registry, tcp: this.tcp, previewUrl: (tunnelId, port) => this.previewUrl(tunnelId, port) };
    // Streams kept alive for previews must not hold a session that is going away.
    this.registry.onReplaced = (previous) => this.preview.releaseRoute(previous.session);
    const draining = (): boolean => this.drainPromise !== null;
    this.sessions = new RelaySessions({
      session: options.session,
      log: this.log,
      metrics: this.metrics,
      policy: this.policy,
      registry: this.registry,
      router: this.router,
      agents,
      online: (tunnelId) => this.registry.get(tunnelId) !== undefined || this.network?.holder(tunnelId) !== undefined,
      draining,
      agentLeaving: (session: Session) => this.preview.releaseRoute(session),
    });
    this.listeners = new RelayListeners({
      options,
      log: this.log,
      // Access lines are written per request and carry only fixed fields, none of them a secret (no
      // query string, no header but Host): they skip the redaction pass, which costs several times
      // the rest of the line (wildcard paths).
      accessLog: (options.accessLogger ?? this.log).child({}, { redact: [] }),
      metrics: this.metrics,
      preview: this.preview,
      sessions: this.sessions,
      viewerTokens: this.viewerTokens,
      draining,
    });
  }

  /** Opens the listeners; resolves once they accept connections. */
  async start(): Promise<void> {
    await this.network?.start();
    await this.listeners.listen();
    const admin = this.admin && this.options.admin ? await this.admin.listen(this.options.admin) : undefined;
    this.listening = true;
    const a = this.address();
    this.log.info({ event: 'listening', listen: a.listen, httpListen: a.httpListen, admin, domain: this.options.domain, tcpPorts: this.options.tcpPorts }, 'relay listening');
  }

  /** The bound addresses (ports resolved when 0 was asked for). */
  address(): { listen: HostPort; httpListen?: HostPort } {
    return this.listeners.address();
  }

  /**
   * Replaces the TLS certificate and key for new connections (a renewed certificate, on SIGHUP);
   * open connections keep theirs. Throws when the pair is unusable, leaving the old one in place.
   */
  setCertificate(cert: string, key: string): void {
    this.listeners.setCertificate(cert, key);
    this.log.info({ event: 'certificate_reloaded' }, 'TLS certificate reloaded');
  }

  /** Ready for traffic: listening and not draining. */
  get ready(): boolean {
    return this.listening && this.drainPromise === null;
  }

  /** The preview URL of a tunnel's port. */
  previewUrl(tunnelId: string, port: number): string {
    const configured = typeof this.options.publicUrl === 'function' ? this.options.publicUrl() : this.options.publicUrl;
    const base = new URL(configured ?? `https://${this.options.domain}:${this.address().listen.port}`);
    const host = `${port}-${tunnelId}.${this.options.domain}`;
    return `${base.protocol}//${host}${base.port ? `:${base.port}` : ''}/`;
  }

  /** Refuses a token id from now on and closes the sessions that used it; returns how many. */
  revoke(jti: string): number {
    this.revoked.add(jti);
    return this.sessions.failByToken(jti, new WarrenError('ERR_WARREN_TOKEN_REVOKED', 'the token was revoked'));
  }

  private adminBackend(): AdminBackend {
    return {
      registry: this.metrics.registry,
      ready: () => this.ready,
      degraded: () => this.network?.degraded(),
      tunnels: () =>
        this.registry.list().map((e) => ({
          tunnel: e.tunnelId,
          ports: e.ports.map((p) => ({ port: p.port, private: p.private, tcpEndpoint: p.tcpEndpoint })),
          connectedAt: new Date(e.connectedAtMs).toISOString(),
          remoteAddress: e.remoteAddress,
          sessionId: e.session.id,
          streams: e.session.streamCount,
          rttMs: e.session.rttMs,
          bytesIn: e.session.bytesIn,
          bytesOut: e.session.bytesOut,
        })),
      streams: (tunnelId) =>
        this.registry
          .get(tunnelId)
          ?.session.listStreams()
          .map((s) => ({ id: s.id, port: s.port, kind: s.metadata.src ?? 'unknown', bufferedSendBytes: s.bufferedSendBytes, readableBytes: s.readableLength })),
      disconnect: (tunnelId) => {
        const entry = this.registry.get(tunnelId);
        if (!entry) return false;
        void entry.session.close({ message: 'disconnected by the relay operator' });
        return true;
      },
      elsewhere: (tunnelId) => this.network?.elsewhere(tunnelId),
      revoke: (jti) => this.revoke(jti),
      drain: (hint) => void this.drain({ hint }),
    };
  }

  /**
   * Drains: stops accepting, sends every session GOAWAY (ERR_WARREN_DRAINING, with `hint`), lets
   * open streams finish within the grace period, then closes. Resolves when everything is closed.
   */
  drain(options: DrainOptions = {}): Promise<void> {
    this.drainPromise ??= this.runDrain(options.graceMs ?? this.options.gracePeriodMs ?? 30_000, options.hint ?? this.options.drainHint);
    return this.drainPromise;
  }

  private async runDrain(graceMs: number, hint: string | undefined): Promise<void> {
    this.metrics.drains.inc();
    this.log.info({ event: 'draining', graceMs, sessions: this.sessions.size }, 'draining');
    this.listeners.stopAccepting();
    this.tcp?.stopListening();
    const allClosed = this.sessions.goAwayAll(hint);
    this.preview.releaseRoute();
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<'expired'>((resolve) => {
      timer = setTimeout(() => resolve('expired'), graceMs);
    });
    const outcome = await Promise.race([allClosed.then(() => 'done' as const), expired]);
    clearTimeout(timer);
    this.log.info({ event: 'drained', outcome, remaining: this.sessions.size }, outcome === 'done' ? 'drained' : 'grace period over; closing what is left');
    await this.close();
  }

  /** Closes listeners and every session at once. */
  async close(): Promise<void> {
    this.listening = false;
    this.tcp?.close();
    this.preview.releaseRoute();
    this.sessions.destroyAll();
    await Promise.all([this.listeners.close(), this.admin?.close(), this.network?.close()]);
  }
}
