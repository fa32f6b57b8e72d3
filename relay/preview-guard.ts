/**
 * Admission checks for preview requests, run before any stream to a sandbox is opened: request
 * smuggling (Content-Length with Transfer-Encoding), host hygiene (exactly one Host, an
 * absolute-form target that agrees with it, a preview host of this relay's domain, and on TLS a
 * server name that agrees with it).
 *
 * Node's HTTP parser rejects some of these itself (Content-Length with Transfer-Encoding) but
 * accepts others (a duplicate Host keeps the first; an absolute-form target may name another
 * authority), and a server started with `insecureHTTPParser` accepts more, so every check is
 * made here whatever the parser did.
 */
import type { IncomingMessage } from 'node:http';
import { TLSSocket } from 'node:tls';
import type { BodyFraming } from './preview-headers.js';
import { normalizeHostname, parsePreviewHost, type PreviewTarget } from './preview-host.js';

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
  code: 'ERR_WARREN_BAD_REQUEST' | 'ERR_WARREN_MISDIRECTED';
  detail: string;
  /** The parsed target when the host was a preview host, for the error page. */
  target?: PreviewTarget;
}

const bad = (detail: string): RejectedRequest => ({ ok: false, code: 'ERR_WARREN_BAD_REQUEST', detail });
const misdirected = (detail: string, target?: PreviewTarget): RejectedRequest => ({ ok: false, code: 'ERR_WARREN_MISDIRECTED', detail, ...(target ? { target } : {}) });

/** Number of headers named `name` (lower case) in a raw header list. */
function countHeader(raw: readonly string[], name: string): number {
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === name) n++;
  return n;
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

/**
 * Checks one preview request against `domain`. Rules, in order: exactly one Host header (400);
 * at most one Content-Length and never with Transfer-Encoding (400); an origin-form target, or an
 * absolute-form target whose authority equals Host (400); Host a preview host of `domain` (421);
 * on TLS, the SNI server name equal to Host's name when the client sent one (421).
 */
export function admitRequest(req: IncomingMessage, domain: string, upgrade = false): AdmittedRequest | RejectedRequest {
  const raw = req.rawHeaders;
  const hosts = countHeader(raw, 'host');
  if (hosts === 0) return bad('the Host header is missing');
  if (hosts > 1) return bad('the request has more than one Host header');
  const host = req.headers.host ?? '';
  if (host === '') return bad('the Host header is empty');

  const contentLengths = countHeader(raw, 'content-length');
  const transferEncodings = countHeader(raw, 'transfer-encoding');
  if (contentLengths > 0 && transferEncodings > 0) return bad('the request has both Content-Length and Transfer-Encoding');
  if (contentLengths > 1) return bad('the request has more than one Content-Length header');

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
    else if (contentLengths === 1) framing = { kind: 'length', length: req.headers['content-length'] ?? '0' };
  }
  return { ok: true, target, host, path, secure, framing };
}
