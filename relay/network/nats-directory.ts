/**
 * The relay network's directory on NATS JetStream KV (docs/DIRECTORY.md).
 *
 * Two buckets: `warren-relays` (key relayId, value RelayRecord + `at`: the heartbeat, max_age the
 * relay TTL) and `warren-tunnels` (key `<tunnelId>.<relayId>`, value TunnelRecord, max_age the
 * tunnel TTL). Every relay watches both into a DirectoryCache, which answers holders() and
 * relays(). Each relay puts its heartbeat every heartbeatMs and its own records again every
 * refreshMs, so that live records outlive max_age while tombstones and the records of dead relays
 * expire by themselves. This works on nats-server 2.9, which ignores per-key TTLs.
 *
 * Connection life: start() connects (or, if no server answers, resolves 'disconnected' and keeps
 * trying); every (re)connect runs sync(): create the buckets if missing, put the heartbeat,
 * re-create both watches and reload the cache from their initial values (entries they no longer
 * deliver are removed: the server may have lost its store), delete leftovers of this relay's
 * earlier life, and put every own record again. While disconnected the cache is frozen (nothing
 * expires by age: the silence is our own outage); markDown() still works. A watchdog re-syncs when
 * this relay's own heartbeat stops coming back through a watch although its puts succeed.
 */
import { EventEmitter } from 'node:events';
import type { Kvm, KV, KvWatchEntry } from '@nats-io/kv';
import { InvalidArgumentError, WarrenError } from '../../protocol/errors.js';
import { silentLogger, type Logger } from '../../log/logger.js';
import { DirectoryCache } from './directory-cache.js';
import { RELAY_ID_PATTERN, REGION_PATTERN, TUNNEL_ID_PATTERN } from './directory.js';
import type { Directory, DirectoryState, DirectoryStats, RelayRecord, TunnelRecord } from './directory.js';
import { KvWriteQueue } from './kv-writes.js';
import { watchBucket, type BucketWatch } from './kv-watch.js';
import { KV_OP_TIMEOUT_MS, MAX_WRITES_IN_FLIGHT, resolveNatsOptions } from './nats-options.js';
import { NatsLink } from './nats-link.js';
import type { NatsDirectoryOptions, ResolvedNatsOptions } from './nats-options.js';
import { parseRelayRecord, parseTunnelRecord } from './nats-records.js';

export type { NatsDirectoryOptions } from './nats-options.js';

/** Bucket of relay heartbeats. */
export const RELAYS_BUCKET = 'warren-relays';
/** Bucket of tunnel records. */
export const TUNNELS_BUCKET = 'warren-tunnels';
/** Key prefix of each relay's watchdog probe in the tunnels bucket (`_hb.<relayId>`; tunnel ids have no `_`). */
export const PROBE_PREFIX = '_hb';
/** Longest wait for a watch's initial values. */
const INITIAL_LOAD_TIMEOUT_MS = 30_000;
/** Longest wait between two sync attempts (each can take KV_OP_TIMEOUT_MS while a cluster elects leaders). */
const SYNC_RETRY_MAX_MS = 1_000;
/** Longest wait for this relay's deletes at close. */
const CLOSE_TIMEOUT_MS = 3_000;

/** The NATS directory; see the module comment. */
export class NatsDirectory extends EventEmitter implements Directory {
  private readonly o: ResolvedNatsOptions;
  private readonly log: Logger;
  // Set by start().
  private self: RelayRecord | undefined;
  private cache: DirectoryCache | undefined;
  // Owned by the connection life (link events, sync).
  private link: NatsLink | undefined;
  private relaysKv: KV | undefined;
  private tunnelsKv: KV | undefined;
  private watches: BucketWatch[] = [];
  /** Bumped at every disconnect and sync start: a sync of an older generation gives up. */
  private generation = 0;
  private syncing = false;
  /** The connection is up (from adopt or 'reconnect' until 'disconnect'). */
  private linkUp = false;
  private currentState: DirectoryState = 'disconnected';
  private closed = false;
  /** True while start() makes its first attempt (its own sync follows). */
  private starting = false;
  // Own records, owned by register()/unregister(): tunnelId -> record and when it was last queued.
  private readonly own = new Map<string, { record: TunnelRecord; json: string; queuedAtMs: number }>();
  private readonly writes: KvWriteQueue;
  private heartbeatInFlight = false;
  /** Server-acknowledged heartbeat put not yet seen back through each watch (watchdog), local ms. */
  private echoDue: { relays?: number; tunnels?: number } = {};
  private timers: NodeJS.Timeout[] = [];
  private syncTimer: NodeJS.Timeout | undefined;
  private counts = { puts: 0, deletes: 0, errors: 0 };

