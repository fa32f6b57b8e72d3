// The pieces of private previews that need no sockets: session values, the Set-Cookie line,
// taking Warren's parts out of a request, the Origin rule, viewer header values and the relay's
// identity tokens.
import { createPublicKey, generateKeyPairSync, verify } from 'node:crypto';
import t from 'tap';
import { headerSafe, isPreviewOrigin, takeQueryParam } from '../../../relay/preview/auth.js';
import { sessionSetCookie, takeSessionCookies, ViewerSessions } from '../../../relay/preview/viewer-session.js';
import { ViewerTokenSigner } from '../../../relay/preview/viewer-token.js';

const HOST = '3000-ab12cd.preview.test';
const NOW = 1_800_000_000;

t.test('a session opens only on the host it was sealed for, before it expires, unaltered', async (t) => {
  const sessions = new ViewerSessions();
  const session = { exp: NOW + 60, jti: 'j1', viewer: 'Zoë <zoe@example.com>' };
  const value = sessions.seal(HOST, session);
  t.match(value, /^v1\.[0-9]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]{43}$/);
  t.same(sessions.open(HOST, value, NOW), session);
  t.equal(sessions.open('3000-other.preview.test', value, NOW), null, 'another tunnel');
  t.equal(sessions.open('3001-ab12cd.preview.test', value, NOW), null, 'another port');
  t.equal(sessions.open(HOST, value, NOW + 60), null, 'expired');
  t.equal(new ViewerSessions().open(HOST, value, NOW), null, 'another relay key');
  const [v, exp, jti, viewer, mac] = value.split('.') as [string, string, string, string, string];
  t.equal(sessions.open(HOST, [v, String(Number(exp) + 3600), jti, viewer, mac].join('.'), NOW), null, 'a longer expiry');
  t.equal(sessions.open(HOST, [v, exp, jti, Buffer.from('admin').toString('base64url'), mac].join('.'), NOW), null, 'another viewer');
  for (const junk of ['', 'v1', 'v1....', 'v2.1.a.b.c', `${value}.x`, 'v1.-1.a.b.c', `v1.${exp}.${jti}.${viewer}.${mac}=`]) {
    t.equal(sessions.open(HOST, junk, NOW), null, `junk ${JSON.stringify(junk)}`);
  }
});

t.test('a session key shorter than 32 bytes is refused', async (t) => {
  t.throws(() => new ViewerSessions(Buffer.alloc(16)), { code: 'ERR_WARREN_INVALID_ARGUMENT' });
  const key = Buffer.alloc(32, 7);
  t.ok(new ViewerSessions(key).open(HOST, new ViewerSessions(key).seal(HOST, { exp: NOW + 1, jti: '', viewer: 'x' }), NOW), 'relays with one key share sessions');
});

t.test('the session cookie is host-only, HttpOnly, SameSite=Lax, Path=/, with Max-Age and Secure over TLS', async (t) => {
  t.equal(sessionSetCookie('v', { maxAgeSeconds: 99.7, secure: false }), 'warren_session=v; Path=/; Max-Age=99; HttpOnly; SameSite=Lax');
  t.equal(sessionSetCookie('v', { maxAgeSeconds: 5, secure: true }), 'warren_session=v; Path=/; Max-Age=5; HttpOnly; SameSite=Lax; Secure');
});

t.test('Warren\'s cookie is taken out of Cookie headers; the app\'s cookies stay verbatim and in order', async (t) => {
  t.same(takeSessionCookies(['a=1; warren_session=s1; b="2"; warren_session=s2']), { sessions: ['s1', 's2'], others: 'a=1; b="2"' });
  t.same(takeSessionCookies(['warren_session=s1']), { sessions: ['s1'], others: null });
  t.same(takeSessionCookies(['a=1;b=2']), { sessions: [], others: 'a=1; b=2' });
  t.same(takeSessionCookies(['warren_sessionx=1; xwarren_session=2']), { sessions: [], others: 'warren_sessionx=1; xwarren_session=2' });
});

