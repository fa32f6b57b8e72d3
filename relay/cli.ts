/**
 * `warren relay`: flags (each also WARREN_<FLAG> in the environment) and --config FILE, merged
 * and validated by relay/config.ts, then the daemon runs until SIGTERM or SIGINT.
 */
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { envOption, repeatableOption, runAction } from '../cli/command.js';
import { createLogger, type Logger } from '../log/logger.js';
import { loadRelayConfig, mergeRelayConfig, readRelayConfigFile, RELAY_DEFAULTS, RELAY_SETTINGS, type RawRelayConfig, type RelayConfig } from './config.js';
import { Relay } from './relay.js';
import type { RelayNetworkConfig } from './network/config.js';
import { NatsDirectory } from './network/nats-directory.js';
import type { NetworkOptions } from './network/network.js';

interface RelayFlags extends Omit<RawRelayConfig, 'trustKey' | 'revoked'> {
  trustKey?: string[];
  revoked?: string[];
  config?: string;
  checkConfig?: boolean;
}

/** Builds the validated config from flags, environment and the config file. */
export async function relayConfigFromFlags(flags: RelayFlags): Promise<RelayConfig> {
  const file = flags.config ? await readRelayConfigFile(flags.config) : { settings: {}, issues: [] };
  const fromFlags: RawRelayConfig = {};
  for (const key of RELAY_SETTINGS) {
    const v = flags[key];
    if (v !== undefined) (fromFlags as Record<string, unknown>)[key] = v;
  }
  return loadRelayConfig(mergeRelayConfig(file.settings, fromFlags), file.issues);
}

/** The relay network's parts from its validated settings: the NATS directory and the mesh identity. */
function networkOptions(network: RelayNetworkConfig, logger: Logger): NetworkOptions {
  const directory = new NatsDirectory({
    servers: [...network.servers],
    credsFile: network.credsFile,
    user: network.user,
    password: network.password,
    tls: network.ca !== undefined ? { ca: network.ca } : undefined,
    replicas: network.replicas,
    heartbeatMs: network.heartbeatMs,
    relayTtlMs: 3 * network.heartbeatMs,
    logger,
  });
  return { directory, id: network.id, region: network.region, advertise: network.advertise, meshListen: network.meshListen, mesh: network.mesh };
}

