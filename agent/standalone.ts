/**
 * Entry point of the single-file agent bundle (dist/warren-agent.mjs): `node warren-agent.mjs
 * --relay ... --port 3000` runs `warren agent` with no node_modules next to it, and
 * `node warren-agent.mjs status` runs `warren agent status`.
 */
import { Command } from 'commander';
import { registerAgentCommand } from './cli.js';

const program = new Command('warren-agent')
  .enablePositionalOptions()
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));
registerAgentCommand(program);
// The bundle runs only the agent: `warren-agent [flags]` means `warren agent [flags]`.
await program.parseAsync(['node', 'warren-agent', 'agent', ...process.argv.slice(2)]);
