/**
 * Starting the paths of the whole-system benchmark. Each path is a TCP address on loopback that
 * leads to the bench app (bench/run-app.ts) and the processes that carry the bytes on the way,
 * whose CPU is measured:
 *
 *   direct          the app itself
 *   node-chain      client → relay → agent → app over plain sockets and pipe() (bench/run-chain.ts)
 *   ssh-aes         OpenSSH `ssh -R` through sshd, aes128-gcm@openssh.com
 *   ssh-chacha      the same with chacha20-poly1305@openssh.com
 *   ssh2            the same remote forward with the pure-JS ssh2 package on both ends
 *   warren-tcp      Warren's raw TCP endpoint on the relay (relay and agent processes, the built CLI)
 *   warren-connect  `warren connect --listen` → relay → agent
 *   warren-connect-holder, warren-connect-fwd
 *                   the same through a relay network of two relays on nats-server: at the
 *                   relay that holds the agent, and at the other one, which forwards one hop
 *                   (bench/run-network.ts starts them)
 *
 * With --compare, other-tcp and other-connect are warren-tcp and warren-connect through a second
 * build's relay, agent and connect (its own processes, the same app), and --prof-dir makes every
 * Warren process of these paths write a CPU profile when it exits.
 */
import { existsSync } from 'node:fs';
import type { TestIdentity } from '../test/helpers/identity.js';
import type { NatsServer } from '../test/helpers/nats.js';
import { freePort, startSshd, type Sshd } from '../test/helpers/peers.js';
import { warrenBin } from '../test/helpers/paths.js';
import { startProcess, uniqueStatusSocket, type Proc } from '../test/helpers/process.js';
import { fileURLToPath } from 'node:url';
import { waitForPort, type Children, type Role } from './run-util.js';

/** Every path, in the order they run and print. */
export const PATH_NAMES = ['direct', 'node-chain', 'ssh-aes', 'ssh-chacha', 'ssh2', 'warren-tcp', 'warren-connect'] as const;
export type PathName = (typeof PATH_NAMES)[number];

/** The paths through the relay network (bench/run-network.ts), after PATH_NAMES; the part `network` names them all. */
export const NETWORK_PATH_NAMES = ['warren-connect-holder', 'warren-connect-fwd'] as const;
export type NetworkPathName = (typeof NETWORK_PATH_NAMES)[number];

/** The Warren paths through the --compare build, each measured right after its counterpart. */
export const COMPARE_PATHS = { 'warren-tcp': 'other-tcp', 'warren-connect': 'other-connect' } as const;
export type ComparePathName = (typeof COMPARE_PATHS)[keyof typeof COMPARE_PATHS];
/** A path of this build, of the --compare build or through the relay network. */
export type AnyPathName = PathName | ComparePathName | NetworkPathName;

/** Which build a Warren process runs: this checkout's CLI, or the --compare one. */
export type BuildName = 'this' | 'other';

/** What the tables say about each path. */
export const PATH_LABELS: Record<AnyPathName, string> = {
  direct: 'direct TCP',
  'node-chain': 'Node chain, no crypto',
  'ssh-aes': 'ssh -R aes128-gcm',
  'ssh-chacha': 'ssh -R chacha20-poly1305',
  ssh2: 'ssh2 (JS) aes128-gcm',
  'warren-tcp': 'Warren raw TCP endpoint',
  'warren-connect': 'Warren connect --listen',
  'other-tcp': 'Warren raw TCP endpoint, --compare build',
  'other-connect': 'Warren connect --listen, --compare build',
  'warren-connect-holder': 'Warren connect, network: at the holding relay',
  'warren-connect-fwd': 'Warren connect, network: through a forwarding relay',
};

/** A started path: connect to host:port to reach the app. */
export interface PathHandle {
  name: AnyPathName;
  port: number;
  /** Processes that carry the bytes (not the client, not the app). */
  roles: Role[];
}