  /** Validates the options (InvalidArgumentError naming the option); connects in start(). */
  constructor(options: NatsDirectoryOptions) {
    super();
    this.o = resolveNatsOptions(options);
    this.log = (this.o.logger ?? silentLogger()).child({ component: 'directory' });
    this.writes = new KvWriteQueue(MAX_WRITES_IN_FLIGHT, {
      onDone: (w) => (w.kind === 'put' ? this.counts.puts++ : this.counts.deletes++),
      onError: (key, w, err) => this.failed(`${w.kind} ${key}`, err),
    });
  }

  /** Whether NATS is reachable and the cache in sync. */
  get state(): DirectoryState {
    return this.currentState;
  }

  /** See Directory.start. */
  async start(self: RelayRecord): Promise<void> {
    if (this.self) throw new InvalidArgumentError('start: the directory was already started');
    if (!RELAY_ID_PATTERN.test(self.id)) throw new InvalidArgumentError(`self.id: "${self.id}" is not [A-Za-z0-9_-]{1,64}`);
    if (!REGION_PATTERN.test(self.region)) throw new InvalidArgumentError(`self.region: "${self.region}" is not [A-Za-z0-9_-]{0,64}`);
    this.self = { ...self };
    const o = this.o;
    this.cache = new DirectoryCache({ selfId: self.id, relayTtlMs: o.relayTtlMs, tunnelTtlMs: o.tunnelTtlMs, heartbeatMs: o.heartbeatMs, events: this, now: o.now });
    this.cache.frozen = true;
    const sweepMs = Math.max(50, Math.min(1_000, Math.floor(o.relayTtlMs / 4)));
    this.timers.push(
      setInterval(() => this.heartbeat(), o.heartbeatMs),
      setInterval(() => this.tick(), sweepMs),
    );
    for (const t of this.timers) t.unref();
    this.link = new NatsLink(o, `warren-relay-${self.id}`, this.log, {
      up: () => {
        this.linkUp = true;
        if (!this.starting) this.syncLoop();
      },
      down: () => this.onDisconnect(),
      reconnected: () => {
        this.linkUp = true;
        this.syncLoop();
      },
    });
    let connected: boolean;
    this.starting = true;
    try {
      connected = await this.link.open();
    } catch (err) {
      await this.close();
      throw err;
    } finally {
      this.starting = false;
    }
    if (!connected) {
      this.counts.errors++;
      return;
    }
    try {
      await this.sync(this.generation);
    } catch (err) {
      if (err instanceof WarrenError && err.code === 'ERR_WARREN_DIRECTORY') {
        await this.close();
        throw err;
      }
      this.failed('first sync', err);
      this.syncLoop();
    }
  }

  private onDisconnect(): void {
    this.linkUp = false;
    this.generation++;
    this.writes.setWriter(undefined);
    this.stopWatches();
    this.cache!.frozen = true;
    this.setState('disconnected');
  }

  /** Runs sync() until it succeeds, the connection drops (a reconnect starts another) or close(). */
  private syncLoop(): void {
    const gen = ++this.generation;
    let delay = 200;
    const run = async (): Promise<void> => {
      if (this.closed || gen !== this.generation) return;
      try {
        await this.sync(gen);
      } catch (err) {
        if (this.closed || gen !== this.generation) return;
        this.failed('sync', err);
        delay = Math.min(delay * 2, SYNC_RETRY_MAX_MS);
        clearTimeout(this.syncTimer);
        this.syncTimer = setTimeout(() => void run(), delay);
      }
    };
    void run();
  }

