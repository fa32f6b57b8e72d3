/**
 * The preview proxy: the HTTP layer that carries browser requests for
 * `{port}-{tunnel}.{domain}` to the app inside a sandbox.
 *
 * Requests go over byte streams from the backend (a multiplexed stream to the agent that behaves
 * like a TCP connection to the app) and Node's HTTP client speaks HTTP/1.1 over them. When the
 * backend names routes, streams are kept alive and reused per route and port (pool.ts);
 * otherwise each request gets a fresh stream. Bodies flow both ways as they arrive, with
 * backpressure and no buffering or compression, so chunked responses and Server-Sent Events reach
 * the browser as the app writes them. Upgrades (WebSocket) become an opaque byte pipe once the app answers
 * `101 Switching Protocols`.
 *
 * Header policy (see headers.ts): raw header case and repeats are kept; hop-by-hop
 * headers are removed both ways; X-Forwarded-For/Proto/Host and X-Real-IP are replaced;
 * X-Warren-*, other proxies' client-address headers and every name with `_` from outside are
 * removed.
 *
 * Framing: the relay frames every request toward the app itself (guard.ts decides how),
 * writes no body byte for a request it framed as bodiless, and returns a stream to its pool only
 * after a response whose own head framed it (pool.ts closes streams the app writes to while
 * idle). `Host` stays the preview host the browser used, not `localhost:PORT`:
 * dev servers that check Host (Vite's allowedHosts) and apps that build absolute URLs need to see
 * the name the browser sees.
 *
 * Every request is checked (guard.ts) before any stream is opened, then, when an access
 * policy is set, for a viewer's right to a private port (auth.ts).
 */