/** The processes shared by the paths, started once. */
export interface Stage {
  children: Children;
  id: TestIdentity;
  appTcpPort: number;
  appHttpPort: number;
  /** The Warren relay and agent, once started. */
  warren?: WarrenSetup;
  /** The --compare build's CLI (OTHER/dist/bin/warren.js), when given. */
  compareBin?: string;
  /** The --compare build's relay and agent, once started. */
  other?: WarrenSetup;
  /** Where the Warren processes of the paths write CPU profiles (--prof-dir), when given. */
  profDir?: string;
  /** The relay network (bench/run-network.ts), once started. */
  network?: NetworkSetup;
}

/**
 * Two relays of one network on a nats-server: the holder, with its agent (as WarrenSetup), and
 * the edge, which holds nothing and forwards one hop over its mesh link to the holder.
 */
export interface NetworkSetup {
  nats: NatsServer;
  holder: WarrenSetup;
  edge: RelayInfo;
}

/** The tunnel id the bench's Warren agent registers. */
export const BENCH_TUNNEL = 'bench1';
/** The preview domain of the bench's relays. */
export const BENCH_DOMAIN = 'preview.test';

const benchScript = (name: string): string => fileURLToPath(new URL(`./${name}`, import.meta.url));

/** Waits for the first stdout line that parses as JSON and has `key`. */
async function jsonLine<T>(proc: Proc, key: string, timeoutMs = 20_000): Promise<T> {
  const line = await proc.waitFor(new RegExp(`^\\{.*"${key}"`), timeoutMs);
  return JSON.parse(line) as T;
}

/**
 * Starts `command args` with its soft limit of open files raised to the hard limit: relays and
 * load generators hold thousands of sockets, and many systems start processes at 1,024.
 */
function startWithAllFds(command: string, args: string[]): Proc {
  return startProcess('bash', ['-c', 'ulimit -n "$(ulimit -Hn)" && exec "$0" "$@"', command, ...args]);
}

/** Starts a bench script (dist/bench/NAME) with args; registered for cleanup. */
export function startScript(children: Children, name: string, args: string[]): Proc {
  return children.add(startWithAllFds(process.execPath, [benchScript(name), ...args]));
}

/** Why the OpenSSH paths cannot run here, or null when they can. */
export function sshMissing(): string | null {
  if (!existsSync('/usr/sbin/sshd')) return 'sshd not found at /usr/sbin/sshd: install openssh-server (scripts/ensure-system-deps.sh does)';
  if (!existsSync('/usr/bin/ssh')) return 'ssh not found at /usr/bin/ssh: install openssh-client';
  return null;
}

/** A relay process (the built CLI) with its ports. */
export interface RelayInfo {
  proc: Proc;
  port: number;
  httpPort: number;
  adminPort: number;
  url: string;
  /** The first port of its raw TCP range (64 ports). */
  tcpFirst: number;
}

/**
 * Starts `warren relay` on loopback with a raw TCP port range, an admin listener and quiet logs.
 * `cli` is the node flags and CLI to run (warrenCli()); `tcpFirst` picks the port range; `port`
 * the public listener's port (default: any free one).
 */
export async function startRelay(stage: Pick<Stage, 'children' | 'id'>, extra: string[] = [], cli = [warrenBin], tcpFirst = 21_000 + Math.floor(Math.random() * 8_000), port = 0): Promise<RelayInfo> {
  const proc = stage.children.add(
    startWithAllFds(process.execPath, [
      ...cli,
      'relay', '--listen', `127.0.0.1:${port}`, '--http-listen', '127.0.0.1:0', '--admin', '127.0.0.1:0',
      '--cert', stage.id.certFile, '--key', stage.id.keyFile, '--domain', BENCH_DOMAIN, '--trust-key', stage.id.issuerPubFile,
      '--tcp-ports', `${tcpFirst}-${tcpFirst + 63}`, '--log-level', 'info', ...extra,
    ]),
  );
  const info = await jsonLine<{ listen: { port: number }; httpListen: { port: number }; admin: { port: number } }>(proc, 'listening');
  return { proc, port: info.listen.port, httpPort: info.httpListen.port, adminPort: info.admin.port, url: `wss://127.0.0.1:${info.listen.port}`, tcpFirst };
}

