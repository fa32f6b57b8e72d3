/**
 * Relay configuration: raw settings (flags, WARREN_* environment, a JSON or YAML file) merged,
 * validated with every problem reported at once by field name, then files loaded. The result is
 * frozen and is what the Relay is built from.
 *
 * Precedence: command-line flag > environment variable > config file > default.
 */
import type { KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { parse as parseYaml } from 'yaml';
import { ConfigError, WarrenError } from '../protocol/index.js';
import { parseCount, parseDuration, parseHostPort, parsePortRange, type HostPort } from '../cli/parse.js';
import { loadTrustedKeys, type TrustedKeys } from '../certs/keys.js';
import { attemptInto, checkTlsIdentity, readPemSetting, readSessionKey, readViewerTokenKey } from './config-files.js';
import { networkConfig, type RelayNetworkConfig } from './network/config.js';

/** Settings as typed by people: every value a string (or a list of strings for repeatable flags). */
export interface RawRelayConfig {
  listen?: string;
  httpListen?: string;
  cert?: string;
  key?: string;
  domain?: string;
  trustKey?: string[];
  publicUrl?: string;
  audience?: string;
  tcpPorts?: string;
  tcpHost?: string;
  admin?: string;
  adminToken?: string;
  drainHint?: string;
  gracePeriod?: string;
  logLevel?: string;
  revoked?: string[];
  keepalive?: string;
  headersTimeout?: string;
  requestTimeout?: string;
  idleTimeout?: string;
  maxStreams?: string;
  sessionKey?: string;
  viewerTokenKey?: string;
  directory?: string;
  directoryCreds?: string;
  directoryUser?: string;
  directoryPassword?: string;
  directoryCa?: string;
  directoryReplicas?: string;
  directoryHeartbeat?: string;
  id?: string;
  region?: string;
  advertise?: string;
  meshListen?: string;
  meshCert?: string;
  meshKey?: string;
  meshCa?: string;
}

/** The keys a config file may use: the long flag names in camelCase. */
export const RELAY_SETTINGS = [
  'listen',
  'httpListen',
  'cert',
  'key',
  'domain',
  'trustKey',
  'publicUrl',
  'audience',
  'tcpPorts',
  'tcpHost',
  'admin',
  'adminToken',
  'drainHint',
  'gracePeriod',
  'logLevel',
  'revoked',
  'keepalive',
  'headersTimeout',
  'requestTimeout',
  'idleTimeout',
  'maxStreams',
  'sessionKey',
  'viewerTokenKey',
  'directory',
  'directoryCreds',
  'directoryUser',
  'directoryPassword',
  'directoryCa',
  'directoryReplicas',
  'directoryHeartbeat',
  'id',
  'region',
  'advertise',
  'meshListen',
  'meshCert',
  'meshKey',
  'meshCa',
] as const satisfies readonly (keyof RawRelayConfig)[];

/** Defaults for settings not given anywhere. */
export const RELAY_DEFAULTS = {
  listen: '0.0.0.0:443',
  audience: 'warren',
  gracePeriod: '30s',
  logLevel: 'info',
  keepalive: '15s',
  headersTimeout: '10s',
  requestTimeout: '60s',
  idleTimeout: '10m',
  maxStreams: '1024',
  meshListen: '0.0.0.0:7443',
  directoryReplicas: '1',
  directoryHeartbeat: '5s',
} as const;

/** A validated relay configuration, files loaded. */
export interface RelayConfig {
  readonly listen: HostPort;
  readonly httpListen?: HostPort;
  readonly tls: { readonly cert: string; readonly key: string };
  readonly certFile: string;
  readonly keyFile: string;
  readonly domain: string;
  readonly trustedKeys: TrustedKeys;
  readonly publicUrl?: string;
  readonly audience: string;
  readonly tcpPorts?: { first: number; last: number };
  readonly tcpHost?: string;
  readonly admin?: HostPort;
  readonly adminToken?: string;
  /** Relay URL agents are sent to when this relay drains. */
  readonly drainHint?: string;
  readonly gracePeriodMs: number;
  readonly logLevel: string;
  readonly revoked: readonly string[];
  /** Keepalive PING interval; a silent peer is dropped within two. */
  readonly keepaliveMs: number;
  readonly headersTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly idleTimeoutMs: number;
  /** Concurrent streams per agent or client session. */
  readonly maxStreams: number;
  /** HMAC key of private-preview session cookies (--session-key); random at start when absent. */
  readonly previewSessionKey?: Buffer;
  /** Ed25519 key that signs X-Warren-Viewer-Token (--viewer-token-key); fresh at start when absent. */
  readonly viewerTokenKey?: KeyObject;
  /** Membership of a relay network (--directory); alone when absent. */
  readonly network?: RelayNetworkConfig;
}

const DOMAIN = /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;

/** Edit distance between two short strings (for "did you mean"). */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length]!;
}

