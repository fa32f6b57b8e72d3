/**
 * The agent's local dial policy: streams may reach only loopback (127.0.0.1, then ::1) and only
 * the ports this agent exposes, which the relay checked against its token. Anything else is
 * refused with RST before any local connection is made.
 */
import { connect, type Socket } from 'node:net';

/** Loopback addresses tried in order: many dev servers listen on only one of them. */
export const LOOPBACK_HOSTS = ['127.0.0.1', '::1'] as const;

/** Codes that mean "nothing listens at this address"; the next loopback address is tried. */
const TRY_NEXT = new Set(['ECONNREFUSED', 'EADDRNOTAVAIL', 'EAFNOSUPPORT', 'ENETUNREACH']);

function connectOnce(host: string, port: number, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, allowHalfOpen: true, noDelay: true });
    const timer = setTimeout(() => socket.destroy(Object.assign(new Error(`connect timed out after ${timeoutMs} ms`), { code: 'ETIMEDOUT' })), timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeListener('error', reject);
      resolve(socket);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/**
 * Connects to `port` on loopback: 127.0.0.1 first, ::1 when nothing listens there. The caller
 * must already have checked that the port is allowed. Rejects with the last socket error.
 */
export async function dialLoopback(port: number, timeoutMs = 5_000, preferred?: string): Promise<Socket> {
  const hosts = preferred ? [preferred, ...LOOPBACK_HOSTS.filter((h) => h !== preferred)] : LOOPBACK_HOSTS;
  let last: unknown;
  for (const host of hosts) {
    try {
      return await connectOnce(host, port, timeoutMs);
    } catch (err) {
      last = err;
      if (!TRY_NEXT.has((err as { code?: string }).code ?? '')) break;
    }
  }
  throw last;
}
