import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { writeOutputFiles } from '../../certs/files.js';

const root = mkdtempSync(join(tmpdir(), 'warren-files-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));
const pair = [
  { name: 'a.key', content: 'secret', mode: 0o600 },
  { name: 'a.pub', content: 'public', mode: 0o644 },
];

t.test('writes into a new 0700 directory with each file mode', async (t) => {
  const dir = join(root, 'new', 'nested');
  t.same(await writeOutputFiles(dir, pair, false), [join(dir, 'a.key'), join(dir, 'a.pub')]);
  t.equal(statSync(dir).mode & 0o777, 0o700);
  t.equal(statSync(join(dir, 'a.key')).mode & 0o777, 0o600);
  t.equal(statSync(join(dir, 'a.pub')).mode & 0o777, 0o644);
  t.equal(readFileSync(join(dir, 'a.key'), 'utf8'), 'secret');
});

t.test('one existing file stops the whole set before anything is written', async (t) => {
  const dir = join(root, 'half');
  await writeOutputFiles(dir, [pair[1]!], false);
  await t.rejects(writeOutputFiles(dir, pair, false), { code: 'ERR_WARREN_USAGE', message: /a\.pub already exists; pass --force to replace it/ });
  t.notOk(existsSync(join(dir, 'a.key')), 'the other file was not written');
});

t.test('force replaces files atomically and leaves no temporary files', async (t) => {
  const dir = join(root, 'force');
  await writeOutputFiles(dir, pair, false);
  writeFileSync(join(dir, 'a.key'), 'old', { mode: 0o644 });
  await writeOutputFiles(dir, [{ name: 'a.key', content: 'new', mode: 0o600 }], true);
  t.equal(readFileSync(join(dir, 'a.key'), 'utf8'), 'new');
  t.equal(statSync(join(dir, 'a.key')).mode & 0o777, 0o600, 'the mode is set even on a replaced file');
  t.same(readdirSync(dir).sort(), ['a.key', 'a.pub']);
});

t.test('a directory that cannot be made is a config error naming it', async (t) => {
  writeFileSync(join(root, 'plain-file'), '');
  await t.rejects(writeOutputFiles(join(root, 'plain-file', 'sub'), pair, false), { code: 'ERR_WARREN_CONFIG', message: /plain-file\/sub: cannot create the directory/ });
});
