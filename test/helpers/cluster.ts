import { request, type IncomingHttpHeaders } from 'node:http';
import { startWarren, type Proc } from './process.js';
import type { TestIdentity } from './identity.js';

/** The preview domain test relays serve. */
export const TEST_DOMAIN = 'preview.test';

/** A `warren relay` child process with its bound ports. */
export interface RelayProc {
  proc: Proc;
  /** TLS listener port (agents, clients). */
  port: number;
  /** Plain-HTTP preview listener port. */
  httpPort: number;
  /** wss URL agents dial. */
  url: string;
}

/** Starts `warren relay` on 127.0.0.1 with free ports and the identity's cert and trusted key. */
export async function startRelayProcess(id: TestIdentity, extraArgs: string[] = [], env: Record<string, string> = {}): Promise<RelayProc> {
  const proc = startWarren(
    ['relay', '--listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', '--cert', id.certFile, '--key', id.keyFile, '--domain', TEST_DOMAIN, '--trust-key', id.issuerPubFile, ...extraArgs],
    env,
  );
  const line = await proc.waitFor(/"event":"listening"/);
  const info = JSON.parse(line) as { listen: { port: number }; httpListen: { port: number } };
  return { proc, port: info.listen.port, httpPort: info.httpListen.port, url: `wss://127.0.0.1:${info.listen.port}` };
}

/** Starts `warren agent` for `ports` with a token in WARREN_TOKEN; resolves once the tunnel is online. */
export async function startAgentProcess(id: TestIdentity, relay: Pick<RelayProc, 'url'>, token: string, portArgs: string[], wait = true): Promise<Proc> {
  const proc = startWarren(['agent', '--relay', relay.url, '--ca', id.caFile, ...portArgs], { WARREN_TOKEN: token });
  if (wait) await proc.waitFor(/is online via/);
  return proc;
}

/** A preview response, body read whole. */
export interface PreviewResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** Sends one request to a preview host through the relay's plain-HTTP listener. */
export function previewRequest(
  relay: { httpPort: number },
  host: string,
  path = '/',
  options: { method?: string; headers?: Record<string, string>; body?: Buffer } = {},
): Promise<PreviewResponse> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: relay.httpPort, path, method: options.method ?? 'GET', headers: { host, ...options.headers }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}
