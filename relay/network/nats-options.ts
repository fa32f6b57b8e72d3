/**
 * Options of the NATS directory: defaults, validation (InvalidArgumentError naming the option),
 * the NATS client's connection options, and the decision which connection errors will not go
 * away (ERR_WARREN_DIRECTORY) and which are an outage to wait out.
 */
import { readFileSync } from 'node:fs';
import {
  AuthorizationError,
  credsAuthenticator,
  InvalidArgumentError as NatsInvalidArgumentError,
  UserAuthenticationExpiredError,
  type ConnectionOptions,
} from '@nats-io/transport-node';
import { InvalidArgumentError, WarrenError } from '../../protocol/errors.js';
import type { Logger } from '../../log/logger.js';

/** Options of NatsDirectory. */
export interface NatsDirectoryOptions {
  /** NATS servers, `nats://HOST:PORT` or `HOST:PORT` (see parseNatsServers for the comma form). */
  servers: string[];
  /** Path of a NATS .creds file (user JWT and nkey seed). */
  credsFile?: string;
  user?: string;
  password?: string;
  token?: string;
  /** TLS to the servers: PEM text of the CA to trust, and a client certificate and key. */
  tls?: { ca?: string; cert?: string; key?: string };
  /** Replicas of the buckets when this relay creates them: 1, or 3 (or 5) on a cluster. Default 1. */
  replicas?: number;
  /** Interval of this relay's heartbeat puts. Default 5,000. */
  heartbeatMs?: number;
  /** A relay whose last heartbeat is older is down; also the relays bucket's max_age. Default 15,000. */
  relayTtlMs?: number;
  /** The tunnels bucket's max_age. Default 120,000. */
  tunnelTtlMs?: number;
  /** Each own record is put again at this age so that it outlives max_age. Default tunnelTtlMs / 3. */
  refreshMs?: number;
  /** Wait between reconnect attempts. Default 1,000. */
  reconnectWaitMs?: number;
  /** Shuffle `servers` before connecting (spreads relays over the nodes). Default true. */
  randomizeServers?: boolean;
  logger?: Logger;
  /** Local clock, epoch ms (tests). */
  now?: () => number;
}

/** The options with every default filled in. */
export type ResolvedNatsOptions = Required<Omit<NatsDirectoryOptions, 'credsFile' | 'user' | 'password' | 'token' | 'tls' | 'logger'>> &
  Pick<NatsDirectoryOptions, 'credsFile' | 'user' | 'password' | 'token' | 'tls'> & { logger: Logger | undefined };

/** Writes of own records in flight at once. */
export const MAX_WRITES_IN_FLIGHT = 256;
/**
 * Timeout of one KV or JetStream API operation. Short, because a failed write or sync is retried:
 * while a cluster moves a stream's leadership after losing a node, a request can hang on the dead
 * peer, and the next attempt usually lands.
 */
export const KV_OP_TIMEOUT_MS = 2_000;

/** Splits `nats://HOST:PORT[,HOST:PORT...]` (or several such strings) into server addresses. */
export function parseNatsServers(spec: string | string[]): string[] {
  const parts = (Array.isArray(spec) ? spec : [spec]).flatMap((s) => s.split(','));
  return parts.map((p) => p.trim()).filter((p) => p.length > 0).map((p) => (p.includes('://') ? p : `nats://${p}`));
}

