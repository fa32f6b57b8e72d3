/**
 * `warren dev`: a relay, an agent and (unless the user runs an app of their own) a demo app in one
 * process, over real TLS on loopback. Identities live in a state folder (default `./.warren/`):
 * a dev CA, the relay's certificate, an issuer key pair and the tunnel id are made once and
 * reused, so preview URLs stay the same across restarts; tokens are minted at each start.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createDevCa, issueCertificate } from '../certs/ca.js';
import { generateIssuerKeys, parseIssuerKey, parsePublicKeys } from '../certs/keys.js';
import { issueToken } from '../certs/token.js';
import { Relay } from '../relay/relay.js';
import { Agent, type AgentEvent } from '../agent/agent.js';
import { silentLogger, type Logger } from '../log/logger.js';
import { startDemoApp, type DemoApp } from './demo-app.js';

/** Settings of `warren dev`. */
export interface DevOptions {
  /** Ports of apps the user already runs on loopback; empty: start the demo app. */
  ports: number[];
  /** Port of the preview listener on 127.0.0.1 (http://{port}-{tunnel}.localhost:HTTP_PORT/). */
  httpPort: number;
  /** Folder for the dev CA, keys and tunnel id. */
  stateDir: string;
  logger?: Logger;
  /** Agent events, for the CLI to print. */
  onAgentEvent?: (e: AgentEvent) => void;
}

/** A running `warren dev`. */
export interface DevHandle {
  tunnelId: string;
  previews: { port: number; url: string; demo: boolean }[];
  relayUrl: string;
  caFile: string;
  stop(): Promise<void>;
}

/** Reads a file, or makes and writes it (mode 0600 for secrets) when missing. */
async function readOrCreate(path: string, make: () => Promise<string> | string, secret = false): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    const text = await make();
    await writeFile(path, text, { mode: secret ? 0o600 : 0o644 });
    return text;
  }
}

const TUNNEL_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';

function randomTunnelId(): string {
  return [...randomBytes(6)].map((b) => TUNNEL_ALPHABET[b % TUNNEL_ALPHABET.length]).join('');
}

/** The dev identities, made once in the state folder. */
async function devIdentities(stateDir: string): Promise<{ caPem: string; certPem: string; keyPem: string; issuerKeyPem: string; issuerPubPem: string; tunnelId: string }> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const caPem = await readOrCreate(join(stateDir, 'ca.pem'), async () => {
    const ca = await createDevCa({ commonName: 'Warren dev CA' });
    await writeFile(join(stateDir, 'ca.key'), ca.keyPem, { mode: 0o600 });
    return ca.certPem;
  });
  const caKeyPem = await readFile(join(stateDir, 'ca.key'), 'utf8');
  const keyPath = join(stateDir, 'relay.key');
  const certPem = await readOrCreate(join(stateDir, 'relay.pem'), async () => {
    const leaf = await issueCertificate({ certPem: caPem, keyPem: caKeyPem }, { hosts: ['localhost', '127.0.0.1', '::1'], validDays: 365 });
    await writeFile(keyPath, leaf.keyPem, { mode: 0o600 });
    return leaf.certPem;
  });
  const keyPem = await readFile(keyPath, 'utf8');
  const issuerKeyPem = await readOrCreate(
    join(stateDir, 'issuer.key'),
    async () => {
      const keys = generateIssuerKeys();
      await writeFile(join(stateDir, 'issuer.pub'), keys.publicKeyPem);
      return keys.privateKeyPem;
    },
    true,
  );
  const issuerPubPem = await readFile(join(stateDir, 'issuer.pub'), 'utf8');
  const tunnelId = (await readOrCreate(join(stateDir, 'tunnel'), () => `${randomTunnelId()}\n`)).trim();
  return { caPem, certPem, keyPem, issuerKeyPem, issuerPubPem, tunnelId };
}

/** Starts relay, agent and demo app; resolves once the agent is connected and the preview works. */
export async function startDev(options: DevOptions): Promise<DevHandle> {
  const ids = await devIdentities(options.stateDir);
  const log = options.logger ?? silentLogger();
  let demo: DemoApp | undefined;
  const appPorts = options.ports.length > 0 ? options.ports : [(demo = await startDemoApp(3000)).port];
  const relay: Relay = new Relay({
    listen: { host: '127.0.0.1', port: 0 },
    httpListen: { host: '127.0.0.1', port: options.httpPort },
    tls: { cert: ids.certPem, key: ids.keyPem },
    domain: 'localhost',
    // The bound port, which differs from httpPort when that is 0.
    publicUrl: (): string => `http://localhost:${relay.address().httpListen?.port ?? options.httpPort}`,
    trustedKeys: new Map(parsePublicKeys(ids.issuerPubPem, 'issuer.pub').map((k) => [k.kid, k.key])),
    logger: log,
  });
  try {
    await relay.start();
  } catch (err) {
    await demo?.close();
    throw err;
  }
  const issuer = parseIssuerKey(ids.issuerKeyPem, 'issuer.key');
  const now = Math.floor(Date.now() / 1000);
  const token = issueToken(issuer, { sub: ids.tunnelId, role: 'agent', ports: appPorts, aud: 'warren', iat: now, exp: now + 7 * 86_400, jti: randomBytes(8).toString('hex') });
  const relayUrl = `wss://127.0.0.1:${relay.address().listen.port}`;
  const agent = new Agent({
    relays: [relayUrl],
    token,
    ca: ids.caPem,
    ports: appPorts.map((port) => ({ port, preview: true, private: false, tcp: false, allow: [] })),
    software: 'warren-dev/0.1.0',
  });
  const connected = new Promise<Extract<AgentEvent, { event: 'connected' }>>((resolve, reject) => {
    agent.on('event', (e: AgentEvent) => {
      if (e.event === 'connected') resolve(e);
      else if (e.event === 'stopped' && e.code) reject(new Error(e.message));
      options.onAgentEvent?.(e);
    });
  });
  const running = agent.start();
  running.catch(() => {
    // Reported through the 'stopped' event.
  });
  const welcome = await connected;
  return {
    tunnelId: ids.tunnelId,
    previews: welcome.previews.map((p) => ({ port: p.port, url: p.url, demo: p.port === demo?.port })),
    relayUrl,
    caFile: join(options.stateDir, 'ca.pem'),
    stop: async () => {
      await agent.stop(2_000);
      await relay.close();
      await demo?.close();
    },
  };
}
