/**
 * The listeners previews arrive on (the relay's TLS listener and its plain-HTTP one): an
 * http.Server or https.Server with timeouts that close slow clients in seconds instead of Node's
 * defaults (which let a slowloris client hold a connection for about 90 s:
 * `connectionsCheckingInterval` is the precision of `headersTimeout` and `requestTimeout`), a
 * header-count limit the guard can see (guard.ts), and coded answers for requests Node's parser
 * refuses. The relay dispatches what arrives (previews to the PreviewProxy, its own endpoints
 * elsewhere); tests hand everything to a proxy.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerOptions as HttpServerOptions, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer, type ServerOptions as HttpsServerOptions } from 'node:https';
import type { Duplex } from 'node:stream';
import { InvalidArgumentError, type ErrorCode } from '../../protocol/errors.js';
import { renderErrorAnswer, sendRawAnswer } from './error-page.js';
import { PREVIEW_MAX_HEADERS_COUNT } from './guard.js';

/** Timeouts for preview listeners, in milliseconds. */
export interface PreviewServerTimeouts {
  /** Time allowed to receive the request head. Default 10 s. */
  headersTimeoutMs?: number;
  /** Time allowed to receive a whole request, body included (0 = none). Default 60 s: raise it for slow large uploads. */
  requestTimeoutMs?: number;
  /** Idle time before a keep-alive connection with no request in flight is closed. Default 5 s. */
  keepAliveTimeoutMs?: number;
  /** How often Node checks the two timeouts above (their precision). Default 1 s. */
  connectionsCheckingIntervalMs?: number;
}

/** Default timeouts of preview listeners. */
export const PREVIEW_SERVER_DEFAULTS: Readonly<Required<PreviewServerTimeouts>> = Object.freeze({
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 60_000,
  keepAliveTimeoutMs: 5_000,
  connectionsCheckingIntervalMs: 1_000,
});

/**
 * The http.Server constructor options for these timeouts (defaults filled in). Throws
 * InvalidArgumentError naming the option when a value is negative, not an integer, or when
 * requestTimeoutMs is shorter than headersTimeoutMs.
 */
export function previewServerOptions(timeouts: PreviewServerTimeouts = {}): HttpServerOptions {
  const t = { ...PREVIEW_SERVER_DEFAULTS, ...withoutUndefined(timeouts) };
  for (const [name, value] of Object.entries(t)) {
    if (!Number.isInteger(value) || value < 0) throw new InvalidArgumentError(`${name}: ${value} is not a whole number of milliseconds >= 0`);
  }
  if (t.connectionsCheckingIntervalMs === 0) throw new InvalidArgumentError('connectionsCheckingIntervalMs: must be at least 1 ms');
  if (t.headersTimeoutMs === 0) throw new InvalidArgumentError('headersTimeoutMs: must be at least 1 ms');
  if (t.requestTimeoutMs !== 0 && t.requestTimeoutMs < t.headersTimeoutMs) {
    throw new InvalidArgumentError(`requestTimeoutMs: ${t.requestTimeoutMs} is shorter than headersTimeoutMs (${t.headersTimeoutMs}); the whole request includes its head`);
  }
  return {
    headersTimeout: t.headersTimeoutMs,
    requestTimeout: t.requestTimeoutMs,
    keepAliveTimeout: t.keepAliveTimeoutMs,
    connectionsCheckingInterval: t.connectionsCheckingIntervalMs,
  };
}

function withoutUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/**
 * Answers requests Node's parser refused (malformed, Content-Length with Transfer-Encoding,
 * oversized head, timed out) with a coded plain-text answer and closes the connection. Nothing
 * is written when a response is already under way on the connection, nor on a TLS connection
 * whose handshake failed or timed out: that one is closed at once.
 */
export function onPreviewClientError(err: Error & { code?: string }, socket: Duplex): void {
  const inFlight = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  // A TLS handshake that failed or stalled (ERR_TLS_HANDSHAKE_TIMEOUT, ERR_SSL_*) carries no HTTP:
  // an answer written into it would wait forever for the handshake, and hold the socket.
  const tlsFailure = /^ERR_(?:TLS|SSL)_/.test(err.code ?? '');
  if (err.code === 'ECONNRESET' || tlsFailure || !socket.writable || inFlight?.headersSent) {
    socket.destroy();
    return;
  }
  let code: ErrorCode = 'ERR_WARREN_BAD_REQUEST';
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') code = 'ERR_WARREN_TIMEOUT';
  else if (err.code === 'HPE_HEADER_OVERFLOW') code = 'ERR_WARREN_HEADERS_TOO_LARGE';
  sendRawAnswer(socket, renderErrorAnswer(code, undefined, { retry: false }));
}

/** Options of a preview listener. */
export interface PreviewListenerOptions extends PreviewServerTimeouts {
  /** Certificate, key and any other TLS option: when present the listener is HTTPS. */
  tls?: HttpsServerOptions;
  /** A connection where nothing moves either way for this long is closed; default 10 min. */
  idleTimeoutMs?: number;
}

/** Where a preview listener sends what it receives. */
export interface PreviewListenerHandlers {
  request(req: IncomingMessage, res: ServerResponse): void;
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
}

/**
 * Creates a preview listener (not listening yet) that hands requests and upgrades to `handlers`,
 * with the preview timeouts, a TLS handshake that must finish within the headers timeout, the
 * guard's header-count limit and coded answers for requests Node's parser refuses. Throws
 * InvalidArgumentError for bad timeouts (previewServerOptions).
 */
export function createPreviewListener(handlers: PreviewListenerHandlers, options: PreviewListenerOptions = {}): HttpServer | HttpsServer {
  const { tls, idleTimeoutMs, ...timeouts } = options;
  const serverOptions = previewServerOptions(timeouts);
  // A client that opens TCP and stalls in the TLS handshake (nothing sent, half a ClientHello) is
  // closed after the headers timeout, not TLS's default of two minutes.
  const server = tls ? createHttpsServer({ handshakeTimeout: serverOptions.headersTimeout, ...tls, ...serverOptions }) : createHttpServer(serverOptions);
  // A connection where nothing moves (a client that stopped reading) is closed after this.
  server.timeout = idleTimeoutMs ?? 10 * 60_000;
  // The guard must see every header line the parser frames the request with (guard.ts).
  server.maxHeadersCount = PREVIEW_MAX_HEADERS_COUNT;
  server.on('request', (req: IncomingMessage, res: ServerResponse) => handlers.request(req, res));
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => handlers.upgrade(req, socket, head));
  server.on('clientError', onPreviewClientError);
  return server;
}
