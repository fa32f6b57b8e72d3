import { once } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import { Relay, type RelayOptions } from '../../relay/relay.js';
import { Agent, type AgentEvent, type PortSpec } from '../../agent/agent.js';
import type { Test } from 'tap';
import { startEchoApp, type EchoApp } from './apps.js';
import type { TestIdentity } from './identity.js';

/** The preview domain in-process test relays serve. */
export const INPROCESS_DOMAIN = 'preview.test';

/** Starts a Relay in this process on 127.0.0.1 free ports, with the identity's cert and key. */
export async function startRelay(id: TestIdentity, options: Partial<RelayOptions> = {}): Promise<{ relay: Relay; url: string; httpPort: number }> {
  const relay = new Relay({
    listen: { host: '127.0.0.1', port: 0 },
    httpListen: { host: '127.0.0.1', port: 0 },
    tls: { cert: id.certPem, key: id.keyPem },
    domain: INPROCESS_DOMAIN,
    trustedKeys: id.trustedKeys,
    ...options,
  });
  await relay.start();
  const a = relay.address();
  return { relay, url: `wss://127.0.0.1:${a.listen.port}`, httpPort: a.httpListen!.port };
}

/** Port specs for plain previews of `ports`. */
export function previewPorts(ports: number[]): PortSpec[] {
  return ports.map((port) => ({ port, preview: true, private: false, tcp: false, allow: [] }));
}

/** Starts an Agent in this process; resolves once it is connected. */
export async function startAgent(id: TestIdentity, relayUrl: string, tunnel: string, ports: PortSpec[], token = id.token('agent', tunnel, ports.map((p) => p.port))): Promise<Agent> {
  const agent = new Agent({ relays: [relayUrl], token, ca: id.caPem, ports, backoff: { baseMs: 50, maxMs: 500 } });
  const connected = new Promise<void>((resolve, reject) => {
    agent.on('event', (e: AgentEvent) => {
      if (e.event === 'connected') resolve();
      if (e.event === 'stopped') reject(new Error(`agent stopped: ${e.message ?? ''}`));
    });
  });
  agent.start().catch(() => {
    // Reported through the 'stopped' event.
  });
  await connected;
  return agent;
}

/**
 * A relay, an echo app (each connection sends back what it reads, half-close kept) and an agent
 * exposing it, all in this process, torn down with the test `t`. `extraPorts` are also allowed by
 * the agent's token and exposed (nothing listens there unless the test starts something).
 */
export async function startEchoTunnel(
  t: { teardown(fn: () => unknown): void },
  id: TestIdentity,
  tunnel: string,
  extraPorts: number[] = [],
): Promise<{ relay: Relay; url: string; port: number; agent: Agent }> {
  const { relay, url } = await startRelay(id);
  t.teardown(() => relay.close());
  const echo = createServer({ allowHalfOpen: true }, (s) => s.pipe(s));
  echo.listen(0, '127.0.0.1');
  await once(echo, 'listening');
  t.teardown(() => echo.close());
  const port = (echo.address() as AddressInfo).port;
  const agent = await startAgent(id, url, tunnel, previewPorts([port, ...extraPorts]));
  t.teardown(() => agent.stop(100));
  return { relay, url, port, agent };
}

/** Waits for the next event of `emitter` named `name` (typed helper around events.once). */
export async function next<T>(emitter: NodeJS.EventEmitter, name: string): Promise<T> {
  const [value] = (await once(emitter, name)) as [T];
  return value;
}

/** A preview port, private or public, with no raw TCP endpoint. */
export function previewSpec(port: number, isPrivate: boolean): PortSpec {
  return { port, preview: true, private: isPrivate, tcp: false, allow: [] };
}

/** What startPrivateAlpha() starts. */
export interface PrivateAlpha {
  relay: Relay;
  url: string;
  httpPort: number;
  /** The relay's TLS listener (agents, and HTTPS previews). */
  tlsPort: number;
  /** Exposed by alpha as a private preview (by the --port flag's `private`). */
  app: EchoApp;
  /** Exposed by alpha as a public preview. */
  other: EchoApp;
  alpha: Agent;
}

/**
 * The start of the private-preview suites: a relay, two echo apps, and tunnel "alpha" with `app`
 * private and `other` public. Everything is closed at `t`'s teardown.
 */
export async function startPrivateAlpha(t: Test, id: TestIdentity): Promise<PrivateAlpha> {
  const { relay, url, httpPort } = await startRelay(id);
  t.teardown(() => relay.close());
  const tlsPort = relay.address().listen.port;
  const app = await startEchoApp();
  t.teardown(() => app.close());
  const other = await startEchoApp();
  t.teardown(() => other.close());
  const alpha = await startAgent(id, url, 'alpha', [previewSpec(app.port, true), previewSpec(other.port, false)]);
  t.teardown(() => alpha.stop(100));
  return { relay, url, httpPort, tlsPort, app, other, alpha };
}
