/**
 * Parsers for the small values users type: durations, host:port addresses, port lists.
 * Each throws ConfigError with a sentence that names the bad value; CLI and config files share them.
 */
import { isIP } from 'node:net';
import { ConfigError } from '../protocol/errors.js';

const DURATION_UNITS_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses `500ms`, `30s`, `5m`, `1h`, `7d` or a bare number of milliseconds; `what` names the setting in errors. */
export function parseDuration(text: string | number, what = 'duration'): number {
  if (typeof text === 'number') {
    if (Number.isFinite(text) && text >= 0) return text;
    throw new ConfigError([`${what}: ${text} is not a duration`]);
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(text);
  if (!m) throw new ConfigError([`${what}: "${text}" is not a duration (examples: 500ms, 30s, 5m, 1h)`]);
  return Math.round(Number(m[1]) * DURATION_UNITS_MS[m[2] ?? 'ms']!);
}

/** A listening or dialing address. `host` is a name or an IP without brackets. */
export interface HostPort {
  host: string;
  port: number;
}

/** Parses a TCP port number 0..65535 (0 only when `allowZero`, meaning "pick a free one"). */
export function parsePort(text: string | number, what = 'port', allowZero = false): number {
  const n = typeof text === 'number' ? text : /^\d{1,5}$/.test(text.trim()) ? Number(text.trim()) : NaN;
  if (!Number.isInteger(n) || n > 65535 || n < (allowZero ? 0 : 1)) {
    throw new ConfigError([`${what}: "${text}" is not a port number (${allowZero ? 0 : 1}-65535)`]);
  }
  return n;
}

/** Parses `HOST:PORT`, `[IPv6]:PORT` or `:PORT` (all interfaces are never implied: `:PORT` means 127.0.0.1). */
export function parseHostPort(text: string, what = 'address', allowZeroPort = true): HostPort {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]*)):(\d+)$/.exec(text.trim());
  if (!m) throw new ConfigError([`${what}: "${text}" is not HOST:PORT (examples: 127.0.0.1:8443, [::1]:8443, localhost:0)`]);
  const host = m[1] ?? (m[2] || '127.0.0.1');
  if (m[1] !== undefined && isIP(m[1]) !== 6) throw new ConfigError([`${what}: "${m[1]}" is not an IPv6 address`]);
  return { host, port: parsePort(m[3]!, what, allowZeroPort) };
}

/** Formats an address for URLs and logs, bracketing IPv6 literals. */
export function formatHostPort({ host, port }: HostPort): string {
  return `${isIP(host) === 6 ? `[${host}]` : host}:${port}`;
}

/** Parses `3000,5173` (or an array of such strings) into a sorted list of unique ports. */
export function parsePortList(text: string | readonly string[], what = 'ports'): number[] {
  const parts = (typeof text === 'string' ? [text] : text).flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean);
  if (parts.length === 0) throw new ConfigError([`${what}: at least one port is needed`]);
  return [...new Set(parts.map((p) => parsePort(p, what)))].sort((a, b) => a - b);
}

/** Parses an inclusive port range `20000-20999`. */
export function parsePortRange(text: string, what = 'port range'): { first: number; last: number } {
  const m = /^\s*(\d+)\s*-\s*(\d+)\s*$/.exec(text);
  if (!m) throw new ConfigError([`${what}: "${text}" is not a range FIRST-LAST (example: 20000-20999)`]);
  const first = parsePort(m[1]!, what);
  const last = parsePort(m[2]!, what);
  if (last < first) throw new ConfigError([`${what}: "${text}" ends before it starts`]);
  return { first, last };
}

/** Parses a whole number from `min` to `max` (a count such as --max-streams). */
export function parseCount(text: string | number, what: string, min = 1, max = 1_048_576): number {
  const n = typeof text === 'number' ? text : /^\s*\d+\s*$/.test(text) ? Number(text) : NaN;
  if (!Number.isInteger(n) || n < min || n > max) throw new ConfigError([`${what}: "${text}" is not a whole number from ${min} to ${max}`]);
  return n;
}
