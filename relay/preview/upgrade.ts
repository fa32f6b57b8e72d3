/**
 * The raw-socket side of the preview proxy: an app's `101 Switching Protocols` turns an upgrade
 * request's connection (WebSocket) into a byte pipe both ways. (The relay's own answers on a raw
 * socket are written by error-page.ts's sendRawAnswer.)
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from '../../log/logger.js';
import { serializeResponseHead } from './headers.js';

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