/**
 * The node flags and CLI of one Warren process of `build` in the role `role` (relay, agent,
 * connect): with --prof-dir, it writes DIR/ROLE-BUILD.cpuprofile when it exits.
 */
export function warrenCli(stage: Stage, build: BuildName, role: string): string[] {
  const bin = build === 'other' ? stage.compareBin : warrenBin;
  if (!bin) throw new Error('the other build needs --compare');
  const prof = stage.profDir ? ['--cpu-prof', '--cpu-prof-dir', stage.profDir, '--cpu-prof-name', `${role}-${build}.cpuprofile`] : [];
  return [...prof, bin];
}

/** The Warren relay + agent shared by warren-tcp, warren-connect and the preview. */
export interface WarrenSetup {
  relay: RelayInfo;
  agent: Proc;
  tcpEndpointPort: number;
}

/** How the relay network's holder differs from the plain setup (bench/run-network.ts). */
export interface SetupVariant {
  /** More relay flags (the directory and mesh ones). */
  relayArgs: string[];
  /** The relay's public port (its --advertise URL names it) and the first of its raw TCP range. */
  port: number;
  tcpFirst: number;
  /** Prefix of the roles' profile names (--prof-dir): PREFIX-relay, PREFIX-agent. */
  prefix: string;
}

/**
 * Starts a relay and an agent of `build` exposing the app's TCP port (raw endpoint too) and HTTP
 * port. The other build's relay takes the 64 ports after this build's raw TCP range, so that the
 * two never clash; this build's setup is started first when it is not up yet. With `variant`,
 * this build's relay gets its flags and ports (the relay network's holder).
 */
export async function startWarrenSetup(stage: Stage, build: BuildName = 'this', variant?: SetupVariant): Promise<WarrenSetup> {
  let tcpFirst: number | undefined = variant?.tcpFirst;
  const role = (name: string): string => (variant ? `${variant.prefix}-${name}` : name);
  if (build === 'other') {
    stage.warren ??= await startWarrenSetup(stage, 'this');
    tcpFirst = stage.warren.relay.tcpFirst + 64;
  }
  // A relay that is profiled must exit within Children.stop's grace to write its profile: its
  // drain waits for open streams no longer than this.
  const extra = [...(stage.profDir ? ['--grace-period', '1s'] : []), ...(variant?.relayArgs ?? [])];
  const relay = await startRelay(stage, extra, warrenCli(stage, build, role('relay')), tcpFirst, variant?.port);
  const token = stage.id.token('agent', BENCH_TUNNEL, [stage.appTcpPort, stage.appHttpPort]);
  const agentArgs = ['agent', '--relay', relay.url, '--ca', stage.id.caFile, '--port', String(stage.appHttpPort), '--port', String(stage.appTcpPort), '--tcp', String(stage.appTcpPort), '--json'];
  const agent = stage.children.add(startProcess(process.execPath, [...warrenCli(stage, build, role('agent')), ...agentArgs], { WARREN_TOKEN: token, WARREN_STATUS_SOCKET: uniqueStatusSocket() }));
  const connected = await jsonLine<{ tcp: { port: number; endpoint: string }[] }>(agent, 'connected');
  const endpoint = connected.tcp.find((e) => e.port === stage.appTcpPort);
  if (!endpoint) throw new Error(`the agent got no raw TCP endpoint: ${JSON.stringify(connected)}`);
  const tcpEndpointPort = Number(endpoint.endpoint.slice(endpoint.endpoint.lastIndexOf(':') + 1));
  return { relay, agent, tcpEndpointPort };
}

/**
 * Starts one path (its processes are registered with stage.children); the Warren paths start the
 * Warren setup of their build into stage.warren or stage.other once, the ssh paths sshd into
 * `shared` once.
 */
