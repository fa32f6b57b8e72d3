/**
 * The identity commands of `warren`: `keys generate`, `token issue`, `token verify`,
 * `certs init` and `certs issue`. Flags are read here and nowhere else in certs/; every valued
 * flag also reads `WARREN_<FLAG>`. Exit codes: 0 ok, 1 runtime failure (a token that does not
 * verify), 2 usage or configuration error.
 */
import { Option, type Command } from 'commander';
import { randomBytes } from 'node:crypto';
import { collectProblem, envOption, repeatableOption, runAction } from '../cli/command.js';
import { parseDuration, parsePortList } from '../cli/parse.js';
import { ConfigError } from '../protocol/errors.js';
import { MAX_VIEWER_LENGTH, ROLES, isTunnelId, type Role, type WarrenClaims } from './claims.js';
import { writeOutputFiles } from './files.js';
import { generateIssuerKeys, loadIssuerKey, loadTrustedKeys } from './keys.js';
import { issueToken, verifyToken } from './token.js';

/** Default audience: the name of the relay network tokens are for. */
export const DEFAULT_AUDIENCE = 'warren';

interface JsonFlag {
  json?: boolean;
}

/** Adds `keys`, `token` and `certs` with their subcommands to the `warren` program. */
export function registerCertsCommands(program: Command): void {
  registerKeys(program);
  registerToken(program);
  registerCerts(program);
}

function print(json: boolean, event: string, fields: Record<string, unknown>, lines: string[]): void {
  process.stdout.write(json ? `${JSON.stringify({ event, ...fields })}\n` : `${lines.join('\n')}\n`);
}

function registerKeys(program: Command): void {
  const keys = program.command('keys').description('Ed25519 issuer keys that sign tokens');
  keys
    .command('generate')
    .description('Generate an issuer key pair: DIR/issuer.key (private, mode 0600) and DIR/issuer.pub (public, for relays).')
    .addOption(envOption('--out <dir>', 'directory to write the key pair into').makeOptionMandatory())
    .option('--force', 'replace existing key files')
    .option('--json', 'print one JSON line instead of text')
    .addHelpText(
      'after',
      `
The key id (kid) printed is the RFC 7638 thumbprint of the public key; tokens carry it in their
header so relays pick the right key while keys rotate.

Examples:
  warren keys generate --out ./keys
  warren relay ... --trust-key ./keys/issuer.pub
  warren token issue --key ./keys/issuer.key --role agent --tunnel ab12cd --ports 3000 --ttl 1h`,
    )
    .action(
      runAction(
        async (opts: { out: string; force?: boolean } & JsonFlag) => {
          const generated = generateIssuerKeys();
          const [privatePath, publicPath] = await writeOutputFiles(
            opts.out,
            [
              { name: 'issuer.key', content: generated.privateKeyPem, mode: 0o600 },
              { name: 'issuer.pub', content: generated.publicKeyPem, mode: 0o644 },
            ],
            opts.force === true,
          );
          print(opts.json === true, 'keys.generated', { kid: generated.kid, privateKey: privatePath, publicKey: publicPath }, [
            `kid:         ${generated.kid}`,
            `private key: ${privatePath}  (keep it secret: it signs tokens)`,
            `public key:  ${publicPath}  (give it to relays: --trust-key ${publicPath})`,
          ]);
        },
        (opts) => opts.json === true,
      ),
    );
}

interface TokenIssueFlags extends JsonFlag {
  key: string;
  role: Role;
  tunnel: string;
  ports: string;
  ttl: string;
  aud: string;
  private?: string;
  viewer?: string;
}

