/**
 * Joins between a byte stream and a real TCP socket (127.0.0.1, port 0): bulk pieces that arrive
 * in one event-loop turn leave in one batch yet whole and in order, small pieces leave at once,
 * and a peer that stops reading pauses the source instead of filling memory.
 */
import { once } from 'node:events';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { PassThrough } from 'node:stream';
import t from 'tap';
import { joinSocket } from '../../transport/join.js';

const KIB = 1024;
const MIB = 1024 * KIB;

/** A TCP server handing over its first accepted socket, and a client socket joined to `source`. */
async function joined(source: PassThrough): Promise<{ server: Server; client: Socket; peer: Socket }> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const client = connect((server.address() as { port: number }).port, '127.0.0.1');
  await once(client, 'connect');
  const [peer] = await accepted;
  joinSocket(client, source);
  return { server, client, peer };
}

function collect(peer: Socket, bytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let got = 0;
  return new Promise((resolve) => {
    peer.on('data', (c: Buffer) => {
      chunks.push(c);
      got += c.length;
      if (got >= bytes) resolve(Buffer.concat(chunks));
    });
  });
}

/** `n` pieces of `size` bytes, each filled with its own index, so a reordering shows. */
const pieces = (n: number, size: number): Buffer[] => Array.from({ length: n }, (_, i) => Buffer.alloc(size, i % 251));

t.test('bulk pieces written in one turn reach the peer whole and in order', async (t) => {
  const source = new PassThrough({ highWaterMark: 64 * MIB });
  const { server, client, peer } = await joined(source);
  t.teardown(() => (client.destroy(), peer.destroy(), server.close()));
  const sent = pieces(200, 16 * KIB);
  const total = 200 * 16 * KIB;
  const got = collect(peer, total);
  for (const p of sent) source.write(p);
  t.ok((await got).equals(Buffer.concat(sent)), `${total} bytes arrived in order`);
});

t.test('a small piece is sent at once, with no batch pending', async (t) => {
  const source = new PassThrough();
  const { server, client, peer } = await joined(source);
  t.teardown(() => (client.destroy(), peer.destroy(), server.close()));
  source.write(Buffer.from('ping'));
  t.equal(client.writableLength, 0, 'nothing waits in the socket buffer after the write');
  const [chunk] = (await once(peer, 'data')) as [Buffer];
  t.equal(chunk.toString(), 'ping');
});

t.test('a peer that stops reading pauses the source; every byte arrives once it reads again', async (t) => {
  const source = new PassThrough();
  const { server, client, peer } = await joined(source);
  t.teardown(() => (client.destroy(), peer.destroy(), server.close()));
  peer.pause();
  const total = 64 * MIB;
  const chunk = Buffer.alloc(256 * KIB, 7);
  let produced = 0;
  const paused = once(source, 'pause');
  const producer = (async () => {
    while (produced < total) {
      produced += chunk.length;
      if (!source.write(chunk)) await once(source, 'drain');
    }
    source.end();
  })();
  await paused;
  // Kernel buffers on loopback hold a few MiB; the join holds at most one turn's pieces above that.
  t.ok(client.writableLength <= 8 * MIB, `socket buffer at the pause: ${client.writableLength} bytes`);
  t.ok(produced < total, `the source was paused after ${produced} of ${total} bytes`);
  let got = 0;
  peer.on('data', (c: Buffer) => (got += c.length));
  peer.resume();
  await producer;
  await once(peer, 'end');
  t.equal(got, produced, 'every byte written reached the peer');
});