export async function startPath(stage: Stage, name: AnyPathName, shared: { sshd?: Sshd }): Promise<PathHandle> {
  const { children } = stage;
  switch (name) {
    case 'direct':
      return { name, port: stage.appTcpPort, roles: [] };
    case 'node-chain': {
      const relay = startScript(children, 'run-chain.js', ['relay']);
      const ports = await jsonLine<{ clientPort: number; agentPort: number }>(relay, 'clientPort');
      const agent = startScript(children, 'run-chain.js', ['agent', String(ports.agentPort), String(stage.appTcpPort)]);
      await jsonLine(agent, 'ready');
      return { name, port: ports.clientPort, roles: [{ name: 'relay', pid: relay.child.pid! }, { name: 'agent', pid: agent.child.pid! }] };
    }
    case 'ssh-aes':
    case 'ssh-chacha': {
      if (!shared.sshd) {
        shared.sshd = await startSshd();
        children.add(shared.sshd.proc);
        children.addDir(shared.sshd.dir);
      }
      const sshd = shared.sshd;
      const cipher = name === 'ssh-aes' ? 'aes128-gcm@openssh.com' : 'chacha20-poly1305@openssh.com';
      const port = await freePort();
      const ssh = children.add(
        startProcess('/usr/bin/ssh', [
          '-N', '-T', '-i', sshd.clientKey, '-p', String(sshd.port), '-c', cipher,
          '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes',
          '-o', 'ExitOnForwardFailure=yes', '-o', 'LogLevel=ERROR', '-o', 'Compression=no',
          '-R', `127.0.0.1:${port}:127.0.0.1:${stage.appTcpPort}`, `${sshd.user}@127.0.0.1`,
        ]),
      );
      await Promise.race([waitForPort(port), ssh.exited.then((code) => Promise.reject(new Error(`ssh exited (${code}): ${ssh.lines.join('\n')}`)))]);
      // sshd forks a process per connection: the listener's tree holds it.
      return { name, port, roles: [{ name: 'sshd', pid: sshd.proc.child.pid! }, { name: 'ssh', pid: ssh.child.pid! }] };
    }
    case 'ssh2': {
      const cipher = 'aes128-gcm@openssh.com';
      const server = startScript(children, 'run-ssh2.js', ['server', cipher]);
      const { port: sshPort } = await jsonLine<{ port: number }>(server, 'port');
      const port = await freePort();
      const client = startScript(children, 'run-ssh2.js', ['client', cipher, String(sshPort), String(port), String(stage.appTcpPort)]);
      await jsonLine(client, 'ready');
      return { name, port, roles: [{ name: 'server', pid: server.child.pid! }, { name: 'client', pid: client.child.pid! }] };
    }
    case 'warren-tcp':
    case 'warren-connect':
    case 'other-tcp':
    case 'other-connect': {
      const build: BuildName = name.startsWith('other-') ? 'other' : 'this';
      const w = build === 'other' ? (stage.other ??= await startWarrenSetup(stage, 'other')) : (stage.warren ??= await startWarrenSetup(stage, 'this'));
      const base: Role[] = [{ name: 'relay', pid: w.relay.proc.child.pid! }, { name: 'agent', pid: w.agent.child.pid! }];
      if (name.endsWith('-tcp')) return { name, port: w.tcpEndpointPort, roles: base };
      const connect = await startConnect(stage, build, w.relay.url, 'connect');
      return { name, port: connect.port, roles: [connect.role, ...base] };
    }
    case 'warren-connect-holder':
    case 'warren-connect-fwd':
      throw new Error(`${name} is started by bench/run-network.ts`);
  }
}

/**
 * Starts `warren connect BENCH_TUNNEL:APP --listen` of `build` against the relay at `relayUrl`;
 * resolves with its local port once it listens. `profName` names its profile (--prof-dir).
 */
export async function startConnect(stage: Stage, build: BuildName, relayUrl: string, profName: string): Promise<{ port: number; role: Role }> {
  const port = await freePort();
  const token = stage.id.token('client', BENCH_TUNNEL, [stage.appTcpPort]);
  const connectArgs = ['connect', `${BENCH_TUNNEL}:${stage.appTcpPort}`, '--relay', relayUrl, '--ca', stage.id.caFile, '--listen', `127.0.0.1:${port}`, '--json'];
  const connect = stage.children.add(startProcess(process.execPath, [...warrenCli(stage, build, profName), ...connectArgs], { WARREN_TOKEN: token }));
  await jsonLine(connect, 'listening');
  return { port, role: { name: 'connect', pid: connect.child.pid! } };
}
