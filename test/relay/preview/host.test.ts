import fc from 'fast-check';
import t, { type Test } from 'tap';
import { TUNNEL_ID_PATTERN, formatPreviewHost, normalizeHostname, parsePreviewHost } from '../../../relay/preview/host.js';

const DOMAINS = ['preview.example.dev', 'localhost', 'preview.test'];

const tunnelId = fc.stringMatching(TUNNEL_ID_PATTERN);
const port = fc.integer({ min: 1, max: 65535 });
const domain = fc.constantFrom(...DOMAINS);

/** Runs a property and records it as one assertion, with fast-check's counterexample on failure. */
function holds<Ts extends [unknown, ...unknown[]]>(t: Test, name: string, property: fc.IProperty<Ts>, params?: fc.Parameters<Ts>): void {
  try {
    fc.assert(property, params);
    t.pass(name);
  } catch (err) {
    t.fail(`${name}: ${(err as Error).message}`);
  }
}

/** Randomly upper-cases letters: hosts are case-insensitive. */
function recase(text: string, mask: boolean[]): string {
  return [...text].map((ch, i) => (mask[i % mask.length] ? ch.toUpperCase() : ch)).join('');
}

t.test('examples', async (t) => {
  t.same(parsePreviewHost('3000-ab12cd.preview.example.dev', 'preview.example.dev'), { port: 3000, tunnelId: 'ab12cd' });
  t.same(parsePreviewHost('3000-ab12cd.localhost:8080', 'localhost'), { port: 3000, tunnelId: 'ab12cd' });
  t.same(parsePreviewHost('5173-My-App.PREVIEW.example.dev.:443', 'preview.example.dev'), { port: 5173, tunnelId: 'my-app' });
  t.same(parsePreviewHost('65535-a.localhost', 'localhost.'), { port: 65535, tunnelId: 'a' });
  for (const bad of [
    '03000-ab12cd.localhost', // leading zero
    '0-ab12cd.localhost', // port 0
    '65536-ab12cd.localhost', // port too large
    '3000-ab12cd.x.localhost', // two labels
    '3000-ab12cd.localhost.evil', // another domain
    '3000-ab12cd.evillocalhost', // suffix without a dot
    'localhost', // the domain itself
    '.localhost',
    '3000-.localhost', // empty tunnel
    '3000--ab.localhost', // tunnel starts with a hyphen
    '3000-ab-.localhost', // tunnel ends with a hyphen
    `3000-${'a'.repeat(33)}.localhost`, // tunnel too long
    '3000_ab.localhost',
    'ab12cd-3000.localhost', // reversed
    '3000-ab12cd.localhost:', // empty port suffix
    '3000-ab12cd.localhost:x',
    '3000-ab12cd..localhost',
    '3000-ab12cd.localhost..',
    '[::1]:3000',
    '3000-ab cd.localhost',
    '',
  ]) {
    t.equal(parsePreviewHost(bad, 'localhost'), null, JSON.stringify(bad));
  }
  t.equal(parsePreviewHost('3000-ab.localhost', ''), null, 'an empty domain matches nothing');
});

t.test('every formatted preview host parses back, whatever its case, port suffix and trailing dot', async (t) => {
  holds(
    t,
    'round trip',
    fc.property(tunnelId, port, domain, fc.array(fc.boolean(), { minLength: 1, maxLength: 8 }), fc.boolean(), fc.option(fc.integer({ min: 0, max: 65535 })), (id, p, d, mask, dot, suffixPort) => {
      const host = recase(formatPreviewHost({ tunnelId: id, port: p }, d), mask) + (dot ? '.' : '') + (suffixPort === null ? '' : `:${suffixPort}`);
      const parsed = parsePreviewHost(host, d);
      return parsed !== null && parsed.port === p && parsed.tunnelId === id;
    }),
  );
});

t.test('whatever parses is canonical: it formats back to the normalized host', async (t) => {
  const alphabet = fc.constantFrom(...'0123456789abcdefABC-.:_ '.split(''));
  const hostish = fc.oneof(
    fc.string({ unit: alphabet, maxLength: 40 }).map((s) => `${s}.localhost`),
    fc.string({ unit: alphabet, maxLength: 40 }),
    fc.tuple(fc.string({ unit: fc.constantFrom(...'0123456789'.split('')), maxLength: 7 }), fc.string({ unit: alphabet, maxLength: 36 })).map(([a, b]) => `${a}-${b}.localhost`),
  );
  holds(
    t,
    'canonical',
    fc.property(hostish, (host) => {
      const parsed = parsePreviewHost(host, 'localhost');
      if (parsed === null) return true;
      return (
        parsed.port >= 1 &&
        parsed.port <= 65535 &&
        TUNNEL_ID_PATTERN.test(parsed.tunnelId) &&
        formatPreviewHost(parsed, 'localhost') === normalizeHostname(host)
      );
    }),
    { numRuns: 5000 },
  );
});

t.test('hosts of other domains or with extra labels never parse', async (t) => {
  holds(
    t,
    'foreign and nested hosts',
    fc.property(tunnelId, port, domain, domain, fc.stringMatching(/^[a-z0-9]{1,10}$/), (id, p, d, other, extra) => {
      const label = `${p}-${id}`;
      const withExtra = parsePreviewHost(`${label}.${extra}.${d}`, d) === null;
      const prefixed = parsePreviewHost(`${extra}.${label}.${d}`, d) === null;
      const foreign = other === d || parsePreviewHost(`${label}.${other}`, d) === null;
      return withExtra && prefixed && foreign;
    }),
  );
});

t.test('ports with leading zeros or out of range never parse', async (t) => {
  holds(
    t,
    'port syntax',
    fc.property(tunnelId, fc.integer({ min: 0, max: 999999 }), fc.integer({ min: 1, max: 3 }), (id, p, zeros) => {
      const padded = parsePreviewHost(`${'0'.repeat(zeros)}${p}-${id}.localhost`, 'localhost') === null;
      const ranged = p >= 1 && p <= 65535 ? parsePreviewHost(`${p}-${id}.localhost`, 'localhost') !== null : parsePreviewHost(`${p}-${id}.localhost`, 'localhost') === null;
      return padded && ranged;
    }),
  );
});