function registerToken(program: Command): void {
  const token = program.command('token').description('Warren tokens: JWTs signed with Ed25519 (EdDSA)');
  token
    .command('issue')
    .description('Mint a token and print it alone on standard output.')
    .addOption(envOption('--key <file>', 'issuer private key (issuer.key from `warren keys generate`, or a JWK)').makeOptionMandatory())
    .addOption(envOption('--role <role>', 'what the token allows').choices(ROLES).makeOptionMandatory())
    .addOption(envOption('--tunnel <id>', 'tunnel id: 1-32 lowercase letters, digits and inner hyphens').makeOptionMandatory())
    .addOption(envOption('--ports <list>', 'comma-separated ports the token covers, like 3000,5173').makeOptionMandatory())
    .addOption(envOption('--ttl <duration>', 'lifetime: 30s, 15m, 1h, 7d').makeOptionMandatory())
    .addOption(envOption('--aud <name>', 'relay network the token is for').default(DEFAULT_AUDIENCE))
    .addOption(envOption('--private <list>', 'ports (among --ports) whose preview needs a viewer token'))
    .addOption(envOption('--viewer <name>', 'the person a viewer token stands for (shown in relay logs)'))
    .option('--json', 'print one JSON line with the token, kid, jti and exp')
    .addHelpText(
      'after',
      `
Roles: an agent token lets one sandbox register the tunnel with these ports; a client token lets
a tool reach them (warren connect); a viewer token opens a private preview. Every token gets a
random jti, so one token can be revoked alone.

Examples:
  export WARREN_TOKEN=$(warren token issue --key keys/issuer.key --role agent --tunnel ab12cd --ports 3000,5173 --ttl 1h)
  warren token issue --key keys/issuer.key --role client --tunnel ab12cd --ports 5432 --ttl 15m
  warren token issue --key keys/issuer.key --role viewer --tunnel ab12cd --ports 3000 --ttl 8h --viewer ada@example.com`,
    )
    .action(runAction(async (opts: TokenIssueFlags) => issueFromFlags(opts), (opts) => opts.json === true));

  token
    .command('verify')
    .description('Verify a token as a relay would and print its claims; exit 1 with the reason when it does not verify.')
    .addOption(repeatableOption('--trust-key <file>', 'trusted public key file (PEM, JWK or JWK Set); repeatable').makeOptionMandatory())
    .addOption(envOption('--token <jwt>', 'the token, or - to read it from standard input (prefer WARREN_TOKEN)').makeOptionMandatory())
    .addOption(envOption('--aud <name>', 'relay network name the token must be for').default(DEFAULT_AUDIENCE))
    .addOption(envOption('--role <role>', 'require this role').choices(ROLES))
    .option('--json', 'print one JSON line')
    .addHelpText(
      'after',
      `
Examples:
  WARREN_TOKEN=eyJ... warren token verify --trust-key keys/issuer.pub
  warren token issue ... | warren token verify --trust-key keys/issuer.pub --token -`,
    )
    .action(
      runAction(
        async (opts: { trustKey: string[]; token: string; aud: string; role?: Role } & JsonFlag) => {
          const text = opts.token === '-' ? (await readStdin()).trim() : opts.token;
          const keys = await loadTrustedKeys(opts.trustKey);
          const claims = verifyToken(text, { keys, audience: opts.aud, roles: opts.role === undefined ? undefined : [opts.role] });
          const expires = new Date(claims.exp * 1000).toISOString();
          print(opts.json === true, 'token.verified', { claims }, [
            `valid ${claims.role} token for tunnel ${claims.sub}, ports ${claims.ports.join(',')}, expires ${expires}`,
            JSON.stringify(claims),
          ]);
        },
        (opts) => opts.json === true,
      ),
    );
}

