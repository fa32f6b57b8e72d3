/**
 * The relay's own answers to preview requests that cannot reach the app: a small self-contained
 * HTML page for browsers, `{"error":{"code","message","status"}}` for tools that ask for JSON, and
 * one line of text for everything else. Every answer names its `ERR_WARREN_*` code.
 *
 * Nothing the client sent is echoed unescaped: the page shows only values the relay parsed
 * itself (tunnel id, port), and every value goes through escapeHtml anyway.
 */
import { ERRORS, type ErrorCode } from '../protocol/errors.js';

/** Seconds between automatic reloads of pages for errors that go away by themselves. */
export const ERROR_PAGE_RETRY_SECONDS = 2;

/** What the relay knows about the request it answers; every field is optional. */
export interface ErrorContext {
  /** Tunnel id parsed from the preview host. */
  tunnelId?: string;
  /** App port parsed from the preview host. */
  port?: number;
  /** Extra detail for 400, 401 and 403 answers ("duplicate Host header"); never a raw header value. */
  detail?: string;
  /** False stops automatic reloads (for requests other than GET and HEAD). Default true. */
  retry?: boolean;
}

/** A rendered answer: status, headers and body, ready for writeHead or a raw socket. */
export interface ErrorAnswer {
  status: number;
  /** Header name/value pairs, including Content-Type, Content-Length and X-Warren-Error. */
  headers: [string, string][];
  body: Buffer;
}

/** The formats an error answer can take. */
export type ErrorFormat = 'html' | 'json' | 'text';

interface Wording {
  title: string;
  /** One line: what happened. */
  message: (c: ErrorContext) => string;
  /** One line: what to do about it. */
  action: (c: ErrorContext) => string;
  /** True when the condition usually clears by itself, so the page reloads. */
  retries?: boolean;
}

const port = (c: ErrorContext): string => (c.port === undefined ? 'this port' : `port ${c.port}`);
const tunnel = (c: ErrorContext): string => (c.tunnelId === undefined ? 'this tunnel' : `tunnel ${c.tunnelId}`);
const cap = (text: string): string => text.charAt(0).toUpperCase() + text.slice(1);

const WORDING: Partial<Record<ErrorCode, Wording>> = {
  ERR_WARREN_TUNNEL_OFFLINE: {
    title: 'Sandbox not connected',
    message: (c) => `No sandbox is connected for ${tunnel(c)}.`,
    action: () => `Start the sandbox (or its Warren agent); this page reloads every ${ERROR_PAGE_RETRY_SECONDS} seconds and shows the app once it is connected.`,
    retries: true,
  },
  ERR_WARREN_PORT_NOT_EXPOSED: {
    title: 'Port not exposed',
    message: (c) => `The sandbox for ${tunnel(c)} does not expose ${port(c)}.`,
    action: (c) => `Check the port in the address, or start the agent with --port ${c.port ?? 'N'} to expose it.`,
  },
  ERR_WARREN_APP_UNREACHABLE: {
    title: 'App not listening yet',
    message: (c) => `The app is not listening on ${port(c)} yet.`,
    action: (c) => `Start the app inside the sandbox on ${port(c)} (listening on 127.0.0.1 or 0.0.0.0); this page reloads every ${ERROR_PAGE_RETRY_SECONDS} seconds and shows the app once it answers.`,
    retries: true,
  },
  ERR_WARREN_APP_RESPONSE: {
    title: 'Bad answer from the app',
    message: (c) => `The app on ${port(c)} closed the connection or answered with something that is not HTTP.`,
    action: () => 'Check the app\'s logs; reload the page to try again.',
  },
  ERR_WARREN_BAD_REQUEST: {
    title: 'Bad request',
    message: (c) => `The request is malformed or ambiguous${c.detail ? `: ${c.detail}` : ''}.`,
    action: () => 'Send the request again without the ambiguity; browsers never send such requests.',
  },
  ERR_WARREN_UNAUTHORIZED: {
    title: 'Private preview',
    message: (c) => `${cap(port(c))} of ${tunnel(c)} is private and opens only with a viewer token${c.detail ? `: ${c.detail}` : ''}.`,
    action: () => 'Open the preview link your platform gave you (it carries ?warren_token=...); links expire, so ask for a new one if this one is old. Tools send Authorization: Bearer <viewer token>.',
  },
  ERR_WARREN_FORBIDDEN: {
    title: 'Forbidden',
    message: (c) => `The relay refused this request${c.detail ? `: ${c.detail}` : ''}.`,
    action: () => 'Open the preview from its own address; the token or page you used does not grant this.',
  },
  ERR_WARREN_MISDIRECTED: {
    title: 'Wrong host',
    message: (c) => `This relay does not serve this host on this connection${c.detail ? ` (${c.detail})` : ''}.`,
    action: () => 'Check the address: preview hosts look like https://3000-yourtunnel.<relay domain>/.',
  },
};

