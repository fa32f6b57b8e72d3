#!/usr/bin/env node
/**
 * `warren`: one program, one subcommand per role. Each folder owns its subcommand's wiring
 * (`relay/cli.ts`, `agent/cli.ts`, ...); this file only composes them.
 */
import { Command } from 'commander';
import { createRequire } from 'node:module';
import { registerCertsCommands } from '../certs/cli.js';
import { registerRelayCommand } from '../relay/cli.js';
import { registerAgentCommand } from '../agent/cli.js';
import { registerDevCommand } from '../dev/cli.js';
import { registerConnectCommand } from '../client/cli.js';

const { version } = createRequire(import.meta.url)('../../package.json') as { version: string };

const program = new Command('warren')
  .description('Encrypted tunnels for sandboxes: preview URLs, client streams and raw TCP endpoints through a relay.')
  .version(version)
  .showHelpAfterError('(run with --help for usage)')
  // Options belong to the command they follow: `warren agent status --json` is the status command's --json.
  .enablePositionalOptions()
  .configureOutput({ outputError: (text, write) => write(text) })
  .exitOverride((err) => {
    // Usage errors exit 2 (commander uses 1); --help and --version exit 0.
    process.exit(err.exitCode === 0 ? 0 : 2);
  });

registerDevCommand(program);
registerRelayCommand(program);
registerAgentCommand(program);
registerConnectCommand(program);
registerCertsCommands(program);

await program.parseAsync(process.argv);
