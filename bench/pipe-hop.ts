/**
 * One hop of the crypto-free baseline chain in bench/path.ts: a TCP listener that dials `target`
 * for every accepted connection and joins the two with plain pipe(). Started with fork(); tells
 * the parent its port over IPC.
 *
 * Usage (by bench/path.ts only): node dist/bench/pipe-hop.js HOST:PORT
 */
import { connect, createServer } from 'node:net';

const [host, port] = (process.argv[2] ?? '').split(':');
const server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
  const upstream = connect({ host, port: Number(port), allowHalfOpen: true, noDelay: true });
  socket.on('error', () => upstream.destroy());
  upstream.on('error', () => socket.destroy());
  socket.pipe(upstream);
  upstream.pipe(socket);
});
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  process.send?.({ port: typeof address === 'object' && address ? address.port : 0 });
});
process.on('disconnect', () => process.exit(0));
