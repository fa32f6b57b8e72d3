/**
 * Private previews end to end: a relay and agents in this process over real TLS, apps on
 * loopback, and HTTP / WebSocket requests to the relay's plain-HTTP and HTTPS listeners. Checks
 * the token exchange, the session cookie's properties and scope, Bearer tokens, what reaches the
 * app (and what never does), the identity token the app can verify with the relay's JWKS, and the
 * Origin rule for WebSockets.
 */
import { createPublicKey, verify, type JsonWebKey } from 'node:crypto';
import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import t from 'tap';
import { JWKS_PATH, VIEWER_TOKEN_TTL_SECONDS } from '../../../relay/preview/viewer-token.js';
import type { SeenRequest } from '../../helpers/apps.js';
import { makeTestIdentity } from '../../helpers/identity.js';
import { INPROCESS_DOMAIN, previewSpec, startAgent, startPrivateAlpha } from '../../helpers/inprocess.js';

const id = await makeTestIdentity();
t.teardown(() => id.remove());
// Tunnel "alpha": app.port private by the --port flag, other.port public.
const { relay, url, httpPort, tlsPort, app, other } = await startPrivateAlpha(t, id);
// Tunnel "beta": app.port private by the agent token's `private` claim.
const beta = await startAgent(id, url, 'beta', [previewSpec(app.port, false)], id.token('agent', 'beta', [app.port], { private: [app.port] }));
t.teardown(() => beta.stop(100));

const hostA = `${app.port}-alpha.${INPROCESS_DOMAIN}`;
const publicA = `${other.port}-alpha.${INPROCESS_DOMAIN}`;
const hostB = `${app.port}-beta.${INPROCESS_DOMAIN}`;
const viewerA = (extra: Parameters<typeof id.token>[3] = {}): string => id.token('viewer', 'alpha', [app.port], { viewer: 'ada@example.com', ...extra });

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** One request to the relay's HTTP (default) or HTTPS listener with Host `host`. */
function send(host: string, path: string, options: { method?: string; headers?: Record<string, string>; tls?: boolean; body?: string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const common = { host: '127.0.0.1', path, method: options.method ?? 'GET', headers: { host, ...options.headers }, agent: false as const };
    const onResponse = (res: IncomingMessage): void => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
    };
    const req = options.tls ? httpsRequest({ ...common, port: tlsPort, ca: id.caPem, servername: host.replace(/:[0-9]+$/, '') }, onResponse) : httpRequest({ ...common, port: httpPort }, onResponse);
    req.on('error', reject);
    req.end(options.body);
  });
}

/** The cookie pair (`name=value`) from a Set-Cookie header. */
const cookiePair = (res: Answer): string => (res.headers['set-cookie']?.[0] ?? '').split(';')[0]!;

/** Exchanges a viewer token for a session cookie on `host`; returns the `warren_session=...` pair. */
async function login(host: string, token: string): Promise<string> {
  const res = await send(host, `/?warren_token=${token}`);
  if (res.status !== 302) throw new Error(`exchange answered ${res.status}: ${res.body}`);
  return cookiePair(res);
}

/** Header values named `name` (lower case) in a raw list. */
function headerValues(raw: readonly string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) if (raw[i]!.toLowerCase() === name) out.push(raw[i + 1]!);
  return out;
}

/** Sends an Upgrade request (Host `host:httpPort`, as browsers send it) and resolves with the status. */
function upgrade(host: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({
      host: '127.0.0.1',
      port: httpPort,
      path: '/ws',
      headers: { host: `${host}:${httpPort}`, connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', ...headers },
      agent: false,
    });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode ?? 0, body: '' });
    });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The requests the app saw during `fn`. */
async function seenDuring(target: { seen: SeenRequest[] }, fn: () => Promise<unknown>): Promise<SeenRequest[]> {
  const before = target.seen.length;
  await fn();
  return target.seen.slice(before);
}

t.test('a private preview without a token answers 401 with a clear page, and the app never sees the request', async (t) => {
  for (const host of [hostA, hostB]) {
    let res: Answer | undefined;
    const seen = await seenDuring(app, async () => {
      res = await send(host, '/page', { headers: { accept: 'text/html' } });
    });
    t.equal(res!.status, 401, host);
    t.match(res!.body, /<title>Private preview \(401\)<\/title>/);
    t.match(res!.body, /is private and opens only with a viewer token/);
    t.match(res!.body, /ERR_WARREN_UNAUTHORIZED/);
    t.notMatch(res!.body, /http-equiv="refresh"/, 'the page does not reload by itself');
    t.equal(res!.headers['www-authenticate'], 'Bearer realm="warren-preview"');
    t.same(seen, [], 'nothing reached the app');
  }
  const json = await send(hostA, '/api', { headers: { accept: 'application/json' } });
  t.equal(JSON.parse(json.body).error.code, 'ERR_WARREN_UNAUTHORIZED');
});

