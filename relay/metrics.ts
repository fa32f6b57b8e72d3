/**
 * Relay metrics (prom-client) on an injected registry, never the global one. Every label set is
 * bounded: roles, stream kinds, status classes and error codes; never a tunnel id or an address.
 * docs/metrics.md lists every metric, and a test keeps the two in sync.
 */
import { Counter, Gauge, Histogram, collectDefaultMetrics, type Registry } from 'prom-client';
import { ERRORS, type ErrorCode } from '../protocol/index.js';

/** Kinds of streams the relay opens to agents. */
export type StreamKind = 'preview' | 'client' | 'tcp';
/** Session roles. */
export type SessionRole = 'agent' | 'client';

const CODES = Object.keys(ERRORS) as ErrorCode[];

/** Keeps a label value inside a known set; anything else becomes 'other'. */
function bounded<T extends string>(value: string, allowed: readonly T[]): T | 'other' {
  return (allowed as readonly string[]).includes(value) ? (value as T) : 'other';
}

/** The relay's metrics. Construct with the registry they register on. */
export class RelayMetrics {
  readonly registry: Registry;
  readonly agentsConnected: Gauge;
  readonly clientSessions: Gauge;
  readonly streamsOpen: Gauge<'kind'>;
  readonly streamsOpened: Counter<'kind'>;
  readonly streamsRefused: Counter<'kind' | 'code'>;
  readonly bytes: Counter<'direction'>;
  readonly handshakeSeconds: Histogram<'role'>;
  readonly handshakeFailures: Counter<'role' | 'code'>;
  readonly previewRequests: Counter<'class'>;
  readonly streamOpenSeconds: Histogram<'kind'>;
  readonly keepaliveRttSeconds: Histogram;
  readonly drains: Counter;
  readonly tcpConnections: Counter<'result'>;

  /**
   * `collectBytes` is asked at each scrape for the bytes moved since the last one, so the
   * counter is exact without work on the data path.
   */
  constructor(registry: Registry, options: { defaultMetrics?: boolean; collectBytes?: () => { in: number; out: number } } = {}) {
    this.registry = registry;
    const registers = [registry];
    this.agentsConnected = new Gauge({ name: 'warren_agents_connected', help: 'Agent sessions connected (one per tunnel).', registers });
    this.clientSessions = new Gauge({ name: 'warren_client_sessions', help: 'Client sessions connected (warren connect and the client library).', registers });
    this.streamsOpen = new Gauge({ name: 'warren_streams_open', help: 'Streams open to agents, by kind.', labelNames: ['kind'], registers });
    this.streamsOpened = new Counter({ name: 'warren_streams_opened_total', help: 'Streams opened to agents, by kind.', labelNames: ['kind'], registers });
    this.streamsRefused = new Counter({
      name: 'warren_streams_refused_total',
      help: 'Streams that could not be opened or were reset before an answer, by kind and error code.',
      labelNames: ['kind', 'code'],
      registers,
    });
    const collectBytes = options.collectBytes;
    const bytes: Counter<'direction'> = new Counter({
      name: 'warren_bytes_total',
      help: 'Bytes through agent and client sessions, by direction (in: received by the relay).',
      labelNames: ['direction'],
      registers,
      collect() {
        const d = collectBytes?.();
        if (d) {
          bytes.inc({ direction: 'in' }, d.in);
          bytes.inc({ direction: 'out' }, d.out);
        }
      },
    });
    this.bytes = bytes;
    this.handshakeSeconds = new Histogram({
      name: 'warren_handshake_duration_seconds',
      help: 'Time from WebSocket upgrade to an accepted HELLO, by role.',
      labelNames: ['role'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.handshakeFailures = new Counter({ name: 'warren_handshake_failures_total', help: 'Refused or failed handshakes, by role and error code.', labelNames: ['role', 'code'], registers });
    this.previewRequests = new Counter({ name: 'warren_preview_requests_total', help: 'Preview HTTP requests answered, by status class (2xx, 3xx, 4xx, 5xx).', labelNames: ['class'], registers });
    this.streamOpenSeconds = new Histogram({
      name: 'warren_stream_open_duration_seconds',
      help: 'Time from opening a stream to the first byte back from the sandbox, by kind.',
      labelNames: ['kind'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5],
      registers,
    });
    this.keepaliveRttSeconds = new Histogram({
      name: 'warren_keepalive_rtt_seconds',
      help: 'Round-trip time of keepalive PINGs on agent sessions.',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers,
    });
    this.drains = new Counter({ name: 'warren_drains_total', help: 'Drains started (SIGTERM or the admin API).', registers });
    this.tcpConnections = new Counter({
      name: 'warren_tcp_connections_total',
      help: 'Connections to raw TCP endpoints, by result (accepted, denied by the allowlist, offline tunnel).',
      labelNames: ['result'],
      registers,
    });
    if (options.defaultMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'warren_', eventLoopMonitoringPrecision: 20 });
  }

  /** Counts a refused stream under its (bounded) code. */
  refused(kind: StreamKind, code: string): void {
    this.streamsRefused.inc({ kind, code: bounded(code, CODES) });
  }

  /** Counts a failed handshake under its (bounded) code. */
  handshakeFailed(role: SessionRole, code: string): void {
    this.handshakeFailures.inc({ role, code: bounded(code, CODES) });
  }

  /** Counts a preview answer by status class. */
  previewAnswered(status: number): void {
    this.previewRequests.inc({ class: status >= 100 && status < 600 ? `${Math.floor(status / 100)}xx` : 'other' });
  }
}
