/**
 * An http.Server or https.Server that answers preview requests through a PreviewProxy, with
 * timeouts that close slow clients in seconds instead of Node's defaults (which let a slowloris
 * client hold a connection for about 90 s: `connectionsCheckingInterval` is the precision of
 * `headersTimeout` and `requestTimeout`).
 *
 * The same settings apply to a server built elsewhere (the relay's main listener) through
 * previewServerOptions(), since Node only reads them at construction.
 */
import { STATUS_CODES, createServer as createHttpServer, type Server as HttpServer, type ServerOptions as HttpServerOptions } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer, type ServerOptions as HttpsServerOptions } from 'node:https';
import type { Duplex } from 'node:stream';
import { InvalidArgumentError, type ErrorCode } from '../protocol/errors.js';
import { renderErrorAnswer } from './error-page.js';
import { flattenHeaders, serializeResponseHead } from './preview-headers.js';
import type { PreviewProxy } from './preview.js';
import { PREVIEW_MAX_HEADERS_COUNT } from './preview-guard.js';

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

/** Options for createPreviewServer. */
export interface PreviewServerOptions extends PreviewServerTimeouts {
  /** Certificate and key (and any other TLS option): when present the server is HTTPS. */
  tls?: HttpsServerOptions;
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
  const answer = renderErrorAnswer(code, undefined, { retry: false });
  const head = serializeResponseHead(answer.status, STATUS_CODES[answer.status] ?? 'Error', [...flattenHeaders(answer.headers), 'Connection', 'close']);
  socket.once('finish', () => socket.destroy());
  socket.end(Buffer.concat([Buffer.from(head, 'latin1'), answer.body]));
}

/**
 * Creates a server whose every request and upgrade goes to `proxy`, with the preview timeouts
 * and coded answers for requests Node's parser refuses. The server is not listening yet.
 */
export function createPreviewServer(proxy: PreviewProxy, options: PreviewServerOptions = {}): HttpServer | HttpsServer {
  const { tls, ...timeouts } = options;
  const serverOptions = previewServerOptions(timeouts);
  const server = tls ? createHttpsServer({ ...tls, ...serverOptions }) : createHttpServer(serverOptions);
  server.maxHeadersCount = PREVIEW_MAX_HEADERS_COUNT;
  server.on('request', (req, res) => proxy.handleRequest(req, res));
  server.on('upgrade', (req, socket: Duplex, head: Buffer) => proxy.handleUpgrade(req, socket, head));
  server.on('clientError', onPreviewClientError);
  return server;
}
