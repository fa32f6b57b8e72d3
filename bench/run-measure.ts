/**
 * The measurements over one path, from the bench process (the client): bulk throughput over 1
 * or many streams, 1-byte ping-pong on an open stream, and new-stream latency. The app's
 * protocol is described in bench/run-app.ts.
 */
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { quantile, round } from './run-util.js';

const CHUNK_BYTES = 64 * 1024;
const LENGTH_BYTES = 8;
const CHUNK = Buffer.alloc(CHUNK_BYTES, 0x5a);

function open(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1', noDelay: true });
    s.once('connect', () => {
      s.removeListener('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

/** Sends `bytes` on one connection in sink mode and resolves when the app acknowledges all of them. */
async function sinkOne(port: number, bytes: number): Promise<void> {
  const s = await open(port);
  const head = Buffer.alloc(1 + LENGTH_BYTES);
  head[0] = 0x53;
  head.writeBigUInt64BE(BigInt(bytes), 1);
  const ack = new Promise<number>((resolve, reject) => {
    const parts: Buffer[] = [];
    s.on('data', (c: Buffer) => parts.push(c));
    s.once('end', () => {
      const all = Buffer.concat(parts);
      if (all.length < LENGTH_BYTES) reject(new Error(`the app acknowledged ${all.length} bytes of ${LENGTH_BYTES}`));
      else resolve(Number(all.readBigUInt64BE(0)));
    });
    s.once('error', reject);
  });
  s.write(head);
  let left = bytes;
  while (left > 0) {
    const n = Math.min(CHUNK_BYTES, left);
    left -= n;
    if (!s.write(n === CHUNK_BYTES ? CHUNK : CHUNK.subarray(0, n))) await once(s, 'drain');
  }
  const got = await ack;
  s.destroy();
  if (got !== bytes) throw new Error(`the app received ${got} bytes of ${bytes}`);
}

/** Bulk upload of `total` bytes split over `streams` parallel connections; resolves with MB/s and seconds. */
export async function throughput(port: number, total: number, streams: number): Promise<{ mbPerSec: number; seconds: number; bytes: number }> {
  const each = Math.max(CHUNK_BYTES, Math.floor(total / streams / CHUNK_BYTES) * CHUNK_BYTES);
  const start = process.hrtime.bigint();
  await Promise.all(Array.from({ length: streams }, () => sinkOne(port, each)));
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const bytes = each * streams;
  return { mbPerSec: round(bytes / 1e6 / seconds), seconds: round(seconds, 3), bytes };
}

/** Latency percentiles. */
export interface Percentiles {
  count: number;
  p50: number;
  p99: number;
  p999: number;
  mean: number;
}

function percentiles(samples: number[], digits: number): Percentiles {
  return {
    count: samples.length,
    p50: round(quantile(samples, 0.5), digits),
    p99: round(quantile(samples, 0.99), digits),
    p999: round(quantile(samples, 0.999), digits),
    mean: round(samples.reduce((a, b) => a + b, 0) / Math.max(1, samples.length), digits),
  };
}

/** 1-byte ping-pong on one open stream: `count` round trips after `warmup`; microseconds. */
export async function pingPong(port: number, count: number, warmup = 200): Promise<Percentiles> {
  const s = await open(port);
  s.on('error', () => {});
  let waiting: (() => void) | null = null;
  s.on('data', () => {
    const w = waiting;
    waiting = null;
    w?.();
  });
  s.write('E');
  const byte = Buffer.from('x');
  const samples: number[] = [];
  for (let i = 0; i < warmup + count; i++) {
    const t0 = process.hrtime.bigint();
    const answered = new Promise<void>((resolve, reject) => {
      waiting = resolve;
      const timer = setTimeout(() => reject(new Error('no echo within 10 s')), 10_000);
      timer.unref();
    });
    s.write(byte);
    await answered;
    if (i >= warmup) samples.push(Number(process.hrtime.bigint() - t0) / 1e3);
  }
  s.destroy();
  return percentiles(samples, 1);
}

/** New-stream latency: connect, send one byte, wait for the app's first byte; `count` times in a row; milliseconds. */
export async function newStream(port: number, count: number, warmup = 20): Promise<Percentiles> {
  const samples: number[] = [];
  for (let i = 0; i < warmup + count; i++) {
    const t0 = process.hrtime.bigint();
    await new Promise<void>((resolve, reject) => {
      const s = connect({ port, host: '127.0.0.1', noDelay: true });
      const timer = setTimeout(() => {
        s.destroy();
        reject(new Error('no first byte within 10 s'));
      }, 10_000);
      s.once('connect', () => s.write('P'));
      s.once('data', () => {
        clearTimeout(timer);
        if (i >= warmup) samples.push(Number(process.hrtime.bigint() - t0) / 1e6);
        s.destroy();
        resolve();
      });
      s.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
  }
  return percentiles(samples, 3);
}