/** The known setting closest to `key`, when it is close enough to be a typo. */
function suggest(key: string): string | undefined {
  const plain = key.toLowerCase().replace(/[-_]/g, '');
  let best: { name: string; d: number } | undefined;
  for (const name of RELAY_SETTINGS) {
    const d = distance(plain, name.toLowerCase());
    if (d <= 2 && (!best || d < best.d)) best = { name, d };
  }
  return best?.name;
}

/**
 * Reads a JSON or YAML config file into raw settings. Problems with single keys (unknown,
 * wrong type) are returned, not thrown, so they are reported with everything else.
 */
export async function readRelayConfigFile(path: string): Promise<{ settings: RawRelayConfig; issues: string[] }> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError([`config: cannot read ${path}: ${(err as Error).message}`]);
  }
  let value: unknown;
  try {
    value = parseYaml(text, { uniqueKeys: true });
  } catch (err) {
    throw new ConfigError([`config: ${path} is not valid JSON or YAML: ${(err as Error).message.split('\n')[0]}`]);
  }
  if (value === null || value === undefined) return { settings: {}, issues: [] };
  if (typeof value !== 'object' || Array.isArray(value)) throw new ConfigError([`config: ${path} must hold an object of settings`]);
  const issues: string[] = [];
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (!(RELAY_SETTINGS as readonly string[]).includes(k)) {
      const close = suggest(k);
      issues.push(`${k}: unknown setting in ${path}${close ? ` (did you mean "${close}"?)` : ''}`);
      continue;
    }
    if (k === 'trustKey' || k === 'revoked') {
      const list = Array.isArray(v) ? v : [v];
      if (!list.every((x) => typeof x === 'string')) issues.push(`${k}: must be a list of strings`);
      else out[k] = list;
    } else if (typeof v === 'string' || typeof v === 'number') {
      out[k] = String(v);
    } else {
      issues.push(`${k}: must be a string`);
    }
  }
  return { settings: out, issues };
}

/** Layers raw settings: each later layer wins where it sets a value. */
export function mergeRelayConfig(...layers: RawRelayConfig[]): RawRelayConfig {
  const merged: Record<string, unknown> = {};
  for (const layer of layers) {
    for (const [k, v] of Object.entries(layer)) {
      if (v !== undefined && !(Array.isArray(v) && v.length === 0)) merged[k] = v;
    }
  }
  return merged;
}

const rawSchema = z.object({
  listen: z.string(),
  httpListen: z.string().optional(),
  cert: z.string().optional(),
  key: z.string().optional(),
  domain: z.string().optional(),
  trustKey: z.array(z.string()).optional(),
  publicUrl: z.string().optional(),
  audience: z.string().min(1),
  tcpPorts: z.string().optional(),
  tcpHost: z.string().optional(),
  admin: z.string().optional(),
  adminToken: z.string().min(16, 'must be at least 16 characters').optional(),
  drainHint: z.string().regex(/^wss:\/\/\S+$/, 'must be a wss:// relay URL').optional(),
  gracePeriod: z.string(),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
  revoked: z.array(z.string()).optional(),
  keepalive: z.string(),
  headersTimeout: z.string(),
  requestTimeout: z.string(),
  idleTimeout: z.string(),
  maxStreams: z.string(),
  sessionKey: z.string().optional(),
  viewerTokenKey: z.string().optional(),
  directory: z.string().optional(),
  directoryCreds: z.string().optional(),
  directoryUser: z.string().optional(),
  directoryPassword: z.string().optional(),
  directoryCa: z.string().optional(),
  directoryReplicas: z.string(),
  directoryHeartbeat: z.string(),
  id: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be 1-64 letters, digits, - or _').optional(),
  region: z.string().regex(/^[A-Za-z0-9_-]{0,64}$/, 'must be up to 64 letters, digits, - or _').optional(),
  advertise: z.string().regex(/^wss:\/\/[^\s/]+(?::\d+)?\/?$/, 'must be wss://HOST[:PORT], how agents and peers reach this relay').optional(),
  meshListen: z.string(),
  meshCert: z.string().optional(),
  meshKey: z.string().optional(),
  meshCa: z.string().optional(),
});

/**
 * Validates merged raw settings and loads the files they name. Throws one ConfigError listing
 * every problem, each starting with the setting's name.
 */
