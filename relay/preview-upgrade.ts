/**
 * The raw-socket side of the preview proxy: what an upgrade request (WebSocket) needs once Node's
 * HTTP server has handed over the socket. The relay's own answers are written as a whole response
 * that closes the connection; an app's `101 Switching Protocols` turns the connection into a byte
 * pipe both ways.
 */
import { STATUS_CODES, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from '../log/logger.js';
import type { ErrorAnswer } from './error-page.js';
import { flattenHeaders, serializeResponseHead } from './preview-headers.js';

/**
 * Sends the app's 101 to the client, then joins the two byte streams with half-close. An upgraded
 * connection where nothing moves for `idleMs` (0: never) is closed.
 */
export function pipeUpgraded(socket: Duplex, app: Duplex, proxyRes: IncomingMessage, appHead: Buffer, clientHead: Buffer, idleMs: number, log: Logger): void {
  app.on('error', () => socket.destroy());
  socket.on('error', () => app.destroy());
  if (socket.destroyed) {
    app.destroy();
    return;
  }
  socket.write(serializeResponseHead(101, proxyRes.statusMessage || 'Switching Protocols', proxyRes.rawHeaders));
  if (appHead.length > 0) socket.write(appHead);
  if (clientHead.length > 0) app.write(clientHead);
  // An idle upgraded connection holds a socket and a stream: close it after the idle timeout.
  if (idleMs > 0 && 'setTimeout' in socket) {
    (socket as Duplex & { setTimeout(ms: number): void }).setTimeout(idleMs);
    socket.once('timeout', () => {
      log.debug({ event: 'upgrade_idle', code: 'ERR_WARREN_TIMEOUT' }, 'idle upgraded connection closed');
      socket.destroy();
    });
  }
  // A side that ends (FIN) ends the other's writable side only; a side that is destroyed
  // takes the other with it.
  app.on('close', () => socket.destroy());
  socket.on('close', () => app.destroy());
  app.pipe(socket);
  socket.pipe(app);
}

/** Writes one of the relay's own answers on a raw socket (upgrade requests) and closes it. */
export function sendRawAnswer(socket: Duplex, answer: ErrorAnswer): void {
  if (socket.destroyed || !socket.writable) {
    socket.destroy();
    return;
  }
  const raw = [...flattenHeaders(answer.headers), 'Connection', 'close'];
  socket.once('finish', () => socket.destroy());
  socket.end(Buffer.concat([Buffer.from(serializeResponseHead(answer.status, STATUS_CODES[answer.status] ?? 'Error', raw), 'latin1'), answer.body]));
}