async function issueFromFlags(opts: TokenIssueFlags): Promise<void> {
  const issues: string[] = [];
  if (!isTunnelId(opts.tunnel)) issues.push(`--tunnel: "${opts.tunnel}" is not a tunnel id (1-32 lowercase letters, digits and inner hyphens, like ab12cd)`);
  const ports = collectProblem(issues, () => parsePortList(opts.ports, '--ports'));
  const ttlMs = collectProblem(issues, () => parseDuration(opts.ttl, '--ttl'));
  if (ttlMs !== undefined && ttlMs < 1000) issues.push(`--ttl: "${opts.ttl}" is shorter than one second`);
  const privatePorts = opts.private === undefined ? undefined : collectProblem(issues, () => parsePortList(opts.private!, '--private'));
  if (ports && privatePorts && !privatePorts.every((p) => ports.includes(p))) issues.push('--private: every private port must also be in --ports');
  if (opts.viewer !== undefined && (opts.viewer.length === 0 || opts.viewer.length > MAX_VIEWER_LENGTH)) {
    issues.push(`--viewer: must be 1-${MAX_VIEWER_LENGTH} characters`);
  }
  if (opts.aud.length === 0) issues.push('--aud: must not be empty');
  if (issues.length > 0) throw new ConfigError(issues, 'ERR_WARREN_USAGE');

  const key = await loadIssuerKey(opts.key);
  const iat = Math.floor(Date.now() / 1000);
  const claims: WarrenClaims = {
    sub: opts.tunnel,
    role: opts.role,
    ports: ports!,
    aud: opts.aud,
    iat,
    exp: iat + Math.ceil(ttlMs! / 1000),
    jti: randomBytes(16).toString('base64url'),
  };
  if (privatePorts !== undefined) claims.private = privatePorts;
  if (opts.viewer !== undefined) claims.viewer = opts.viewer;
  const token = issueToken(key, claims);
  if (opts.json === true) {
    print(true, 'token.issued', { token, kid: key.kid, jti: claims.jti, exp: claims.exp, expiresAt: new Date(claims.exp * 1000).toISOString() }, []);
  } else {
    process.stdout.write(`${token}\n`);
  }
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function parseDays(text: string, flag: string): number {
  const days = /^\d{1,4}$/.test(text.trim()) ? Number(text.trim()) : NaN;
  if (!(days >= 1 && days <= 3650)) throw new ConfigError([`${flag}: "${text}" is not a whole number of days from 1 to 3650`], 'ERR_WARREN_USAGE');
  return days;
}

function registerCerts(program: Command): void {
  const certs = program.command('certs').description('a development CA and TLS certificates for relays (ECDSA P-256)');
  certs
    .command('init')
    .description('Create a development CA: DIR/ca.pem (certificate, give it to agents and clients) and DIR/ca.key (mode 0600).')
    .addOption(envOption('--out <dir>', 'directory to write the CA into').makeOptionMandatory())
    .addOption(envOption('--cn <name>', 'CA common name').default('Warren dev CA'))
    .addOption(envOption('--days <n>', 'validity in days').default('3650'))
    .option('--force', 'replace an existing CA')
    .option('--json', 'print one JSON line instead of text')
    .addHelpText(
      'after',
      `
For development and private fleets. In production, relays usually present a certificate from a
public CA for the preview domain, and this CA signs only the relay mesh certificates.

Examples:
  warren certs init --out ./ca
  warren certs issue --ca ./ca --host '*.preview.example.dev' --host relay.example.dev --out ./relay-tls`,
    )
    .action(
      runAction(
        async (opts: { out: string; cn: string; days: string; force?: boolean } & JsonFlag) => {
          const validDays = parseDays(opts.days, '--days');
          const { createDevCa } = await import('./ca.js'); // loaded only when needed: @peculiar/x509 is large
          const ca = await createDevCa({ commonName: opts.cn, validDays });
          const [certPath, keyPath] = await writeOutputFiles(
            opts.out,
            [
              { name: 'ca.pem', content: ca.certPem, mode: 0o644 },
              { name: 'ca.key', content: ca.keyPem, mode: 0o600 },
            ],
            opts.force === true,
          );
          print(opts.json === true, 'certs.ca', { cert: certPath, key: keyPath }, [
            `CA certificate: ${certPath}  (agents and clients trust it: --ca ${certPath})`,
            `CA key:         ${keyPath}  (keep it secret: it signs certificates)`,
          ]);
        },
        (opts) => opts.json === true,
      ),
    );

  certs
    .command('issue')
    .description('Issue a certificate signed by a CA from `warren certs init`: DIR/cert.pem and DIR/key.pem (mode 0600).')
    .addOption(envOption('--ca <dir>', 'CA directory (ca.pem and ca.key)').makeOptionMandatory())
    .addOption(repeatableOption('--host <name>', 'DNS name, wildcard (*.preview.example.dev) or IP address; repeatable').makeOptionMandatory())
    .addOption(envOption('--out <dir>', 'directory to write cert.pem and key.pem into').makeOptionMandatory())
    .addOption(envOption('--days <n>', 'validity in days (never past the CA)').default('90'))
    .addOption(envOption('--usage <kind>', 'server, client, or both (relay mesh links)').choices(['server', 'client', 'both']).default('server'))
    .addOption(new Option('--client', 'a client certificate: the same as --usage client').conflicts('usage'))
    .option('--force', 'replace existing files')
    .option('--json', 'print one JSON line instead of text')
    .addHelpText(
      'after',
      `
Examples:
  warren certs issue --ca ./ca --host '*.preview.localhost' --host localhost --host 127.0.0.1 --out ./relay-tls
  warren certs issue --ca ./ca --host relay-eu-1.mesh --usage both --out ./mesh-eu-1
  warren certs issue --ca ./ca --host ci-runner --client --out ./client-tls`,
    )
    .action(
      runAction(
        async (opts: { ca: string; host: string[]; out: string; days: string; usage: 'server' | 'client' | 'both'; client?: boolean; force?: boolean } & JsonFlag) => {
          const usage = opts.client === true ? 'client' : opts.usage;
          const validDays = parseDays(opts.days, '--days');
          const { certificateHost, issueCertificate, loadCertificateAuthority } = await import('./ca.js');
          const badHosts: string[] = [];
          for (const host of opts.host) {
            try {
              certificateHost(host, '--host');
            } catch (err) {
              badHosts.push((err as Error).message);
            }
          }
          if (badHosts.length > 0) throw new ConfigError(badHosts, 'ERR_WARREN_USAGE');
          const ca = await loadCertificateAuthority(opts.ca);
          const issued = await issueCertificate(ca, { hosts: opts.host, validDays, usage });
          const [certPath, keyPath] = await writeOutputFiles(
            opts.out,
            [
              { name: 'cert.pem', content: issued.certPem, mode: 0o644 },
              { name: 'key.pem', content: issued.keyPem, mode: 0o600 },
            ],
            opts.force === true,
          );
          print(opts.json === true, 'certs.issued', { cert: certPath, key: keyPath, hosts: opts.host, usage }, [
            `certificate: ${certPath}  (${usage}; ${opts.host.join(', ')})`,
            `key:         ${keyPath}`,
          ]);
        },
        (opts) => opts.json === true,
      ),
    );
}
