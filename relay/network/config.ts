/**
 * The relay network settings of the relay configuration (--directory and the settings that go
 * with it), validated with every problem reported by name, files loaded. A relay without
 * --directory is alone, and then none of them may be given.
 */
import { formatHostPort, parseCount, parseDuration, parseHostPort, type HostPort } from '../../cli/parse.js';
import { attemptInto, checkTlsIdentity, readPemSetting, readSettingFile } from '../config-files.js';

/** The network settings as typed (already checked for shape by the relay configuration's schema). */
export interface RawNetworkSettings {
  directory?: string;
  directoryCreds?: string;
  directoryUser?: string;
  directoryPassword?: string;
  directoryCa?: string;
  /** Defaulted by the relay configuration. */
  directoryReplicas: string;
  /** Defaulted by the relay configuration. */
  directoryHeartbeat: string;
  id?: string;
  region?: string;
  advertise?: string;
  /** Defaulted by the relay configuration. */
  meshListen: string;
  meshCert?: string;
  meshKey?: string;
  meshCa?: string;
}

/** A relay's place in a relay network, validated (present only with --directory). */
export interface RelayNetworkConfig {
  /** NATS servers, `host:port` each. */
  readonly servers: readonly string[];
  readonly credsFile?: string;
  readonly user?: string;
  readonly password?: string;
  /** PEM CA that NATS's TLS certificate must chain to; TLS is required when set. */
  readonly ca?: string;
  readonly replicas: number;
  /** This relay's heartbeat interval; a relay silent for three of them is down. */
  readonly heartbeatMs: number;
  readonly id: string;
  readonly region: string;
  readonly advertise: string;
  readonly meshListen: HostPort;
  readonly mesh: { readonly cert: string; readonly key: string; readonly ca: string };
}

/** The settings that make sense only in a relay network. */
const NETWORK_ONLY = ['directoryCreds', 'directoryUser', 'directoryPassword', 'directoryCa', 'id', 'region', 'advertise', 'meshCert', 'meshKey', 'meshCa'] as const;

/**
 * The relay network settings, validated with their files loaded, or undefined without
 * --directory (then none of the network settings may be given). Problems go to `issues`.
 */
export async function networkConfig(r: RawNetworkSettings, issues: string[]): Promise<RelayNetworkConfig | undefined> {
  if (r.directory === undefined) {
    for (const key of NETWORK_ONLY) if (r[key] !== undefined) issues.push(`${key}: only with directory (--directory nats://HOST:PORT): this relay is not part of a network`);
    return undefined;
  }
  const servers: string[] = [];
  const m = /^nats:\/\/(.+)$/.exec(r.directory);
  if (!m) issues.push(`directory: "${r.directory}" is not nats://HOST:PORT[,HOST:PORT...]`);
  else {
    for (const part of m[1]!.split(',')) {
      const at = attemptInto(issues, () => parseHostPort(part.replace(/^nats:\/\//, ''), 'directory'));
      if (at) servers.push(formatHostPort(at));
    }
  }
  if (r.id === undefined) issues.push('id: required with directory: this relay\'s name, unique in the network');
  if (r.advertise === undefined) issues.push('advertise: required with directory: wss://HOST:PORT where agents and peers reach this relay');
  if ((r.directoryUser === undefined) !== (r.directoryPassword === undefined)) issues.push('directoryUser: directoryUser and directoryPassword go together');
  if (r.directoryCreds !== undefined && r.directoryUser !== undefined) issues.push('directoryCreds: use a credentials file or a user and password, not both');
  const replicas = attemptInto(issues, () => parseCount(r.directoryReplicas, 'directoryReplicas'));
  if (replicas !== undefined && replicas !== 1 && replicas !== 3 && replicas !== 5) issues.push('directoryReplicas: 1, 3 or 5 (one per NATS server of a cluster, at most 5)');
  const heartbeatMs = attemptInto(issues, () => parseDuration(r.directoryHeartbeat, 'directoryHeartbeat'));
  if (heartbeatMs !== undefined && heartbeatMs < 100) issues.push('directoryHeartbeat: must be at least 100ms');
  const meshListen = attemptInto(issues, () => parseHostPort(r.meshListen, 'meshListen'));
  const required = (setting: string, file: string | undefined, what: string): Promise<string | undefined> => {
    if (file !== undefined) return readPemSetting(setting, file, issues);
    issues.push(`${setting}: required with directory: ${what}`);
    return Promise.resolve(undefined);
  };
  const [cert, key, ca, natsCa] = await Promise.all([
    required('meshCert', r.meshCert, 'the mesh certificate (warren certs issue --usage both)'),
    required('meshKey', r.meshKey, 'the mesh certificate\'s key'),
    required('meshCa', r.meshCa, 'the CA that signs every relay\'s mesh certificate'),
    r.directoryCa === undefined ? undefined : readPemSetting('directoryCa', r.directoryCa, issues),
  ]);
  if (r.directoryCreds !== undefined) await readSettingFile('directoryCreds', r.directoryCreds, issues);
  checkTlsIdentity(issues, 'meshCert', { cert: r.meshCert!, key: r.meshKey! }, { cert, key, ca }, true);
  if (!cert || !key || !ca || !meshListen || replicas === undefined || heartbeatMs === undefined || r.id === undefined || r.advertise === undefined) return undefined;
  return Object.freeze({
    servers: Object.freeze(servers),
    credsFile: r.directoryCreds,
    user: r.directoryUser,
    password: r.directoryPassword,
    ca: natsCa,
    replicas,
    heartbeatMs,
    id: r.id,
    region: r.region ?? '',
    advertise: r.advertise.replace(/\/$/, ''),
    meshListen,
    mesh: Object.freeze({ cert, key, ca }),
  });
}

