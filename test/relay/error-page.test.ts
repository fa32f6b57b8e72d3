import t from 'tap';
import { ERRORS, type ErrorCode } from '../../protocol/errors.js';
import { chooseErrorFormat, escapeHtml, renderErrorAnswer } from '../../relay/preview/error-page.js';

const header = (answer: { headers: [string, string][] }, name: string): string | undefined =>
  answer.headers.find(([n]) => n.toLowerCase() === name.toLowerCase())?.[1];

t.test('the Accept header picks the format', async (t) => {
  t.equal(chooseErrorFormat('text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8'), 'html', 'a browser navigation');
  t.equal(chooseErrorFormat('application/json'), 'json');
  t.equal(chooseErrorFormat('application/json, text/plain, */*'), 'json', 'axios');
  t.equal(chooseErrorFormat('text/html;q=0.5, application/json'), 'json', 'quality decides');
  t.equal(chooseErrorFormat('application/json;q=0.5, text/html'), 'html');
  t.equal(chooseErrorFormat('text/html;q=0'), 'text', 'q=0 means not acceptable');
  t.equal(chooseErrorFormat('*/*'), 'text', 'curl');
  t.equal(chooseErrorFormat(undefined), 'text');
});

t.test('JSON answers carry code, message and status', async (t) => {
  const answer = renderErrorAnswer('ERR_WARREN_PORT_NOT_EXPOSED', 'application/json', { tunnelId: 'ab12cd', port: 3000 });
  t.equal(answer.status, 404);
  t.same(JSON.parse(answer.body.toString()), {
    error: { code: 'ERR_WARREN_PORT_NOT_EXPOSED', message: 'The sandbox for tunnel ab12cd does not expose port 3000.', status: 404 },
  });
  t.equal(header(answer, 'x-warren-error'), 'ERR_WARREN_PORT_NOT_EXPOSED');
  t.equal(header(answer, 'content-length'), String(answer.body.length));
  t.match(header(answer, 'content-type'), /^application\/json/);
});

t.test('HTML pages are self-contained, name the code and say what to do', async (t) => {
  const answer = renderErrorAnswer('ERR_WARREN_APP_UNREACHABLE', 'text/html', { tunnelId: 'ab12cd', port: 5173 });
  const html = answer.body.toString();
  t.equal(answer.status, 502);
  t.match(html, /<title>App not listening yet \(502\)<\/title>/);
  t.match(html, /The app is not listening on port 5173 yet\./);
  t.match(html, /ERR_WARREN_APP_UNREACHABLE/);
  t.match(html, /<meta http-equiv="refresh" content="2">/, 'reloads by itself');
  t.notMatch(html, /<script|<link|src=|href=|url\(/i, 'no scripts and no external assets');
  t.match(header(answer, 'content-security-policy'), /default-src 'none'/);
  t.equal(header(answer, 'retry-after'), '2');
});

t.test('only errors that clear by themselves reload, and never for non-GET requests', async (t) => {
  const reloads = (code: ErrorCode, retry?: boolean): boolean => /http-equiv="refresh"/.test(renderErrorAnswer(code, 'text/html', retry === undefined ? {} : { retry }).body.toString());
  t.ok(reloads('ERR_WARREN_TUNNEL_OFFLINE'));
  t.ok(reloads('ERR_WARREN_APP_UNREACHABLE'));
  t.notOk(reloads('ERR_WARREN_APP_UNREACHABLE', false));
  t.notOk(reloads('ERR_WARREN_PORT_NOT_EXPOSED'));
  t.notOk(reloads('ERR_WARREN_BAD_REQUEST'));
  t.notOk(reloads('ERR_WARREN_MISDIRECTED'));
});

t.test('every value in a page is escaped', async (t) => {
  t.equal(escapeHtml(`<a href="x" onclick='y'>&</a>`), '&#60;a href&#61;&#34;x&#34; onclick&#61;&#39;y&#39;&#62;&#38;&#60;&#47;a&#62;');
  const answer = renderErrorAnswer('ERR_WARREN_BAD_REQUEST', 'text/html', { tunnelId: '<script>alert(1)</script>', detail: '"><img src=x onerror=alert(1)>' });
  const html = answer.body.toString();
  t.notMatch(html, /<script>alert/);
  t.notMatch(html, /<img/);
});

t.test('every code renders in every format', async (t) => {
  for (const code of Object.keys(ERRORS) as ErrorCode[]) {
    for (const accept of ['text/html', 'application/json', undefined]) {
      const answer = renderErrorAnswer(code, accept, { tunnelId: 'ab', port: 80 });
      if (answer.status !== ERRORS[code].status || header(answer, 'x-warren-error') !== code || !answer.body.toString().includes(accept === 'application/json' ? `"code":"${code}"` : code)) {
        t.fail(`${code} as ${accept ?? 'text'}`);
      }
    }
  }
  t.pass('rendered');
});
