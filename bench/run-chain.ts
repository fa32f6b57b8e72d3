/**
 * The crypto-free Node chain: Warren's shape (client → relay → agent → app, the agent dialing out
 * to the relay) with plain net sockets and pipe(), no TLS, no framing. Its throughput is the
 * ceiling of a relay written in Node on this machine.
 *
 *   node dist/bench/run-chain.js relay              prints {"clientPort":N,"agentPort":M}
 *   node dist/bench/run-chain.js agent M APP_PORT   keeps POOL_SIZE idle connections to the relay
 *
 * The relay pairs each client connection with an idle agent connection; the agent dials the app
 * when the first byte arrives on one, then opens a new idle connection in its place.
 */
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';

/** Idle agent connections kept open, as Warren keeps one session open. */
const POOL_SIZE = 16;

function join(a: Socket, b: Socket): void {
  a.pipe(b);
  b.pipe(a);
  const end = (): void => {
    a.destroy();
    b.destroy();
  };
  a.on('error', end);
  b.on('error', end);
  a.on('close', end);
  b.on('close', end);
}

async function relay(): Promise<void> {
  const idle: Socket[] = [];
  const waiting: Socket[] = [];
  const clients = createServer({ noDelay: true }, (client) => {
    const agent = idle.shift();
    if (agent) join(client, agent);
    else waiting.push(client);
  });
  const agents = createServer({ noDelay: true }, (agent) => {
    agent.on('error', () => {});
    const client = waiting.shift();
    if (client) join(client, agent);
    else idle.push(agent);
    agent.once('close', () => {
      const i = idle.indexOf(agent);
      if (i >= 0) idle.splice(i, 1);
    });
  });
  clients.listen(0, '127.0.0.1');
  agents.listen(0, '127.0.0.1');
  await Promise.all([once(clients, 'listening'), once(agents, 'listening')]);
  console.log(JSON.stringify({ clientPort: (clients.address() as AddressInfo).port, agentPort: (agents.address() as AddressInfo).port }));
}

async function agent(relayPort: number, appPort: number): Promise<void> {
  const dialIdle = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const up = connect({ port: relayPort, host: '127.0.0.1', noDelay: true });
      up.once('error', reject);
      up.once('connect', () => resolve());
      up.once('data', (first: Buffer) => {
        up.pause();
        void dialIdle().catch(() => {});
        const app = connect({ port: appPort, host: '127.0.0.1', noDelay: true });
        app.write(first);
        join(up, app);
        up.resume();
      });
    });
  await Promise.all(Array.from({ length: POOL_SIZE }, dialIdle));
  console.log(JSON.stringify({ ready: true }));
}

const [role, a, b] = process.argv.slice(2);
process.title = `bench-chain-${role}`;
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
if (role === 'relay') void relay();
else if (role === 'agent') void agent(Number(a), Number(b));
else throw new Error('usage: run-chain.js relay | agent RELAY_AGENT_PORT APP_PORT');
