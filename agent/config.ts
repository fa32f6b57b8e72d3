/**
 * Agent settings as typed by people: port specs (`3000`, `3000:private`, `6379:allow=10.0.0.0/8+192.168.0.0/16`)
 * and a look at the token's claims (without verifying them: the relay verifies) so that a token
 * that cannot work is reported before any connection is tried.
 */
import { BlockList, isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { ConfigError, MAX_HELLO_TOKEN_CHARS } from '../protocol/index.js';
import { MAX_CLOCK_SKEW_SECONDS, peekClaims } from '../certs/token.js';
import { parsePort } from '../cli/parse.js';
import type { PortSpec } from './agent.js';
import { defaultStatusSocketPath } from './status.js';

/**
 * The status socket used when --status-socket (WARREN_STATUS_SOCKET) is not given:
 * `$XDG_RUNTIME_DIR/warren-agent.sock`, else `<tmpdir>/warren-agent-<uid>.sock`.
 */
export function defaultStatusSocket(): string {
  return defaultStatusSocketPath(process.env.XDG_RUNTIME_DIR || undefined, process.getuid?.() ?? 0, tmpdir());
}

/** Parses one `--port` value: `N` or `N:private`. */
export function parsePortFlag(text: string): PortSpec {
  const m = /^(\d+)(?::(private|public))?$/.exec(text.trim());
  if (!m) throw new ConfigError([`--port: "${text}" is not PORT or PORT:private (example: 3000, 3000:private)`]);
  return { port: parsePort(m[1]!, '--port'), preview: true, private: m[2] === 'private', tcp: false, allow: [] };
}

/** Parses one `--tcp` value: `N` or `N:allow=CIDR[+CIDR...]`. */
export function parseTcpFlag(text: string): PortSpec {
  const m = /^(\d+)(?::allow=(.+))?$/.exec(text.trim());
  if (!m) throw new ConfigError([`--tcp: "${text}" is not PORT or PORT:allow=CIDR[+CIDR] (example: 5432:allow=10.0.0.0/8)`]);
  const allow = m[2] ? m[2].split('+').map((c) => c.trim()) : [];
  for (const cidr of allow) checkCidr(cidr, '--tcp');
  return { port: parsePort(m[1]!, '--tcp'), preview: false, private: false, tcp: true, allow };
}

/** Throws ConfigError unless `cidr` is ADDRESS/PREFIX (IPv4 or IPv6). */
export function checkCidr(cidr: string, what: string): void {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(cidr);
  const family = m ? isIP(m[1]!) : 0;
  const bits = m ? Number(m[2]) : NaN;
  if (!m || family === 0 || bits > (family === 4 ? 32 : 128)) throw new ConfigError([`${what}: "${cidr}" is not a CIDR block (example: 10.0.0.0/8, 2001:db8::/32)`]);
  new BlockList().addSubnet(m[1]!, bits, family === 4 ? 'ipv4' : 'ipv6');
}

/** Merges --port and --tcp specs of the same port. */
export function mergePortSpecs(specs: PortSpec[]): PortSpec[] {
  const byPort = new Map<number, PortSpec>();
  for (const s of specs) {
    const prev = byPort.get(s.port);
    byPort.set(s.port, prev ? { port: s.port, preview: prev.preview || s.preview, private: prev.private || s.private, tcp: prev.tcp || s.tcp, allow: [...prev.allow, ...s.allow] } : s);
  }
  return [...byPort.values()].sort((a, b) => a.port - b.port);
}

/** The claims the agent looks at before connecting (read with peekClaims, unverified). */
export interface TokenPeek {
  sub?: string;
  role?: string;
  ports?: number[];
  exp?: number;
}

/** Problems that make a token useless for these ports, found before dialing (empty when none). */
export function tokenProblems(token: string, ports: PortSpec[], nowMs: number): string[] {
  // The HELLO's cap, not the verifier's: a token too large for the relay is refused by it, with its code.
  const claims = peekClaims(token, MAX_HELLO_TOKEN_CHARS) as TokenPeek | undefined;
  if (!claims) return ['--token: not a JWT (three base64url parts); mint one with `warren token issue --role agent`'];
  const problems: string[] = [];
  if (claims.role !== undefined && claims.role !== 'agent') problems.push(`--token: this is a ${claims.role} token; the agent needs a token with role "agent"`);
  if (typeof claims.exp === 'number' && claims.exp * 1000 < nowMs - MAX_CLOCK_SKEW_SECONDS * 1000) problems.push(`--token: the token expired at ${new Date(claims.exp * 1000).toISOString()}`);
  if (Array.isArray(claims.ports)) {
    const allowed = new Set(claims.ports);
    const missing = ports.filter((p) => !allowed.has(p.port)).map((p) => p.port);
    if (missing.length > 0) problems.push(`--port: the token allows ports ${claims.ports.join(', ')}; not ${missing.join(', ')}`);
  }
  return problems;
}
