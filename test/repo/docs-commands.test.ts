// README.md and docs/OPERATIONS.md name only commands and flags the CLI has: every `warren ...`
// command line in them is matched against that subcommand's --help, and the relay flags of the
// configuration table against `warren relay --help`.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { repoRoot } from '../helpers/paths.js';
import { runWarren } from '../helpers/process.js';

/** Subcommands that take a second word. */
const GROUPS: Record<string, string[]> = { keys: ['generate'], token: ['issue', 'verify'], certs: ['init', 'issue'], agent: ['status'] };
const TOP = ['dev', 'relay', 'agent', 'connect', 'keys', 'token', 'certs'];

interface Use {
  file: string;
  command: string;
  flags: string[];
}

/** Every `warren SUBCOMMAND ...` (or `warren.js SUBCOMMAND ...`) in `text`, with the flags on its line and continuation lines. */
function commandUses(file: string, text: string): Use[] {
  const joined = text.replace(/\\\n\s*/g, ' ');
  const uses: Use[] = [];
  for (const m of joined.matchAll(/\bwarren(?:\.js)? ([a-z]+)(?: ([a-z]+))?([^\n`|#]*)/g)) {
    const [first, second, rest] = [m[1]!, m[2], m[3] ?? ''];
    if (!TOP.includes(first)) continue;
    const group = GROUPS[first];
    const command = group && second && group.includes(second) ? `${first} ${second}` : first;
    const tail = command.includes(' ') ? rest : `${second ? ` ${second}` : ''}${rest}`;
    // Flags end a command at `&&`, `;` or a pipe; what follows belongs to another program.
    const own = tail.split(/&&|;|\|/)[0]!;
    uses.push({ file, command, flags: [...own.matchAll(/(?<![\w-])--[a-z][a-z-]*/g)].map((f) => f[0]) });
  }
  return uses;
}

const files = ['README.md', join('docs', 'OPERATIONS.md')];
const uses = files.flatMap((f) => commandUses(f, readFileSync(join(repoRoot, f), 'utf8')));

t.test('the documents show commands', async (t) => {
  t.ok(uses.filter((u) => u.file === 'README.md').length >= 8, 'README commands found');
  t.ok(uses.filter((u) => u.file.endsWith('OPERATIONS.md')).length >= 8, 'OPERATIONS commands found');
});

const helps = new Map<string, string>();
async function help(command: string): Promise<string> {
  if (!helps.has(command)) {
    const res = await runWarren([...command.split(' '), '--help']);
    if (res.code !== 0) throw new Error(`warren ${command} --help exited ${res.code}: ${res.lines.join('\n')}`);
    helps.set(command, res.stdout);
  }
  return helps.get(command)!;
}

t.test('every flag of every documented command exists', async (t) => {
  for (const use of uses) {
    const text = await help(use.command);
    for (const flag of use.flags) t.match(text, new RegExp(`(^|[\\s,])${flag}\\b`, 'm'), `${use.file}: warren ${use.command} ${flag}`);
  }
});

t.test("the relay flags and environment variables of OPERATIONS.md's configuration table exist", async (t) => {
  const text = readFileSync(join(repoRoot, 'docs', 'OPERATIONS.md'), 'utf8');
  const section = text.slice(text.indexOf('## Configuration'), text.indexOf('## Running it'));
  const rows = section.split('\n').filter((l) => l.startsWith('| `--'));
  t.ok(rows.length >= 15);
  const relayHelp = await help('relay');
  for (const row of rows) {
    const flag = /^\| `(--[a-z-]+)/.exec(row)![1]!;
    t.match(relayHelp, new RegExp(`\\s${flag}\\b`), `${flag} exists`);
    const env = /`(WARREN_[A-Z_]+)/.exec(row)?.[1];
    t.equal(env?.replace(/^WARREN_/, '--').toLowerCase().replace(/_/g, '-'), flag, `${flag} reads ${env}`);
    t.match(relayHelp.replace(/\s+/g, ' '), new RegExp(`env: ${env}\\)`), `${env} is read`);
  }
});
