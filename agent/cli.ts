/**
 * `warren agent`: exposes loopback ports of this sandbox through a relay. Prints the preview URL
 * of each port once connected (JSON lines with --json), says why it retries, serves its status on
 * a local Unix socket, and exits 0 on SIGINT/SIGTERM after letting open streams finish.
 *
 * `warren agent status`: asks a running agent for its status over that socket.
 */
import type { Command } from 'commander';
import { collectProblem, envOption, readFlagFile, repeatableOption, runAction } from '../cli/command.js';
import { parseRelayTransport, TRANSPORT_HELP } from '../transport/dial.js';
import { parseCount, parseDuration } from '../cli/parse.js';
import { ConfigError, WarrenError } from '../protocol/index.js';
import { Agent, type AgentEvent, type PortSpec } from './agent.js';
import { defaultStatusSocket, mergePortSpecs, parsePortFlag, parseTcpFlag, tokenProblems } from './config.js';
import { checkSocketPath, fetchAgentStatus, formatAgentStatus, StatusServer } from './status.js';

interface AgentFlags {
  relay?: string[];
  token?: string;
  ca?: string;
  port?: string[];
  tcp?: string[];
  keepalive?: string;
  maxStreams?: string;
  transport?: string;
  statusSocket?: string;
  json?: boolean;
}

interface StatusFlags {
  statusSocket?: string;
  json?: boolean;
}

/** Software name sent in HELLO. */
export const AGENT_SOFTWARE = 'warren-agent/0.1.0';

/** Human-readable line for an agent event (what the CLI prints without --json). */
export function describeAgentEvent(e: AgentEvent, specs: PortSpec[]): string {
  switch (e.event) {
    case 'connecting':
      return e.attempt > 1 ? `warren: connecting to ${e.relay} (attempt ${e.attempt})` : `warren: connecting to ${e.relay}`;
    case 'connected': {
      const lines = [`warren: tunnel ${e.tunnel} is online via ${e.relay}`];
      const previewPorts = new Set(specs.filter((s) => s.preview).map((s) => s.port));
      for (const p of e.previews) if (previewPorts.has(p.port)) lines.push(`  ${p.url}  -> 127.0.0.1:${p.port}${p.private ? '  (private: needs a viewer token)' : ''}`);
      for (const t of e.tcp) lines.push(`  tcp://${t.endpoint}  -> 127.0.0.1:${t.port}`);
      return lines.join('\n');
    }
    case 'disconnected':
      return `warren: ${e.message} (${e.code}); retrying in ${(e.retryInMs / 1000).toFixed(1)}s`;
    case 'moving':
      return `warren: ${e.relay} is going away (${e.message}); moving to ${e.to}`;
    case 'stopped':
      return e.code ? `warren: stopped: ${e.message} (${e.code})` : 'warren: stopped';
  }
}

