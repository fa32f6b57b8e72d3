#!/usr/bin/env node
// Bundles the agent into one file, dist/warren-agent.mjs, that runs with plain `node` in a
// sandbox image: no node_modules. bufferutil is native and stays out; ws falls back to JS.
import { build } from 'esbuild';
import { existsSync } from 'node:fs';

const entry = new URL('../agent/standalone.ts', import.meta.url).pathname;
if (!existsSync(entry)) process.exit(0);
await build({
  entryPoints: [entry],
  outfile: new URL('../dist/warren-agent.mjs', import.meta.url).pathname,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: ['bufferutil', 'utf-8-validate'],
  banner: {
    // Some bundled CommonJS modules call require(); give them one in the ES module.
    js: "#!/usr/bin/env node\nimport { createRequire as __warrenCreateRequire } from 'node:module'; const require = __warrenCreateRequire(import.meta.url);",
  },
  legalComments: 'none',
  logLevel: 'warning',
});
