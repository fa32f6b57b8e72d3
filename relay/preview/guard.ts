/**
 * Admission checks for preview requests, run before any stream to a sandbox is opened: a head the
 * guard can see whole (at most MAX_REQUEST_HEADERS header lines), request smuggling (framing that
 * is duplicated, obfuscated or both Content-Length and Transfer-Encoding; upgrades with a body),
 * host hygiene (exactly one Host, an absolute-form target that agrees with it, a preview host of
 * this relay's domain, and on TLS a server name that agrees with it).
 *
 * Node's HTTP parser rejects some of these itself (Content-Length with Transfer-Encoding) but
 * accepts others (a duplicate Host keeps the first; an absolute-form target may name another
 * authority), and a server started with `insecureHTTPParser` accepts more, so every check is
 * made here whatever the parser did.
 *
 * The parser keeps only the first `maxHeadersCount` headers in `rawHeaders` (1,000 by default)
 * but frames the message with all of them: a Content-Length after the last kept line frames a
 * body that the guard would not see. So the guard refuses every request with more header lines
 * than MAX_REQUEST_HEADERS (431), well below any count the parser truncates at, and the listeners
 * keep one line more than that (PREVIEW_MAX_HEADERS_COUNT) so that a longer head is seen as one.
 * What the guard counts is then what the parser framed with.
 */
import type { IncomingMessage } from 'node:http';
import { TLSSocket } from 'node:tls';
import type { BodyFraming } from './headers.js';
import { normalizeHostname, parsePreviewHost, type PreviewTarget } from './host.js';

/** A request that passed every check, with what the proxy needs to forward it. */
export interface AdmittedRequest {
  ok: true;
  target: PreviewTarget;
  /** The Host header as the client sent it (validated as a preview host of the domain). */
  host: string;
  /** The request target in origin-form (`/path?query`, or `*`), sent to the app. */
  path: string;
  /** True when the client connection is TLS. */
  secure: boolean;
  /** How the request body is framed toward the app. */
  framing: BodyFraming;
}

/** A request refused before any stream was opened. `detail` is safe to show (no client text). */
export interface RejectedRequest {
  ok: false;
  code: 'ERR_WARREN_BAD_REQUEST' | 'ERR_WARREN_MISDIRECTED' | 'ERR_WARREN_HEADERS_TOO_LARGE';
  detail: string;
  /** The parsed target when the host was a preview host, for the error page. */
  target?: PreviewTarget;
}

/**
 * Most header lines a preview request may carry (Apache's LimitRequestFields default). Browsers
 * send 10-30; a request with more is refused with 431 before anything else is looked at.
 */
export const MAX_REQUEST_HEADERS = 100;

/**
 * The `maxHeadersCount` of every preview listener: one more than MAX_REQUEST_HEADERS, so that a
 * head over the limit shows as one (the parser drops lines past this count from rawHeaders).
 */
export const PREVIEW_MAX_HEADERS_COUNT = MAX_REQUEST_HEADERS + 1;

const bad = (detail: string): RejectedRequest => ({ ok: false, code: 'ERR_WARREN_BAD_REQUEST', detail });
const misdirected = (detail: string, target?: PreviewTarget): RejectedRequest => ({ ok: false, code: 'ERR_WARREN_MISDIRECTED', detail, ...(target ? { target } : {}) });

/** Number of headers named `name` (lower case) in a raw header list. */
function countHeader(raw: readonly string[], name: string): number {
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === name) n++;
  return n;
}

/** The value of the first header named `name` (lower case) in a raw header list, or ''. */
function headerValue(raw: readonly string[], name: string): string {
  for (let i = 0; i + 1 < raw.length; i += 2) if (raw[i]!.toLowerCase() === name) return raw[i + 1]!;
  return '';
}

/** Lower-cases an authority and drops the scheme's default port. */
function canonicalAuthority(authority: string, scheme: string): string {
  const lower = authority.toLowerCase();
  const defaultPort = scheme === 'https' ? ':443' : ':80';
  return lower.endsWith(defaultPort) ? lower.slice(0, -defaultPort.length) : lower;
}

