/**
 * Access to private previews: the checks the preview proxy makes after admission and before it
 * opens any stream, so that a refused request never reaches the agent.
 *
 * Flow (docs/PRIVATE-PREVIEWS.md):
 * 1. `GET https://3000-ab12cd.domain/path?warren_token=<viewer JWT>`: the token is verified; the
 *    relay answers 302 to the same path without `warren_token` and sets the session cookie
 *    (viewer-session.ts) for that host alone.
 * 2. Later requests carry the cookie, or `Authorization: Bearer <viewer JWT>` (tools).
 * 3. Without either, a private port answers 401 (ERR_WARREN_UNAUTHORIZED) with a page that says
 *    what to do. A WebSocket upgrade must also come from the preview's own origin (403 otherwise):
 *    browsers attach cookies to cross-origin WebSocket handshakes and no CORS check applies.
 *
 * Whatever the port, what belongs to Warren never reaches the app: `warren_token` is removed from
 * the query, `warren_session` from the Cookie header (the app's own cookies stay), and an
 * `Authorization: Bearer` whose JWS header names a key the relay trusts. For private ports the
 * app receives `X-Warren-Viewer` and `X-Warren-Viewer-Token` (viewer-token.ts) instead.
 */
import type { IncomingMessage } from 'node:http';
import type { Logger } from '../../log/logger.js';
import { silentLogger } from '../../log/logger.js';
import type { WarrenClaims } from '../../certs/token.js';
import { TokenError, type ErrorCode } from '../../protocol/errors.js';
import { verifyFor, type TokenPolicy } from '../../certs/token.js';
import { renderErrorAnswer, type ErrorAnswer } from './error-page.js';
import { normalizeHostname, type PreviewTarget } from './host.js';
import { sessionSetCookie, takeSessionCookies, type ViewerSession, type ViewerSessions } from './viewer-session.js';
import type { ViewerTokenSigner } from './viewer-token.js';

/** The query parameter that carries a viewer token to exchange for a session cookie. */
export const VIEWER_TOKEN_PARAM = 'warren_token';

/** What the proxy asks about one admitted request. */
export interface AccessRequest {
  req: IncomingMessage;
  target: PreviewTarget;
  /** The Host header (validated preview host of the domain). */
  host: string;
  /** Origin-form request target. */
  path: string;
  /** The client connection is TLS. */
  secure: boolean;
  /** An Upgrade request (WebSocket). */
  upgrade: boolean;
}

/** Forward the request with these (sanitized) parts, or answer it without opening a stream. */
export type AccessDecision =
  | {
      kind: 'forward';
      /** The request target without `warren_token`. */
      path: string;
      /** The request's raw headers without Warren's cookie and Bearer token. */
      rawHeaders: string[];
      /** Headers to add for the app (name, value, ...), after the proxy's own. */
      extraHeaders: string[];
    }
  | { kind: 'answer'; answer: ErrorAnswer };

/** The seam the preview proxy calls; PreviewAccessControl is the relay's implementation. */
export interface PreviewAccess {
  check(request: AccessRequest): AccessDecision;
}

/** Options of PreviewAccessControl. */
export interface PreviewAccessOptions {
  /** Verifies viewer tokens: the relay's trusted keys, audience, clock and revocation list. */
  policy: TokenPolicy;
  /** True when the tunnel's agent marked the port private (read at each request). */
  isPrivate(target: PreviewTarget): boolean;
  /** Seals and opens session cookies. */
  sessions: ViewerSessions;
  /** Signs the identity tokens apps receive. */
  signer: ViewerTokenSigner;
  logger?: Logger;
}

/** The parts of a request that belong to Warren, taken out of what goes to the app. */
interface Taken {
  path: string;
  rawHeaders: string[];
  queryTokens: string[];
  bearers: string[];
  sessions: string[];
}

/** A viewer token checked against a preview target. */
type Verified = { ok: true; session: ViewerSession } | { ok: false; detail: string };

/** The relay's access control for preview requests. */
export class PreviewAccessControl implements PreviewAccess {
  private readonly options: PreviewAccessOptions;
  private readonly log: Logger;

  constructor(options: PreviewAccessOptions) {
    this.options = options;
    this.log = options.logger ?? silentLogger();
  }

