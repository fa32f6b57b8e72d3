/**
 * Preview host names: `{port}-{tunnel}.{domain}`, one DNS label before the relay's domain so
 * that one wildcard certificate (`*.{domain}`) covers every tunnel and port.
 *
 * Examples with the domain `preview.example.dev`:
 *   3000-ab12cd.preview.example.dev        -> { port: 3000, tunnelId: 'ab12cd' }
 *   5173-my-app.PREVIEW.example.dev.:443   -> { port: 5173, tunnelId: 'my-app' }
 *   03000-ab12cd.preview.example.dev       -> null (leading zero)
 *   3000-ab12cd.x.preview.example.dev      -> null (two labels)
 */
import { TUNNEL_ID_PATTERN } from '../../certs/claims.js';

/** Where a preview request goes: a port inside the sandbox of one tunnel. */
export interface PreviewTarget {
  /** Tunnel id: 1-32 characters of [a-z0-9-], starting and ending with a letter or digit. */
  tunnelId: string;
  /** TCP port of the app inside the sandbox, 1..65535. */
  port: number;
}

/** Tunnel ids as they appear in preview hosts (and in tokens' `sub`); defined in certs/claims.ts. */
export { TUNNEL_ID_PATTERN };

/** The label `{port}-{tunnel}`: a port without leading zeros, then the tunnel id. */
const LABEL_PATTERN = /^([1-9][0-9]{0,4})-([a-z0-9-]+)$/;

/** A Host header value: a name, an optional trailing dot, an optional `:port`. */
const HOST_PATTERN = /^([a-z0-9.-]+?)\.?(?::[0-9]{1,5})?$/;

/**
 * Lower-cases a host name and removes one trailing dot and a `:port` suffix. Returns null for
 * values that are not a DNS name (IPv6 literals, spaces, empty labels, characters outside
 * [a-z0-9.-]).
 */
export function normalizeHostname(host: string): string | null {
  const m = HOST_PATTERN.exec(host.toLowerCase());
  if (!m) return null;
  const name = m[1]!;
  if (name.startsWith('.') || name.includes('..') || name.endsWith('.')) return null;
  return name;
}

/**
 * Parses a Host header (or SNI name) as a preview host of `domain`. The match is
 * case-insensitive, ignores a `:port` suffix and one trailing dot, and requires exactly one
 * label before `.{domain}`. Returns null when the host is not a preview host of this domain.
 */
export function parsePreviewHost(host: string, domain: string): PreviewTarget | null {
  const name = normalizeHostname(host);
  const base = normalizeHostname(domain);
  if (name === null || base === null) return null;
  const suffix = `.${base}`;
  if (!name.endsWith(suffix)) return null;
  const label = name.slice(0, -suffix.length);
  const m = LABEL_PATTERN.exec(label);
  if (!m) return null;
  const port = Number(m[1]);
  const tunnelId = m[2]!;
  if (port > 65535 || !TUNNEL_ID_PATTERN.test(tunnelId)) return null;
  return { port, tunnelId };
}

/** Formats the host name of a preview target: `{port}-{tunnel}.{domain}` (no port suffix). */
export function formatPreviewHost(target: PreviewTarget, domain: string): string {
  return `${target.port}-${target.tunnelId}.${domain.toLowerCase().replace(/\.$/, '')}`;
}
