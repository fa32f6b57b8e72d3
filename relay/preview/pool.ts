/**
 * Keep-alive streams to apps for the preview proxy: one http.Agent per route (an agent session and
 * a port), whose "sockets" are backend streams. A stream that carried a complete exchange goes
 * back to its route's pool and carries the next request for that route, so a busy preview does
 * not pay for a new stream, a new local connection in the sandbox and a new connection to the
 * app on every request.
 *
 * What is shared is only the connection to the app: every request is still parsed, checked and
 * re-serialized by the relay on its own (guard.ts, headers.ts), so no byte from one
 * browser connection is ever forwarded as part of another's request. A stream is reused only after
 * a complete response, framed by its own head (proxy.ts), to a completely sent request; anything
 * else destroys it. The other way, no byte of the app's is taken as the answer to a later request
 * unless it came after that request: a stream on which the app sends anything while it is idle (a
 * second response, a body after a HEAD answer) is destroyed, never handed to the next request.
 *
 * Idle streams are closed after POOL_IDLE_MS, when the app closes its side, and at once when their
 * route goes away (release(): the agent's session is draining, replaced or closed).
 */
import { Agent, type ClientRequest, type ClientRequestArgs } from 'node:http';
import type { Duplex } from 'node:stream';

/**
 * Idle streams kept per route (agent session and port). Below the number of requests a route has
 * in flight at once, streams beyond it are closed as their responses end and opened again for the
 * next requests: with 16 and 32 concurrent connections (wrk -c32), the agent's CPU per request
 * doubled (a local connection to the app per request) and the relay's rose by a quarter.
 */
export const POOL_MAX_FREE_STREAMS = 128;
/** An idle stream older than this is closed. */
export const POOL_IDLE_MS = 30_000;
/** How often idle streams are looked for. */
const POOL_SWEEP_MS = 5_000;

/** When a pooled stream last became idle. */
const idleSince = new WeakMap<Duplex, number>();

/**
 * Node's Agent treats its sockets as net.Sockets on reuse (keep-alive probes, ref/unref and an
 * idle timeout): a stream needs these as no-ops. Idle time is kept by the pool's sweep instead.
 */
function asPoolable(stream: Duplex): Duplex {
  const s = stream as Duplex & { setKeepAlive?: unknown; ref?: unknown; unref?: unknown; setTimeout?: unknown; timeout?: number };
  s.setKeepAlive ??= () => s;
  s.ref ??= () => s;
  s.unref ??= () => s;
  s.setTimeout ??= () => s;
  s.timeout = 0;
  return s;
}

/** A byte from the app on an idle stream answers no request: the stream is never used again. */
function destroyOnIdleData(this: Duplex): void {
  this.destroy();
}

/** An http.Agent whose connections are streams opened by `open`. */
class StreamAgent extends Agent {
  /** Set by release(): streams that finish an exchange are closed instead of kept. */
  released = false;

  constructor(private readonly open: () => Duplex) {
    super({ keepAlive: true, maxFreeSockets: POOL_MAX_FREE_STREAMS, scheduling: 'lifo' });
    this.on('free', (socket: Duplex) => idleSince.set(socket, performance.now()));
  }

  override createConnection(_options: ClientRequestArgs, callback?: (err: Error | null, stream: Duplex) => void): Duplex | undefined {
    let stream: Duplex;
    try {
      stream = asPoolable(this.open());
    } catch (err) {
      // A routing error (session full, going away): the request fails with it.
      callback?.(err as Error, undefined as unknown as Duplex);
      return undefined;
    }
    stream.on('error', () => undefined); // reported through the request that uses the stream
    // The app closed its side (idle keep-alive timeout, Connection: close): never reuse the stream.
    stream.once('end', () => process.nextTick(() => stream.destroy()));
    return stream;
  }

  override keepSocketAlive(socket: Duplex): boolean {
    // Bytes already waiting: the app answered more than it was asked.
    if (this.released || socket.destroyed || socket.readableLength > 0 || !(super.keepSocketAlive(socket) as unknown as boolean)) return false;
    socket.on('data', destroyOnIdleData);
    return true;
  }

  override reuseSocket(socket: Duplex, request: ClientRequest): void {
    socket.removeListener('data', destroyOnIdleData);
    // Bytes that arrived while the stream was idle would be read as this request's answer: the
    // request fails on the destroyed stream instead (and a GET is sent again on a new one).
    if (socket.readableLength > 0) socket.destroy();
    super.reuseSocket(socket, request);
  }

  /** Closes the idle streams; with `before`, only those idle since before that time. */
  closeIdle(before = Infinity): void {
    for (const list of Object.values(this.freeSockets)) {
      for (const s of [...(list ?? [])]) if ((idleSince.get(s) ?? 0) < before) s.destroy();
    }
  }

  /** True when the agent holds no stream, busy or idle, and no request waits for one. */
  get empty(): boolean {
    const count = (o: NodeJS.ReadOnlyDict<unknown[]>): number => Object.values(o).reduce((n, l) => n + (l?.length ?? 0), 0);
    return count(this.sockets) === 0 && count(this.freeSockets) === 0 && count(this.requests) === 0;
  }
}

/** The pools of one preview proxy, by route. */
export class StreamPools {
  // Owned by the event loop: route key (an agent session) -> port -> agent.
  private readonly pools = new Map<object, Map<number, StreamAgent>>();
  private sweeper: NodeJS.Timeout | null = null;

  /** The agent for `port` on the route `key`; `open` makes a new stream when none is idle. */
  agentFor(key: object, port: number, open: () => Duplex): Agent {
    let ports = this.pools.get(key);
    if (!ports) {
      ports = new Map();
      this.pools.set(key, ports);
    }
    let agent = ports.get(port);
    if (!agent) {
      agent = new StreamAgent(open);
      ports.set(port, agent);
      this.startSweeping();
    }
    return agent;
  }

  /** Drops every idle stream of the route `port` on `key` (after a reused stream failed: the others are likely stale too). */
  dropIdle(key: object, port: number): void {
    this.pools.get(key)?.get(port)?.closeIdle();
  }

  /**
   * Forgets the route `key` (or every route): idle streams close now, busy ones when their
   * exchange ends, and the next request opens a new stream on whatever route serves it then.
   */
  release(key?: object): void {
    for (const [k, ports] of this.pools) {
      if (key !== undefined && k !== key) continue;
      for (const agent of ports.values()) {
        agent.released = true;
        agent.closeIdle();
      }
      this.pools.delete(k);
    }
  }

  private startSweeping(): void {
    if (this.sweeper) return;
    this.sweeper = setInterval(() => this.sweep(), POOL_SWEEP_MS);
    this.sweeper.unref();
  }

  private sweep(): void {
    const before = performance.now() - POOL_IDLE_MS;
    for (const [key, ports] of this.pools) {
      for (const [port, agent] of ports) {
        agent.closeIdle(before);
        if (agent.empty) ports.delete(port);
      }
      if (ports.size === 0) this.pools.delete(key);
    }
    if (this.pools.size === 0 && this.sweeper) {
      clearInterval(this.sweeper);
      this.sweeper = null;
    }
  }
}
