/**
 * The local view of a directory: the other relays with their liveness, and the tunnel records
 * they hold. Fed by the store's watches (apply*), read by holders() and relays() with no network
 * round trip, and swept by a timer, because an entry that expires in the store (bucket max_age on
 * nats-server 2.9/2.10) produces no watch event: readers time out by themselves.
 *
 * Time: liveness compares the store's timestamps (the server's clock) with "store now": the local
 * clock plus `clockOffsetMs`, measured from this relay's own heartbeats as they come back through
 * the watch (server `created` minus local arrival), so a skew between the relay's and the server's
 * clocks does not shorten or lengthen lifetimes; and never more than 1.5 heartbeat intervals past
 * this relay's own last heartbeat seen in the store. When the store stalls (a cluster electing a
 * leader, our own link to it broken), our heartbeats stop coming back as the others' do, and store
 * time stops with them: the silence of the others is our outage, not their death, and nothing
 * expires until the store moves again (relayTtlMs >= 3 heartbeats keeps this sound).
 */
import type { EventEmitter } from 'node:events';
import type { RelayRecord, TunnelGone, TunnelRecord } from './directory.js';

/** A relay of the cache. Fields are owned by DirectoryCache. */
interface RelayEntry {
  record: RelayRecord;
  /** Server time of its last heartbeat. */
  createdMs: number;
  /** Server time of the last markDown(); its records count again after a newer heartbeat. */
  downAtMs: number;
  alive: boolean;
  /** Resync generation in which the entry was last seen. */
  seen: number;
}

/** One relay's record of a tunnel, with the server time of its last put. */
interface Held {
  record: TunnelRecord;
  createdMs: number;
  seen: number;
}

/** The records of one tunnel, and the sorted list of those that count, while `version` holds. */
interface TunnelEntry {
  byRelay: Map<string, Held>;
  sorted: TunnelRecord[] | undefined;
  /** The cache's liveVersion when `sorted` was made. */
  version: number;
}

/** Options of the cache. */
export interface DirectoryCacheOptions {
  selfId: string;
  relayTtlMs: number;
  tunnelTtlMs: number;
  heartbeatMs: number;
  /** Receives 'relay-up', 'relay-down' and 'tunnel'. */
  events: EventEmitter;
  /** Local clock (epoch ms). */
  now: () => number;
}

/** The cache; see the module comment. */
export class DirectoryCache {
  private readonly relayMap = new Map<string, RelayEntry>();
  private readonly tunnels = new Map<string, TunnelEntry>();
  /** Bumped whenever a relay's liveness or epoch changes: invalidates every tunnel's `sorted`. */
  private liveVersion = 0;
  /** Tunnel records of other relays in the cache. */
  private recordCount = 0;
  /** Server clock minus local clock, from this relay's own heartbeats. */
  clockOffsetMs = 0;
  /** Server time of this relay's last heartbeat seen through the watch. */
  private ownHeartbeatMs: number | undefined;
  /** While true (store unreachable), nothing expires by age: the view is the last one known. */
  frozen = false;
  /** Resync generations of the two buckets. */
  private relayGen = 0;
  private tunnelGen = 0;

  constructor(private readonly o: DirectoryCacheOptions) {}

  private serverNow(): number {
    return this.o.now() + this.clockOffsetMs;
  }

  /** Store time for expiry; see the module comment. */
  private storeNow(): number {
    const now = this.serverNow();
    return this.ownHeartbeatMs === undefined ? now : Math.min(now, this.ownHeartbeatMs + 1.5 * this.o.heartbeatMs);
  }

  private fresh(e: RelayEntry): boolean {
    return e.createdMs > e.downAtMs && (this.frozen || this.storeNow() - e.createdMs < this.o.relayTtlMs);
  }

  /** A heartbeat put (record) or removal (undefined) of the relays bucket. Returns true for this relay's own heartbeat. */
  applyRelay(relayId: string, record: RelayRecord | undefined, createdMs: number): boolean {
    if (relayId === this.o.selfId) {
      if (record) {
        this.clockOffsetMs = createdMs - this.o.now();
        this.ownHeartbeatMs = Math.max(this.ownHeartbeatMs ?? 0, createdMs);
      }
      return true;
    }
    const e = this.relayMap.get(relayId);
    if (!record) {
      if (e) this.removeRelay(relayId, e);
      return false;
    }
    if (!e) {
      const entry: RelayEntry = { record, createdMs, downAtMs: -Infinity, alive: false, seen: this.relayGen };
      this.relayMap.set(relayId, entry);
      this.updateLiveness(entry);
      return false;
    }
    e.seen = this.relayGen;
    const restarted = e.record.epoch !== record.epoch;
    e.record = record;
    e.createdMs = Math.max(e.createdMs, createdMs);
    if (restarted) {
      // A new life of the relay: its old records stop counting, and listeners hear of it as up
      // again even when it never looked down (it restarted within the relay TTL).
      this.liveVersion++;
      const wasAlive = e.alive;
      this.updateLiveness(e);
      if (wasAlive && e.alive) this.o.events.emit('relay-up', record);
    } else {
      this.updateLiveness(e);
    }
    return false;
  }

  private updateLiveness(e: RelayEntry): void {
    const alive = this.fresh(e);
    if (alive === e.alive) return;
    e.alive = alive;
    this.liveVersion++;
    if (alive) this.o.events.emit('relay-up', e.record);
    else this.o.events.emit('relay-down', e.record.id);
  }