function wordingFor(code: ErrorCode): Wording {
  return WORDING[code] ?? {
    title: 'Preview unavailable',
    message: () => ERRORS[code].summary,
    action: () => (ERRORS[code].retryable ? 'Reload the page to try again.' : 'Check the address and the sandbox.'),
  };
}

/** Escapes text for HTML element content and attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"'`=/]/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

/** Quality of one media type in an Accept header: exact matches only, 0 when absent. */
function quality(accept: string, type: string): number {
  let best = 0;
  for (const part of accept.toLowerCase().split(',')) {
    const [range, ...params] = part.split(';').map((s) => s.trim());
    if (range !== type) continue;
    const q = params.find((p) => p.startsWith('q='));
    const value = q === undefined ? 1 : Number(q.slice(2));
    if (Number.isFinite(value)) best = Math.max(best, value);
  }
  return best;
}

/**
 * Picks the format from an Accept header: HTML when `text/html` is accepted (browsers), JSON
 * when `application/json` is accepted with a higher quality than HTML, plain text otherwise.
 */
export function chooseErrorFormat(accept: string | undefined): ErrorFormat {
  if (!accept) return 'text';
  const html = quality(accept, 'text/html');
  const json = quality(accept, 'application/json');
  if (json > 0 && json > html) return 'json';
  if (html > 0) return 'html';
  return 'text';
}

function renderHtml(code: ErrorCode, status: number, context: ErrorContext, wording: Wording): string {
  const refresh = wording.retries && context.retry !== false
    ? `\n<meta http-equiv="refresh" content="${ERROR_PAGE_RETRY_SECONDS}">`
    : '';
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">${refresh}
<title>${escapeHtml(`${wording.title} (${status})`)}</title>
<style>
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1f2328;background:#f6f8fa}
main{max-width:36rem;margin:12vh auto;padding:2rem;background:#fff;border:1px solid #d0d7de;border-radius:8px}
h1{margin:0 0 .5rem;font-size:1.4rem}
p{margin:.5rem 0}
code{font:14px ui-monospace,SFMono-Regular,Menlo,monospace;background:#eff1f3;padding:.1rem .3rem;border-radius:4px}
.status{color:#656d76;font-size:.9rem}
</style>
</head>
<body>
<main>
<h1>${escapeHtml(wording.title)}</h1>
<p>${escapeHtml(wording.message(context))}</p>
<p>${escapeHtml(wording.action(context))}</p>
<p class="status">HTTP ${status} &middot; <code>${escapeHtml(code)}</code></p>
</main>
</body>
</html>
`;
}

/**
 * Renders the relay's answer for `code` in the format the Accept header asks for. The answer
 * carries `X-Warren-Error: <code>`, `Cache-Control: no-store` and, for HTML, a Content Security
 * Policy that allows nothing but the inline style. Pages for errors that clear by themselves
 * (tunnel offline, app not listening yet) reload every ERROR_PAGE_RETRY_SECONDS unless
 * `context.retry` is false; those answers also carry `Retry-After`.
 */
export function renderErrorAnswer(code: ErrorCode, accept: string | undefined, context: ErrorContext = {}): ErrorAnswer {
  const status = ERRORS[code].status;
  const wording = wordingFor(code);
  const format = chooseErrorFormat(accept);
  let body: string;
  let type: string;
  if (format === 'html') {
    body = renderHtml(code, status, context, wording);
    type = 'text/html; charset=utf-8';
  } else if (format === 'json') {
    body = `${JSON.stringify({ error: { code, message: wording.message(context), status } })}\n`;
    type = 'application/json; charset=utf-8';
  } else {
    body = `${status} ${code}: ${wording.message(context)} ${wording.action(context)}\n`;
    type = 'text/plain; charset=utf-8';
  }
  const bytes = Buffer.from(body, 'utf8');
  const headers: [string, string][] = [
    ['Content-Type', type],
    ['Content-Length', String(bytes.length)],
    ['Cache-Control', 'no-store'],
    ['X-Content-Type-Options', 'nosniff'],
    ['X-Warren-Error', code],
  ];
  if (format === 'html') headers.push(['Content-Security-Policy', "default-src 'none'; style-src 'unsafe-inline'"]);
  if (wording.retries) headers.push(['Retry-After', String(ERROR_PAGE_RETRY_SECONDS)]);
  return { status, headers, body: bytes };
}