t.test('?warren_token= is exchanged for a host-only session cookie and a redirect without the token', async (t) => {
  const token = viewerA({ ttl: 600 });
  let res: Answer | undefined;
  const seen = await seenDuring(app, async () => {
    res = await send(hostA, `/page/x?a=1&warren_token=${token}&b=two%20words&c`);
  });
  t.same(seen, [], 'the exchange itself does not reach the app');
  t.equal(res!.status, 302);
  t.equal(res!.headers.location, '/page/x?a=1&b=two%20words&c', 'same path, other parameters kept in order');
  t.equal(res!.headers['cache-control'], 'no-store');
  const setCookie = res!.headers['set-cookie'] ?? [];
  t.equal(setCookie.length, 1);
  const attrs = setCookie[0]!.split(';').map((s) => s.trim());
  t.match(attrs[0], /^warren_session=v1\.[0-9]+\./);
  t.ok(attrs.includes('HttpOnly') && attrs.includes('SameSite=Lax') && attrs.includes('Path=/'), setCookie[0] ?? '');
  t.notOk(attrs.some((a) => /^domain=/i.test(a)), 'host-only: no Domain attribute');
  t.notOk(attrs.includes('Secure'), 'not Secure over plain HTTP');
  const maxAge = Number(attrs.find((a) => a.startsWith('Max-Age='))!.slice(8));
  t.ok(maxAge > 590 && maxAge <= 600, `Max-Age ${maxAge} is the token's remaining life`);
  t.notOk(setCookie[0]!.includes(token.split('.')[1]!) || setCookie[0]!.includes(token.split('.')[2]!), 'the cookie is not the token');

  const twoSlashes = await send(hostA, `//evil.example/x?warren_token=${token}`);
  t.equal(twoSlashes.headers.location, '/.//evil.example/x', 'a path with two leading slashes stays on this origin');
  t.equal(new URL(twoSlashes.headers.location!, `http://${hostA}/`).host, hostA);

  const over = await send(hostA, `/?warren_token=${token}`, { tls: true });
  t.equal(over.status, 302);
  t.match(over.headers["set-cookie"]?.[0] ?? "", /; Secure$/, 'Secure over TLS');
});

t.test('the session cookie opens the preview; Warren\'s cookie never reaches the app, the app\'s own cookies do', async (t) => {
  const cookie = await login(hostA, viewerA());
  let res: Answer | undefined;
  const seen = await seenDuring(app, async () => {
    res = await send(hostA, '/page?q=1', { headers: { cookie: `app_cookie=kept; ${cookie}; theme=dark` } });
  });
  t.equal(res!.status, 200);
  t.match(res!.body, /<p id="viewer">ada@example.com<\/p>/);
  t.equal(seen.length, 1);
  t.equal(seen[0]!.url, '/page?q=1');
  t.same(headerValues(seen[0]!.rawHeaders, 'cookie'), ['app_cookie=kept; theme=dark']);
  t.same(headerValues(seen[0]!.rawHeaders, 'x-warren-viewer'), ['ada@example.com']);

  const only = await seenDuring(app, () => send(hostA, '/api', { headers: { cookie } }));
  t.same(headerValues(only[0]!.rawHeaders, 'cookie'), [], 'a Cookie header with only the session is removed');
});

t.test('the cookie of one preview host opens no other host, even when replayed by hand', async (t) => {
  const cookie = await login(hostA, viewerA());
  t.equal((await send(hostA, '/api', { headers: { cookie } })).status, 200);
  const seen = await seenDuring(app, async () => {
    t.equal((await send(hostB, '/api', { headers: { cookie } })).status, 401, 'another tunnel');
  });
  t.same(seen, []);
  // A cookie copied by hand onto another private host (a cookie jar does not do this: the
  // cookie is host-only) is refused too: the value is bound to the host it was made for.
  const twin = await startAgent(id, url, 'alpha2', [previewSpec(app.port, true)]);
  t.teardown(() => twin.stop(100));
  const res = await send(`${app.port}-alpha2.${INPROCESS_DOMAIN}`, '/api', { headers: { cookie, accept: 'application/json' } });
  t.equal(res.status, 401);
  t.match(JSON.parse(res.body).error.message, /session for this preview has expired or was not made for it/);
});

