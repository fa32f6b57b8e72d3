/**
 * The remote forward of `ssh -R` done with `ssh2` (pure JavaScript) on both ends, each end in its
 * own process so its CPU is counted apart:
 *
 *   node dist/bench/run-ssh2.js server CIPHER            prints {"port":N}: an SSH server that accepts
 *                                                        any user and serves tcpip-forward requests
 *   node dist/bench/run-ssh2.js client CIPHER SSH_PORT FORWARD_PORT APP_PORT
 *                                                        asks for 127.0.0.1:FORWARD_PORT and sends
 *                                                        every forwarded connection to APP_PORT
 */
import { connect, createServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import ssh2 from 'ssh2';

const { Client, Server, utils } = ssh2;

function join(a: Socket, b: Duplex): void {
  a.pipe(b).pipe(a);
  const end = (): void => {
    a.destroy();
    b.destroy();
  };
  a.on('error', end);
  b.on('error', end);
  a.on('close', end);
}

function server(cipher: string): void {
  const hostKey = utils.generateKeyPairSync('ed25519').private;
  const srv = new Server({ hostKeys: [hostKey], algorithms: { cipher: [cipher] } }, (client) => {
    client.on('error', () => {});
    // Interactive traffic needs TCP_NODELAY, as any tunnel sets it; ssh2 leaves Nagle on.
    client.setNoDelay(true);
    client.on('authentication', (ctx: { accept(): void }) => ctx.accept());
    client.on('ready', () => {
      client.on('request', (accept: ((port?: number) => void) | undefined, reject: (() => void) | undefined, name: string, info: { bindAddr: string; bindPort: number }) => {
        if (name !== 'tcpip-forward' || !accept) {
          reject?.();
          return;
        }
        const listener = createServer({ noDelay: true }, (socket) => {
          client.forwardOut(info.bindAddr, info.bindPort, socket.remoteAddress ?? '127.0.0.1', socket.remotePort ?? 0, (err, channel) => {
            if (err) {
              socket.destroy();
              return;
            }
            join(socket, channel);
          });
        });
        listener.listen(info.bindPort, info.bindAddr, () => accept(info.bindPort));
        client.on('close', () => listener.close());
      });
    });
  });
  srv.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ port: srv.address().port })));
}

function client(cipher: string, sshPort: number, forwardPort: number, appPort: number): void {
  const conn = new Client();
  conn.on('ready', () => {
    conn.forwardIn('127.0.0.1', forwardPort, (err) => {
      if (err) throw err;
      console.log(JSON.stringify({ ready: true }));
    });
  });
  conn.on('tcp connection', (_info: unknown, accept: () => Duplex) => {
    const channel = accept();
    const app = connect({ port: appPort, host: '127.0.0.1', noDelay: true });
    join(app, channel);
  });
  conn.on('error', (err: Error) => {
    console.error(`ssh2 client: ${err.message}`);
    process.exit(1);
  });
  conn.connect({ host: '127.0.0.1', port: sshPort, username: 'bench', algorithms: { cipher: [cipher] }, hostVerifier: () => true, readyTimeout: 10_000 });
  conn.setNoDelay(true);
}

const [role, cipher = 'aes128-gcm@openssh.com', ...ports] = process.argv.slice(2);
process.title = `bench-ssh2-${role}`;
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
if (role === 'server') server(cipher);
else if (role === 'client') client(cipher, Number(ports[0]), Number(ports[1]), Number(ports[2]));
else throw new Error('usage: run-ssh2.js server CIPHER | client CIPHER SSH_PORT FORWARD_PORT APP_PORT');
