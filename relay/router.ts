/**
 * The one place that answers "open a stream to port P of tunnel T". Every edge of the relay asks
 * it, after its own checks: the preview proxy (Host → target, guard, viewer access), client
 * sessions (`warren connect`: the client token's tunnel and ports) and raw TCP endpoints (the
 * endpoint's tunnel and port, the source allowlist). None of them knows where the tunnel is.
 *
 * Where a tunnel is comes from route sources, asked in order, the first that knows the tunnel
 * wins (as cloudflared's ingress rules and DERP's lookupDest do): today the agent sessions of this
 * relay (LocalRoutes, from the TunnelRegistry); a relay network adds a source whose routes are
 * mesh peers. A source throws ERR_WARREN_TUNNEL_OFFLINE when it does not hold the tunnel, which
 * passes the question to the next one.
 *
 *   edge (preview / client / tcp) ──▶ Router.open(target) ──▶ source.find(tunnel, port) ──▶ Route.open(port, metadata)
 */
import { WarrenError, errorCode, type MuxStream, type Session } from '../protocol/index.js';
import type { RelayMetrics, StreamKind } from './metrics.js';
import type { TunnelRegistry } from './registry.js';
import { exposedPort } from './registry.js';
import { emitterListener } from './emitter-listener.js';

/** What a stream is opened for, as the edge that checked it knows it. */
export interface StreamTarget {
  tunnelId: string;
  port: number;
  /** Which edge asks: counted in the metrics, and told to the agent (`src`). */
  kind: StreamKind;
  /**
   * The client the stream serves (told to the agent as `ip`); absent for streams that many
   * clients share (the preview proxy's keep-alive pools).
   */
  clientAddress?: string;
}

/** A way to a tunnel: an agent session of this relay, or (with a network) a peer relay. */
export interface Route {
  /** Stable while this route serves the tunnel: keep-alive pools are kept per key. */
  readonly key: object;
  /** Opens a stream to `port`; throws the routing error (ERR_WARREN_TUNNEL_OFFLINE when the route went away). */
  open(port: number, metadata: Record<string, string>): MuxStream;
}

/** Knows where some tunnels are. */
export interface RouteSource {
  /**
   * The route serving `port` of `tunnelId` now. Throws ERR_WARREN_TUNNEL_OFFLINE when this source
   * does not hold the tunnel (the router then asks the next source), ERR_WARREN_PORT_NOT_EXPOSED
   * when it holds it without that port.
   */
  find(tunnelId: string, port: number): Route;
}

/** The tunnels whose agents are connected to this relay. */
export class LocalRoutes implements RouteSource {
  constructor(private readonly registry: TunnelRegistry) {}

  find(tunnelId: string, port: number): Route {
    const entry = this.registry.get(tunnelId);
    if (!entry || entry.session.closed) throw new WarrenError('ERR_WARREN_TUNNEL_OFFLINE', `tunnel ${tunnelId} is not connected`);
    if (!exposedPort(entry, port)) throw new WarrenError('ERR_WARREN_PORT_NOT_EXPOSED', `tunnel ${tunnelId} does not expose port ${port}`);
    if (entry.session.goAwayReceived || entry.session.goingAway) throw new WarrenError('ERR_WARREN_TUNNEL_OFFLINE', `tunnel ${tunnelId} is reconnecting`);
    return sessionRoute(entry.session, tunnelId);
  }
}

/** The route through one agent session: its key is the session itself. */
function sessionRoute(session: Session, tunnelId: string): Route {
  return {
    key: session,
    open(port, metadata) {
      try {
        return session.open(port, metadata);
      } catch (err) {
        // The session is going away (replaced or draining): for the caller the tunnel is offline for now.
        if (err instanceof WarrenError && (err.code === 'ERR_WARREN_GOING_AWAY' || err.code === 'ERR_WARREN_SESSION_CLOSED')) {
          throw new WarrenError('ERR_WARREN_TUNNEL_OFFLINE', `tunnel ${tunnelId} is reconnecting`, { cause: err });
        }
        throw err;
      }
    },
  };
}

/** Listeners the router puts on each stream it opens. */
interface StreamListeners {
  error: (this: MuxStream, err: WarrenError) => void;
  close: () => void;
}

/** Finds routes and opens streams, counting both in the metrics by kind. */
export class Router {
  private readonly sources: readonly RouteSource[];
  private readonly metrics: RelayMetrics;
  /** Metrics listeners per kind, shared by every stream of that kind (the stream is their `this`). */
  private readonly listeners: Record<StreamKind, StreamListeners>;

  constructor(sources: readonly RouteSource[], metrics: RelayMetrics) {
    this.sources = sources;
    this.metrics = metrics;
    this.listeners = { preview: this.listenersFor('preview'), client: this.listenersFor('client'), tcp: this.listenersFor('tcp') };
  }

  /** The route serving the target now (refusals counted by kind); throws the routing error. */
  route(target: StreamTarget): Route {
    try {
      return this.find(target.tunnelId, target.port);
    } catch (err) {
      this.metrics.refused(target.kind, errorCode(err));
      throw err;
    }
  }

  /** Opens a stream for the target, counted in the metrics by kind; throws the routing error. */
  open(target: StreamTarget): MuxStream {
    const metadata: Record<string, string> = target.clientAddress === undefined ? { src: target.kind } : { src: target.kind, ip: target.clientAddress };
    let stream: MuxStream;
    try {
      stream = this.find(target.tunnelId, target.port).open(target.port, metadata);
    } catch (err) {
      this.metrics.refused(target.kind, errorCode(err));
      throw err;
    }
    const kind = target.kind;
    const started = performance.now();
    this.metrics.streamsOpened.inc({ kind });
    this.metrics.streamsOpen.inc({ kind });
    // Gone once the agent answers: an idle open stream keeps only the shared listeners below.
    stream.once('firstByte', () => this.metrics.streamOpenSeconds.observe({ kind }, (performance.now() - started) / 1000));
    const listeners = this.listeners[kind];
    // 'error' and 'close' come once each: on(), as once() would wrap each listener per stream.
    stream.on('error', listeners.error);
    stream.on('close', listeners.close);
    return stream;
  }

  /** The first source's route; a source that does not hold the tunnel passes to the next. */
  private find(tunnelId: string, port: number): Route {
    let offline: WarrenError | undefined;
    for (const source of this.sources) {
      try {
        return source.find(tunnelId, port);
      } catch (err) {
        if (!(err instanceof WarrenError) || err.code !== 'ERR_WARREN_TUNNEL_OFFLINE') throw err;
        offline ??= err;
      }
    }
    throw offline ?? new WarrenError('ERR_WARREN_TUNNEL_OFFLINE', `tunnel ${tunnelId} is not connected`);
  }

  private listenersFor(kind: StreamKind): StreamListeners {
    return {
      // Refused when the agent failed the stream before its first byte ('firstByte' comes with it).
      error: emitterListener((stream: MuxStream, err: WarrenError) => {
        if (stream.received === 0) this.metrics.refused(kind, errorCode(err));
      }),
      close: () => this.metrics.streamsOpen.dec({ kind }),
    };
  }
}
