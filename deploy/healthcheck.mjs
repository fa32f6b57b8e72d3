#!/usr/bin/env node
// Container health check for the relay: GET /healthz on the admin listener named by WARREN_ADMIN
// (HOST:PORT; a wildcard host is asked on loopback). Exits 0 when it answers 200, 1 otherwise,
// and 0 when WARREN_ADMIN is unset: without an admin listener there is nothing to ask.
import { request } from 'node:http';

const admin = process.env.WARREN_ADMIN;
if (!admin) {
  console.log('no admin listener (WARREN_ADMIN unset): nothing to check');
  process.exit(0);
}
const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]*)):(\d+)$/.exec(admin.trim());
if (!m) {
  console.log(`WARREN_ADMIN="${admin}" is not HOST:PORT`);
  process.exit(1);
}
let host = m[1] ?? (m[2] || '127.0.0.1');
if (host === '0.0.0.0') host = '127.0.0.1';
if (host === '::') host = '::1';
const req = request({ host, port: Number(m[3]), path: '/healthz', timeout: 2_000 }, (res) => {
  res.resume();
  console.log(`/healthz: ${res.statusCode}`);
  process.exit(res.statusCode === 200 ? 0 : 1);
});
req.on('timeout', () => req.destroy(new Error('no answer within 2s')));
req.on('error', (err) => {
  console.log(`/healthz: ${err.message}`);
  process.exit(1);
});
req.end();