t.test('Authorization: Bearer <viewer token> works for tools and is removed before the app', async (t) => {
  const token = viewerA();
  const seen = await seenDuring(app, async () => {
    t.equal((await send(hostA, '/api', { headers: { authorization: `Bearer ${token}` } })).status, 200);
  });
  t.same(headerValues(seen[0]!.rawHeaders, 'authorization'), []);
  t.same(headerValues(seen[0]!.rawHeaders, 'x-warren-viewer'), ['ada@example.com']);
  // An app's own Authorization (not a Warren token) passes, next to a session cookie.
  const cookie = await login(hostA, token);
  const own = await seenDuring(app, () => send(hostA, '/api', { headers: { cookie, authorization: 'Bearer app-own-api-key' } }));
  t.same(headerValues(own[0]!.rawHeaders, 'authorization'), ['Bearer app-own-api-key']);
});

t.test('the app receives a relay-signed identity it can verify with the relay\'s JWKS', async (t) => {
  const jwksRes = await send(`localhost:${tlsPort}`, JWKS_PATH, { tls: true });
  t.equal(jwksRes.status, 200);
  t.match(jwksRes.headers['content-type'], /^application\/jwk-set\+json/);
  const jwks = JSON.parse(jwksRes.body) as { keys: (JsonWebKey & { kid: string })[] };
  const seen = await seenDuring(app, () => send(hostA, '/api', { headers: { authorization: `Bearer ${viewerA({ ttl: 120 })}`, 'X-Warren-Viewer': 'mallory', 'x-warren-viewer-token': 'forged' } }));
  t.same(headerValues(seen[0]!.rawHeaders, 'x-warren-viewer'), ['ada@example.com'], 'a forged header from outside is replaced');
  const tokens = headerValues(seen[0]!.rawHeaders, 'x-warren-viewer-token');
  t.equal(tokens.length, 1);
  const [h, p, s] = tokens[0]!.split('.') as [string, string, string];
  const header = JSON.parse(Buffer.from(h, 'base64url').toString());
  t.same(header, { alg: 'EdDSA', typ: 'JWT', kid: jwks.keys[0]!.kid });
  const key = createPublicKey({ key: jwks.keys.find((k) => k.kid === header.kid)!, format: 'jwk' });
  t.ok(verify(null, Buffer.from(`${h}.${p}`), key, Buffer.from(s, 'base64url')), 'the signature verifies with the published key');
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
  t.equal(claims.iss, 'warren-relay');
  t.equal(claims.aud, hostA);
  t.equal(claims.sub, 'ada@example.com');
  t.ok(claims.exp - claims.iat <= VIEWER_TOKEN_TTL_SECONDS && claims.exp > Date.now() / 1000);
});

t.test('the viewer is the token\'s jti, then its sub, when it has no viewer claim; other characters are percent-encoded', async (t) => {
  const byJti = await seenDuring(app, () => send(hostA, '/api', { headers: { authorization: `Bearer ${id.token('viewer', 'alpha', [app.port], { jti: 'link-42' })}` } }));
  t.same(headerValues(byJti[0]!.rawHeaders, 'x-warren-viewer'), ['link-42']);
  const unicode = await seenDuring(app, () => send(hostA, '/api', { headers: { authorization: `Bearer ${viewerA({ viewer: 'Zoë\r\nX-Evil: 1' })}` } }));
  t.same(headerValues(unicode[0]!.rawHeaders, 'x-warren-viewer'), [encodeURIComponent('Zoë\r\nX-Evil: 1')]);
  t.same(headerValues(unicode[0]!.rawHeaders, 'x-evil'), []);
});

t.test('bad viewer tokens answer 401 with the reason and reach nothing', async (t) => {
  const now = Math.floor(Date.now() / 1000);
  const stranger = await makeTestIdentity();
  t.teardown(() => stranger.remove());
  const cases: [string, string, RegExp][] = [
    ['expired', viewerA({ iat: now - 600, exp: now - 300 }), /ERR_WARREN_TOKEN_EXPIRED/],
    ['another tunnel', id.token('viewer', 'beta', [app.port]), /for another tunnel or port/],
    ['another port', id.token('viewer', 'alpha', [other.port]), /for another tunnel or port/],
    ['a client token', id.token('client', 'alpha', [app.port]), /ERR_WARREN_TOKEN_ROLE/],
    ['an untrusted key', stranger.token('viewer', 'alpha', [app.port]), /ERR_WARREN_TOKEN_UNKNOWN_KEY/],
  ];
  for (const [name, token, reason] of cases) {
    const seen = await seenDuring(app, async () => {
      const viaQuery = await send(hostA, `/page?warren_token=${token}`, { headers: { accept: 'application/json' } });
      t.equal(viaQuery.status, 401, `${name} (query)`);
      t.match(JSON.parse(viaQuery.body).error.message, reason);
      t.equal(viaQuery.headers['www-authenticate'], 'Bearer realm="warren-preview", error="invalid_token"');
      t.equal(viaQuery.headers['set-cookie'], undefined);
    });
    t.same(seen, [], `${name}: nothing reached the app`);
  }
  const expired = await send(hostA, '/page', { headers: { authorization: `Bearer ${cases[0]![1]}` } });
  t.equal(expired.status, 401, 'expired (Bearer)');
});

