/**
 * Binding a relay listener (public, admin, mesh): listens and resolves with the bound address,
 * or throws ERR_WARREN_LISTEN naming the address and what the listener is for.
 */
import { once } from 'node:events';
import type { AddressInfo, Server } from 'node:net';
import { WarrenError } from '../protocol/index.js';
import { formatHostPort, type HostPort } from '../cli/parse.js';

/** How a listener is bound: `backlog`, the connections the kernel may hold before they are accepted (LISTEN_BACKLOG in listeners.ts). */
export interface ListenOptions {
  backlog?: number;
}

/** Listens on `at`; resolves with the bound address (its port resolved when 0 was asked for). */
export async function listenOn(server: Server, at: HostPort, what: string, options: ListenOptions = {}): Promise<HostPort> {
  server.listen({ host: at.host, port: at.port, ...(options.backlog !== undefined ? { backlog: options.backlog } : {}) });
  try {
    await Promise.race([once(server, 'listening'), once(server, 'error').then(([err]) => Promise.reject(err as Error))]);
  } catch (err) {
    throw new WarrenError('ERR_WARREN_LISTEN', `cannot listen on ${formatHostPort(at)} (${what}): ${(err as Error).message}`, { cause: err });
  }
  const a = server.address() as AddressInfo;
  return { host: a.address, port: a.port };
}
