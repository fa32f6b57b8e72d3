// Minimal version; the full preview proxy replaces this file.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { WarrenError } from '../protocol/index.js';
export function sendError(_req: IncomingMessage, res: ServerResponse, err: WarrenError): void {
  res.writeHead(err.status, { 'content-type': 'application/json', 'x-warren-error': err.code });
  res.end(JSON.stringify({ error: { code: err.code, message: err.message, status: err.status } }));
}