t.test('revoking a viewer token ends the sessions made from it', async (t) => {
  const token = viewerA({ jti: 'revoke-me' });
  const cookie = await login(hostA, token);
  t.equal((await send(hostA, '/api', { headers: { cookie } })).status, 200);
  relay.revoke('revoke-me');
  t.equal((await send(hostA, '/api', { headers: { cookie } })).status, 401);
});

t.test('a POST with ?warren_token= is served once without a redirect, the token removed', async (t) => {
  const seen = await seenDuring(app, async () => {
    const res = await send(hostA, `/submit?warren_token=${viewerA()}&x=1`, { method: 'POST', body: 'data', headers: { 'content-type': 'text/plain' } });
    t.equal(res.status, 200);
    t.equal(res.headers['set-cookie'], undefined);
  });
  t.equal(seen[0]!.url, '/submit?x=1');
});

t.test('WebSocket upgrades to a private preview need the session and the preview\'s own Origin', async (t) => {
  const cookie = await login(hostA, viewerA());
  const origin = `http://${hostA}:${httpPort}`;
  t.equal((await upgrade(hostA, {})).status, 401, 'no credentials');
  const seen = await seenDuring(app, async () => {
    t.equal((await upgrade(hostA, { cookie, origin })).status, 101, 'cookie and same origin');
  });
  t.same(headerValues(seen[0]!.rawHeaders, 'x-warren-viewer'), ['ada@example.com']);
  t.same(headerValues(seen[0]!.rawHeaders, 'cookie'), []);
  for (const bad of [`http://${publicA}:${httpPort}`, `http://${hostA}:1`, `http://evil.example`, 'null', `${origin}/`]) {
    const refused = await seenDuring(app, async () => {
      const res = await upgrade(hostA, { cookie, origin: bad, accept: 'application/json' });
      t.equal(res.status, 403, `Origin ${bad}`);
      t.equal(JSON.parse(res.body).error.code, 'ERR_WARREN_FORBIDDEN');
    });
    t.same(refused, []);
  }
  t.equal((await upgrade(hostA, { cookie })).status, 403, 'a cookie without Origin');
  t.equal((await upgrade(hostA, { authorization: `Bearer ${viewerA()}` })).status, 101, 'a tool with a Bearer token and no Origin');
  t.equal((await upgrade(hostA, { cookie, origin: `https://${hostA}:${httpPort}` })).status, 101, 'https origin on the HTTP listener (TLS load balancer in front)');
});

t.test('public ports are unaffected, and still never see Warren\'s token or cookie', async (t) => {
  const seen = await seenDuring(other, async () => {
    t.equal((await send(publicA, '/api?x=1')).status, 200);
    t.equal((await send(publicA, `/api?warren_token=junk&y=2`)).status, 200, 'an invalid token on a public port is dropped, not refused');
    t.equal((await send(publicA, '/api', { headers: { cookie: 'warren_session=v1.1.a.b.c; mine=1', authorization: `Bearer ${viewerA()}`, 'x-warren-viewer': 'mallory' } })).status, 200);
    t.equal((await upgrade(publicA, { origin: 'http://evil.example' })).status, 101, 'WebSockets from any origin, as before');
  });
  t.equal(seen[0]!.url, '/api?x=1');
  t.equal(seen[1]!.url, '/api?y=2');
  t.same(headerValues(seen[2]!.rawHeaders, 'cookie'), ['mine=1']);
  t.same(headerValues(seen[2]!.rawHeaders, 'authorization'), []);
  t.same(headerValues(seen[2]!.rawHeaders, 'x-warren-viewer'), []);
  t.same(headerValues(seen[2]!.rawHeaders, 'x-warren-viewer-token'), []);
});