  /** Decides about one request; never throws for anything the client sent. */
  check(request: AccessRequest): AccessDecision {
    const { req, target, secure, upgrade } = request;
    const host = normalizeHostname(request.host) ?? request.host.toLowerCase();
    const taken = this.take(req.rawHeaders, request.path);
    const now = this.nowSeconds();
    const forward = (extraHeaders: string[] = []): AccessDecision => ({ kind: 'forward', path: taken.path, rawHeaders: taken.rawHeaders, extraHeaders });
    const refuse = (detail: string, tokenGiven: boolean): AccessDecision => {
      this.log.debug({ tunnelId: target.tunnelId, port: target.port, code: 'ERR_WARREN_UNAUTHORIZED', detail }, 'private preview refused');
      return { kind: 'answer', answer: unauthorized(req, target, detail, tokenGiven) };
    };

    // 1. A token in the address: exchanged for a cookie (GET, HEAD), or a credential for this request.
    let session: ViewerSession | null = null;
    let explicit = false;
    let problem: string | undefined;
    if (taken.queryTokens.length > 1) problem = `the address holds more than one ${VIEWER_TOKEN_PARAM}`;
    else if (taken.queryTokens.length === 1) {
      const verified = this.verifyViewer(taken.queryTokens[0]!, target, now);
      if (!verified.ok) problem = verified.detail;
      else if (!upgrade && (req.method === 'GET' || req.method === 'HEAD')) return { kind: 'answer', answer: startSession(this.options.sessions, host, taken.path, verified.session, secure, now) };
      else {
        session = verified.session;
        explicit = true;
      }
    }
    if (!this.options.isPrivate(target)) return forward();
    if (problem !== undefined) return refuse(problem, true);

    // 2. A Bearer token (tools), else 3. the session cookie.
    if (session === null && taken.bearers.length > 0) {
      if (taken.bearers.length > 1) return refuse('the request carries more than one Bearer token', true);
      const verified = this.verifyViewer(taken.bearers[0]!, target, now);
      if (!verified.ok) return refuse(verified.detail, true);
      session = verified.session;
      explicit = true;
    }
    if (session === null) {
      for (const value of taken.sessions) {
        const opened = this.options.sessions.open(host, value, now);
        if (opened && !(opened.jti !== '' && this.options.policy.isRevoked?.(opened.jti))) {
          session = opened;
          break;
        }
      }
      if (session === null && taken.sessions.length > 0) return refuse('the session for this preview has expired or was not made for it; open the link you were given again', true);
    }
    if (session === null) return refuse('', false);

    // 4. WebSocket: the page must be the preview itself (tools with a token may send no Origin).
    if (upgrade) {
      const origin = req.headers.origin;
      const allowed = origin === undefined ? explicit : isPreviewOrigin(origin, request.host, secure);
      if (!allowed) {
        this.log.debug({ tunnelId: target.tunnelId, port: target.port, code: 'ERR_WARREN_FORBIDDEN' }, 'cross-origin WebSocket to a private preview refused');
        const detail = origin === undefined ? 'a WebSocket that carries no Origin needs a viewer token (Bearer), not a cookie' : 'a WebSocket to a private preview must come from a page of that preview (its Origin)';
        return { kind: 'answer', answer: renderErrorAnswer('ERR_WARREN_FORBIDDEN', req.headers.accept, { ...target, detail, retry: false }) };
      }
    }
    return forward(['X-Warren-Viewer', headerSafe(session.viewer), 'X-Warren-Viewer-Token', this.options.signer.sign(host, session.viewer, now, session.exp)]);
  }

  /** Verifies a viewer token for `target`; the detail names the reason, never the token. */
  private verifyViewer(token: string, target: PreviewTarget, now: number): Verified {
    let claims: Readonly<WarrenClaims>;
    try {
      claims = verifyFor(this.options.policy, token, ['viewer']);
    } catch (err) {
      if (!(err instanceof TokenError)) throw err;
      return { ok: false, detail: `the token given was refused (${err.message}, ${err.code})` };
    }
    if (claims.sub !== target.tunnelId || !claims.ports.includes(target.port)) {
      return { ok: false, detail: 'the token given is for another tunnel or port' };
    }
    // Verification tolerates clock skew; a session must still have time left.
    if (claims.exp <= now) return { ok: false, detail: 'the token given was refused (token has expired, ERR_WARREN_TOKEN_EXPIRED)' };
    return { ok: true, session: { exp: claims.exp, jti: claims.jti ?? '', viewer: claims.viewer ?? claims.jti ?? claims.sub } };
  }

