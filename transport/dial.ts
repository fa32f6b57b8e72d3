/**
 * Dialing a relay, then the HELLO exchange. Shared by the agent (`/v1/agent`) and the client
 * (`/v1/connect`). Two transports reach the same endpoints: raw TLS, where the ALPN id names the
 * endpoint and frames travel straight on the TLS connection, and a TLS WebSocket with
 * subprotocol `warren.v1`, which passes HTTP proxies and TLS-terminating load balancers. `auto`
 * (the default) tries raw TLS and falls back to WebSocket when the relay does not select a
 * Warren ALPN id. Every failure becomes a WarrenError whose code says what went wrong and whether
 * retrying can help: unreachable relays are retryable, untrusted certificates and refused tokens
 * are not.
 */
import { isIP } from 'node:net';
import { connect as tlsConnect, createSecureContext, type SecureContext, type TLSSocket } from 'node:tls';
import { WebSocket } from 'ws';
import {
  ALPN_AGENT,
  ALPN_CONNECT,
  ConfigError,
  ConnectionError,
  WarrenError,
  connectSession,
  socketTransport,
  webSocketTransport,
  WS_MAX_MESSAGE_BYTES,
  WS_SUBPROTOCOL,
  type Session,
  type SessionOptions,
  type Transport,
} from '../protocol/index.js';

/** How to reach a relay: raw TLS, WebSocket over TLS, or raw TLS with a WebSocket fallback. */
export type RelayTransport = 'auto' | 'tls' | 'wss';
const RELAY_TRANSPORTS: readonly string[] = ['auto', 'tls', 'wss'];

/** Parses a --transport value; ConfigError naming `what` otherwise. */
export function parseRelayTransport(text: string, what = '--transport'): RelayTransport {
  if (!RELAY_TRANSPORTS.includes(text)) throw new ConfigError([`${what}: "${text}" is not one of auto, tls, wss`]);
  return text as RelayTransport;
}

/** The --transport help text, shared by the agent and `warren connect`. */
export const TRANSPORT_HELP = 'how to reach the relay: tls (frames straight on TLS, least CPU), wss (WebSocket over TLS, passes TLS-terminating load balancers), auto: tls when the relay offers it, else wss (default auto)';

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
  /** Transport; default `auto`. */
  transport?: RelayTransport;
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
export async function dialRelay(options: DialOptions): Promise<Session> {
  const url = relayEndpoint(options.relay, options.path);
  const mode = options.transport ?? 'auto';
  let transport: Transport | null = null;
  if (mode !== 'wss') {
    transport = await dialTls(url, options);
    if (!transport && mode === 'tls') {
      throw new ConnectionError('ERR_WARREN_VERSION', `relay ${url.host} does not offer the raw TLS transport (ALPN ${alpnFor(options.path)}); use --transport wss or auto`);
    }
  }
  transport ??= await dialWebSocket(url, options);
  try {
    return await connectSession(transport, { ...options.session, token: options.token, software: options.software, app: options.app });
  } catch (err) {
    throw classify(err, url);
  }
}

function alpnFor(path: DialOptions['path']): string {
  return path === '/v1/agent' ? ALPN_AGENT : ALPN_CONNECT;
}

/**
 * A TLS connection offering the endpoint's ALPN id (and HTTP/1.1, so relays and front ends that
 * only speak HTTP still complete the handshake). Resolves with a transport when the relay chose
 * the Warren id, with null when it chose anything else (the connection is closed then).
 */
function dialTls(url: URL, options: DialOptions): Promise<Transport | null> {
  const alpn = alpnFor(options.path);
  return new Promise<Transport | null>((resolve, reject) => {
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    const timeoutMs = options.connectTimeoutMs ?? 10_000;
    const socket: TLSSocket = tlsConnect({
      host,
      port: Number(url.port || 443),
      servername: isIP(host) === 0 ? host : undefined,
      ALPNProtocols: [alpn, 'http/1.1'],
      minVersion: 'TLSv1.3',
      ...(options.ca === undefined ? {} : { secureContext: secureContextFor(options.ca) }),
    });
    const timer = setTimeout(() => socket.destroy(new ConnectionError('ERR_WARREN_RELAY_UNREACHABLE', `no TLS connection to ${url.host} within ${timeoutMs} ms`)), timeoutMs);
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(classify(err, url));
    });
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      socket.on('error', () => undefined); // the transport reports the close; the session its cause
      if (socket.alpnProtocol !== alpn) {
        socket.destroy();
        resolve(null);
        return;
      }
      socket.setNoDelay(true);
      resolve(socketTransport(socket));
    });
  });
}

/** A TLS WebSocket with subprotocol `warren.v1` on the endpoint's path. */
function dialWebSocket(url: URL, options: DialOptions): Promise<Transport> {
  return new Promise<Transport>((resolve, reject) => {
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
      settled = true;
      resolve(webSocketTransport(ws, url.host));
    });
  });
}
