/**
 * The session cookie of a private preview: what the relay gives a browser in exchange for a viewer
 * token (`?warren_token=`), so that the token itself leaves the address bar after one request.
 *
 * Value: `v1.<exp>.<jti>.<viewer>.<mac>` where `exp` is the session's expiry in seconds since the
 * epoch (the viewer token's `exp`), `jti` and `viewer` are base64url (either may be empty), and
 * `mac` is base64url HMAC-SHA256 under a key only the relay holds, over the preview host name
 * and every other field:
 *
 *     HMAC(key, "warren-session-v1\n" + host + "\n" + exp + "\n" + jti + "\n" + viewer)
 *
 * Why a relay-signed value and not the viewer JWT itself: the MAC binds the cookie to one preview
 * host, so a cookie that leaks (or that a sibling preview tosses onto the parent domain) opens
 * nothing else; it cannot be replayed as a Bearer token anywhere, because it is not a token; and
 * it is short (about 120 bytes) and cheap to check (one HMAC, no signature verification) on every
 * request of a page load. The `jti` keeps revocation working: a session whose viewer token was
 * revoked stops at once.
 *
 * The key is random per relay by default (made when the relay starts): sessions then end when the
 * relay restarts, and a browser sent to another relay of a fleet is asked for its token again.
 * Relays of one fleet share a key (RelayOptions.previewSessionKey) to share sessions.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { InvalidArgumentError } from '../../protocol/errors.js';

/** The name of the relay's session cookie on preview hosts. */
export const VIEWER_SESSION_COOKIE = 'warren_session';

/** Smallest session key accepted, in bytes (HMAC-SHA256 wants at least its output size). */
export const MIN_SESSION_KEY_BYTES = 32;

/** Version prefix of session values; a new format gets a new prefix. */
const VERSION = 'v1';

/** What a valid session says. */
export interface ViewerSession {
  /** Expiry, seconds since the epoch. */
  exp: number;
  /** The viewer token's id, for revocation; empty when it had none. */
  jti: string;
  /** The identity shown to the app (viewer claim, else jti, else sub). */
  viewer: string;
}

/** Makes and checks session values for preview hosts under one key. */
export class ViewerSessions {
  /** The HMAC key. Static after construction; never logged. */
  private readonly key: Buffer;

  /** `key` defaults to 32 random bytes; a given key must be at least MIN_SESSION_KEY_BYTES. */
  constructor(key: Buffer = randomBytes(MIN_SESSION_KEY_BYTES)) {
    if (!Buffer.isBuffer(key) || key.length < MIN_SESSION_KEY_BYTES) {
      throw new InvalidArgumentError(`previewSessionKey: must be a Buffer of at least ${MIN_SESSION_KEY_BYTES} bytes`);
    }
    this.key = Buffer.from(key);
  }

  /** The cookie value for `session` on preview host `host` (a lower-case host name without port). */
  seal(host: string, session: ViewerSession): string {
    const jti = Buffer.from(session.jti, 'utf8').toString('base64url');
    const viewer = Buffer.from(session.viewer, 'utf8').toString('base64url');
    const exp = String(Math.floor(session.exp));
    return `${VERSION}.${exp}.${jti}.${viewer}.${this.mac(host, exp, jti, viewer).toString('base64url')}`;
  }

  /**
   * The session a cookie value holds when it was sealed by this key for `host` and has not
   * expired at `nowSeconds`; null otherwise. Never throws on bad input.
   */
  open(host: string, value: string, nowSeconds: number): ViewerSession | null {
    const parts = value.split('.');
    if (parts.length !== 5 || parts[0] !== VERSION) return null;
    const [, exp, jti, viewer, mac] = parts as [string, string, string, string, string];
    if (!/^[0-9]{1,12}$/.test(exp) || !/^[A-Za-z0-9_-]*$/.test(jti + viewer + mac)) return null;
    const given = Buffer.from(mac, 'base64url');
    const expected = this.mac(host, exp, jti, viewer);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null;
    if (Number(exp) <= nowSeconds) return null;
    return { exp: Number(exp), jti: Buffer.from(jti, 'base64url').toString('utf8'), viewer: Buffer.from(viewer, 'base64url').toString('utf8') };
  }

  private mac(host: string, exp: string, jti: string, viewer: string): Buffer {
    return createHmac('sha256', this.key).update(`warren-session-${VERSION}\n${host}\n${exp}\n${jti}\n${viewer}`).digest();
  }
}

/** Attributes of the Set-Cookie that starts a session. */
export interface SessionCookieOptions {
  /** Seconds the browser keeps the cookie: at most the viewer token's remaining life. */
  maxAgeSeconds: number;
  /** Add `Secure` (the request came over TLS). */
  secure: boolean;
}

/**
 * The Set-Cookie value for a session: host-only (no Domain attribute, so no other preview host
 * receives it), HttpOnly (page scripts cannot read it), SameSite=Lax (sent on top-level
 * navigations, including the redirect that follows a link from the platform; not on cross-site
 * subrequests), Path=/, Max-Age, and Secure over TLS.
 */
export function sessionSetCookie(value: string, options: SessionCookieOptions): string {
  const maxAge = Math.max(0, Math.floor(options.maxAgeSeconds));
  return `${VIEWER_SESSION_COOKIE}=${value}; Path=/; Max-Age=${maxAge}; HttpOnly; SameSite=Lax${options.secure ? '; Secure' : ''}`;
}

/**
 * Splits Cookie header values into the relay's session values and the rest. `others` is the
 * Cookie header to forward (pairs kept verbatim, in order, joined with "; "), or null when
 * nothing is left. Every `warren_session` pair is taken: a sibling preview may toss one onto the
 * parent domain, so each is tried.
 */
export function takeSessionCookies(values: readonly string[]): { sessions: string[]; others: string | null } {
  const sessions: string[] = [];
  const kept: string[] = [];
  for (const header of values) {
    for (const pair of header.split(';')) {
      const trimmed = pair.trim();
      if (trimmed === '') continue;
      const eq = trimmed.indexOf('=');
      const name = (eq < 0 ? trimmed : trimmed.slice(0, eq)).trim();
      if (name === VIEWER_SESSION_COOKIE) sessions.push(eq < 0 ? '' : trimmed.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1'));
      else kept.push(trimmed);
    }
  }
  return { sessions, others: kept.length > 0 ? kept.join('; ') : null };
}
