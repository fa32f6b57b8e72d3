/**
 * The relay network's directory: which relays are alive and which relay holds which tunnel. The
 * relay trusts it for routing only, never for authorization: a stream is forwarded only to a peer
 * that proves a mesh certificate, and the holder checks every forwarded open itself (mesh.ts).
 *
 * Two implementations: LocalDirectory (one relay, `warren dev`: it knows only this relay) and
 * NatsDirectory (nats-directory.ts: JetStream KV buckets, for a network of relays).
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
  tunnelId: string;
  relayId: string;
  relayEpoch: string;
  /** The agent session at that relay: new when the agent reconnects. */
  sessionEpoch: string;
  ports: { port: number; private: boolean; tcpEndpoint?: string }[];
  /** Epoch ms when the agent connected. */
  since: number;
}

/** A tunnel record that arrived or changed, or the end of one. */
export type TunnelChange = TunnelRecord | { tunnelId: string; relayId: string; gone: true };

/** Whether the directory's backing service is reachable now. */
export type DirectoryState = 'connected' | 'disconnected';

/** Presence of relays and tunnels; see the module comment. */
export interface Directory {
  /** Connects and loads the initial view (see the implementations for what failures reject). */
  start(self: RelayRecord): Promise<void>;
  /** This relay holds the tunnel (replaces this relay's earlier record of it). Never throws. */
  register(record: TunnelRecord): void;
  /** This relay no longer holds the tunnel, if sessionEpoch matches what it registered. */
  unregister(tunnelId: string, sessionEpoch: string): void;
  /** Records of other live relays holding the tunnel, newest first; from the local cache. */
  holders(tunnelId: string): TunnelRecord[];
  /** Live relays other than this one (cache). */
  relays(): RelayRecord[];
  /** Marks a relay as down at once (the mesh link to it broke) until a newer heartbeat arrives. */
  markDown(relayId: string): void;
  readonly state: DirectoryState;
  /** Counts for metrics. */
  stats(): { relays: number; tunnels: number; puts: number; deletes: number; errors: number };
  /** A relay became alive (or came back with a new epoch). */
  on(event: 'relay-up', listener: (record: RelayRecord) => void): this;
  /** A relay's heartbeat stopped, or it left. */
  on(event: 'relay-down', listener: (relayId: string) => void): this;
  /** The backing service became reachable or unreachable. */
  on(event: 'state', listener: (state: DirectoryState) => void): this;
  /** A tunnel record of another relay arrived, changed or went. */
  on(event: 'tunnel', listener: (change: TunnelChange) => void): this;
  /** Removes this relay's records, stops heartbeats, closes the connection. */
  close(): Promise<void>;
}

/** The directory of a relay that is alone: no peers, nothing to look up elsewhere. */
export class LocalDirectory extends EventEmitter implements Directory {
  readonly state: DirectoryState = 'connected';
  private readonly own = new Map<string, TunnelRecord>();

  start(): Promise<void> {
    return Promise.resolve();
  }

  register(record: TunnelRecord): void {
    this.own.set(record.tunnelId, record);
  }

  unregister(tunnelId: string, sessionEpoch: string): void {
    if (this.own.get(tunnelId)?.sessionEpoch === sessionEpoch) this.own.delete(tunnelId);
  }

  holders(): TunnelRecord[] {
    return [];
  }

  relays(): RelayRecord[] {
    return [];
  }

  markDown(): void {}

  stats(): { relays: number; tunnels: number; puts: number; deletes: number; errors: number } {
    return { relays: 0, tunnels: this.own.size, puts: 0, deletes: 0, errors: 0 };
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