  /** One (re)sync; see the module comment. Throws when it fails or a newer generation started. */
  private async sync(gen: number): Promise<void> {
    const kvm = this.link?.kvm;
    const self = this.self!;
    const cache = this.cache!;
    if (!kvm) throw new Error('not connected');
    const alive = (): void => {
      if (this.closed || gen !== this.generation) throw new Error('sync superseded');
    };
    this.syncing = true;
    let step = 'open buckets';
    try {
      const [relaysKv, tunnelsKv] = await Promise.all([
        this.bucket(kvm, RELAYS_BUCKET, this.o.relayTtlMs),
        this.bucket(kvm, TUNNELS_BUCKET, this.o.tunnelTtlMs),
      ]);
      alive();
      this.relaysKv = relaysKv;
      this.tunnelsKv = tunnelsKv;
      this.heartbeatInFlight = false;
      step = 'heartbeat';
      await this.putHeartbeat();
      alive();
      this.stopWatches();
      const leftovers: string[] = [];
      cache.beginResync('relays');
      cache.beginResync('tunnels');
      step = 'watch';
      const rw = await watchBucket(relaysKv, RELAYS_BUCKET, (e) => this.onRelayEntry(e), INITIAL_LOAD_TIMEOUT_MS);
      this.watches.push(rw);
      const tw = await watchBucket(tunnelsKv, TUNNELS_BUCKET, (e, initial) => this.onTunnelEntry(e, initial, leftovers), INITIAL_LOAD_TIMEOUT_MS);
      this.watches.push(tw);
      alive();
      step = 'initial values';
      await Promise.all([rw.initial, tw.initial]);
      alive();
      cache.endResync('relays');
      cache.endResync('tunnels');
      for (const key of leftovers) this.writes.set(key, { kind: 'delete' });
      const now = this.o.now();
      for (const [tunnelId, o] of this.own) {
        o.queuedAtMs = now;
        this.writes.set(tunnelKey(tunnelId, self.id), { kind: 'put', value: o.json });
      }
      this.writes.setWriter(this.writer(tunnelsKv));
      this.writes.retryFailed();
      cache.frozen = false;
      this.setState('connected');
    } catch (err) {
      if (err instanceof WarrenError) throw err;
      throw new Error(`${step}: ${errText(err)}`, { cause: err });
    } finally {
      this.syncing = false;
    }
  }

  /** Opens a bucket, creating it when missing; warns when an existing one has another max_age. */
  private async bucket(kvm: Kvm, name: string, ttlMs: number): Promise<KV> {
    const kv = await kvm.create(name, { history: 1, ttl: ttlMs, replicas: this.o.replicas, timeout: KV_OP_TIMEOUT_MS });
    const status = await kv.status();
    if (status.ttl !== ttlMs) this.log.warn({ bucket: name, maxAgeMs: status.ttl, wantedMs: ttlMs }, 'directory bucket exists with another max_age; relays of this network should use the same TTLs');
    return kv;
  }

  private writer(kv: KV): { put(k: string, v: string): Promise<unknown>; delete(k: string): Promise<unknown> } {
    return { put: (k, v) => kv.put(k, v), delete: (k) => kv.delete(k) };
  }

  private onRelayEntry(e: KvWatchEntry): void {
    const cache = this.cache!;
    const record = e.operation === 'PUT' ? parseRelayRecord(e.string(), e.key) : undefined;
    if (e.operation === 'PUT' && !record) return void this.failed(`malformed relay record ${e.key}`, undefined);
    if (cache.applyRelay(e.key, record, e.created.getTime()) && record) delete this.echoDue.relays;
  }

  private onTunnelEntry(e: KvWatchEntry, initial: boolean, leftovers: string[]): void {
    const dot = e.key.indexOf('.');
    if (dot < 0) return;
    const tunnelId = e.key.slice(0, dot);
    const relayId = e.key.slice(dot + 1);
    const self = this.self!;
    if (tunnelId === PROBE_PREFIX) {
      if (relayId === self.id && e.operation === 'PUT') delete this.echoDue.tunnels;
      return;
    }
    if (relayId === self.id) {
      // Records naming this relay that it does not hold (an earlier life's, or a lost delete).
      if (initial && e.operation === 'PUT') {
        const mine = this.own.get(tunnelId);
        const rec = parseTunnelRecord(e.string(), tunnelId, relayId);
        if (!mine || !rec || rec.relayEpoch !== self.epoch || rec.sessionEpoch !== mine.record.sessionEpoch) leftovers.push(e.key);
      }
      return;
    }
    if (e.operation !== 'PUT') return this.cache!.applyTunnel(tunnelId, relayId, undefined, e.created.getTime());
    const rec = parseTunnelRecord(e.string(), tunnelId, relayId);
    if (!rec) return void this.failed(`malformed tunnel record ${e.key}`, undefined);
    this.cache!.applyTunnel(tunnelId, relayId, rec, e.created.getTime());
  }

  /**
   * The heartbeat timer: puts whenever the link is up, also while a sync is still waiting for its
   * watches (this relay's records in the store remain valid; a relay that cannot reload its view
   * is still alive for the others).
   */
  private heartbeat(): void {
    if (!this.linkUp) return;
    this.putHeartbeat().catch((err: unknown) => this.failed('heartbeat', err));
  }

  /** Puts the heartbeat and the watchdog probe; one at a time. */
  private async putHeartbeat(): Promise<void> {
    const self = this.self!;
    if (this.heartbeatInFlight || !this.relaysKv || !this.tunnelsKv) return;
    this.heartbeatInFlight = true;
    try {
      const at = this.o.now();
      await Promise.all([this.relaysKv.put(self.id, JSON.stringify({ ...self, at })), this.tunnelsKv.put(`${PROBE_PREFIX}.${self.id}`, String(at))]);
      const now = this.o.now();
      this.echoDue.relays ??= now;
      this.echoDue.tunnels ??= now;
    } finally {
      this.heartbeatInFlight = false;
    }
  }

