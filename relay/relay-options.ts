/**
 * What a Relay is built with (relay.ts): listeners, TLS, the preview domain, token keys, logging,
 * limits and timeouts. The CLI validates the same settings in relay/config.ts.
 */
import type { KeyObject } from 'node:crypto';
import type { Registry } from 'prom-client';
import type { TrustedKeys } from '../certs/keys.js';
import type { Logger } from '../log/logger.js';
import type { HostPort } from '../cli/parse.js';
import type { SessionOptions } from '../protocol/index.js';
import type { NetworkOptions } from './network/network.js';

/** Relay settings (validated by relay/config.ts for the CLI). */
export interface RelayOptions {
  /** TLS listener: agents, clients and HTTPS previews. */
  listen: HostPort;
  /** Optional plain-HTTP listener, previews only. */
  httpListen?: HostPort;
  /** The plain listener sits behind a front end that terminated TLS: its requests count as https. */
  tlsTerminatedInFront?: boolean;
  /** PEM certificate chain and key for the TLS listener. */
  tls: { cert: string; key: string };
  /** Preview domain: previews are `{port}-{tunnel}.{domain}`. */
  domain: string;
  /**
   * Base of the preview URLs given to agents, such as `https://preview.example.dev` or
   * `http://localhost:8080`; default https on the TLS listener's port.
   */
  publicUrl?: string | (() => string);
  /** Token verification keys by kid; at least one. */
  trustedKeys: TrustedKeys;
  /** Token audience this relay accepts; default "warren". */
  audience?: string;
  /** Revoked token ids. */
  revokedJtis?: Iterable<string>;
  logger?: Logger;
  /** Where access lines (one per preview request) go; default `logger`. */
  accessLogger?: Logger;
  session?: SessionOptions;
  /** Port range for raw TCP endpoints; none when unset. */
  tcpPorts?: { first: number; last: number };
  /** Host printed in raw TCP endpoints; default the listen host, or the domain when that is a wildcard address. */
  tcpHost?: string;
  /** How long a raw TCP endpoint outlives its agent's session; default 60 s. */
  tcpLingerMs?: number;
  /** Metrics registry; default a fresh one (never prom-client's global registry). */
  metricsRegistry?: Registry;
  /** Admin listener: /metrics, /healthz, /readyz and the admin API. */
  admin?: HostPort;
  /** Bearer token for the admin API; without it the API is off. */
  adminToken?: string;
  /** Default grace period of a drain; default 30 s. */
  gracePeriodMs?: number;
  /** Relay URL that draining sends agents to (the GOAWAY reconnect hint); default none. */
  drainHint?: string;
  /** HTTP timeouts of the listeners (slow clients). */
  timeouts?: RelayTimeouts;
  /** Token clock in ms (tests). */
  now?: () => number;
  /**
   * HMAC key (at least 32 bytes) of private-preview session cookies; default random at start, so
   * sessions end with the process. Relays that share one make sessions valid on each other.
   */
  previewSessionKey?: Buffer;
  /** Ed25519 private key that signs X-Warren-Viewer-Token; default a fresh one at start. */
  viewerTokenKey?: KeyObject;
  /** `iss` of X-Warren-Viewer-Token; default "warren-relay". */
  viewerTokenIssuer?: string;
  /** Membership of a relay network (docs/NETWORK.md); alone when absent. */
  network?: NetworkOptions;
}


/** How long slow or idle clients may hold a connection. */
export interface RelayTimeouts {
  /** To receive a request's head; default 10 s. */
  headersMs?: number;
  /** To receive a whole request, body included; default 60 s. */
  requestMs?: number;
  /** Idle keep-alive connection between requests; default 5 s. */
  keepAliveMs?: number;
  /** No bytes moving either way on a connection (a client that stops reading, an idle WebSocket); default 10 min. */
  idleMs?: number;
}

/** Options of a drain. */
export interface DrainOptions {
  /** How long open streams may take to finish; default the relay's grace period. */
  graceMs?: number;
  /** Relay URL agents should move to (the GOAWAY reconnect hint). */
  hint?: string;
}