/** Origin-form path of the request target, or a rejection for targets that disagree with Host. */
function originForm(url: string, host: string): string | RejectedRequest {
  if (url.startsWith('/')) return url;
  if (url === '*') return url;
  const m = /^(https?):\/\/([^/?#]*)(.*)$/is.exec(url);
  if (!m) return bad('the request target is neither a path nor an absolute http(s) URL');
  const scheme = m[1]!.toLowerCase();
  const authority = m[2]!;
  if (authority.includes('@')) return bad('the request target carries user information');
  if (canonicalAuthority(authority, scheme) !== canonicalAuthority(host, scheme)) {
    return bad('the absolute request target names a different host than the Host header');
  }
  const rest = m[3]!;
  return rest.startsWith('/') ? rest : `/${rest}`;
}

/** Only decimal digits: Node's parser accepts nothing else, and neither does the guard. */
const CONTENT_LENGTH = /^[0-9]{1,15}$/;

/**
 * Checks one preview request against `domain`. Rules, in order: at most MAX_REQUEST_HEADERS
 * header lines (431); exactly one Host header (400); at most one Content-Length, of digits only,
 * never with Transfer-Encoding, and a Transfer-Encoding only as one `chunked` (400); no body on
 * an upgrade (400); an origin-form target, or an absolute-form target whose authority equals
 * Host (400); Host a preview host of `domain` (421); on TLS, the SNI server name equal to Host's
 * name when the client sent one (421).
 */
export function admitRequest(req: IncomingMessage, domain: string, upgrade = false): AdmittedRequest | RejectedRequest {
  const raw = req.rawHeaders;
  if (raw.length / 2 > MAX_REQUEST_HEADERS) {
    return { ok: false, code: 'ERR_WARREN_HEADERS_TOO_LARGE', detail: `the request has more than ${MAX_REQUEST_HEADERS} header lines` };
  }
  const hosts = countHeader(raw, 'host');
  if (hosts === 0) return bad('the Host header is missing');
  if (hosts > 1) return bad('the request has more than one Host header');
  const host = req.headers.host ?? '';
  if (host === '') return bad('the Host header is empty');

  const contentLengths = countHeader(raw, 'content-length');
  const transferEncodings = countHeader(raw, 'transfer-encoding');
  if (contentLengths > 0 && transferEncodings > 0) return bad('the request has both Content-Length and Transfer-Encoding');
  if (contentLengths > 1) return bad('the request has more than one Content-Length header');
  if (transferEncodings > 1) return bad('the request has more than one Transfer-Encoding header');
  const contentLength = contentLengths === 1 ? headerValue(raw, 'content-length').trim() : undefined;
  if (contentLength !== undefined && !CONTENT_LENGTH.test(contentLength)) return bad('the Content-Length is not a decimal number');
  if (transferEncodings === 1 && headerValue(raw, 'transfer-encoding').trim().toLowerCase() !== 'chunked') {
    return bad('the only Transfer-Encoding a request may use is chunked');
  }
  // A body before the switch would be read by one side as the request's and by the other as the
  // new protocol's first bytes: an upgrade carries none.
  if (upgrade && (transferEncodings > 0 || (contentLength !== undefined && Number(contentLength) > 0))) return bad('an upgrade request carries no body');

  const path = originForm(req.url ?? '', host);
  if (typeof path !== 'string') return path;

  const target = parsePreviewHost(host, domain);
  if (target === null) return misdirected('the Host header is not a preview host of this relay');

  const socket = req.socket;
  const secure = socket instanceof TLSSocket;
  if (secure) {
    const servername = (socket as TLSSocket & { servername?: string | false | null }).servername;
    if (typeof servername === 'string' && servername !== '' && normalizeHostname(servername) !== normalizeHostname(host)) {
      return misdirected('the TLS server name (SNI) differs from the Host header', target);
    }
  }

  let framing: BodyFraming = { kind: 'none' };
  if (!upgrade) {
    if (transferEncodings > 0) framing = { kind: 'chunked' };
    else if (contentLength !== undefined) framing = { kind: 'length', length: String(Number(contentLength)) };
  }
  return { ok: true, target, host, path, secure, framing };
}
