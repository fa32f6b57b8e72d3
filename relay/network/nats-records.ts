/**
 * What the NATS directory reads from the store and the server: record values parsed and checked
 * (a malformed value from another relay is skipped, never trusted), and the server's INFO checked
 * for a version and JetStream the directory can use.
 */
import { WarrenError } from '../../protocol/errors.js';
import { RELAY_ID_PATTERN, TUNNEL_ID_PATTERN, type RelayRecord, type TunnelRecord } from './directory.js';

/** Oldest nats-server the directory runs on (KV with bucket max_age and watches). */
export const MIN_NATS_VERSION = [2, 9] as const;

/**
 * Checks the server's INFO: throws ERR_WARREN_DIRECTORY for a server older than 2.9 or without
 * JetStream; returns a warning for 2.9 and 2.10, whose KV has no per-key TTL.
 */
export function checkServer(info: { version?: string; jetstream?: boolean } | undefined, servers: string[]): { warn?: string } {
  const where = servers.join(',');
  const version = info?.version ?? '';
  const m = /^(\d+)\.(\d+)/.exec(version);
  const major = m ? Number(m[1]) : 0;
  const minor = m ? Number(m[2]) : 0;
  if (major < MIN_NATS_VERSION[0] || (major === MIN_NATS_VERSION[0] && minor < MIN_NATS_VERSION[1])) {
    throw new WarrenError('ERR_WARREN_DIRECTORY', `NATS at ${where} is version ${version || 'unknown'}; the directory needs nats-server 2.9 or newer: upgrade the server`, { retryable: false });
  }
  if (info?.jetstream !== true) {
    throw new WarrenError('ERR_WARREN_DIRECTORY', `NATS at ${where} has no JetStream: start nats-server with -js (or a jetstream {} block) and a store directory`, { retryable: false });
  }
  if (major === 2 && minor < 11) {
    return { warn: `nats-server ${version} has no per-key TTL: directory entries expire by bucket max_age and relay heartbeats (2.11 would let records carry their own TTL)` };
  }
  return {};
}

function isString(v: unknown, max = 256): v is string {
  return typeof v === 'string' && v.length <= max;
}

/** A JSON object's fields, or undefined for anything else. */
function parseObject(text: string): Record<string, unknown> | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : undefined;
}

/** A relay heartbeat value, or undefined when malformed or naming another key. */
export function parseRelayRecord(text: string, key: string): RelayRecord | undefined {
  const v = parseObject(text);
  if (v === undefined) return undefined;
  const { id, region, advertise, mesh, epoch } = v;
  if (!isString(id) || id !== key || !RELAY_ID_PATTERN.test(id) || !isString(region, 64) || !isString(advertise) || !isString(mesh) || !isString(epoch, 128)) return undefined;
  return { id, region, advertise, mesh, epoch };
}

/** A tunnel record value, or undefined when malformed or not matching its key. */
export function parseTunnelRecord(text: string, tunnelId: string, relayId: string): TunnelRecord | undefined {
  const v = parseObject(text);
  if (v === undefined) return undefined;
  const { relayEpoch, sessionEpoch, ports, since } = v;
  if (v.tunnelId !== tunnelId || v.relayId !== relayId || !TUNNEL_ID_PATTERN.test(tunnelId)) return undefined;
  if (!isString(relayEpoch, 128) || !isString(sessionEpoch, 128) || typeof since !== 'number' || !Array.isArray(ports) || ports.length > 1024) return undefined;
  const out: TunnelRecord['ports'] = [];
  for (const p of ports as unknown[]) {
    if (typeof p !== 'object' || p === null) return undefined;
    const { port, private: priv, tcpEndpoint } = p as Record<string, unknown>;
    if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535 || typeof priv !== 'boolean') return undefined;
    if (tcpEndpoint !== undefined && !isString(tcpEndpoint)) return undefined;
    out.push(tcpEndpoint === undefined ? { port, private: priv } : { port, private: priv, tcpEndpoint });
  }
  return { tunnelId, relayId, relayEpoch, sessionEpoch, ports: out, since };
}
