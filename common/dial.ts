/**
 * Dialing a relay: a TLS WebSocket with subprotocol `warren.v1`, then the HELLO exchange. Shared
 * by the agent (`/v1/agent`) and the client (`/v1/connect`). Every failure becomes a WarrenError
 * whose code says what went wrong and whether retrying can help: unreachable relays are
 * retryable, untrusted certificates and refused tokens are not.
 */
import { createSecureContext, type SecureContext } from 'node:tls';
import { WebSocket } from 'ws';
import { ConnectionError, WarrenError, connectSession, webSocketTransport, WS_MAX_MESSAGE_BYTES, WS_SUBPROTOCOL, type Session, type SessionOptions } from '../protocol/index.js';

/** Everything needed to reach a relay. */
export interface DialOptions {
  /** Relay URL: `wss://host[:port]` (an `https://` URL is read as wss). */
  relay: string;
  /** The endpoint: `/v1/agent` or `/v1/connect`. */
  path: '/v1/agent' | '/v1/connect';
  /** Bearer token, sent only inside the TLS connection in HELLO. */
  token: string;
  /** PEM CA certificate(s) to trust for the relay instead of the system store (dev CA, pinning). */
  ca?: string;
  /** Role-specific HELLO fields. */
  app?: Record<string, unknown>;
  /** `name/version` of the dialing software. */
  software?: string;
  /** Session options (keepalive, limits). */
  session?: SessionOptions;
  /** Time allowed for TCP + TLS + WebSocket upgrade; default 10 s. */
  connectTimeoutMs?: number;
}

/** Normalizes a relay URL and joins the endpoint path: `relay.example.dev:443` → `wss://relay.example.dev:443/v1/agent`. */
export function relayEndpoint(relay: string, path: string): URL {
  let text = relay.trim();
  if (!/^[a-z]+:\/\//i.test(text)) text = `wss://${text}`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new WarrenError('ERR_WARREN_USAGE', `relay "${relay}" is not a URL (example: wss://relay.example.dev)`);
  }
  if (url.protocol === 'https:') url.protocol = 'wss:';
  if (url.protocol !== 'wss:') throw new WarrenError('ERR_WARREN_USAGE', `relay "${relay}" must use wss:// (TLS); got ${url.protocol}`);
  url.pathname = `${url.pathname.replace(/\/+$/, '')}${path}`;
  url.search = '';
  url.hash = '';
  return url;
}

const TLS_ERROR_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
]);

/** Most CA sets whose secure contexts are kept. */
const MAX_CACHED_CONTEXTS = 8;
/** Secure contexts by CA PEM, kept across dials (owned by this module). */
const secureContexts = new Map<string, SecureContext>();

/**
 * The secure context trusting `ca`, built once: building one parses the certificates and sets up
 * an OpenSSL context, which an agent reconnecting to a relay would otherwise redo on every dial.
 */
function secureContextFor(ca: string): SecureContext {
  let context = secureContexts.get(ca);
  if (!context) {
    context = createSecureContext({ ca });
    if (secureContexts.size >= MAX_CACHED_CONTEXTS) secureContexts.clear();
    secureContexts.set(ca, context);
  }
  return context;
}

/** Turns a socket-level failure into a WarrenError with a retry decision. */
function classify(err: unknown, url: URL): WarrenError {
  if (err instanceof WarrenError) return err;
  const code = (err as { code?: string } | null)?.code ?? '';
  const message = err instanceof Error ? err.message : String(err);
  if (TLS_ERROR_CODES.has(code)) {
    return new ConnectionError('ERR_WARREN_TLS', `the certificate of ${url.host} is not trusted (${code}); pass the relay's CA with --ca`, { cause: err });
  }
  return new ConnectionError('ERR_WARREN_RELAY_UNREACHABLE', `cannot reach relay ${url.host}: ${message}`, { cause: err });
}

/**
 * Opens a session with a relay. Resolves once the relay has accepted the token; rejects with a
 * WarrenError (for example ERR_WARREN_RELAY_UNREACHABLE, ERR_WARREN_TLS, ERR_WARREN_TOKEN_EXPIRED).
 */
export function dialRelay(options: DialOptions): Promise<Session> {
  const url = relayEndpoint(options.relay, options.path);
  return new Promise<Session>((resolve, reject) => {
    let settled = false;
    const fail = (err: WarrenError): void => {
      if (settled) return;
      settled = true;
      reject(err);
    };
    const ws = new WebSocket(url, [WS_SUBPROTOCOL], {
      ...(options.ca === undefined ? {} : { secureContext: secureContextFor(options.ca) }),
      perMessageDeflate: false,
      maxPayload: WS_MAX_MESSAGE_BYTES + 64 * 1024,
      handshakeTimeout: options.connectTimeoutMs ?? 10_000,
      skipUTF8Validation: true,
      followRedirects: false,
    });
    ws.once('unexpected-response', (_req, res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        if (size < 4096) chunks.push(c);
        size += c.length;
      });
      res.on('end', () => {
        let detail = '';
        try {
          const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { error?: { code?: string; message?: string } };
          if (body.error?.message) detail = `: ${body.error.message}`;
        } catch {
          // Not a JSON answer; the status says enough.
        }
        fail(new ConnectionError('ERR_WARREN_RELAY_REJECTED', `relay ${url.host} answered the upgrade with HTTP ${res.statusCode}${detail}`));
      });
      ws.terminate();
    });
    ws.once('error', (err) => fail(classify(err, url)));
    ws.once('open', () => {
      if (ws.protocol !== WS_SUBPROTOCOL) {
        ws.terminate();
        fail(new ConnectionError('ERR_WARREN_VERSION', `relay ${url.host} does not speak ${WS_SUBPROTOCOL}`));
        return;
      }
      connectSession(webSocketTransport(ws, url.host), {
        ...options.session,
        token: options.token,
        software: options.software,
        app: options.app,
      }).then(
        (session) => {
          if (settled) {
            session.destroy();
            return;
          }
          settled = true;
          resolve(session);
        },
        (err: unknown) => fail(classify(err, url)),
      );
    });
  });
}
