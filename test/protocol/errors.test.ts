import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { ERRORS, WarrenError, StreamResetError, codeFromWire, errorFromWire, isRetryable, type ErrorCode } from '../../protocol/errors.js';
import { repoRoot } from '../helpers/paths.js';

const doc = readFileSync(join(repoRoot, 'docs', 'errors.md'), 'utf8');

/** Rows of docs/errors.md: code -> the wire number written beside it. */
function documentedCodes(): Map<string, number> {
  const rows = new Map<string, number>();
  for (const m of doc.matchAll(/^\| `(ERR_WARREN_[A-Z0-9_]+)` \| 0x([0-9a-f]+) \| (yes|no) \| (\d+) \|/gm)) rows.set(m[1]!, parseInt(m[2]!, 16));
  return rows;
}

/** Every ERR_WARREN_* literal in the TypeScript sources, outside tests. */
function codesInSources(): Set<string> {
  const found = new Set<string>();
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) {
        if (!['node_modules', 'dist', 'test', '.git', '.tap', '.warren'].includes(name)) walk(path);
      } else if (name.endsWith('.ts')) {
        for (const m of readFileSync(path, 'utf8').matchAll(/ERR_WARREN_[A-Z0-9_]+/g)) found.add(m[0]);
      }
    }
  };
  walk(repoRoot);
  return found;
}

t.test('every code in the table is documented with its wire number, retry flag and status', async (t) => {
  const rows = documentedCodes();
  for (const [code, spec] of Object.entries(ERRORS)) {
    t.equal(rows.get(code), spec.wire, `${code} documented with wire 0x${spec.wire.toString(16)}`);
    const row = new RegExp(`^\\| \`${code}\` \\| 0x[0-9a-f]+ \\| ${spec.retryable ? 'yes' : 'no'} \\| ${spec.status} \\|`, 'm');
    t.match(doc, row, `${code} documented as retryable=${spec.retryable}, status ${spec.status}`);
  }
  t.same([...rows.keys()].filter((c) => !(c in ERRORS)), [], 'no documented code is missing from the table');
});

t.test('every code used in the sources exists in the table', async (t) => {
  t.same([...codesInSources()].filter((c) => !(c in ERRORS)).sort(), []);
});

t.test('wire numbers are unique, non-zero and round-trip', async (t) => {
  const seen = new Set<number>();
  for (const [code, spec] of Object.entries(ERRORS) as [ErrorCode, (typeof ERRORS)[ErrorCode]][]) {
    t.not(spec.wire, 0, `${code} does not use wire 0`);
    t.notOk(seen.has(spec.wire), `${code} has a unique wire number`);
    seen.add(spec.wire);
    t.equal(codeFromWire(spec.wire), code);
  }
});

t.test('errors carry code, wire code, retry decision and cause', async (t) => {
  const cause = new Error('socket hang up');
  const err = new WarrenError('ERR_WARREN_RELAY_UNREACHABLE', 'relay 127.0.0.1:1 refused', { cause });
  t.equal(err.code, 'ERR_WARREN_RELAY_UNREACHABLE');
  t.equal(err.name, 'WarrenError');
  t.equal(err.cause, cause);
  t.equal(err.retryable, true);
  t.equal(isRetryable(err), true);
  t.equal(isRetryable(new Error('ECONNRESET')), false, 'retry decisions never come from message text');
  t.equal(new WarrenError('ERR_WARREN_TOKEN_EXPIRED').message, ERRORS.ERR_WARREN_TOKEN_EXPIRED.summary);
});

t.test('an error rebuilt from the wire keeps its code; unknown numbers stay visible', async (t) => {
  const known = errorFromWire(StreamResetError, ERRORS.ERR_WARREN_APP_UNREACHABLE.wire, 'connect ECONNREFUSED', { remote: true });
  t.equal(known.code, 'ERR_WARREN_APP_UNREACHABLE');
  t.equal(known.remote, true);
  t.equal(known.status, 502);
  const unknown = errorFromWire(StreamResetError, 0xbeef, '');
  t.equal(unknown.code, 'ERR_WARREN_INTERNAL');
  t.match(unknown.message, /48879/);
});
