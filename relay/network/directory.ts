/**
 * The relay network's directory: which relays are alive and which relay holds which tunnel.
 *
 * Relays form one network: any relay answers for any tunnel and forwards one hop to the relay that
 * holds it. Each relay announces itself (a RelayRecord with a heartbeat) and the tunnels whose
 * agents are connected to it (TunnelRecords); every relay keeps a local cache of the others' so
 * that a lookup (`holders()`) costs no network round trip. This module has no knowledge of HTTP or
 * of the mesh: the mesh forwarding reads it.
 *
 * Two implementations: `LocalDirectory` (one relay alone: it knows only itself) and
 * `NatsDirectory` (nats-directory.ts: NATS JetStream KV shared by every relay). docs/DIRECTORY.md
 * describes the NATS design.
 */
import { EventEmitter } from 'node:events';

/** A relay of the network, as it announces itself. */
export interface RelayRecord {
  /** Unique in the network: [A-Za-z0-9_-]{1,64}. */
  id: string;
  /** Free text, [A-Za-z0-9_-]{0,64}. */
  region: string;
  /** wss://host:port: how agents and peers reach it. */
  advertise: string;
  /** host:port of its mesh listener. */
  mesh: string;
  /** Random, new at every start of the relay. */
  epoch: string;
}

/** One tunnel held by one relay. */
export interface TunnelRecord {
  /** [a-z0-9-]{1,32}. */
  tunnelId: string;
  relayId: string;
  relayEpoch: string;
  /** The agent session at that relay; new when the agent reconnects. */
  sessionEpoch: string;
  ports: { port: number; private: boolean; tcpEndpoint?: string }[];
  /** Epoch ms when the agent connected. */
  since: number;
}

/** Whether the directory currently reaches its store. */
export type DirectoryState = 'connected' | 'disconnected';

/** The 'tunnel' event's value when a relay no longer holds a tunnel. */
export interface TunnelGone {
  tunnelId: string;
  relayId: string;
  gone: true;
}

/** Counts for metrics. */
export interface DirectoryStats {
  /** Live relays other than this one. */
  relays: number;
  /** Tunnel records of other relays in the cache (live or not yet swept). */
  tunnels: number;
  /** Writes of this relay's records (puts) and removals (deletes) sent to the store. */
  puts: number;
  deletes: number;
  /** Failed store operations (writes, heartbeats, syncs). */
  errors: number;
}

/** The directory every relay of a network shares; see the module comment. */
export interface Directory {
  /**
   * Connects and loads the initial view; resolves once both watches delivered their initial
   * values, or (store unreachable) once the first connect attempt failed: the relay then starts
   * 'disconnected' and keeps retrying. Rejects only for errors that will not go away: bad or
   * missing credentials, a TLS failure, a server without JetStream, a server older than 2.9
   * (WarrenError ERR_WARREN_DIRECTORY with a message that says what to fix). Call once.
   */
  start(self: RelayRecord): Promise<void>;
  /** This relay holds the tunnel (replaces this relay's earlier record of it). Never throws; kept and re-sent after a reconnect and on refresh. */
  register(record: TunnelRecord): void;
  /** This relay no longer holds the tunnel, if sessionEpoch matches what it registered. */
  unregister(tunnelId: string, sessionEpoch: string): void;
  /**
   * Records of OTHER live relays holding the tunnel, newest `since` first, from the local cache
   * (no network round trip). A record whose relay is not alive, or whose relayEpoch differs from
   * that relay's current epoch, is not returned. O(1) on a hit of the per-tunnel cache: the
   * sorted list is kept until the tunnel's records or a relay's liveness change; each call returns
   * a copy of it (a small array), so callers may keep or change the array.
   */
  holders(tunnelId: string): TunnelRecord[];
  /** Live relays other than this one (cache). */
  relays(): RelayRecord[];
  /** Marks a relay as down at once (the mesh link to it broke): its records are not returned until a heartbeat newer than this moment arrives. */
  markDown(relayId: string): void;
  /** Whether the store is reachable; 'state' events tell changes. */
  readonly state: DirectoryState;
  /** Counts for metrics. */
  stats(): DirectoryStats;
  /**
   * Events: 'relay-up' (RelayRecord: a relay became alive, or a live relay came back with a new
   * epoch, i.e. it restarted), 'relay-down' (relayId), 'state' (DirectoryState), 'tunnel'
   * (TunnelRecord | TunnelGone: a record of another relay was added, changed or removed in the
   * cache; refreshes of an unchanged record are silent).
   */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the events carry different values; EventEmitter's own signature
  on(event: string, listener: (...args: any[]) => void): this;
  /** Removes this relay's records (clean shutdown) when connected, stops heartbeats, closes the connection. */
  close(): Promise<void>;
}

/** Pattern of a relay id. */
export const RELAY_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
/** Pattern of a region. */
export const REGION_PATTERN = /^[A-Za-z0-9_-]{0,64}$/;
/** Pattern of a tunnel id (the one of tokens and preview hosts). */
export { TUNNEL_ID_PATTERN } from '../../certs/claims.js';

/**
 * The directory of a relay that runs alone: it knows only itself, holders() is always empty and
 * the state is always 'connected'. register() and unregister() keep nothing: this relay's own
 * registry already knows its tunnels.
 */
export class LocalDirectory extends EventEmitter implements Directory {
  /** Always 'connected'. */
  readonly state: DirectoryState = 'connected';
  private puts = 0;
  private deletes = 0;

  /** Resolves at once. */
  async start(_self: RelayRecord): Promise<void> {}

  /** Counts the call; nothing else knows of it. */
  register(_record: TunnelRecord): void {
    this.puts++;
  }

  /** Counts the call. */
  unregister(_tunnelId: string, _sessionEpoch: string): void {
    this.deletes++;
  }

  /** Always empty: no other relay exists. */
  holders(_tunnelId: string): TunnelRecord[] {
    return [];
  }

  /** Always empty. */
  relays(): RelayRecord[] {
    return [];
  }

  /** Nothing to mark. */
  markDown(_relayId: string): void {}

  /** Zero relays and tunnels. */
  stats(): DirectoryStats {
    return { relays: 0, tunnels: 0, puts: this.puts, deletes: this.deletes, errors: 0 };
  }

  /** Nothing to close. */
  async close(): Promise<void> {}
}
