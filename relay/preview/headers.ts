/**
 * Header rewriting for the preview proxy, on raw header lists (`rawHeaders`: name, value, name,
 * value ...) so that the case of names and repeated headers (Set-Cookie) survive unchanged.
 *
 * Both ways the proxy removes hop-by-hop headers (RFC 9110 section 7.6.1): Connection,
 * Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade, Proxy-Authorization,
 * Proxy-Authenticate and every header named in Connection. Toward the app it also removes:
 * - every header whose name holds `_` (as nginx does by default): CGI, WSGI, PHP and Rack fold
 *   `_` and `-` into one name (`HTTP_X_WARREN_VIEWER`), so `X_Warren_Viewer` would pass for the
 *   relay's own header there;
 * - every `X-Forwarded-*`, `Forwarded` and `X-Warren-*` header, and the client-address headers
 *   other proxies set (CLIENT_ADDRESS_HEADERS), from outside;
 * - `Expect` (the relay has answered `100-continue` itself, and frames the body it forwards);
 * then adds its own X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host and X-Real-IP (replaced,
 * never appended). docs/SECURITY.md lists the headers an app can trust.
 */

/** Hop-by-hop header names, lower case. */
export const HOP_BY_HOP_HEADERS: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'proxy-authorization',
  'proxy-authenticate',
]);

/**
 * Client-address headers that proxies and CDNs set, lower case: never forwarded from outside, so
 * an app that reads any of them sees either nothing or (X-Real-IP) the relay's own value.
 */
export const CLIENT_ADDRESS_HEADERS: ReadonlySet<string> = new Set([
  'x-real-ip',
  'client-ip',
  'true-client-ip',
  'x-client-ip',
  'x-cluster-client-ip',
  'cf-connecting-ip',
  'fastly-client-ip',
  'x-originating-ip',
  'x-remote-ip',
  'x-remote-addr',
]);

/** Names a Connection header may not remove: the proxy decides routing and framing itself. */
const PROTECTED_HEADERS: ReadonlySet<string> = new Set(['host', 'content-length']);

/** How the request body is framed toward the app. */
export type BodyFraming = { kind: 'none' } | { kind: 'length'; length: string } | { kind: 'chunked' };

/** What the proxy tells the app about the original request. */
export interface ForwardedInfo {
  /** The client's address (IPv4-mapped IPv6 addresses are written as IPv4). */
  remoteAddress: string;
  /** True when the client connected over TLS. */
  secure: boolean;
  /** The preview host the client asked for (its Host header, already validated). */
  host: string;
}

/** Lower-case names listed in every Connection header of a raw list. */
export function connectionTokens(raw: readonly string[]): Set<string> {
  const tokens = new Set<string>();
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() !== 'connection') continue;
    for (const token of raw[i + 1]!.split(',')) {
      const name = token.trim().toLowerCase();
      if (name && !PROTECTED_HEADERS.has(name)) tokens.add(name);
    }
  }
  return tokens;
}

/** True for names (lower case) this proxy never forwards toward the app. */
function isForeignProxyHeader(name: string): boolean {
  return name.includes('_') || name === 'forwarded' || name === 'expect' || name.startsWith('x-forwarded-') || name.startsWith('x-warren-') || CLIENT_ADDRESS_HEADERS.has(name);
}

/** Writes an IPv4-mapped IPv6 address (`::ffff:10.0.0.1`) as plain IPv4. */
export function clientAddress(address: string | undefined): string {
  if (!address) return 'unknown';
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return m ? m[1]! : address;
}

/**
 * Builds the raw header list sent to the app. Keeps every end-to-end header in its original order
 * and case (including Host), drops hop-by-hop and foreign proxy headers, names with `_`, Expect
 * and Content-Length, then appends X-Forwarded-For/Proto/Host, X-Real-IP, the body framing and
 * `Connection: keep-alive`. For upgrades,
 * `upgrade` is the client's Upgrade value and the list ends with `Connection: Upgrade` and
 * `Upgrade: <value>` instead.
 */
export function requestHeadersForApp(raw: readonly string[], forwarded: ForwardedInfo, framing: BodyFraming, upgrade?: string): string[] {
  const drop = connectionTokens(raw);
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP_HEADERS.has(lower) || drop.has(lower) || lower === 'content-length' || isForeignProxyHeader(lower)) continue;
    out.push(name, raw[i + 1]!);
  }
  out.push(
    'X-Forwarded-For', clientAddress(forwarded.remoteAddress),
    'X-Forwarded-Proto', forwarded.secure ? 'https' : 'http',
    'X-Forwarded-Host', forwarded.host,
    'X-Real-IP', clientAddress(forwarded.remoteAddress),
  );
  if (framing.kind === 'length') out.push('Content-Length', framing.length);
  else if (framing.kind === 'chunked') out.push('Transfer-Encoding', 'chunked');
  // The proxy decides when a stream to the app ends: it keeps it for the next request after a
  // complete exchange (pool.ts), or destroys it. The app is told keep-alive so that it
  // never closes first: an app that answers early (413) and then closes with part of the body
  // unread resets the connection, which can destroy its own answer in flight.
  if (upgrade === undefined) out.push('Connection', 'keep-alive');
  else out.push('Connection', 'Upgrade', 'Upgrade', upgrade);
  return out;
}

/**
 * Builds the raw header list sent back to the client from the app's response: every
 * end-to-end header in order and case (each Set-Cookie kept), without hop-by-hop headers and
 * without `X-Warren-*` (those belong to the relay).
 */
export function responseHeadersForClient(raw: readonly string[]): string[] {
  const drop = connectionTokens(raw);
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const lower = raw[i]!.toLowerCase();
    if (HOP_BY_HOP_HEADERS.has(lower) || drop.has(lower) || lower.startsWith('x-warren-')) continue;
    out.push(raw[i]!, raw[i + 1]!);
  }
  return out;
}

/** Pairs `[name, value]` flattened into a raw header list. */
export function flattenHeaders(pairs: readonly (readonly [string, string])[]): string[] {
  return pairs.flatMap(([name, value]) => [name, value]);
}

/**
 * Serializes a response head for a raw socket (upgrade requests, where no ServerResponse
 * exists): status line, headers, blank line. Values come from Node's parser or the relay, which
 * never contain CR or LF; any that do are dropped rather than written.
 */
export function serializeResponseHead(status: number, reason: string, raw: readonly string[]): string {
  let head = `HTTP/1.1 ${status} ${reason.replace(/[\r\n]/g, '')}\r\n`;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    if (/[\r\n]/.test(name) || /[\r\n]/.test(value)) continue;
    head += `${name}: ${value}\r\n`;
  }
  return `${head}\r\n`;
}