/** Adds `warren relay` to the program. */
export function registerRelayCommand(program: Command): void {
  program
    .command('relay')
    .summary('run a relay: agents dial in, previews and clients reach them')
    .description(
      'Runs the relay daemon. Agents connect to wss://HOST/v1/agent with an agent token; browsers open ' +
        'https://{port}-{tunnel}.DOMAIN previews; tools connect through /v1/connect. Every flag can also be ' +
        'set as WARREN_<FLAG> (WARREN_TRUST_KEY=a.pub,b.pub) or in --config FILE (JSON or YAML, camelCase ' +
        'keys: listen, httpListen, trustKey: [...]). The relay refuses to start without a trusted key.',
    )
    .addOption(envOption('--listen <host:port>', `TLS listener for agents, clients and HTTPS previews (default ${RELAY_DEFAULTS.listen})`))
    .addOption(envOption('--http-listen <host:port>', 'plain-HTTP listener for previews only (local dev, or behind a TLS load balancer)'))
    .addOption(envOption('--cert <file>', 'TLS certificate chain (PEM) covering the relay host and *.DOMAIN'))
    .addOption(envOption('--key <file>', 'TLS private key (PEM)'))
    .addOption(envOption('--domain <domain>', 'preview domain: previews are {port}-{tunnel}.DOMAIN'))
    .addOption(repeatableOption('--trust-key <file>', 'issuer public key (PEM or JWK) whose tokens are accepted; repeat to rotate keys'))
    .addOption(envOption('--public-url <url>', 'base of the preview URLs given to agents (default https://DOMAIN:PORT of --listen)'))
    .addOption(envOption('--audience <aud>', `token audience (aud) this relay accepts (default ${RELAY_DEFAULTS.audience})`))
    .addOption(envOption('--tcp-ports <first-last>', 'port range for raw TCP endpoints (off unless set), e.g. 20000-20999'))
    .addOption(envOption('--tcp-host <host>', 'host name printed in raw TCP endpoints (default: the --listen host)'))
    .addOption(envOption('--admin <host:port>', 'admin listener: /metrics, /healthz, /readyz and the admin API'))
    .addOption(envOption('--admin-token <token>', 'bearer token for the admin API (set it in WARREN_ADMIN_TOKEN)'))
    .addOption(envOption('--drain-hint <url>', 'relay URL (wss://) that agents move to when this relay drains'))
    .addOption(envOption('--grace-period <duration>', `how long a draining relay waits for open streams (default ${RELAY_DEFAULTS.gracePeriod})`))
    .addOption(envOption('--log-level <level>', `fatal, error, warn, info, debug, trace or silent (default ${RELAY_DEFAULTS.logLevel})`))
    .addOption(repeatableOption('--revoked <jti>', 'token id (jti) to refuse; repeatable'))
    .addOption(envOption('--keepalive <duration>', `keepalive PING interval; a silent agent is dropped within two (default ${RELAY_DEFAULTS.keepalive})`))
    .addOption(envOption('--max-streams <n>', `concurrent streams per agent or client session (default ${RELAY_DEFAULTS.maxStreams})`))
    .addOption(envOption('--headers-timeout <duration>', `time to receive a request head, a TLS handshake, or a session's HELLO (default ${RELAY_DEFAULTS.headersTimeout})`))
    .addOption(envOption('--request-timeout <duration>', `time to receive a whole request, body included (default ${RELAY_DEFAULTS.requestTimeout})`))
    .addOption(envOption('--idle-timeout <duration>', `close connections where nothing moves either way, WebSockets included (default ${RELAY_DEFAULTS.idleTimeout})`))
    .addOption(envOption('--session-key <file>', 'key of private-preview session cookies: a file of at least 32 random bytes; relays that share it accept each other\'s cookies (default: random at start)'))
    .addOption(envOption('--viewer-token-key <file>', 'Ed25519 private key (PEM) that signs X-Warren-Viewer-Token; relays that share it publish one JWK Set (default: fresh at start)'))
    .addOption(envOption('--directory <nats-urls>', 'join a relay network: its directory, nats://HOST:PORT[,HOST:PORT...] (NATS with JetStream); needs --id, --advertise and the --mesh-* files'))
    .addOption(envOption('--directory-creds <file>', 'NATS credentials file (.creds) for the directory'))
    .addOption(envOption('--directory-user <user>', 'NATS user for the directory (with --directory-password, best set as WARREN_DIRECTORY_PASSWORD)'))
    .addOption(envOption('--directory-password <password>', 'NATS password for the directory (set it in WARREN_DIRECTORY_PASSWORD)'))
    .addOption(envOption('--directory-ca <file>', 'CA (PEM) of the NATS servers\' TLS certificates: the directory is reached over TLS'))
    .addOption(envOption('--directory-replicas <n>', `copies of the directory's buckets in a NATS cluster: 1, 3 or 5 (default ${RELAY_DEFAULTS.directoryReplicas})`))
    .addOption(envOption('--directory-heartbeat <duration>', `how often this relay tells the directory it is alive; a relay silent for three is down (default ${RELAY_DEFAULTS.directoryHeartbeat})`))
    .addOption(envOption('--id <name>', 'this relay\'s name in the network (unique; letters, digits, - and _)'))
    .addOption(envOption('--region <name>', 'this relay\'s region, shown to agents and peers'))
    .addOption(envOption('--advertise <url>', 'wss://HOST:PORT where agents and peers reach this relay; peers dial HOST on the mesh port'))
    .addOption(envOption('--mesh-listen <host:port>', `mesh listener for the other relays, mutual TLS only (default ${RELAY_DEFAULTS.meshListen})`))
    .addOption(envOption('--mesh-cert <file>', 'mesh certificate (PEM), for both client and server use: warren certs issue --usage both'))
    .addOption(envOption('--mesh-key <file>', 'the mesh certificate\'s private key (PEM)'))
    .addOption(envOption('--mesh-ca <file>', 'CA (PEM) that signs every relay\'s mesh certificate: only its holders are peers'))
    .addOption(envOption('--config <file>', 'JSON or YAML file with the same settings (flags win over it)'))
    .option('--check-config', 'validate the configuration, print the problems, and exit (0 when valid)')
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  warren relay --listen 0.0.0.0:443 --cert relay.pem --key relay.key \\\n' +
        '    --domain preview.example.dev --trust-key issuer.pub\n' +
        '  warren relay --config /etc/warren/relay.yaml --check-config\n' +
        '  # one relay of a network (docs/NETWORK.md): NATS for presence, mutual-TLS mesh links\n' +
        '  warren relay --config relay.yaml --directory nats://n1:4222,n2:4222,n3:4222 --directory-replicas 3 \\\n' +
        '    --id relay-eu-1 --region eu --advertise wss://relay-eu-1.example.dev \\\n' +
        '    --mesh-cert mesh/cert.pem --mesh-key mesh/key.pem --mesh-ca mesh-ca/ca.pem\n',
    )
    .action(
      runAction(async (flags: RelayFlags) => {
        const config = await relayConfigFromFlags(flags);
        if (flags.checkConfig) {
          process.stdout.write(`config ok: listen ${config.listen.host}:${config.listen.port}, domain ${config.domain}, ${config.trustedKeys.size} trusted key(s)\n`);
          return 0;
        }
        const logger = createLogger({ level: config.logLevel, base: { role: 'relay' } });
        // Access lines come one per request: written in batches, as a busy relay's cost would
        // otherwise be one write per request (bench/FINDINGS.md, "Preview").
        const accessLogger = createLogger({ level: config.logLevel, base: { role: 'relay' }, batched: true });
        const relay = new Relay({
          listen: config.listen,
          httpListen: config.httpListen,
          tls: config.tls,
          domain: config.domain,
          publicUrl: config.publicUrl,
          trustedKeys: config.trustedKeys,
          audience: config.audience,
          revokedJtis: config.revoked,
          tcpPorts: config.tcpPorts,
          tcpHost: config.tcpHost,
          admin: config.admin,
          adminToken: config.adminToken,
          gracePeriodMs: config.gracePeriodMs,
          drainHint: config.drainHint,
          // A plain listener whose previews are announced as https sits behind a TLS-terminating front end.
          tlsTerminatedInFront: config.httpListen !== undefined && !(config.publicUrl ?? 'https:').startsWith('http:'),
          timeouts: { headersMs: config.headersTimeoutMs, requestMs: config.requestTimeoutMs, idleMs: config.idleTimeoutMs },
          session: { keepaliveIntervalMs: config.keepaliveMs, keepaliveTimeoutMs: config.keepaliveMs, handshakeTimeoutMs: config.headersTimeoutMs, maxStreams: config.maxStreams, maxPendingOpens: Math.min(512, config.maxStreams) },
          network: config.network ? networkOptions(config.network, logger) : undefined,
          previewSessionKey: config.previewSessionKey,
          viewerTokenKey: config.viewerTokenKey,
          logger,
          accessLogger,
        });
        await relay.start();
        let stopping = false;
        const stop = (signal: string): void => {
          if (stopping) {
            logger.warn({ event: 'exit_now', signal }, 'second signal: exiting now');
            process.exit(1);
          }
          stopping = true;
          logger.info({ event: 'stopping', signal, gracePeriodMs: config.gracePeriodMs }, 'draining; a second signal exits at once');
          void relay.drain().then(() => {
            logger.flush();
            process.exit(0);
          });
        };
        process.on('SIGTERM', () => stop('SIGTERM'));
        process.on('SIGINT', () => stop('SIGINT'));
        // SIGHUP: load a renewed certificate without a restart; open connections keep theirs.
        process.on('SIGHUP', () => {
          void Promise.all([readFile(config.certFile, 'utf8'), readFile(config.keyFile, 'utf8')]).then(
            ([cert, key]) => {
              try {
                relay.setCertificate(cert, key);
              } catch (err) {
                logger.error({ event: 'certificate_reload_failed', code: 'ERR_WARREN_CERT', reason: (err as Error).message }, 'new certificate refused; keeping the old one');
              }
            },
            (err: Error) => logger.error({ event: 'certificate_reload_failed', code: 'ERR_WARREN_CERT', reason: err.message }, 'cannot read the certificate; keeping the old one'),
          );
        });
      }),
    );
}

