/**
 * The claims of a Warren token and the rules each must follow. Used by both sides: verifyToken
 * checks a token's claims with them, issueToken refuses to sign claims that break them.
 */

/** What a token lets its holder do: register a tunnel, reach its ports, or open a private preview. */
export type Role = 'agent' | 'client' | 'viewer';

/** Every role, in a fixed order. */
export const ROLES: readonly Role[] = Object.freeze(['agent', 'client', 'viewer']);

/** A tunnel id: one DNS label of 1-32 lowercase letters, digits and inner hyphens. */
export const TUNNEL_ID_PATTERN = /^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$/;

/** Longest `jti` accepted, in characters. */
export const MAX_JTI_LENGTH = 128;

/** Longest `viewer` identity accepted, in characters. */
export const MAX_VIEWER_LENGTH = 256;

/** The claims Warren reads from a token. Other claims may be present and are ignored. */
export interface WarrenClaims {
  /** The tunnel id (TUNNEL_ID_PATTERN). */
  sub: string;
  /** What the token allows. */
  role: Role;
  /** Ports of the tunnel the token covers: unique integers 1-65535, at least one. */
  ports: readonly number[];
  /** The relay network(s) the token is for; verification needs one to match. */
  aud: string | readonly string[];
  /** Expiry, seconds since the epoch. Required. */
  exp: number;
  /** Not before, seconds since the epoch. */
  nbf?: number;
  /** Issued at, seconds since the epoch. */
  iat?: number;
  /** Token id (at most MAX_JTI_LENGTH characters), for revocation lists. */
  jti?: string;
  /** Ports (each also in `ports`) whose preview is private: it needs a viewer token. */
  private?: readonly number[];
  /** The person a viewer token stands for (at most MAX_VIEWER_LENGTH characters), for logs. */
  viewer?: string;
}

/** True for a string that is one of the three roles. */
export function isRole(value: unknown): value is Role {
  return value === 'agent' || value === 'client' || value === 'viewer';
}

/** True for a NumericDate (RFC 7519): a finite, non-negative number of seconds. */
export function isNumericDate(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0;
}

/** True for a valid tunnel id. */
export function isTunnelId(value: unknown): value is string {
  return typeof value === 'string' && value.length <= 32 && TUNNEL_ID_PATTERN.test(value);
}

/** Whether `aud` (a string or an array of strings) names `audience`; undefined when `aud` has the wrong type. */
export function audienceMatches(aud: unknown, audience: string): boolean | undefined {
  if (typeof aud === 'string') return aud === audience;
  if (!Array.isArray(aud) || aud.length === 0 || !aud.every((a) => typeof a === 'string')) return undefined;
  return aud.includes(audience);
}

/**
 * The first problem with the claims other than the time, audience, revocation and role checks
 * that verifyToken makes itself first; undefined when there is none. Problems name the claim and
 * the rule, never the value (a token's content stays out of messages and logs).
 */
export function claimsProblem(c: Record<string, unknown>): string | undefined {
  if (!isTunnelId(c.sub)) return 'sub is not a tunnel id (1-32 lowercase letters, digits and inner hyphens)';
  if (!isRole(c.role)) return 'role is not one of agent, client, viewer';
  const ports = portListProblem(c.ports, 'ports');
  if (ports !== undefined) return ports;
  if (audienceMatches(c.aud, '') === undefined) return 'aud is not a string or a non-empty array of strings';
  if (!isNumericDate(c.exp)) return 'exp is missing or not a number of seconds';
  if (c.nbf !== undefined && !isNumericDate(c.nbf)) return 'nbf is not a number of seconds';
  if (c.iat !== undefined && !isNumericDate(c.iat)) return 'iat is not a number of seconds';
  if (c.jti !== undefined && (typeof c.jti !== 'string' || c.jti.length === 0 || c.jti.length > MAX_JTI_LENGTH)) {
    return `jti is not a string of 1-${MAX_JTI_LENGTH} characters`;
  }
  if (c.private !== undefined) {
    const problem = portListProblem(c.private, 'private', true);
    if (problem !== undefined) return problem;
    const granted = new Set(c.ports as number[]);
    if (!(c.private as number[]).every((p) => granted.has(p))) return 'private lists a port that is not in ports';
  }
  if (c.viewer !== undefined && (typeof c.viewer !== 'string' || c.viewer.length === 0 || c.viewer.length > MAX_VIEWER_LENGTH)) {
    return `viewer is not a string of 1-${MAX_VIEWER_LENGTH} characters`;
  }
  return undefined;
}

/**
 * Copies the claims Warren knows out of an object whose claims passed claimsProblem, leaving
 * unknown claims behind. The result and its arrays are frozen.
 */
export function pickClaims(c: Record<string, unknown>): Readonly<WarrenClaims> {
  const out: WarrenClaims = {
    sub: c.sub as string,
    role: c.role as Role,
    ports: Object.freeze([...(c.ports as number[])]),
    aud: typeof c.aud === 'string' ? c.aud : Object.freeze([...(c.aud as string[])]),
    exp: c.exp as number,
  };
  if (c.nbf !== undefined) out.nbf = c.nbf as number;
  if (c.iat !== undefined) out.iat = c.iat as number;
  if (c.jti !== undefined) out.jti = c.jti as string;
  if (c.private !== undefined) out.private = Object.freeze([...(c.private as number[])]);
  if (c.viewer !== undefined) out.viewer = c.viewer as string;
  return Object.freeze(out);
}

function portListProblem(value: unknown, name: string, allowEmpty = false): string | undefined {
  if (!Array.isArray(value) || (value.length === 0 && !allowEmpty)) return `${name} is not ${allowEmpty ? 'an' : 'a non-empty'} array of ports`;
  // A token is at most a few KB, so these arrays are short; a Set keeps the check linear anyway.
  const seen = new Set<number>();
  for (const p of value) {
    if (typeof p !== 'number' || !Number.isInteger(p) || p < 1 || p > 65535) return `${name} holds a value that is not a port (1-65535)`;
    if (seen.has(p)) return `${name} lists a port twice`;
    seen.add(p);
  }
  return undefined;
}