  /** Takes Warren's parts out of the request target and headers. */
  private take(raw: readonly string[], path: string): Taken {
    const query = takeQueryParam(path, VIEWER_TOKEN_PARAM);
    const out: string[] = [];
    const bearers: string[] = [];
    const sessions: string[] = [];
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const name = raw[i]!;
      const value = raw[i + 1]!;
      const lower = name.toLowerCase();
      if (lower === 'cookie') {
        const split = takeSessionCookies([value]);
        sessions.push(...split.sessions);
        if (split.others !== null) out.push(name, split.sessions.length > 0 ? split.others : value);
        continue;
      }
      if (lower === 'authorization') {
        const m = /^bearer[ \t]+([A-Za-z0-9_.-]+)[ \t]*$/i.exec(value);
        if (m && this.isWarrenToken(m[1]!)) {
          bearers.push(m[1]!);
          continue;
        }
      }
      out.push(name, value);
    }
    return { path: query.path, rawHeaders: out, queryTokens: query.values, bearers, sessions };
  }

  /** True for a compact JWS whose header names a key this relay trusts: a Warren token. */
  private isWarrenToken(token: string): boolean {
    const dot = token.indexOf('.');
    if (dot <= 0 || dot > 1024) return false;
    try {
      const header = JSON.parse(Buffer.from(token.slice(0, dot), 'base64url').toString('utf8')) as { kid?: unknown } | null;
      return typeof header?.kid === 'string' && this.options.policy.keys.has(header.kid);
    } catch {
      return false;
    }
  }

  private nowSeconds(): number {
    return (this.options.policy.now ?? Date.now)() / 1000;
  }
}

/** The 302 that ends a token exchange: the same path without the token, and the session cookie. */
function startSession(sessions: ViewerSessions, host: string, path: string, session: ViewerSession, secure: boolean, now: number): ErrorAnswer {
  const cookie = sessionSetCookie(sessions.seal(host, session), { maxAgeSeconds: session.exp - now, secure });
  // A path that starts with two slashes would read as another host (`//evil.example/`): `/.` in
  // front keeps the same path on this origin once the browser removes the dot segment.
  const location = /^\/[/\\]/.test(path) ? `/.${path}` : path;
  return {
    status: 302,
    headers: [
      ['Location', location],
      ['Set-Cookie', cookie],
      ['Cache-Control', 'no-store'],
      ['Referrer-Policy', 'no-referrer'],
      ['Content-Length', '0'],
    ],
    body: Buffer.alloc(0),
  };
}

/** The 401 answer, with a WWW-Authenticate challenge (RFC 6750). */
function unauthorized(req: IncomingMessage, target: PreviewTarget, detail: string, tokenGiven: boolean): ErrorAnswer {
  const code: ErrorCode = 'ERR_WARREN_UNAUTHORIZED';
  const answer = renderErrorAnswer(code, req.headers.accept, { ...target, ...(detail ? { detail } : {}), retry: false });
  answer.headers.push(['WWW-Authenticate', tokenGiven ? 'Bearer realm="warren-preview", error="invalid_token"' : 'Bearer realm="warren-preview"']);
  return answer;
}

/**
 * Removes every `name` parameter from the query of an origin-form target; the other parameters
 * stay as they were, in order. `values` are the removed values, decoded.
 */
export function takeQueryParam(path: string, name: string): { path: string; values: string[] } {
  const q = path.indexOf('?');
  if (q < 0) return { path, values: [] };
  const values: string[] = [];
  const kept: string[] = [];
  for (const part of path.slice(q + 1).split('&')) {
    const eq = part.indexOf('=');
    if (decodeQueryComponent(eq < 0 ? part : part.slice(0, eq)) === name) values.push(decodeQueryComponent(eq < 0 ? '' : part.slice(eq + 1)) ?? '');
    else kept.push(part);
  }
  if (values.length === 0) return { path, values };
  const rest = kept.join('&');
  return { path: rest === '' ? path.slice(0, q) : `${path.slice(0, q)}?${rest}`, values };
}

function decodeQueryComponent(text: string): string | undefined {
  try {
    return decodeURIComponent(text.replace(/\+/g, ' '));
  } catch {
    return undefined;
  }
}

/**
 * True when `origin` is the preview's own origin: the Host's name and port, and the scheme of the
 * connection. On plain HTTP, https is accepted too: a TLS-terminating load balancer in front of
 * the relay's HTTP listener serves the page as https.
 */
export function isPreviewOrigin(origin: string, host: string, secure: boolean): boolean {
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return false;
  }
  if (url.protocol !== 'https:' && (secure || url.protocol !== 'http:')) return false;
  if (url.pathname !== '/' || url.search !== '' || url.username !== '' || url.password !== '' || origin.endsWith('/')) return false;
  const m = /^([^:]+?)\.?(?::([0-9]{1,5}))?$/.exec(host.toLowerCase());
  if (!m) return false;
  const defaultPort = url.protocol === 'https:' ? '443' : '80';
  return url.hostname === m[1] && (url.port || defaultPort) === (m[2] ?? defaultPort);
}

/** The viewer as a header value: printable ASCII as it is, anything else percent-encoded (UTF-8). */
export function headerSafe(viewer: string): string {
  return /^[\x20-\x7e]*$/.test(viewer) ? viewer : encodeURIComponent(viewer);
}