export async function loadRelayConfig(raw: RawRelayConfig, earlierIssues: readonly string[] = []): Promise<RelayConfig> {
  const issues: string[] = [...earlierIssues];
  const parsed = rawSchema.safeParse(mergeRelayConfig(RELAY_DEFAULTS, raw));
  if (!parsed.success) {
    for (const i of parsed.error.issues) issues.push(`${i.path.join('.') || 'config'}: ${i.message}`);
    throw new ConfigError(issues);
  }
  const r = parsed.data;
  const attempt = <T>(fn: () => T): T | undefined => attemptInto(issues, fn);
  const listen = attempt(() => parseHostPort(r.listen, 'listen'));
  const httpListen = r.httpListen ? attempt(() => parseHostPort(r.httpListen!, 'httpListen')) : undefined;
  const admin = r.admin ? attempt(() => parseHostPort(r.admin!, 'admin')) : undefined;
  const tcpPorts = r.tcpPorts ? attempt(() => parsePortRange(r.tcpPorts!, 'tcpPorts')) : undefined;
  const gracePeriodMs = attempt(() => parseDuration(r.gracePeriod, 'gracePeriod'));
  const keepaliveMs = attempt(() => parseDuration(r.keepalive, 'keepalive'));
  const headersTimeoutMs = attempt(() => parseDuration(r.headersTimeout, 'headersTimeout'));
  const requestTimeoutMs = attempt(() => parseDuration(r.requestTimeout, 'requestTimeout'));
  const idleTimeoutMs = attempt(() => parseDuration(r.idleTimeout, 'idleTimeout'));
  const maxStreams = attempt(() => parseCount(r.maxStreams, 'maxStreams'));
  if (keepaliveMs !== undefined && keepaliveMs < 100) issues.push('keepalive: must be at least 100ms');
  if (headersTimeoutMs !== undefined && requestTimeoutMs !== undefined && requestTimeoutMs !== 0 && requestTimeoutMs < headersTimeoutMs) {
    issues.push('requestTimeout: must not be shorter than headersTimeout (the whole request includes its head)');
  }
  const domain = (r.domain ?? '').toLowerCase().replace(/\.$/, '');
  if (r.domain === undefined) issues.push('domain: required: the preview domain (previews are {port}-{tunnel}.DOMAIN)');
  else if (!DOMAIN.test(domain)) issues.push(`domain: "${r.domain}" is not a domain name`);
  if (r.publicUrl) {
    const ok = attempt(() => new URL(r.publicUrl!));
    if (ok && !/^https?:$/.test(ok.protocol)) issues.push(`publicUrl: must be an http:// or https:// URL`);
  }
  const readPem = (file: string | undefined, what: 'cert' | 'key'): Promise<string | undefined> => {
    if (file !== undefined) return readPemSetting(what, file, issues);
    issues.push(what === 'cert' ? 'cert: required: the TLS certificate (PEM) for the relay and its preview domain' : 'key: required: the TLS private key (PEM)');
    return Promise.resolve(undefined);
  };
  const [cert, key] = await Promise.all([readPem(r.cert, 'cert'), readPem(r.key, 'key')]);
  checkTlsIdentity(issues, 'cert', { cert: r.cert!, key: r.key! }, { cert, key });
  let trustedKeys: TrustedKeys | undefined;
  if (!r.trustKey || r.trustKey.length === 0) {
    issues.push('trustKey: required: at least one issuer public key (warren keys generate); the relay refuses to start without one');
  } else {
    try {
      trustedKeys = await loadTrustedKeys(r.trustKey);
    } catch (err) {
      issues.push(`trustKey: ${(err as Error).message}`);
    }
  }
  const [previewSessionKey, viewerTokenKey, network] = await Promise.all([
    r.sessionKey === undefined ? undefined : readSessionKey(r.sessionKey, issues),
    r.viewerTokenKey === undefined ? undefined : readViewerTokenKey(r.viewerTokenKey, issues),
    networkConfig(r, issues),
  ]);
  if (issues.length > 0) {
    const onlyTrust = issues.length === 1 && issues[0]!.startsWith('trustKey: required');
    throw new ConfigError(issues, onlyTrust ? 'ERR_WARREN_NO_TRUST_KEYS' : 'ERR_WARREN_CONFIG');
  }
  if (!listen || !cert || !key || !trustedKeys || gracePeriodMs === undefined || keepaliveMs === undefined || headersTimeoutMs === undefined || requestTimeoutMs === undefined || idleTimeoutMs === undefined || maxStreams === undefined) throw new WarrenError('ERR_WARREN_INTERNAL', 'config validation lost a value');
  return Object.freeze({
    listen,
    httpListen,
    tls: Object.freeze({ cert, key }),
    certFile: r.cert!,
    keyFile: r.key!,
    domain,
    trustedKeys,
    publicUrl: r.publicUrl,
    audience: r.audience,
    tcpPorts,
    tcpHost: r.tcpHost,
    admin,
    adminToken: r.adminToken,
    drainHint: r.drainHint,
    gracePeriodMs,
    logLevel: r.logLevel,
    revoked: Object.freeze([...(r.revoked ?? [])]),
    keepaliveMs,
    headersTimeoutMs,
    requestTimeoutMs,
    idleTimeoutMs,
    maxStreams,
    previewSessionKey,
    viewerTokenKey,
    network,
  });
}
