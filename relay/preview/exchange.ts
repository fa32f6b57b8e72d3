/**
 * One exchange with the app over a backend stream: the request as the relay re-serialized it,
 * sent by Node's HTTP client (one stream of its own, or a keep-alive pool's), and the app's
 * response relayed to the browser: its head checked and rewritten, its body piped as it comes.
 * A stream goes back to its pool only after a response whose own head framed it.
 */
import { request as httpRequest, type Agent as HttpAgent, type ClientRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from '../../log/logger.js';
import { ERRORS, WarrenError, type ErrorCode } from '../../protocol/errors.js';
import { responseHeadersForClient, type BodyFraming } from './headers.js';
import type { PreviewTarget } from './host.js';

/** Where a request goes: a stream of its own, or the keep-alive pool of its route. */
export type StreamConnection = { stream: Duplex } | { key: object; agent: HttpAgent };

/**
 * The code for an error raised by the backend, a stream or Node's HTTP client: a Warren code as
 * it is, a refused TCP connection (a backend that hands out plain sockets) as
 * ERR_WARREN_APP_UNREACHABLE, anything else as `fallback`.
 */
export function codeOf(err: unknown, fallback: ErrorCode): ErrorCode {
  if (err instanceof WarrenError) return err.code;
  const code = (err as { code?: unknown } | null)?.code;
  if (code === 'ECONNREFUSED') return 'ERR_WARREN_APP_UNREACHABLE';
  return typeof code === 'string' && code in ERRORS ? (code as ErrorCode) : fallback;
}

/**
 * Most header lines of an app's response the relay forwards; a response with more is answered
 * 502 (ERR_WARREN_APP_RESPONSE) and its stream closed.
 */
export const MAX_RESPONSE_HEADERS = 500;

/**
 * True when a response's own head says where it ends: no body (HEAD, 1xx, 204, 304), one
 * Content-Length, or chunked. A response read until close is never followed by another.
 */
function selfFramed(method: string | undefined, res: IncomingMessage): boolean {
  const status = res.statusCode ?? 0;
  if (method === 'HEAD' || status < 200 || status === 204 || status === 304) return true;
  const te = res.headers['transfer-encoding'];
  if (te !== undefined) return /(?:^|,)[ \t]*chunked[ \t]*$/i.test(te);
  return res.headers['content-length'] !== undefined;
}

/**
 * Starts Node's HTTP client over the connection (see StreamConnection). `agent` must stay
 * undefined for a stream of its own: with `agent: false` Node 20 builds a fresh Agent that ignores
 * `createConnection` and dials host:port itself. Returns null, with the stream destroyed, when
 * Node's client refuses the method, path or a header value.
 */
export function requestOverStream(connection: StreamConnection, req: IncomingMessage, path: string, headers: string[], log: Logger, target: PreviewTarget): ClientRequest | null {
  try {
    const proxyReq = httpRequest({
      ...('stream' in connection ? { createConnection: () => connection.stream } : { agent: connection.agent }),
      method: req.method ?? 'GET',
      path,
      headers,
      setHost: false,
    });
    // One line more than the relay accepts, so that a longer head shows as one (see relayResponse).
    proxyReq.maxHeadersCount = MAX_RESPONSE_HEADERS + 1;
    return proxyReq;
  } catch (err) {
    log.debug({ tunnelId: target.tunnelId, port: target.port, err: (err as Error).message }, 'preview request not forwardable');
    if ('stream' in connection) connection.stream.destroy();
    return null;
  }
}

/**
 * Relays the app's response head and body to the browser. A head the relay cannot see whole or
 * cannot forward calls `fail` instead; a response that did not frame itself, or that answers a
 * chunked upload, keeps its stream out of the pool.
 */
export function relayResponse(req: IncomingMessage, res: ServerResponse, proxyReq: ClientRequest, proxyRes: IncomingMessage, framing: BodyFraming, fail: (err: unknown) => void): void {
  if (res.destroyed) return;
  // A head cut short by the client parser's count: the relay cannot see it whole.
  if (proxyRes.rawHeaders.length / 2 > MAX_RESPONSE_HEADERS) {
    fail(new WarrenError('ERR_WARREN_APP_RESPONSE', `the app answered with more than ${MAX_RESPONSE_HEADERS} header lines`));
    return;
  }
  // The stream goes back to the pool only after a response whose end the relay knows from its own
  // head (a length, chunked, or no body at all); anything else closes it. So does one that
  // answered a chunked upload: an app that misreads chunked bodies would take the chunks for a
  // next request, whose answer must not wait on the stream for another browser.
  if (!selfFramed(req.method, proxyRes) || framing.kind === 'chunked') proxyReq.shouldKeepAlive = false;
  // An app that answers before the whole body arrived (413, 401): close the connection after the
  // answer rather than keep it alive with a half-read body on it.
  if (!req.complete) res.shouldKeepAlive = false;
  const headers = responseHeadersForClient(proxyRes.rawHeaders);
  const status = proxyRes.statusCode ?? 502;
  try {
    if (proxyRes.statusMessage) res.writeHead(status, proxyRes.statusMessage, headers);
    else res.writeHead(status, headers);
  } catch {
    fail(new WarrenError('ERR_WARREN_APP_RESPONSE', 'the app answered with a header the relay cannot forward'));
    return;
  }
  // A body of unknown length (chunked: event streams, long polls) may take its time: the head goes
  // at once. A body with a length leaves with the head, in one write.
  if (proxyRes.headers['content-length'] === undefined) res.flushHeaders();
  proxyRes.pipe(res);
}