t.test('warren_token is taken out of the query; other parameters stay as they were, in order', async (t) => {
  t.same(takeQueryParam('/p?a=1&warren_token=T&b=x%20y&c', 'warren_token'), { path: '/p?a=1&b=x%20y&c', values: ['T'] });
  t.same(takeQueryParam('/p?warren_token=T', 'warren_token'), { path: '/p', values: ['T'] });
  t.same(takeQueryParam('/p?warren%5Ftoken=T&warren_token=U', 'warren_token'), { path: '/p', values: ['T', 'U'] }, 'encoded names too');
  t.same(takeQueryParam('/p?x=warren_token&warren_tokens=1', 'warren_token'), { path: '/p?x=warren_token&warren_tokens=1', values: [] });
  t.same(takeQueryParam('/p', 'warren_token'), { path: '/p', values: [] });
  t.same(takeQueryParam('/p?%zz=1', 'warren_token'), { path: '/p?%zz=1', values: [] }, 'bad escapes are left alone');
});

t.test('a WebSocket Origin must be the preview origin itself', async (t) => {
  t.ok(isPreviewOrigin('https://3000-ab.p.test', '3000-ab.p.test', true));
  t.ok(isPreviewOrigin('https://3000-ab.p.test:8443', '3000-ab.p.test:8443', true));
  t.ok(isPreviewOrigin('https://3000-ab.p.test', '3000-AB.p.test:443', true), 'case and default port');
  t.ok(isPreviewOrigin('http://3000-ab.p.test:8080', '3000-ab.p.test:8080', false));
  t.ok(isPreviewOrigin('https://3000-ab.p.test', '3000-ab.p.test', false), 'https page behind a TLS load balancer');
  t.notOk(isPreviewOrigin('http://3000-ab.p.test', '3000-ab.p.test', true), 'http page, TLS connection');
  t.notOk(isPreviewOrigin('https://3000-cd.p.test', '3000-ab.p.test', true), 'another tunnel');
  t.notOk(isPreviewOrigin('https://3001-ab.p.test', '3000-ab.p.test', true), 'another port of the tunnel');
  t.notOk(isPreviewOrigin('https://3000-ab.p.test:8443', '3000-ab.p.test', true), 'another listener port');
  t.notOk(isPreviewOrigin('https://x.3000-ab.p.test', '3000-ab.p.test', true));
  t.notOk(isPreviewOrigin('null', '3000-ab.p.test', true));
  t.notOk(isPreviewOrigin('https://3000-ab.p.test/', '3000-ab.p.test', true));
  t.notOk(isPreviewOrigin('https://u@3000-ab.p.test', '3000-ab.p.test', true));
  t.notOk(isPreviewOrigin('ws://3000-ab.p.test', '3000-ab.p.test', false));
});

t.test('viewer header values are printable ASCII as they are, anything else percent-encoded', async (t) => {
  t.equal(headerSafe('ada@example.com'), 'ada@example.com');
  t.equal(headerSafe('Ada Lovelace <ada@example.com>'), 'Ada Lovelace <ada@example.com>');
  t.equal(headerSafe('Zoë'), 'Zo%C3%AB');
  t.equal(headerSafe('a\r\nX-Evil: 1'), 'a%0D%0AX-Evil%3A%201');
});

t.test('identity tokens verify with the published JWK, for the preview host, for at most 5 minutes', async (t) => {
  const signer = new ViewerTokenSigner({ issuer: 'relay-eu-1' });
  const jwks = JSON.parse(signer.jwksJson().toString()) as { keys: { kid: string; kty: string; crv: string; x: string; alg: string; use: string }[] };
  t.equal(jwks.keys.length, 1);
  t.match(jwks.keys[0], { kty: 'OKP', crv: 'Ed25519', kid: signer.kid, alg: 'EdDSA', use: 'sig' });
  const token = signer.sign(HOST, 'ada', NOW);
  const [h, p, s] = token.split('.') as [string, string, string];
  t.same(JSON.parse(Buffer.from(h, 'base64url').toString()), { alg: 'EdDSA', typ: 'JWT', kid: signer.kid });
  t.same(JSON.parse(Buffer.from(p, 'base64url').toString()), { iss: 'relay-eu-1', aud: HOST, sub: 'ada', iat: NOW, exp: NOW + 300 });
  t.ok(verify(null, Buffer.from(`${h}.${p}`), createPublicKey({ key: jwks.keys[0]!, format: 'jwk' }), Buffer.from(s, 'base64url')));
  const short = JSON.parse(Buffer.from(signer.sign(HOST, 'ada', NOW, NOW + 42).split('.')[1]!, 'base64url').toString());
  t.equal(short.exp, NOW + 42, 'never past the viewer\'s session');
  t.throws(() => new ViewerTokenSigner({ key: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey }), { code: 'ERR_WARREN_INVALID_ARGUMENT' });
});
