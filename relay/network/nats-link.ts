/**
 * The NATS directory's connection: the first attempt, a retry every reconnectWaitMs while no
 * server ever answered (the client reconnects by itself after its first connection), the server
 * check of every new connection (version, JetStream) and its status events turned into up, down
 * and reconnected calls.
 */
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { Logger } from '../../log/logger.js';
import { connectOptions, KV_OP_TIMEOUT_MS, permanentConnectError, type ResolvedNatsOptions } from './nats-options.js';
import { checkServer } from './nats-records.js';

/** What the link tells its owner. */
export interface NatsLinkEvents {
  /** A new connection is usable (first connection, or a new one after the client gave up). */
  up(): void;
  /** The connection dropped; the client is reconnecting. */
  down(): void;
  /** The client reconnected. */
  reconnected(): void;
}

/** The connection; see the module comment. */
export class NatsLink {
  /** The current connection and its KV manager; undefined until connected and after close(). */
  nc: NatsConnection | undefined;
  kvm: Kvm | undefined;
  private closed = false;
  private warnedVersion = false;
  private retryTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly o: ResolvedNatsOptions,
    private readonly name: string,
    private readonly log: Logger,
    private readonly events: NatsLinkEvents,
  ) {}

  /**
   * The first attempt: true when connected (up() was called), false when no server answered (it
   * keeps trying in the background). Throws ERR_WARREN_DIRECTORY for what will not go away.
   */
  async open(): Promise<boolean> {
    let nc: NatsConnection;
    try {
      nc = await connect(connectOptions(this.o, this.name));
    } catch (err) {
      const permanent = permanentConnectError(err, this.o.servers);
      if (permanent) throw permanent;
      this.log.warn({ err: err instanceof Error ? err.message : String(err), servers: this.o.servers }, 'NATS directory unreachable; the relay starts disconnected and keeps trying');
      this.retryLater();
      return false;
    }
    try {
      this.adopt(nc);
    } catch (err) {
      await nc.close().catch(() => {});
      throw err;
    }
    this.events.up();
    return true;
  }

  private retryLater(): void {
    if (this.closed) return;
    this.retryTimer = setTimeout(() => void this.retry(), this.o.reconnectWaitMs);
  }

  private async retry(): Promise<void> {
    if (this.closed) return;
    let nc: NatsConnection;
    try {
      nc = await connect(connectOptions(this.o, this.name));
    } catch (err) {
      const permanent = permanentConnectError(err, this.o.servers);
      if (permanent) this.log.error({ err: permanent.message }, 'NATS directory refuses this relay; still retrying');
      return this.retryLater();
    }
    if (this.closed) return void nc.close().catch(() => {});
    try {
      this.adopt(nc);
    } catch (err) {
      this.log.error({ err: err instanceof Error ? err.message : String(err) }, 'NATS directory cannot be used; still retrying');
      await nc.close().catch(() => {});
      return this.retryLater();
    }
    this.events.up();
  }

  /** Takes a fresh connection: checks the server and follows its status. Throws ERR_WARREN_DIRECTORY for an unusable server. */
  private adopt(nc: NatsConnection): void {
    const { warn } = checkServer(nc.info, this.o.servers);
    if (warn && !this.warnedVersion) {
      this.warnedVersion = true;
      this.log.warn({ version: nc.info?.version }, warn);
    }
    this.nc = nc;
    this.kvm = new Kvm(jetstream(nc, { timeout: KV_OP_TIMEOUT_MS }));
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === 'disconnect') this.events.down();
        else if (s.type === 'reconnect') this.events.reconnected();
      }
    })().catch(() => {});
    void nc.closed().then(() => {
      if (this.nc !== nc || this.closed) return;
      // The client gave up (for example the server now refuses the credentials): start over.
      this.nc = undefined;
      this.kvm = undefined;
      this.events.down();
      this.retryLater();
    });
  }

  /** Stops retrying and closes the connection. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    const nc = this.nc;
    this.nc = undefined;
    this.kvm = undefined;
    if (nc) await nc.close().catch(() => {});
  }
}
