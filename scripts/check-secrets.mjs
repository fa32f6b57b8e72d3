#!/usr/bin/env node
// After the suite: no line any test process printed (relay, agent, client, CLI output) may
// contain a fragment of a token or key the tests minted. Secrets come from WARREN_TEST_SECRETS_FILE
// (one JSON string per line), logs from the files in WARREN_TEST_LOG_DIR.
// A fragment is any 24 characters of a token's signature or payload, or of a key's base64 body.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const WINDOW = 24;
const STRIDE = 12; // any leaked run of WINDOW + STRIDE characters contains an indexed window

const [secretsFile, logDir] = process.argv.slice(2);
const anchors = new Set();
let secrets = 0;
for (const line of readFileSync(secretsFile, 'utf8').split('\n')) {
  if (!line) continue;
  const secret = JSON.parse(line);
  secrets++;
  const parts = secret.includes('-----BEGIN')
    ? [secret.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '')]
    : secret.split('.').slice(1); // a JWT's payload and signature (the header is not secret)
  for (const part of parts) for (let i = 0; i + WINDOW <= part.length; i += STRIDE) anchors.add(part.slice(i, i + WINDOW));
}
let lines = 0;
const leaks = [];
for (const name of readdirSync(logDir)) {
  for (const text of readFileSync(join(logDir, name), 'utf8').split('\n')) {
    lines++;
    // Only long runs of base64url characters can hold a fragment: skip everything else fast.
    for (const run of text.match(/[A-Za-z0-9+/_=-]{24,}/g) ?? []) {
      for (let i = 0; i + WINDOW <= run.length; i++) {
        if (anchors.has(run.slice(i, i + WINDOW))) {
          leaks.push(`${name}: ${text.slice(0, 200)}`);
          i = run.length;
        }
      }
    }
  }
}
console.log(`secrets check: ${secrets} secrets, ${lines} log lines, ${leaks.length} leaks`);
for (const l of leaks.slice(0, 10)) console.log(`  leak: ${l}`);
process.exit(leaks.length === 0 ? 0 : 1);
