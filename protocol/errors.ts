/**
 * Warren's error codes and error classes.
 *
 * Every error Warren raises or sends carries a stable `code` (`ERR_WARREN_*`). Users match on
 * codes, never on message text. Each code also has a wire number, so the same error can travel
 * in an RST or GOAWAY frame and be rebuilt on the other side, and an HTTP status for the answers
 * the relay gives to preview requests. `docs/errors.md` lists every code; a test keeps the two in
 * sync.
 */

/** How one error code behaves: its number on the wire, whether retrying may help, its HTTP status. */
export interface ErrorSpec {
  /** Number carried in RST and GOAWAY frames (u32). 0 is reserved for "no error". */
  readonly wire: number;
  /** True when the same operation may succeed if tried again later. */
  readonly retryable: boolean;
  /** HTTP status used when the error answers a preview request. */
  readonly status: number;
  /** One sentence for users; also the default message. */
  readonly summary: string;
}

/** Wire number for "no error": a graceful GOAWAY. RST never carries it; a received 0 is reported as ERR_WARREN_INTERNAL. */
export const WIRE_NO_ERROR = 0;

/** The table of every error code. Grouped by wire number: 0x0x session, 0x1x stream, 0x2x routing, 0x3x identity, 0x4x connection, 0x5x local configuration. */
export const ERRORS = {
  // Session-level protocol errors: the session ends with GOAWAY carrying the code.
  ERR_WARREN_PROTOCOL: { wire: 0x01, retryable: false, status: 502, summary: 'The peer broke the wire protocol.' },
  ERR_WARREN_FRAME_TOO_LARGE: { wire: 0x02, retryable: false, status: 502, summary: 'A frame was larger than the negotiated maximum.' },
  ERR_WARREN_UNKNOWN_FRAME: { wire: 0x03, retryable: false, status: 502, summary: 'A frame of an unknown critical type arrived.' },
  ERR_WARREN_FLOW_CONTROL: { wire: 0x04, retryable: false, status: 502, summary: 'The peer sent more than its credit window allowed, or overflowed a window.' },
  ERR_WARREN_FLOOD: { wire: 0x05, retryable: false, status: 502, summary: 'The peer sent control frames faster than the session allows.' },
  ERR_WARREN_METADATA_TOO_LARGE: { wire: 0x06, retryable: false, status: 502, summary: 'Stream metadata was larger than the negotiated maximum.' },
  ERR_WARREN_KEEPALIVE_TIMEOUT: { wire: 0x07, retryable: true, status: 502, summary: 'The peer stopped answering keepalive pings.' },
  ERR_WARREN_HANDSHAKE: { wire: 0x08, retryable: false, status: 400, summary: 'The handshake message was missing or malformed.' },
  ERR_WARREN_HANDSHAKE_TIMEOUT: { wire: 0x09, retryable: true, status: 408, summary: 'The handshake did not complete in time.' },
  ERR_WARREN_VERSION: { wire: 0x0a, retryable: false, status: 400, summary: 'The peer speaks no protocol version this side supports.' },
  ERR_WARREN_SESSION_CLOSED: { wire: 0x0b, retryable: true, status: 502, summary: 'The session is closed.' },
  ERR_WARREN_GOING_AWAY: { wire: 0x0c, retryable: true, status: 503, summary: 'The peer is going away and accepts no new streams.' },
  ERR_WARREN_INTERNAL: { wire: 0x0d, retryable: true, status: 500, summary: 'An internal error ended the operation.' },

  // Stream-level errors: the stream ends with RST carrying the code; the session lives on.
  ERR_WARREN_STREAM_CANCELLED: { wire: 0x10, retryable: false, status: 502, summary: 'The other side reset the stream.' },
  ERR_WARREN_STREAM_REFUSED: { wire: 0x11, retryable: true, status: 503, summary: 'The session is at its limit of concurrent streams.' },
  ERR_WARREN_PENDING_LIMIT: { wire: 0x12, retryable: true, status: 503, summary: 'The session is at its limit of streams waiting to be accepted.' },
  ERR_WARREN_BUFFER_LIMIT: { wire: 0x13, retryable: true, status: 503, summary: 'The session is at its limit of buffered bytes.' },
  ERR_WARREN_STREAM_CLOSED: { wire: 0x14, retryable: false, status: 502, summary: 'The stream is already closed.' },

  // Routing: the relay or the agent cannot deliver a stream.
  ERR_WARREN_TUNNEL_OFFLINE: { wire: 0x20, retryable: true, status: 502, summary: 'No agent is connected for this tunnel.' },
  ERR_WARREN_PORT_NOT_EXPOSED: { wire: 0x21, retryable: false, status: 404, summary: 'The tunnel does not expose this port.' },
  ERR_WARREN_APP_UNREACHABLE: { wire: 0x22, retryable: true, status: 502, summary: 'The agent could not connect to the app on this port.' },
  ERR_WARREN_DIAL_DENIED: { wire: 0x23, retryable: false, status: 403, summary: 'The agent refused to dial a port its token does not allow.' },
  ERR_WARREN_TUNNEL_REPLACED: { wire: 0x24, retryable: false, status: 409, summary: 'Another agent registered the same tunnel and replaced this one.' },
  ERR_WARREN_BAD_REQUEST: { wire: 0x25, retryable: false, status: 400, summary: 'The request is malformed or ambiguous.' },
  ERR_WARREN_MISDIRECTED: { wire: 0x26, retryable: false, status: 421, summary: 'The request was sent to a host this relay does not serve on this connection.' },
  ERR_WARREN_TIMEOUT: { wire: 0x27, retryable: true, status: 408, summary: 'The peer was too slow and the connection timed out.' },
  ERR_WARREN_TCP_PORTS_EXHAUSTED: { wire: 0x28, retryable: true, status: 503, summary: 'The relay has no free port left in its raw TCP range.' },
  ERR_WARREN_SOURCE_DENIED: { wire: 0x29, retryable: false, status: 403, summary: 'The source address is not in the allowlist for this endpoint.' },
  ERR_WARREN_APP_RESPONSE: { wire: 0x2a, retryable: false, status: 502, summary: 'The app closed the connection or answered with something that is not valid HTTP.' },
  ERR_WARREN_HEADERS_TOO_LARGE: { wire: 0x2b, retryable: false, status: 431, summary: 'The request head has too many header lines or too many bytes.' },
  ERR_WARREN_TUNNEL_MOVED: { wire: 0x2c, retryable: true, status: 503, summary: 'The relay asked to carry a forwarded stream no longer holds the tunnel with that agent session.' },

  // Identity: tokens and permissions.
  ERR_WARREN_TOKEN_MISSING: { wire: 0x30, retryable: false, status: 401, summary: 'No token was presented.' },
  ERR_WARREN_TOKEN_MALFORMED: { wire: 0x31, retryable: false, status: 401, summary: 'The token is not a well-formed compact JWS.' },
  ERR_WARREN_TOKEN_TOO_LARGE: { wire: 0x32, retryable: false, status: 401, summary: 'The token is larger than the size cap.' },
  ERR_WARREN_TOKEN_ALGORITHM: { wire: 0x33, retryable: false, status: 401, summary: 'The token is not signed with EdDSA (Ed25519).' },
  ERR_WARREN_TOKEN_UNKNOWN_KEY: { wire: 0x34, retryable: false, status: 401, summary: 'The token names a key id (kid) this relay does not trust.' },
  ERR_WARREN_TOKEN_SIGNATURE: { wire: 0x35, retryable: false, status: 401, summary: 'The token signature does not verify.' },
  ERR_WARREN_TOKEN_EXPIRED: { wire: 0x36, retryable: false, status: 401, summary: 'The token has expired.' },
  ERR_WARREN_TOKEN_NOT_YET_VALID: { wire: 0x37, retryable: true, status: 401, summary: 'The token is not valid yet (nbf or iat in the future).' },
  ERR_WARREN_TOKEN_AUDIENCE: { wire: 0x38, retryable: false, status: 401, summary: 'The token was issued for another relay network (aud).' },
  ERR_WARREN_TOKEN_ROLE: { wire: 0x39, retryable: false, status: 403, summary: 'The token has the wrong role for this endpoint.' },
  ERR_WARREN_TOKEN_REVOKED: { wire: 0x3a, retryable: false, status: 401, summary: 'The token has been revoked (jti).' },
  ERR_WARREN_TOKEN_DUPLICATE_KEY: { wire: 0x3b, retryable: false, status: 401, summary: 'The token header or claims repeat a JSON key.' },
  ERR_WARREN_TOKEN_CLAIMS: { wire: 0x3c, retryable: false, status: 401, summary: 'A required token claim is missing or invalid.' },
  ERR_WARREN_FORBIDDEN: { wire: 0x3d, retryable: false, status: 403, summary: 'The token is valid but does not grant this tunnel or port.' },
  ERR_WARREN_UNAUTHORIZED: { wire: 0x3e, retryable: false, status: 401, summary: 'This resource needs a token.' },

  // Connections between processes.
  ERR_WARREN_RELAY_UNREACHABLE: { wire: 0x40, retryable: true, status: 502, summary: 'The relay could not be reached.' },
  ERR_WARREN_TLS: { wire: 0x41, retryable: false, status: 502, summary: 'TLS failed: the certificate was not trusted or did not match.' },
  ERR_WARREN_RELAY_REJECTED: { wire: 0x42, retryable: true, status: 502, summary: 'The relay refused the WebSocket upgrade.' },
  ERR_WARREN_DRAINING: { wire: 0x43, retryable: true, status: 503, summary: 'The relay is draining and sends its sessions elsewhere.' },
  ERR_WARREN_AGENT_UNREACHABLE: { wire: 0x44, retryable: true, status: 502, summary: 'No agent answered on the local status socket.' },
  ERR_WARREN_DIRECTORY: { wire: 0x45, retryable: true, status: 503, summary: "The relay network's directory (NATS) cannot be used." },

  // Local configuration and usage; these stay in the process (exit code 2).
  ERR_WARREN_CONFIG: { wire: 0x50, retryable: false, status: 500, summary: 'The configuration is invalid.' },
  ERR_WARREN_USAGE: { wire: 0x51, retryable: false, status: 500, summary: 'The command line is invalid.' },
  ERR_WARREN_INVALID_ARGUMENT: { wire: 0x52, retryable: false, status: 500, summary: 'An option passed to a library function is invalid.' },
  ERR_WARREN_NO_TRUST_KEYS: { wire: 0x53, retryable: false, status: 500, summary: 'The relay has no trusted token keys and refuses to start.' },
  ERR_WARREN_KEY: { wire: 0x54, retryable: false, status: 500, summary: 'A key file is missing or not a usable key.' },
  ERR_WARREN_CERT: { wire: 0x55, retryable: false, status: 500, summary: 'A certificate file is missing or not usable.' },
  ERR_WARREN_LISTEN: { wire: 0x56, retryable: false, status: 500, summary: 'A listener could not be opened.' },
} as const satisfies Record<string, ErrorSpec>;

