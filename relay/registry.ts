/**
 * The tunnels whose agents are connected to this relay: which agent session serves which tunnel
 * id. One entry per tunnel; a second agent registering the same tunnel replaces the first, which
 * gets GOAWAY (ERR_WARREN_TUNNEL_REPLACED) and keeps only the streams it already carries. Streams
 * are opened through the router (router.ts), whose LocalRoutes reads this registry.
 */
import type { Session } from '../protocol/index.js';
import { emitterListener } from './emitter-listener.js';

/** How one port of a tunnel is exposed. */
export interface ExposedPort {
  port: number;
  /** Preview needs a viewer token. */
  private: boolean;
  /** Public raw TCP endpoint (`host:port`), when one was asked for and allocated. */
  tcpEndpoint?: string;
}

/** One connected tunnel. */
export interface TunnelEntry {
  readonly tunnelId: string;
  readonly session: Session;
  /** The exposed ports, each once (an array: a Map costs ~350 bytes per idle agent). */
  readonly ports: readonly ExposedPort[];
  /** The agent token's id (jti), for revocation and the admin API. */
  readonly jti: string | undefined;
  /** When the agent connected, in epoch milliseconds (a number: a Date costs ~100 bytes per idle agent). */
  readonly connectedAtMs: number;
  readonly remoteAddress: string | undefined;
}

/** How `entry` exposes `port`, or undefined when it does not. */
export function exposedPort(entry: TunnelEntry, port: number): ExposedPort | undefined {
  for (const p of entry.ports) if (p.port === port) return p;
  return undefined;
}

/** Tunnel id → entry, with replacement and lookup for stream routing. */
export class TunnelRegistry {
  private readonly tunnels = new Map<string, TunnelEntry>();
  /** The entry of each registered session whose 'close' has not come yet. */
  private readonly bySession = new Map<Session, TunnelEntry>();
  /** Told when an entry is replaced by another agent's, after that one is registered. */
  onReplaced: ((previous: TunnelEntry) => void) | undefined;
  /** Told after an entry is registered (the relay network's directory publishes it). */
  onRegistered: ((entry: TunnelEntry) => void) | undefined;
  /** Told after an entry's session closed and the entry is gone. */
  onRemoved: ((entry: TunnelEntry) => void) | undefined;
  /** The 'close' listener of every registered session: one function, not a closure per session. */
  private readonly onSessionClose = emitterListener((session: Session) => this.sessionClosed(session));

  /**
   * Registers `entry`, replacing (and sending GOAWAY to) any session that held the tunnel. A
   * session registers one tunnel; the entry goes when its session closes.
   */
  register(entry: TunnelEntry): TunnelEntry | undefined {
    if (this.bySession.has(entry.session)) throw new Error(`session ${entry.session.id} already registered a tunnel`);
    const previous = this.tunnels.get(entry.tunnelId);
    this.tunnels.set(entry.tunnelId, entry);
    this.bySession.set(entry.session, entry);
    // 'close' is emitted once: on() rather than once(), which would wrap the listener per session.
    entry.session.on('close', this.onSessionClose);
    if (previous && previous.session !== entry.session) {
      previous.session.goAway('ERR_WARREN_TUNNEL_REPLACED', { message: `tunnel ${entry.tunnelId} was registered by another agent` });
      this.onReplaced?.(previous);
    }
    this.onRegistered?.(entry);
    return previous;
  }

  private sessionClosed(session: Session): void {
    const entry = this.bySession.get(session);
    if (!entry) return;
    this.bySession.delete(session);
    if (this.tunnels.get(entry.tunnelId) !== entry) return;
    this.tunnels.delete(entry.tunnelId);
    this.onRemoved?.(entry);
  }

  /** The entry for a tunnel, if its agent is connected. */
  get(tunnelId: string): TunnelEntry | undefined {
    return this.tunnels.get(tunnelId);
  }

  /** Every connected tunnel. */
  list(): TunnelEntry[] {
    return [...this.tunnels.values()];
  }

  /** Number of connected tunnels. */
  get size(): number {
    return this.tunnels.size;
  }
}