/** Adds `warren agent` to the program. */
export function registerAgentCommand(program: Command): void {
  const agentCommand = program
    .command('agent')
    .summary('expose loopback ports of this machine through a relay')
    .description(
      'Dials out to a relay over TLS and serves preview URLs, client streams and raw TCP endpoints for ' +
        'the listed loopback ports. Only 127.0.0.1 / ::1 and only the listed ports (which the token must ' +
        'allow) are ever dialed. Reconnects with backoff after any failure. Set the token in WARREN_TOKEN ' +
        'rather than on the command line.',
    )
    .addOption(repeatableOption('--relay <url>', 'relay URL (wss://host:port); repeat for failover'))
    .addOption(envOption('--token <jwt>', 'agent token (role agent) for this tunnel'))
    .addOption(envOption('--ca <file>', "CA certificate (PEM) to trust for the relay, e.g. a dev CA's ca.pem"))
    .addOption(repeatableOption('--port <port[:private]>', 'loopback port to expose with a preview URL; :private needs a viewer token'))
    .addOption(repeatableOption('--tcp <port[:allow=CIDR+CIDR]>', 'loopback port to expose as a raw TCP endpoint on the relay'))
    .addOption(envOption('--keepalive <duration>', 'keepalive PING interval; a silent relay is dropped within two (default 15s)'))
    .addOption(envOption('--max-streams <n>', 'most streams (connections to your apps) open at once; more are refused (default 1024)'))
    .addOption(envOption('--transport <mode>', TRANSPORT_HELP))
    .addOption(
      envOption('--status-socket <path>', 'Unix socket for `warren agent status` (default $XDG_RUNTIME_DIR/warren-agent.sock, else /tmp/warren-agent-<uid>.sock); off: none'),
    )
    .option('--json', 'print JSON lines (events) instead of text')
    // `warren agent status --json`: options after the subcommand's name are the subcommand's.
    .enablePositionalOptions()
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  WARREN_TOKEN=$(warren token issue --key issuer.key --role agent --tunnel ab12cd --ports 3000 --ttl 24h) \\\n' +
        '    warren agent --relay wss://relay.example.dev --port 3000\n' +
        '  warren agent --relay wss://127.0.0.1:8443 --ca .warren/ca.pem --port 5173 --tcp 6379\n' +
        '  warren agent status\n',
    )
    .action(
      runAction(
        async (flags: AgentFlags) => {
          const problems: string[] = [];
          if (!flags.relay?.length) problems.push('--relay: required (or WARREN_RELAY)');
          if (!flags.token) problems.push('--token: required (or WARREN_TOKEN)');
          const specs = [
            ...(flags.port ?? []).map((p) => collectProblem(problems, () => parsePortFlag(p))),
            ...(flags.tcp ?? []).map((p) => collectProblem(problems, () => parseTcpFlag(p))),
          ].filter((spec): spec is PortSpec => spec !== undefined);
          if (specs.length === 0 && problems.length === 0) problems.push('--port: at least one port to expose is needed (or --tcp)');
          const keepaliveMs = flags.keepalive === undefined ? undefined : collectProblem(problems, () => parseDuration(flags.keepalive!, '--keepalive'));
          if (keepaliveMs !== undefined && keepaliveMs < 100) problems.push('--keepalive: must be at least 100ms');
          const maxStreams = flags.maxStreams === undefined ? undefined : collectProblem(problems, () => parseCount(flags.maxStreams!, '--max-streams'));
          const transport = flags.transport === undefined ? undefined : collectProblem(problems, () => parseRelayTransport(flags.transport!));
          const ports = mergePortSpecs(specs);
          if (flags.token && problems.length === 0) problems.push(...tokenProblems(flags.token, ports, Date.now()));
          if (problems.length > 0) throw new ConfigError(problems);
          const ca = await readFlagFile('--ca', flags.ca);
          const session = {
            ...(keepaliveMs === undefined ? {} : { keepaliveIntervalMs: keepaliveMs, keepaliveTimeoutMs: keepaliveMs }),
            ...(maxStreams === undefined ? {} : { maxStreams, maxPendingOpens: Math.min(512, maxStreams) }),
          };
          // `off`: no status socket, for sandboxes without a writable runtime or temp folder.
          const statusPath = flags.statusSocket === 'off' ? undefined : (flags.statusSocket ?? defaultStatusSocket());
          if (statusPath) checkSocketPath(statusPath);
          const agent = new Agent({ relays: flags.relay!, token: flags.token!, ca, ports, software: AGENT_SOFTWARE, session, transport });
          const status = statusPath ? await StatusServer.listen(statusPath, agent, AGENT_SOFTWARE) : undefined;
          if (status) process.once('exit', () => status.removeSync());
          agent.on('event', (e: AgentEvent) => {
            process.stdout.write(`${flags.json ? JSON.stringify(e) : describeAgentEvent(e, ports)}\n`);
          });
          const stop = (): void => {
            void agent.stop();
          };
          process.once('SIGINT', stop);
          process.once('SIGTERM', stop);
          try {
            await agent.start();
          } catch (err) {
            // Already reported as a 'stopped' event; exit 1 without a second message.
            if (err instanceof WarrenError) return 1;
            throw err;
          } finally {
            await status?.close();
          }
          return 0;
        },
        (flags: AgentFlags) => flags.json === true,
      ),
    );

  agentCommand
    .command('status')
    .summary('show what the agent on this machine is doing')
    .description(
      'Asks the running agent, over its local Unix socket, for its status: connected or reconnecting, ' +
        'the relay, the tunnel, the keepalive round-trip time, preview URLs and raw TCP endpoints, and ' +
        'stream counts. Exits 1 (ERR_WARREN_AGENT_UNREACHABLE) when no agent answers.',
    )
    .addOption(envOption('--status-socket <path>', "the agent's status socket (default $XDG_RUNTIME_DIR/warren-agent.sock, else /tmp/warren-agent-<uid>.sock)"))
    .option('--json', 'print the status as one JSON object')
    .addHelpText('after', '\nExamples:\n  warren agent status\n  warren agent status --json | jq -r .previews[0].url\n')
    .action(
      runAction(
        async (flags: StatusFlags) => {
          const report = await fetchAgentStatus(flags.statusSocket ?? defaultStatusSocket());
          process.stdout.write(`${flags.json ? JSON.stringify(report) : formatAgentStatus(report)}\n`);
          return 0;
        },
        (flags: StatusFlags) => flags.json === true,
      ),
    );
}
