#!/usr/bin/env node
// A tap reporter program: reads raw TAP on stdin, prints one line per test file and the details
// of every failure, and writes the tally of named tests (a file's direct subtests) as JSON to the
// file named by WARREN_TAP_TALLY, for scripts/test.mjs to print the final summary line.
import { writeFileSync } from 'node:fs';
import { Parser } from 'tap-parser';

const tally = { passed: 0, failed: 0, skipped: 0, files: 0, failedFiles: [] };
const parser = new Parser();
const DIAG_KEYS = ['diff', 'found', 'wanted', 'pattern', 'compare', 'error', 'code', 'at', 'stack', 'signal', 'exitCode', 'expired'];

function showDiag(diag, indent) {
  if (!diag) return;
  const picked = Object.fromEntries(DIAG_KEYS.filter((k) => diag[k] !== undefined).map((k) => [k, diag[k]]));
  if (picked.at) picked.at = `${picked.at.fileName ?? ''}:${picked.at.lineNumber ?? ''}`;
  if (typeof picked.stack === 'string') picked.stack = picked.stack.split('\n').slice(0, 6).join('\n');
  for (const line of JSON.stringify(picked, null, 2).split('\n').slice(1, -1)) console.log(`${indent}${line}`);
}

/** Prints every failing leaf assertion under `p`; returns a function telling how many it printed. */
function watch(p, path) {
  let printed = 0;
  const children = new Map();
  p.on('child', (child) => children.set(child.name, watch(child, [...path, child.name])));
  p.on('assert', (res) => {
    if (res.ok || res.todo || res.skip) return;
    const child = children.get(res.name);
    // A failed subtest whose failing assertions were already printed adds nothing; one that
    // failed by itself (timeout, thrown error, plan mismatch) is printed with its diagnostics.
    if (child && child() > 0) {
      printed += child();
      return;
    }
    printed++;
    console.log(`      not ok - ${[...path, res.name].join(' > ')}`);
    showDiag(res.diag, '          ');
  });
  return () => printed;
}

parser.on('child', (file) => {
  let tests = 0;
  let failedTests = 0;
  const name = file.name.replace(/^dist\//, '').replace(/\.js$/, '.ts');
  watch(file, []);
  file.on('assert', (res) => {
    tests++;
    if (res.skip || res.todo) tally.skipped++;
    else if (res.ok) tally.passed++;
    else failedTests++;
  });
  // The parent's own line for the file is the verdict: a file that crashed outside its tests
  // has no failed test but is still not ok, and counts as one failure.
  parser.on('assert', function onFile(res) {
    if (res.name !== file.name) return;
    parser.removeListener('assert', onFile);
    tally.files++;
    const failures = failedTests || (res.ok ? 0 : 1);
    tally.failed += failures;
    if (failures) tally.failedFiles.push(name);
    const seconds = typeof res.time === 'number' ? ` ${(res.time / 1000).toFixed(1)}s` : '';
    console.log(`${failures ? 'FAIL  ' : 'ok    '}${name} (${tests} tests${seconds})`);
    if (!res.ok && !failedTests) showDiag(res.diag, '          ');
  });
});
parser.on('extra', (line) => process.stdout.write(line));
parser.on('complete', () => {
  if (process.env.WARREN_TAP_TALLY) writeFileSync(process.env.WARREN_TAP_TALLY, JSON.stringify(tally));
});
process.stdin.pipe(parser);