/** One of Warren's stable error codes. */
export type ErrorCode = keyof typeof ERRORS;

const CODE_BY_WIRE = new Map<number, ErrorCode>(
  (Object.keys(ERRORS) as ErrorCode[]).map((code) => [ERRORS[code].wire, code]),
);

/** The code for a wire number, or undefined for numbers this version does not know. */
export function codeFromWire(wire: number): ErrorCode | undefined {
  return CODE_BY_WIRE.get(wire);
}

/** Options shared by every Warren error. */
export interface WarrenErrorOptions {
  cause?: unknown;
  /** Overrides the table's retry decision for this one error. */
  retryable?: boolean;
}

/** The base of every error Warren raises: a stable `code`, its wire number and a retry decision. */
export class WarrenError extends Error {
  readonly code: ErrorCode;
  readonly wireCode: number;
  readonly retryable: boolean;

  constructor(code: ErrorCode, message?: string, options: WarrenErrorOptions = {}) {
    super(message ?? ERRORS[code].summary, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.wireCode = ERRORS[code].wire;
    this.retryable = options.retryable ?? ERRORS[code].retryable;
  }

  /** HTTP status for this error when it answers a preview request. */
  get status(): number {
    return ERRORS[this.code].status;
  }
}

/** The peer broke the protocol; the session ends with GOAWAY carrying `wireCode`. */
export class ProtocolError extends WarrenError {}

/** A stream was reset, by the peer (`remote`) or locally; carries the RST code. */
export class StreamResetError extends WarrenError {
  /** True when the RST came from the peer. */
  readonly remote: boolean;
  constructor(code: ErrorCode, message?: string, options: WarrenErrorOptions & { remote?: boolean } = {}) {
    super(code, message, options);
    this.remote = options.remote ?? false;
  }
}

/** A session or connection ended or could not be made; `retryable` says whether to dial again. */
export class ConnectionError extends WarrenError {}

/** A token was rejected. The message never contains the token. */
export class TokenError extends WarrenError {}

/** A configuration or command line was invalid; `issues` holds one line per problem. */
export class ConfigError extends WarrenError {
  readonly issues: readonly string[];
  constructor(issues: readonly string[], code: ErrorCode = 'ERR_WARREN_CONFIG', options: WarrenErrorOptions = {}) {
    super(code, issues.length === 1 ? issues[0] : `${issues.length} problems:\n  - ${issues.join('\n  - ')}`, options);
    this.issues = issues;
  }
}

/** A programmatic option failed validation; the message names the option. */
export class InvalidArgumentError extends WarrenError {
  constructor(message: string, options: WarrenErrorOptions = {}) {
    super('ERR_WARREN_INVALID_ARGUMENT', message, options);
  }
}

/**
 * Rebuilds an error from a wire code and message received in RST or GOAWAY. Unknown codes
 * (from a newer peer) become ERR_WARREN_INTERNAL, keeping the number in the message.
 */
export function errorFromWire<T extends WarrenError>(
  Class: new (code: ErrorCode, message?: string, options?: WarrenErrorOptions & { remote?: boolean }) => T,
  wire: number,
  message: string | undefined,
  options: WarrenErrorOptions & { remote?: boolean } = {},
): T {
  const code = codeFromWire(wire);
  if (code === undefined) return new Class('ERR_WARREN_INTERNAL', `peer sent unknown error code ${wire}${message ? `: ${message}` : ''}`, options);
  return new Class(code, message || undefined, options);
}

/** True for errors whose code says retrying may succeed. Decides by code, never by message text. */
export function isRetryable(err: unknown): boolean {
  return err instanceof WarrenError ? err.retryable : false;
}

/**
 * The code to report for a caught error (metrics labels, logs, `--json` output): its own `code`
 * (an ERR_WARREN_* for a WarrenError; a Node error's code such as ECONNRESET is passed on as it
 * is), else ERR_WARREN_INTERNAL.
 */
export function errorCode(err: unknown): ErrorCode {
  return (err as { code?: ErrorCode } | null | undefined)?.code ?? 'ERR_WARREN_INTERNAL';
}
