/**
 * Private previews in Chromium: the `?warren_token=` link ends on the clean URL with the session
 * cookie set and the app shown; the cookie stays on its host (another tunnel's private host
 * answers 401, even with the cookie copied onto it by hand); an expired link gives the 401 page;
 * the app sees who is viewing; WebSockets work from the preview itself and are refused from a
 * sibling preview's page; over TLS the cookie is Secure.
 */
import t from 'tap';
import { launchBrowser, waitForText } from '../../helpers/browser.js';
import { makeTestIdentity } from '../../helpers/identity.js';
import { INPROCESS_DOMAIN, previewSpec, startAgent, startPrivateAlpha } from '../../helpers/inprocess.js';

const id = await makeTestIdentity();
t.teardown(() => id.remove());
const { url, httpPort, tlsPort, app, other: open } = await startPrivateAlpha(t, id);
const beta = await startAgent(id, url, 'beta', [previewSpec(app.port, true)]);
t.teardown(() => beta.stop(100));

const hostA = `${app.port}-alpha.${INPROCESS_DOMAIN}`;
const hostB = `${app.port}-beta.${INPROCESS_DOMAIN}`;
const publicA = `${open.port}-alpha.${INPROCESS_DOMAIN}`;
const originA = `http://${hostA}:${httpPort}`;
const viewerToken = (extra: Parameters<typeof id.token>[3] = {}): string => id.token('viewer', 'alpha', [app.port], { viewer: 'ada@example.com', ttl: 900, ...extra });
const browser = await launchBrowser(t, 'private-preview');

t.test('the token link ends on the clean URL, with the session cookie set and the app shown', async (t) => {
  const context = await browser.context();
  const page = await context.newPage();
  const res = await page.goto(`${originA}/page?a=1&warren_token=${viewerToken()}&b=two`);
  t.equal(res?.status(), 200);
  const first = await res?.request().redirectedFrom()?.response();
  t.equal(first?.status(), 302, 'through one redirect');
  t.equal(page.url(), `${originA}/page?a=1&b=two`, 'the token is gone from the address bar');
  t.equal(await page.locator('#url').innerText(), '/page?a=1&b=two', 'the app saw the clean URL');
  t.equal(await page.locator('#viewer').innerText(), 'ada@example.com', 'the app saw who is viewing');
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === 'warren_session');
  t.ok(session, 'the session cookie is set');
  t.equal(session?.domain, hostA, 'host-only, for this preview host');
  t.equal(session?.httpOnly, true);
  t.equal(session?.sameSite, 'Lax');
  t.equal(session?.path, '/');
  t.equal(session?.secure, false, 'plain HTTP');
  const lifetime = (session?.expires ?? 0) - Date.now() / 1000;
  t.ok(lifetime > 800 && lifetime <= 900, `expires with the token (${Math.round(lifetime)} s)`);
  t.equal(await page.evaluate(() => (globalThis as unknown as { document: { cookie: string } }).document.cookie), 'app_cookie=kept', 'page scripts see the app\'s cookie, not the session');
  await browser.screenshot(page, 'redirect-flow');

  // The same tab goes on without the token.
  await page.goto(`${originA}/page/next`);
  t.equal(await page.locator('#viewer').innerText(), 'ada@example.com');
});

