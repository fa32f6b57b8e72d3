/**
 * The application every path of the whole-system benchmark reaches, in a process of its own so its
 * CPU is counted apart from the paths'. Prints one JSON line with its ports once it listens.
 *
 * TCP port: the client's first byte picks the mode of the connection:
 *   'S' + u64 length: sink; the app reads that many bytes, then answers with the u64 count
 *   'E': echo; every byte that follows is written back (ping-pong latency)
 *   'P': the app answers one byte at once (new-stream latency), then echoes like 'E'
 * HTTP port (keep-alive): GET /1k and GET /1m answer 1 KiB and 1 MiB bodies.
 */
import { createServer as createHttpServer } from 'node:http';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { once } from 'node:events';

const KIB = 1024;
const BODIES: Record<string, Buffer> = { '/1k': Buffer.alloc(KIB, 0x61), '/1m': Buffer.alloc(KIB * KIB, 0x62) };
const LENGTH_BYTES = 8;

function serve(socket: Socket): void {
  socket.setNoDelay(true);
  socket.on('error', () => {});
  let mode: 'new' | 'sink' | 'echo' = 'new';
  let head = Buffer.alloc(0);
  let expected = -1;
  let received = 0;
  const sink = (chunk: Buffer): void => {
    if (expected < 0) {
      head = Buffer.concat([head, chunk]);
      if (head.length < LENGTH_BYTES) return;
      expected = Number(head.readBigUInt64BE(0));
      chunk = head.subarray(LENGTH_BYTES);
    }
    received += chunk.length;
    if (received >= expected) {
      const ack = Buffer.alloc(LENGTH_BYTES);
      ack.writeBigUInt64BE(BigInt(received));
      socket.end(ack);
    }
  };
  socket.on('data', (chunk: Buffer) => {
    if (mode === 'sink') return sink(chunk);
    if (mode === 'echo') {
      socket.write(chunk);
      return;
    }
    const first = chunk[0];
    const rest = chunk.subarray(1);
    if (first === 0x53 /* S */) {
      mode = 'sink';
      if (rest.length > 0) sink(rest);
    } else if (first === 0x45 /* E */) {
      mode = 'echo';
      if (rest.length > 0) socket.write(rest);
    } else if (first === 0x50 /* P */) {
      mode = 'echo';
      socket.write(Buffer.from('p'));
      if (rest.length > 0) socket.write(rest);
    } else {
      socket.destroy();
    }
  });
}

async function main(): Promise<void> {
  process.title = 'bench-app';
  const tcp = createServer({ noDelay: true }, serve);
  tcp.listen(0, '127.0.0.1');
  await once(tcp, 'listening');
  const http = createHttpServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    const body = BODIES[req.url ?? ''];
    if (!body) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
    res.end(body);
  });
  http.listen(0, '127.0.0.1');
  await once(http, 'listening');
  console.log(JSON.stringify({ ready: true, tcpPort: (tcp.address() as AddressInfo).port, httpPort: (http.address() as AddressInfo).port }));
  // The bench ends this process with a signal; stdin closing (the bench died) ends it too.
  process.stdin.resume();
  process.stdin.on('end', () => process.exit(0));
}

void main();
