// Minimal preview forwarding: one stream per request, response piped back. The full proxy
// (header hygiene, upgrades, error pages) replaces this file.
import { request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { WarrenError } from '../protocol/index.js';
import type { Logger } from '../common/log.js';
import { parsePreviewHost, type PreviewTarget } from './preview-host.js';
import { sendError } from './error-page.js';
export interface PreviewBackend { openStream(target: PreviewTarget, info: { remoteAddress: string; secure: boolean; host: string }): Duplex }
export class PreviewProxy {
  constructor(private readonly o: { domain: string; backend: PreviewBackend; logger?: Logger }) {}
  handleRequest(req: IncomingMessage, res: ServerResponse): void {
    const target = parsePreviewHost(req.headers.host ?? '', this.o.domain);
    if (!target) return sendError(req, res, new WarrenError('ERR_WARREN_MISDIRECTED'));
    let stream: Duplex;
    try { stream = this.o.backend.openStream(target, { remoteAddress: req.socket.remoteAddress ?? '', secure: false, host: req.headers.host ?? '' }); }
    catch (err) { return sendError(req, res, err as WarrenError); }
    const preq = request({ createConnection: () => stream, method: req.method, path: req.url, headers: req.headers });
    preq.on('response', (pres) => { res.writeHead(pres.statusCode ?? 502, pres.headers); pres.pipe(res); });
    preq.on('error', (err) => { if (!res.headersSent) sendError(req, res, err instanceof WarrenError ? err : new WarrenError('ERR_WARREN_APP_UNREACHABLE')); else res.destroy(); });
    req.pipe(preq);
  }
  handleUpgrade(_req: IncomingMessage, socket: Duplex, _head: Buffer): void { socket.destroy(); }
}
