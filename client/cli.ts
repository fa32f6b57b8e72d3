/**
 * `warren connect TUNNEL:PORT`: reach a port inside a sandbox. With --listen, a local listener
 * whose every connection becomes one stream (for psql, redis-cli, a browser); with --stdio, one
 * stream on standard input and output (for `ssh -o ProxyCommand=...`).
 */
import { createServer, type Socket } from 'node:net';
import type { Command } from 'commander';
import { collectProblem, envOption, readFlagFile, runAction } from '../cli/command.js';
import { parseRelayTransport, TRANSPORT_HELP } from '../transport/dial.js';
import { joinSocket } from '../transport/join.js';
import { formatHostPort, parseHostPort, parsePort, type HostPort } from '../cli/parse.js';
import { ConfigError, WarrenError } from '../protocol/index.js';
import { WarrenClient, type ClientOptions } from './client.js';

/** How long open connections may finish after SIGINT/SIGTERM before they are reset. */
const CLOSE_GRACE_MS = 5_000;

interface ConnectFlags {
  relay?: string;
  token?: string;
  ca?: string;
  listen?: string;
  stdio?: boolean;
  transport?: string;
  json?: boolean;
}

/** Parses `TUNNEL:PORT`. */
export function parseTarget(text: string): { tunnel: string; port: number } {
  const m = /^([a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?):(\d+)$/.exec(text.trim());
  if (!m) throw new ConfigError([`target: "${text}" is not TUNNEL:PORT (example: ab12cd:5432)`]);
  return { tunnel: m[1]!, port: parsePort(m[2]!, 'target port') };
}

function describe(err: unknown): string {
  return err instanceof WarrenError ? `${err.message} (${err.code})` : err instanceof Error ? err.message : String(err);
}

/** Runs the --listen mode until SIGINT/SIGTERM. */
async function serveListener(options: ClientOptions, port: number, at: HostPort, say: (e: Record<string, unknown>, text: string) => void): Promise<number> {
  let client = await WarrenClient.open(options);
  let reopening: Promise<WarrenClient> | null = null;
  const current = async (): Promise<WarrenClient> => {
    if (!client.closed) return client;
    // The relay session ended (relay restart, network): open a new one for the next connection.
    reopening ??= WarrenClient.open(options).finally(() => (reopening = null));
    client = await reopening;
    return client;
  };
  const server = createServer({ allowHalfOpen: true, noDelay: true }, (socket: Socket) => {
    socket.on('error', () => {});
    current().then(
      (c) => {
        const stream = c.connect(port, { src: 'connect' });
        joinSocket(socket, stream, (err) => {
          if (err && !(err as NodeJS.ErrnoException).code?.startsWith('ERR_STREAM_PREMATURE')) say({ event: 'stream_failed', code: (err as WarrenError).code, message: err.message }, `warren: connection failed: ${describe(err)}`);
        });
      },
      (err: unknown) => {
        socket.destroy();
        say({ event: 'relay_failed', code: (err as WarrenError).code, message: (err as Error).message }, `warren: cannot reach the tunnel: ${describe(err)}`);
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new WarrenError('ERR_WARREN_LISTEN', `cannot listen on ${formatHostPort(at)}: ${err.message}`, { cause: err })));
    server.listen(at.port, at.host, () => resolve());
  });
  const bound = server.address() as { address: string; port: number };
  const local = formatHostPort({ host: bound.address, port: bound.port });
  say(
    { event: 'listening', listen: local, tunnel: client.tunnel, port, online: client.online },
    `warren: forwarding ${local} -> ${client.tunnel}:${port}${client.online ? '' : ' (the tunnel is offline right now; connections fail until its agent connects)'}`,
  );
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (): void => {
      if (stopping) {
        // A second signal: stop now.
        client.destroy();
        return;
      }
      stopping = true;
      server.close();
      say({ event: 'stopping', graceMs: CLOSE_GRACE_MS }, `warren: stopping; open connections have ${CLOSE_GRACE_MS / 1000} s to finish (Ctrl-C again to stop now)`);
      void client.close(CLOSE_GRACE_MS).then(resolve);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  return 0;
}

/** Runs the --stdio mode: one stream; exits when it ends. */
async function serveStdio(options: ClientOptions, port: number): Promise<number> {
  const client = await WarrenClient.open(options);
  const stream = client.connect(port, { src: 'stdio' });
  process.stdin.pipe(stream);
  stream.pipe(process.stdout, { end: false });
  return new Promise<number>((resolve) => {
    stream.once('error', (err) => {
      process.stderr.write(`warren: ${describe(err)}\n`);
      resolve(1);
    });
    stream.once('end', () => {
      // Everything the sandbox sent is in stdout's buffer; exit once it is written.
      process.stdout.write('', () => resolve(0));
    });
  });
}

/** Adds `warren connect` to the program. */
export function registerConnectCommand(program: Command): void {
  program
    .command('connect')
    .summary('reach a port inside a sandbox (a local listener, or stdin/stdout)')
    .description(
      'Connects to TUNNEL:PORT through a relay with a client token. --listen HOST:PORT opens a local listener whose every ' +
        'connection becomes a stream to the port in the sandbox; --stdio uses standard input and output, for ssh ProxyCommand. ' +
        'Set the token in WARREN_TOKEN rather than on the command line.',
    )
    .argument('<tunnel:port>', 'the tunnel id and the port inside the sandbox, e.g. ab12cd:5432')
    .addOption(envOption('--relay <url>', 'relay URL (wss://host:port)'))
    .addOption(envOption('--token <jwt>', 'client token (role client) for the tunnel'))
    .addOption(envOption('--ca <file>', 'CA certificate (PEM) to trust for the relay'))
    .addOption(envOption('--listen <host:port>', 'local address to listen on, e.g. 127.0.0.1:15432'))
    .addOption(envOption('--transport <mode>', TRANSPORT_HELP))
    .option('--stdio', 'one stream on stdin/stdout (ssh -o ProxyCommand="warren connect ab12cd:22 --stdio ...")')
    .option('--json', 'print JSON lines instead of text')
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  warren connect ab12cd:5432 --relay wss://relay.example.dev --listen 127.0.0.1:15432 && psql -h 127.0.0.1 -p 15432\n' +
        "  ssh -o ProxyCommand='warren connect ab12cd:22 --stdio --relay wss://relay.example.dev' user@sandbox\n",
    )
    .action(
      runAction(
        async (target: string, flags: ConnectFlags) => {
          const problems: string[] = [];
          const parsed = collectProblem(problems, () => parseTarget(target));
          if (!flags.relay) problems.push('--relay: required (or WARREN_RELAY)');
          if (!flags.token) problems.push('--token: required (or WARREN_TOKEN)');
          if (!flags.listen === !flags.stdio) problems.push('choose one of --listen HOST:PORT or --stdio');
          const transport = flags.transport === undefined ? undefined : collectProblem(problems, () => parseRelayTransport(flags.transport!));
          const at = flags.listen ? collectProblem(problems, () => parseHostPort(flags.listen!, '--listen')) : undefined;
          if (problems.length > 0) throw new ConfigError(problems);
          const ca = await readFlagFile('--ca', flags.ca);
          const options: ClientOptions = { relay: flags.relay!, token: flags.token!, tunnel: parsed!.tunnel, ports: [parsed!.port], ca, transport };
          if (flags.stdio) return serveStdio(options, parsed!.port);
          const say = (e: Record<string, unknown>, text: string): void => {
            if (flags.json) process.stdout.write(`${JSON.stringify(e)}\n`);
            else process.stderr.write(`${text}\n`);
          };
          return serveListener(options, parsed!.port, at!, say);
        },
        (_target: string, flags: ConnectFlags) => flags.json === true,
      ),
    );
}