t.test('the cookie of one preview host opens no other tunnel\'s host', async (t) => {
  const context = await browser.context();
  const page = await context.newPage();
  await page.goto(`${originA}/page?warren_token=${viewerToken()}`);
  t.equal(await page.locator('#viewer').innerText(), 'ada@example.com');
  // Both tunnels serve the same app: count only what arrived for beta's host (Chromium may still
  // be fetching alpha's favicon, with a valid cookie).
  const seenByB = (): number => app.seen.filter((r) => r.rawHeaders.some((v, i) => i % 2 === 1 && r.rawHeaders[i - 1]!.toLowerCase() === 'host' && v.startsWith(hostB))).length;
  const other = await page.goto(`http://${hostB}:${httpPort}/page`);
  t.equal(other?.status(), 401, 'the browser sends no cookie there');
  t.equal(await page.title(), 'Private preview (401)');
  t.same((await context.cookies(`http://${hostB}:${httpPort}/`)).map((c) => c.name), [], 'no cookie for that host');
  await browser.screenshot(page, 'cookie-scope-other-tunnel');
  // Copied onto the other host by hand, the value still opens nothing: it is bound to its host.
  const session = (await context.cookies()).find((c) => c.name === 'warren_session')!;
  await context.addCookies([{ name: session.name, value: session.value, domain: hostB, path: '/', httpOnly: true, sameSite: 'Lax' }]);
  t.equal((await page.goto(`http://${hostB}:${httpPort}/page`))?.status(), 401, 'a copied cookie is refused');
  t.match(await page.locator('body').innerText(), /session for this preview has expired or was not made for it/);
  t.equal(seenByB(), 0, 'nothing reached the other tunnel\'s app');
  await browser.screenshot(page, 'cookie-scope-copied');
});

t.test('an expired link shows the 401 page and sets nothing', async (t) => {
  const context = await browser.context();
  const page = await context.newPage();
  const now = Math.floor(Date.now() / 1000);
  const res = await page.goto(`${originA}/page?warren_token=${viewerToken({ iat: now - 3600, exp: now - 600 })}`);
  t.equal(res?.status(), 401);
  t.equal(await page.title(), 'Private preview (401)');
  const body = await page.locator('body').innerText();
  t.match(body, /is private and opens only with a viewer token/);
  t.match(body, /token has expired/);
  t.match(body, /ERR_WARREN_UNAUTHORIZED/);
  t.same(await context.cookies(), []);
  await browser.screenshot(page, 'expired-token');
  const none = await page.goto(`${originA}/page`);
  t.equal(none?.status(), 401, 'and without any token');
  await browser.screenshot(page, 'no-token');
});

t.test('WebSockets open from the preview itself, and are refused from a sibling preview\'s page', async (t) => {
  const context = await browser.context();
  const page = await context.newPage();
  await page.goto(`${originA}/page?warren_token=${viewerToken()}`);
  const connect = (target: string): Promise<string> =>
    page.evaluate(
      (target) =>
        new Promise<string>((resolve) => {
          const Ws = (globalThis as unknown as { WebSocket: new (url: string) => { onmessage: ((e: { data: string }) => void) | null; onclose: (() => void) | null; close(): void } }).WebSocket;
          const ws = new Ws(target);
          ws.onmessage = (e) => {
            resolve(e.data);
            ws.close();
          };
          ws.onclose = () => resolve('closed without a message');
        }),
      target,
    );
  t.equal(await connect(`ws://${hostA}:${httpPort}/ws`), 'hello ada@example.com', 'same origin: the app greets the viewer');

  // A page of another preview of the same domain (same site, so Lax cookies go along).
  await page.goto(`http://${publicA}:${httpPort}/page`);
  const before = app.seen.filter((s) => s.method === 'UPGRADE').length;
  const consoleErrors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(m.text());
  });
  t.equal(await connect(`ws://${hostA}:${httpPort}/ws`), 'closed without a message', 'cross-origin: refused');
  // 403 (the Origin check) and not 401: the browser did send the session cookie.
  t.ok(consoleErrors.some((m) => /Unexpected response code: 403/.test(m)), consoleErrors.join('\n'));
  t.equal(app.seen.filter((s) => s.method === 'UPGRADE').length, before, 'the app saw no handshake');
  await browser.screenshot(page, 'websocket-cross-origin');
});

t.test('over TLS the session cookie is Secure', async (t) => {
  const context = await browser.context({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  await page.goto(`https://${hostA}:${tlsPort}/page?warren_token=${viewerToken()}`);
  t.equal(page.url(), `https://${hostA}:${tlsPort}/page`);
  t.equal(await waitForText(page, '#viewer', /ada/), 'ada@example.com');
  const session = (await context.cookies()).find((c) => c.name === 'warren_session');
  t.equal(session?.secure, true);
  t.equal(session?.domain, hostA);
  await browser.screenshot(page, 'redirect-flow-tls');
});
