/**
 * The preview room: everything between a browser's request for `{port}-{tunnel}.{domain}` and a
 * byte stream to the app, and nothing about where the tunnel is (the relay hands it a backend,
 * which asks the router).
 *
 *   listener.ts       the listeners' settings: timeouts, header-count limit, parser refusals
 *   proxy.ts          PreviewProxy: one request (or upgrade) from admission to the app and back
 *   host.ts           Host → { tunnel, port }
 *   guard.ts          admission: framing, Host, SNI, head size, before any stream
 *   auth.ts           private previews: viewer tokens, cookies, WebSocket origins
 *   viewer-session.ts the signed session cookie
 *   viewer-token.ts   the identity the app receives (X-Warren-Viewer-Token) and its JWKS
 *   headers.ts        header rewriting both ways
 *   pool.ts           keep-alive streams per route and port
 *   upgrade.ts        the byte pipe after 101
 *   error-page.ts     the relay's own answers (HTML, JSON, text), also on raw sockets
 *
 * Code outside this folder imports from here only.
 */
export { PreviewProxy, type PreviewBackend, type PreviewOptions, type PreviewStreamInfo } from './proxy.js';
export { createPreviewListener, onPreviewClientError, previewServerOptions, PREVIEW_SERVER_DEFAULTS, type PreviewListenerHandlers, type PreviewListenerOptions, type PreviewServerTimeouts } from './listener.js';
export { parsePreviewHost, formatPreviewHost, normalizeHostname, type PreviewTarget } from './host.js';
export { PreviewAccessControl, type PreviewAccess } from './auth.js';
export { MIN_SESSION_KEY_BYTES, ViewerSessions } from './viewer-session.js';
export { JWKS_PATH, ViewerTokenSigner, VIEWER_TOKEN_TTL_SECONDS } from './viewer-token.js';
export { renderErrorAnswer, sendRawAnswer, type ErrorAnswer, type ErrorContext } from './error-page.js';
export { MAX_REQUEST_HEADERS } from './guard.js';