import type { ClientRequest, IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from '../../log/logger.js';
import { silentLogger } from '../../log/logger.js';
import { InvalidArgumentError, WarrenError, type ErrorCode } from '../../protocol/errors.js';
import { renderErrorAnswer, sendRawAnswer, type ErrorAnswer, type ErrorContext } from './error-page.js';
import type { PreviewAccess } from './auth.js';
import { admitRequest, type AdmittedRequest } from './guard.js';
import { clientAddress, flattenHeaders, requestHeadersForApp, responseHeadersForClient, serializeResponseHead } from './headers.js';
import { codeOf, relayResponse, requestOverStream, type StreamConnection } from './exchange.js';
import { normalizeHostname, type PreviewTarget } from './host.js';
import { StreamPools } from './pool.js';
import { pipeUpgraded } from './upgrade.js';

export type { PreviewTarget } from './host.js';

/** What the backend learns about the browser connection a stream is opened for. */
export interface PreviewStreamInfo {
  /** The browser's address (IPv4-mapped addresses written as IPv4). */
  remoteAddress: string;
  /** True when the browser connected over TLS. */
  secure: boolean;
  /** The Host header the browser sent, already validated as a preview host of the domain. */
  host: string;
  /**
   * The stream is kept alive and carries requests of other browser connections to the same route
   * too (see PreviewBackend.route): remoteAddress is only the first one's.
   */
  shared?: boolean;
}

/** The seam between the HTTP layer and the multiplexer: it opens byte streams to apps. */
export interface PreviewBackend {
  /**
   * Opens a byte stream to the app listening on target.port inside the tunnel's sandbox.
   * Throws WarrenError ERR_WARREN_TUNNEL_OFFLINE or ERR_WARREN_PORT_NOT_EXPOSED synchronously.
   * The returned Duplex acts as a fresh TCP connection to the app: it may emit 'error' with a
   * WarrenError whose code is ERR_WARREN_APP_UNREACHABLE (app refused) before any byte.
   */
  openStream(target: PreviewTarget, info: PreviewStreamInfo): Duplex;
  /**
   * Optional: the route that serves `target` now (for the relay, the agent's session), checked as
   * openStream checks (throws the same routing errors). With it, streams to apps are kept alive
   * and reused per route and port for later requests (pool.ts); without it every request
   * opens its own stream. Upgrades always get their own stream.
   */
  route?(target: PreviewTarget): object;
}

/** Options for PreviewProxy. */
export interface PreviewOptions {
  /** The relay's preview domain (`preview.example.dev`, or `localhost` in dev). */
  domain: string;
  /** Opens streams to apps; called only for requests that passed every check. */
  backend: PreviewBackend;
  /** Default: a silent logger. Lines carry tunnelId, port and code; never URLs or headers. */
  logger?: Logger;
  /** An upgraded connection (WebSocket) with no traffic either way for this long is closed; default 10 min, 0 for never. */
  upgradeIdleTimeoutMs?: number;
  /**
   * Requests on plain (non-TLS) connections came through a front end that terminated TLS (a load
   * balancer): treat them as https for X-Forwarded-Proto, cookies and Origin checks. Default false.
   */
  tlsTerminatedInFront?: boolean;
  /**
   * Private previews: decides, before any stream is opened, whether a request may reach the app
   * and what of it is forwarded. Without it every port is public and requests go as they came.
   */
  access?: PreviewAccess;
}


/** What is forwarded of an admitted request after the access check. */
interface Forwarded {
  admitted: AdmittedRequest;
  rawHeaders: readonly string[];
  extraHeaders: readonly string[];
}

/** Answers preview requests by proxying them to apps through backend streams. */
export class PreviewProxy {
  /** The normalized preview domain. Static after construction. */
  readonly domain: string;
  private readonly backend: PreviewBackend;
  private readonly log: Logger;
  private readonly upgradeIdleTimeoutMs: number;
  private readonly access: PreviewAccess | undefined;
  private readonly tlsTerminatedInFront: boolean;
  /** Keep-alive streams per route, when the backend names routes. */
  private readonly pools = new StreamPools();

  /** Throws InvalidArgumentError when the domain is not a host name or the backend lacks openStream. */
  constructor(options: PreviewOptions) {
    const domain = normalizeHostname(options.domain ?? '');
    if (domain === null) throw new InvalidArgumentError(`domain: "${options.domain}" is not a host name`);
    if (typeof options.backend?.openStream !== 'function') throw new InvalidArgumentError('backend: an object with openStream(target, info) is required');
    this.domain = domain;
    this.backend = options.backend;
    this.log = options.logger ?? silentLogger();
    this.upgradeIdleTimeoutMs = options.upgradeIdleTimeoutMs ?? 10 * 60_000;
    this.access = options.access;
    this.tlsTerminatedInFront = options.tlsTerminatedInFront ?? false;
  }

  /**
   * Proxies one request (the http.Server 'request' event). Answers 400/421 without opening a
   * stream when a check fails, and a coded error answer when the tunnel, port or app cannot be
   * reached. If the stream fails after the response started, the client connection is destroyed;
   * if the client goes away, the stream is destroyed.
   */
  handleRequest(req: IncomingMessage, res: ServerResponse): void {
    req.on('error', () => undefined); // client aborts are handled through res 'close'
    const retry = req.method === 'GET' || req.method === 'HEAD';
    const admitted = this.admit(req, false);
    if (!admitted.ok) {
      this.log.debug({ code: admitted.code, detail: admitted.detail }, 'preview request rejected');
      res.shouldKeepAlive = false;
      this.sendError(req, res, admitted.code, { ...admitted.target, detail: admitted.detail, retry });
      return;
    }
    const context: ErrorContext = { ...admitted.target, retry };
    const forwarded = this.checkAccess(req, admitted, false, (answer) => this.sendAnswer(req, res, answer));
    if (forwarded === null) return;
    const connection = this.connection(admitted, req, (code) => this.sendError(req, res, code, context));
    if (connection === null) return;
    const headers = [...requestHeadersForApp(forwarded.rawHeaders, this.info(req, admitted), admitted.framing), ...forwarded.extraHeaders];
    // A request without a body that failed on a reused stream before any answer is sent once more
    // on a new stream: the app may have closed that idle connection just as the request left.
    const replayable = retry && admitted.framing.kind === 'none';
    const send = (connection: StreamConnection, replay: boolean): void => {
      const proxyReq = requestOverStream(connection, req, forwarded.admitted.path, headers, this.log, admitted.target);
      if (proxyReq === null) {
        this.sendError(req, res, 'ERR_WARREN_BAD_REQUEST', { ...context, detail: 'the request cannot be forwarded as HTTP/1.1' });
        return;
      }
      let failed = false;
      let answered = false;
      const fail = (err: unknown): void => {
        if (failed) return;
        failed = true;
        req.unpipe(proxyReq);
        proxyReq.destroy(); // and its stream: a failed stream is never reused
        if ('stream' in connection) connection.stream.destroy();
        if (!answered && replayable && !replay && proxyReq.reusedSocket && 'agent' in connection && !res.destroyed) {
          this.pools.dropIdle(connection.key, admitted.target.port);
          send(connection, true);
          return;
        }
        // A relay of the network that no longer holds the tunnel refused the forwarded stream before
        // it reached any app: a bodiless request goes once more, on the route a fresh lookup finds.
        if (!answered && admitted.framing.kind === 'none' && !replay && codeOf(err, 'ERR_WARREN_APP_RESPONSE') === 'ERR_WARREN_TUNNEL_MOVED' && !res.destroyed) {
          const fresh = this.connection(admitted, req, (code) => this.sendError(req, res, code, context));
          if (fresh !== null) send(fresh, true);
          return;
        }
        if (!req.complete) req.resume(); // discard the rest of the body; the connection closes
        if (res.writableEnded) return; // the answer was already complete; nothing to repair
        if (res.headersSent) {
          res.destroy(); // never write an error page into a half-sent body
          return;
        }
        const code = codeOf(err, 'ERR_WARREN_APP_RESPONSE');
        this.log.debug({ tunnelId: admitted.target.tunnelId, port: admitted.target.port, code }, 'preview stream failed before the response');
        this.sendError(req, res, code, context);
      };
      proxyReq.on('error', fail);
      proxyReq.on('response', (proxyRes) => {
        answered = true;
        proxyRes.on('error', () => undefined); // an aborted body is handled on 'close' below
        proxyRes.on('close', () => {
          if (!proxyRes.complete) fail(new WarrenError('ERR_WARREN_STREAM_CANCELLED', 'the app response ended early'));
        });
        relayResponse(req, res, proxyReq, proxyRes, admitted.framing, fail);
      });
      res.once('close', () => {
        // The answer is complete, or the browser went away. A pooled stream goes back to its pool
        // only after a complete exchange both ways; otherwise it is destroyed with the request.
        if (!res.writableFinished || !proxyReq.writableFinished) proxyReq.destroy();
        if ('stream' in connection && !connection.stream.destroyed) connection.stream.destroy();
      });
      if (admitted.framing.kind !== 'none') {
        req.pipe(proxyReq);
        return;
      }
      // No framing, no body: nothing of this connection but the re-serialized head reaches the
      // app. Bytes of a body here would mean Node's parser framed the request with something the
      // guard did not see; they are never written anywhere, and the connection goes.
      proxyReq.end();
      if (!req.complete) req.on('data', () => this.unframedBody(req, proxyReq, admitted));
    };
    send(connection, false);
  }

  /**
   * Proxies one Upgrade request (the http.Server 'upgrade' event). After the app's real
   * `101 Switching Protocols` (sent to the client with the app's headers as they are) the
   * connection is a byte pipe both ways with half-close. Any other answer from the app is relayed
   * with `Connection: close` and the connection closes after it.
   */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', (err) => this.log.debug({ err: err.message }, 'preview upgrade client error'));
    const admitted = this.admit(req, true);
    if (!admitted.ok) {
      this.log.debug({ code: admitted.code, detail: admitted.detail }, 'preview upgrade rejected');
      this.sendRawError(req, socket, admitted.code, { ...admitted.target, detail: admitted.detail, retry: false });
      return;
    }
    const context: ErrorContext = { ...admitted.target, retry: false };
    const forwarded = this.checkAccess(req, admitted, true, (answer) => sendRawAnswer(socket, answer));
    if (forwarded === null) return;
    const stream = this.open(admitted, req, (code) => this.sendRawError(req, socket, code, context));
    if (stream === null) return;
    const headers = [...requestHeadersForApp(forwarded.rawHeaders, this.info(req, admitted), { kind: 'none' }, req.headers.upgrade ?? ''), ...forwarded.extraHeaders];
    const proxyReq = requestOverStream({ stream }, req, forwarded.admitted.path, headers, this.log, admitted.target);
    if (proxyReq === null) {
      this.sendRawError(req, socket, 'ERR_WARREN_BAD_REQUEST', { ...context, detail: 'the request cannot be forwarded as HTTP/1.1' });
      return;
    }
    let answered = false;
    proxyReq.on('upgrade', (proxyRes: IncomingMessage, appStream: Duplex, appHead: Buffer) => {
      answered = true;
      pipeUpgraded(socket, appStream, proxyRes, appHead, head, this.upgradeIdleTimeoutMs, this.log);
    });
    proxyReq.on('response', (proxyRes) => {
      answered = true;
      proxyRes.on('error', () => socket.destroy());
      proxyRes.on('close', () => {
        if (!proxyRes.complete) socket.destroy();
      });
      const raw = [...responseHeadersForClient(proxyRes.rawHeaders), 'Connection', 'close'];
      socket.write(serializeResponseHead(proxyRes.statusCode ?? 502, proxyRes.statusMessage ?? '', raw));
      socket.once('finish', () => socket.destroy());
      proxyRes.pipe(socket); // close-delimited body: the connection ends with it
    });
    proxyReq.on('error', (err) => {
      stream.destroy();
      if (answered) {
        socket.destroy();
        return;
      }
      answered = true;
      this.sendRawError(req, socket, codeOf(err, 'ERR_WARREN_APP_RESPONSE'), context);
    });
    socket.on('close', () => {
      proxyReq.destroy();
      stream.destroy();
    });
    proxyReq.end();
  }

  /**
   * Runs the access check (none: forward as is). Returns what to forward, or null after `answer`
   * was called with the relay's own answer (a redirect, 401 or 403).
   */
  private checkAccess(req: IncomingMessage, admitted: AdmittedRequest, upgrade: boolean, answer: (a: ErrorAnswer) => void): Forwarded | null {
    if (this.access === undefined) return { admitted, rawHeaders: req.rawHeaders, extraHeaders: [] };
    const decision = this.access.check({ req, target: admitted.target, host: admitted.host, path: admitted.path, secure: admitted.secure, upgrade });
    if (decision.kind === 'answer') {
      answer(decision.answer);
      return null;
    }
    return { admitted: { ...admitted, path: decision.path }, rawHeaders: decision.rawHeaders, extraHeaders: decision.extraHeaders };
  }

  /**
   * The connection for one request: the route's pool when the backend names routes, else a
   * stream of its own. Answers with the routing error and returns null when there is none.
   */
  private connection(admitted: AdmittedRequest, req: IncomingMessage, answer: (code: ErrorCode) => void): StreamConnection | null {
    if (this.backend.route === undefined) {
      const stream = this.open(admitted, req, answer);
      return stream === null ? null : { stream };
    }
    if (req.socket.destroyed) return null; // the client left while we looked at its request
    let key: object;
    try {
      key = this.backend.route(admitted.target);
    } catch (err) {
      this.openFailed(admitted, err, answer);
      return null;
    }
    const target = admitted.target;
    const info: PreviewStreamInfo = { ...this.info(req, admitted), shared: true };
    return { key, agent: this.pools.agentFor(key, target.port, () => this.backend.openStream(target, info)) };
  }

  /**
   * Forgets the streams kept alive for `route` (as returned by backend.route()), or for every
   * route: call it when an agent session is going away, so that idle streams do not hold it open.
   */
  releaseRoute(route?: object): void {
    this.pools.release(route);
  }

  /** Opens the backend stream, or answers with the error it threw and returns null. */
  private open(admitted: AdmittedRequest, req: IncomingMessage, answer: (code: ErrorCode) => void): Duplex | null {
    if (req.socket.destroyed) return null; // the client left while we looked at its request
    try {
      const stream = this.backend.openStream(admitted.target, this.info(req, admitted));
      stream.on('error', () => undefined); // reported through the HTTP client or the upgrade pipe
      return stream;
    } catch (err) {
      this.openFailed(admitted, err, answer);
      return null;
    }
  }

  private openFailed(admitted: AdmittedRequest, err: unknown, answer: (code: ErrorCode) => void): void {
    const code = codeOf(err, 'ERR_WARREN_INTERNAL');
    const fields = { tunnelId: admitted.target.tunnelId, port: admitted.target.port, code };
    if (code === 'ERR_WARREN_INTERNAL') this.log.warn({ ...fields, err: (err as Error)?.message }, 'preview backend failed to open a stream');
    else this.log.debug(fields, 'preview stream not opened');
    answer(code);
  }

  private info(req: IncomingMessage, admitted: AdmittedRequest): { remoteAddress: string; secure: boolean; host: string } {
    return { remoteAddress: clientAddress(req.socket.remoteAddress), secure: admitted.secure, host: admitted.host };
  }

  /** Body bytes on a request the relay framed as bodiless: nothing is forwarded and the connection goes. */
  private unframedBody(req: IncomingMessage, proxyReq: ClientRequest, admitted: AdmittedRequest): void {
    if (req.socket.destroyed) return;
    this.log.warn({ tunnelId: admitted.target.tunnelId, port: admitted.target.port, code: 'ERR_WARREN_BAD_REQUEST' }, 'preview request carried a body it did not frame; connection closed');
    proxyReq.destroy();
    req.socket.destroy();
  }

  /** The guard's checks, with plain connections counted as TLS when a front end terminated it. */
  private admit(req: IncomingMessage, upgrade: boolean): ReturnType<typeof admitRequest> {
    const admitted = admitRequest(req, this.domain, upgrade);
    return admitted.ok && !admitted.secure && this.tlsTerminatedInFront ? { ...admitted, secure: true } : admitted;
  }

  /** Writes a coded error answer through a ServerResponse. */
  private sendError(req: IncomingMessage, res: ServerResponse, code: ErrorCode, context: ErrorContext): void {
    this.sendAnswer(req, res, renderErrorAnswer(code, req.headers.accept, context));
  }

  /** Writes one of the relay's own answers through a ServerResponse. */
  private sendAnswer(req: IncomingMessage, res: ServerResponse, answer: ErrorAnswer): void {
    if (res.headersSent || res.destroyed) {
      res.destroy();
      return;
    }
    if (bodyPending(req)) {
      // Close after the answer, and read the rest of the body meanwhile so the client sees it.
      res.shouldKeepAlive = false;
      req.resume();
    }
    res.writeHead(answer.status, flattenHeaders(answer.headers));
    res.end(req.method === 'HEAD' ? undefined : answer.body);
  }

  /** Writes a coded error answer on a raw socket (upgrade requests) and closes it. */
  private sendRawError(req: IncomingMessage, socket: Duplex, code: ErrorCode, context: ErrorContext): void {
    sendRawAnswer(socket, renderErrorAnswer(code, req.headers.accept, context));
  }
}

/** True while a request body is still arriving. */
function bodyPending(req: IncomingMessage): boolean {
  if (req.complete) return false;
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}