/** Fills in defaults and checks every option; throws InvalidArgumentError naming the first bad one. */
export function resolveNatsOptions(options: NatsDirectoryOptions): ResolvedNatsOptions {
  const servers = parseNatsServers(options.servers ?? []);
  if (servers.length === 0) throw new InvalidArgumentError('servers: at least one NATS server (nats://host:port) is needed');
  for (const s of servers) {
    if (!/^(nats|tls):\/\/[^\s/]+:\d{1,5}$/.test(s)) throw new InvalidArgumentError(`servers: "${s}" is not nats://host:port`);
  }
  const heartbeatMs = options.heartbeatMs ?? 5_000;
  const relayTtlMs = options.relayTtlMs ?? 15_000;
  const tunnelTtlMs = options.tunnelTtlMs ?? 120_000;
  const refreshMs = options.refreshMs ?? Math.floor(tunnelTtlMs / 3);
  const replicas = options.replicas ?? 1;
  const positive = { heartbeatMs, relayTtlMs, tunnelTtlMs, refreshMs };
  for (const [name, v] of Object.entries(positive)) {
    if (!Number.isInteger(v) || v <= 0) throw new InvalidArgumentError(`${name}: must be a positive integer of milliseconds, got ${v}`);
  }
  if (relayTtlMs < 3 * heartbeatMs) throw new InvalidArgumentError(`relayTtlMs (${relayTtlMs}) must be at least 3 times heartbeatMs (${heartbeatMs}): one late heartbeat must not mark the relay down`);
  if (refreshMs >= tunnelTtlMs) throw new InvalidArgumentError(`refreshMs (${refreshMs}) must be shorter than tunnelTtlMs (${tunnelTtlMs}), or records expire before they are put again`);
  if (![1, 3, 5].includes(replicas)) throw new InvalidArgumentError(`replicas: must be 1, 3 or 5, got ${replicas}`);
  if (options.token !== undefined && (options.user !== undefined || options.credsFile !== undefined)) {
    throw new InvalidArgumentError('token: give a token, or user/password, or credsFile; not several');
  }
  if ((options.user === undefined) !== (options.password === undefined)) throw new InvalidArgumentError('user and password go together');
  if ((options.tls?.cert === undefined) !== (options.tls?.key === undefined)) throw new InvalidArgumentError('tls.cert and tls.key go together');
  return {
    servers,
    credsFile: options.credsFile,
    user: options.user,
    password: options.password,
    token: options.token,
    tls: options.tls,
    replicas,
    heartbeatMs,
    relayTtlMs,
    tunnelTtlMs,
    refreshMs,
    reconnectWaitMs: options.reconnectWaitMs ?? 1_000,
    randomizeServers: options.randomizeServers ?? true,
    logger: options.logger,
    now: options.now ?? Date.now,
  };
}

/** The NATS client's options: reconnect forever, credentials, TLS. Throws ERR_WARREN_DIRECTORY for an unreadable creds file. */
export function connectOptions(o: ResolvedNatsOptions, name: string): ConnectionOptions {
  const c: ConnectionOptions = {
    servers: o.servers,
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: o.reconnectWaitMs,
    noRandomize: !o.randomizeServers,
    timeout: KV_OP_TIMEOUT_MS,
    pingInterval: 10_000,
  };
  if (o.credsFile !== undefined) {
    let creds: Uint8Array;
    try {
      creds = readFileSync(o.credsFile);
    } catch (err) {
      throw new WarrenError('ERR_WARREN_DIRECTORY', `NATS: cannot read the credentials file ${o.credsFile}: ${(err as Error).message}`, { cause: err, retryable: false });
    }
    c.authenticator = credsAuthenticator(creds);
  }
  if (o.user !== undefined) Object.assign(c, { user: o.user, pass: o.password });
  if (o.token !== undefined) c.token = o.token;
  if (o.tls) c.tls = { ...o.tls };
  return c;
}

/** Codes of Node's TLS errors (the `cause` of the client's ConnectionError). */
const TLS_ERROR_CODE = /^(ERR_TLS_|ERR_SSL_|UNABLE_TO_|CERT_|DEPTH_ZERO_SELF_SIGNED_CERT$|SELF_SIGNED_CERT_IN_CHAIN$|HOSTNAME_MISMATCH$)/;

/**
 * The ERR_WARREN_DIRECTORY error for a connection error that will not go away (authorization,
 * TLS), or undefined for an outage (refused, timed out, reset) that reconnecting waits out.
 * Decides by error class and Node error code, never by message text.
 */
export function permanentConnectError(err: unknown, servers: string[]): WarrenError | undefined {
  const where = servers.join(',');
  const text = err instanceof Error ? `${err.message}${err.cause instanceof Error ? `: ${err.cause.message}` : ''}` : String(err);
  if (err instanceof AuthorizationError || err instanceof UserAuthenticationExpiredError) {
    return new WarrenError('ERR_WARREN_DIRECTORY', `NATS at ${where} refused the credentials (${text}): check the directory's user/password, token or .creds file`, { cause: err, retryable: false });
  }
  const code = (err as { cause?: { code?: unknown } } | undefined)?.cause?.code;
  if (err instanceof NatsInvalidArgumentError || (typeof code === 'string' && TLS_ERROR_CODE.test(code))) {
    return new WarrenError('ERR_WARREN_DIRECTORY', `TLS to NATS at ${where} failed (${text}): check the CA, the client certificate and key, and whether the server offers TLS`, { cause: err, retryable: false });
  }
  return undefined;
}
