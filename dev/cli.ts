/**
 * `warren dev` (also `npm start`): relay + agent + demo app in one process; prints the preview URL.
 */
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { collectProblem, envOption, repeatableOption, runAction } from '../cli/command.js';
import { parsePort } from '../cli/parse.js';
import { ConfigError } from '../protocol/index.js';
import { describeAgentEvent } from '../agent/cli.js';
import type { AgentEvent } from '../agent/agent.js';
import { startDev } from './dev.js';

/** Default port of the dev preview listener. */
export const DEV_HTTP_PORT = 7070;

interface DevFlags {
  port?: string[];
  httpPort?: string;
  stateDir?: string;
  json?: boolean;
}

/** Adds `warren dev` to the program. */
export function registerDevCommand(program: Command): void {
  program
    .command('dev')
    .summary('run a relay, an agent and a demo app locally, and print a preview URL')
    .description(
      'Starts a relay on 127.0.0.1 and an agent that dials it over real TLS, then prints a preview URL ' +
        '(http://{port}-{tunnel}.localhost:HTTP_PORT/) that opens in a browser and with curl. Without ' +
        '--port it also serves a small demo app (page, Server-Sent Events, WebSocket echo). The dev CA, ' +
        'keys and tunnel id are kept in --state-dir so the URL stays the same across restarts.',
    )
    .addOption(repeatableOption('--port <port>', 'port of an app you already run on 127.0.0.1 (repeatable); default: the demo app'))
    .addOption(envOption('--http-port <port>', `port of the preview listener on 127.0.0.1 (default ${DEV_HTTP_PORT})`))
    .addOption(envOption('--state-dir <dir>', 'where the dev CA, keys and tunnel id live (default ./.warren)'))
    .option('--json', 'print JSON lines instead of text')
    .addHelpText('after', '\nExamples:\n  warren dev\n  warren dev --port 5173          # your Vite dev server\n  curl http://3000-<tunnel>.localhost:7070/\n')
    .action(
      runAction(
        async (flags: DevFlags) => {
          const problems: string[] = [];
          const ports = (flags.port ?? []).map((p) => collectProblem(problems, () => parsePort(p, '--port'))).filter((p) => p !== undefined);
          const httpPort = flags.httpPort === undefined ? DEV_HTTP_PORT : (collectProblem(problems, () => parsePort(flags.httpPort!, '--http-port', true)) ?? DEV_HTTP_PORT);
          if (problems.length > 0) throw new ConfigError(problems);
          const print = (line: string): boolean => process.stdout.write(`${line}\n`);
          let ready = false;
          const dev = await startDev({
            ports,
            httpPort,
            stateDir: resolve(flags.stateDir ?? '.warren'),
            onAgentEvent: (e: AgentEvent) => {
              // Before ready the summary below says it all; afterwards report reconnects and the like.
              if (!ready) return;
              print(flags.json ? JSON.stringify(e) : describeAgentEvent(e, ports.map((port) => ({ port, preview: true, private: false, tcp: false, allow: [] }))));
            },
          });
          ready = true;
          if (flags.json) {
            print(JSON.stringify({ event: 'ready', tunnel: dev.tunnelId, previews: dev.previews, relay: dev.relayUrl, ca: dev.caFile }));
          } else {
            print('Warren dev is running: a relay, an agent' + (dev.previews.some((p) => p.demo) ? ' and a demo app.' : '.'));
            print('');
            for (const p of dev.previews) print(`  Preview   ${p.url}   -> ${p.demo ? 'demo app on ' : ''}127.0.0.1:${p.port}`);
            print('');
            print(`  Try it:   curl ${dev.previews[0]!.url}`);
            print(`  Relay:    ${dev.relayUrl} (TLS; dev CA in ${dev.caFile})`);
            print('  Press Ctrl-C to stop.');
          }
          await new Promise<void>((resolveStop) => {
            const stop = (): void => {
              process.removeListener('SIGINT', stop);
              process.removeListener('SIGTERM', stop);
              if (!flags.json) print('\nstopping...');
              void dev.stop().then(resolveStop);
            };
            process.once('SIGINT', stop);
            process.once('SIGTERM', stop);
          });
          return 0;
        },
        (flags: DevFlags) => flags.json === true,
      ),
    );
}