  /** Sweep, refresh of own records, retry of failed writes, watchdog. */
  private tick(): void {
    const cache = this.cache!;
    cache.sweep();
    if (this.currentState !== 'connected' || this.syncing) return;
    const now = this.o.now();
    const self = this.self!;
    for (const [tunnelId, o] of this.own) {
      if (now - o.queuedAtMs < this.o.refreshMs) continue;
      o.queuedAtMs = now;
      this.writes.set(tunnelKey(tunnelId, self.id), { kind: 'put', value: o.json });
    }
    this.writes.retryFailed();
    const due = Math.min(this.echoDue.relays ?? Infinity, this.echoDue.tunnels ?? Infinity);
    if (now - due > 2 * this.o.heartbeatMs + KV_OP_TIMEOUT_MS) {
      this.log.warn('own heartbeat did not come back through the watches; re-syncing the directory');
      this.echoDue = {};
      this.syncLoop();
    }
  }

  /** See Directory.register. relayId and relayEpoch are set to this relay's. */
  register(record: TunnelRecord): void {
    if (!TUNNEL_ID_PATTERN.test(record.tunnelId)) return void this.failed(`register: tunnel id "${record.tunnelId}" is not [a-z0-9-]{1,32}`, undefined);
    const self = this.self;
    const rec: TunnelRecord = { ...record, relayId: self?.id ?? record.relayId, relayEpoch: self?.epoch ?? record.relayEpoch, ports: record.ports.map((p) => ({ ...p })) };
    const json = JSON.stringify(rec);
    this.own.set(rec.tunnelId, { record: rec, json, queuedAtMs: this.o.now() });
    if (self) this.writes.set(tunnelKey(rec.tunnelId, self.id), { kind: 'put', value: json });
  }

  /** See Directory.unregister. */
  unregister(tunnelId: string, sessionEpoch: string): void {
    const mine = this.own.get(tunnelId);
    if (!mine || mine.record.sessionEpoch !== sessionEpoch) return;
    this.own.delete(tunnelId);
    if (this.self) this.writes.set(tunnelKey(tunnelId, this.self.id), { kind: 'delete' });
  }

  /** See Directory.holders. */
  holders(tunnelId: string): TunnelRecord[] {
    return this.cache ? this.cache.holders(tunnelId) : [];
  }

  /** See Directory.relays. */
  relays(): RelayRecord[] {
    return this.cache ? this.cache.relays() : [];
  }

  /** See Directory.markDown. */
  markDown(relayId: string): void {
    this.cache?.markDown(relayId);
  }

  /** See Directory.stats. */
  stats(): DirectoryStats {
    return { relays: this.cache?.liveRelayCount() ?? 0, tunnels: this.cache?.tunnelRecordCount() ?? 0, ...this.counts };
  }

  /** Resolves once every queued write of own records was sent and answered, or after `timeoutMs` (tests, tools). */
  async flushed(timeoutMs: number): Promise<void> {
    await this.writes.idle(timeoutMs);
  }

  /** Own records (this relay's registrations). */
  ownCount(): number {
    return this.own.size;
  }

  /** See Directory.close. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    clearTimeout(this.syncTimer);
    this.timers = [];
    const self = this.self;
    if (this.link?.nc && self && this.currentState === 'connected' && this.relaysKv && this.tunnelsKv) {
      this.writes.filter(() => false);
      for (const tunnelId of this.own.keys()) this.writes.set(tunnelKey(tunnelId, self.id), { kind: 'delete' });
      await this.writes.idle(CLOSE_TIMEOUT_MS);
      await Promise.all([this.relaysKv.delete(self.id), this.tunnelsKv.delete(`${PROBE_PREFIX}.${self.id}`)]).catch((err: unknown) => this.failed('close', err));
    }
    this.writes.setWriter(undefined);
    this.stopWatches();
    await this.link?.close();
    this.setState('disconnected');
  }

  private stopWatches(): void {
    for (const w of this.watches) w.stop();
    this.watches = [];
  }

  private setState(state: DirectoryState): void {
    if (state === this.currentState) return;
    this.currentState = state;
    this.log.info({ state }, `directory ${state}`);
    this.emit('state', state);
  }

  private failed(what: string, err: unknown): void {
    this.counts.errors++;
    this.log.debug({ err: err === undefined ? undefined : errText(err) }, `directory: ${what} failed`);
  }
}

function tunnelKey(tunnelId: string, relayId: string): string {
  return `${tunnelId}.${relayId}`;
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