  private removeRelay(relayId: string, e: RelayEntry): void {
    this.relayMap.delete(relayId);
    this.liveVersion++;
    if (e.alive) this.o.events.emit('relay-down', relayId);
  }

  /** A put (record) or removal (undefined) of the tunnels bucket, for a record of another relay. */
  applyTunnel(tunnelId: string, relayId: string, record: TunnelRecord | undefined, createdMs: number): void {
    let t = this.tunnels.get(tunnelId);
    if (!record) {
      if (t?.byRelay.delete(relayId)) this.dropped(tunnelId, relayId, t);
      return;
    }
    if (!t) {
      t = { byRelay: new Map(), sorted: undefined, version: 0 };
      this.tunnels.set(tunnelId, t);
    }
    const held = t.byRelay.get(relayId);
    if (held) {
      held.createdMs = createdMs;
      held.seen = this.tunnelGen;
      if (sameRecord(held.record, record)) return;
      held.record = record;
    } else {
      t.byRelay.set(relayId, { record, createdMs, seen: this.tunnelGen });
      this.recordCount++;
    }
    t.sorted = undefined;
    this.o.events.emit('tunnel', record);
  }

  private dropped(tunnelId: string, relayId: string, t: TunnelEntry): void {
    this.recordCount--;
    t.sorted = undefined;
    if (t.byRelay.size === 0) this.tunnels.delete(tunnelId);
    const gone: TunnelGone = { tunnelId, relayId, gone: true };
    this.o.events.emit('tunnel', gone);
  }

  /** Records of other live relays holding the tunnel, newest `since` first (a copy of a cached list). */
  holders(tunnelId: string): TunnelRecord[] {
    const t = this.tunnels.get(tunnelId);
    if (!t) return [];
    if (t.sorted === undefined || t.version !== this.liveVersion) {
      const list: TunnelRecord[] = [];
      for (const [relayId, held] of t.byRelay) {
        const r = this.relayMap.get(relayId);
        if (r?.alive && r.record.epoch === held.record.relayEpoch) list.push(held.record);
      }
      if (list.length > 1) list.sort((a, b) => b.since - a.since);
      t.sorted = list;
      t.version = this.liveVersion;
    }
    return t.sorted.slice();
  }

  /** Live relays other than this one. */
  relays(): RelayRecord[] {
    const out: RelayRecord[] = [];
    for (const e of this.relayMap.values()) if (e.alive) out.push(e.record);
    return out;
  }

  /** Live relays other than this one. */
  liveRelayCount(): number {
    let n = 0;
    for (const e of this.relayMap.values()) if (e.alive) n++;
    return n;
  }

  /** Tunnel records of other relays in the cache. */
  tunnelRecordCount(): number {
    return this.recordCount;
  }

  /** Hides a relay's records until a heartbeat newer than now arrives. */
  markDown(relayId: string): void {
    const e = this.relayMap.get(relayId);
    if (!e) return;
    e.downAtMs = this.serverNow();
    this.updateLiveness(e);
  }

  /**
   * Expires relays whose last heartbeat is older than the relay TTL, tunnel records older than the
   * tunnel TTL (their keys have expired in the store), and forgets relays silent for three relay
   * TTLs. Does nothing while frozen.
   */
  sweep(): void {
    if (this.frozen) return;
    const now = this.storeNow();
    for (const [id, e] of this.relayMap) {
      if (now - e.createdMs >= 3 * this.o.relayTtlMs) this.removeRelay(id, e);
      else this.updateLiveness(e);
    }
    for (const [tunnelId, t] of this.tunnels) {
      for (const [relayId, held] of t.byRelay) {
        if (now - held.createdMs >= this.o.tunnelTtlMs) {
          t.byRelay.delete(relayId);
          this.dropped(tunnelId, relayId, t);
        }
      }
    }
  }

  /** Starts a resync of a bucket: the entries its initial load does not deliver again are removed by endResync(). */
  beginResync(bucket: 'relays' | 'tunnels'): void {
    if (bucket === 'relays') this.relayGen++;
    else this.tunnelGen++;
  }

  /** Ends a resync: removes the entries of the bucket that the new initial load did not deliver. */
  endResync(bucket: 'relays' | 'tunnels'): void {
    if (bucket === 'relays') {
      for (const [id, e] of this.relayMap) if (e.seen !== this.relayGen) this.removeRelay(id, e);
      return;
    }
    for (const [tunnelId, t] of this.tunnels) {
      for (const [relayId, held] of t.byRelay) {
        if (held.seen !== this.tunnelGen) {
          t.byRelay.delete(relayId);
          this.dropped(tunnelId, relayId, t);
        }
      }
    }
  }
}

/** True when two records of one relay for one tunnel say the same thing (a refresh). */
function sameRecord(a: TunnelRecord, b: TunnelRecord): boolean {
  if (a.sessionEpoch !== b.sessionEpoch || a.relayEpoch !== b.relayEpoch || a.since !== b.since || a.ports.length !== b.ports.length) return false;
  for (let i = 0; i < a.ports.length; i++) {
    const p = a.ports[i]!;
    const q = b.ports[i]!;
    if (p.port !== q.port || p.private !== q.private || p.tcpEndpoint !== q.tcpEndpoint) return false;
  }
  return true;
}
