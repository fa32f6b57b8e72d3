/**
 * HELLO messages: the first frame each way. The dialer's HELLO carries the protocol version, its
 * token and its receive limits; the acceptor answers with its own limits once the token is
 * verified, or with GOAWAY and a code. Role-specific fields (the agent's ports, the relay's preview
 * URLs) travel in `app`, which this module passes through as an object.
 */
import { z } from 'zod';
import { ProtocolError } from './errors.js';
import { MAX_FRAME_BYTES_LIMIT, MAX_WINDOW_BYTES_LIMIT, PROTOCOL_VERSION } from './frame.js';

/** The receive limits each side announces; the peer must stay within them. */
export interface HelloLimits {
  maxFrameBytes: number;
  initialWindowBytes: number;
  maxMetadataBytes: number;
}

/** The dialer's HELLO. */
export interface ClientHello {
  v: number;
  /** The bearer token (a JWT). Never logged. */
  token: string;
  limits: HelloLimits;
  /** Name and version of the dialing software, for logs (`warren-agent/0.1.0`). */
  software?: string;
  /** Role-specific fields. */
  app: Record<string, unknown>;
}

/** The acceptor's HELLO. */
export interface ServerHello {
  v: number;
  limits: HelloLimits;
  /** Identifies the session in both sides' logs. */
  sessionId: string;
  app: Record<string, unknown>;
}

/** Longest token a dialer's HELLO may carry, in characters (the relay's verifier may cap it lower). */
export const MAX_HELLO_TOKEN_CHARS = 8192;

const limitsSchema = z.object({
  maxFrameBytes: z.int().min(16 * 1024).max(MAX_FRAME_BYTES_LIMIT),
  initialWindowBytes: z.int().min(64 * 1024).max(MAX_WINDOW_BYTES_LIMIT),
  maxMetadataBytes: z.int().min(0).max(0xffff),
});

const clientHelloSchema = z.object({
  v: z.int(),
  token: z.string().max(MAX_HELLO_TOKEN_CHARS),
  limits: limitsSchema,
  software: z.string().max(128).optional(),
  app: z.record(z.string(), z.unknown()).default({}),
});

const serverHelloSchema = z.object({
  v: z.int(),
  limits: limitsSchema,
  sessionId: z.string().max(128),
  app: z.record(z.string(), z.unknown()).default({}),
});

function parseJson(payload: Buffer): unknown {
  try {
    return JSON.parse(payload.toString('utf8'));
  } catch {
    throw new ProtocolError('ERR_WARREN_HANDSHAKE', 'HELLO is not JSON');
  }
}

function checkVersion(v: unknown): void {
  if (typeof v === 'number' && v !== PROTOCOL_VERSION) {
    throw new ProtocolError('ERR_WARREN_VERSION', `peer speaks protocol version ${v}; this side speaks ${PROTOCOL_VERSION}`);
  }
}

function describe(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.join('.') || 'hello'}: ${i.message}`).join('; ');
}

/** Parses and validates a dialer's HELLO; throws ProtocolError (ERR_WARREN_HANDSHAKE or ERR_WARREN_VERSION). */
export function parseClientHello(payload: Buffer): ClientHello {
  const raw = parseJson(payload);
  checkVersion((raw as { v?: unknown } | null)?.v);
  const result = clientHelloSchema.safeParse(raw);
  if (!result.success) throw new ProtocolError('ERR_WARREN_HANDSHAKE', `bad HELLO: ${describe(result.error)}`);
  return result.data;
}

/** Parses and validates an acceptor's HELLO. */
export function parseServerHello(payload: Buffer): ServerHello {
  const raw = parseJson(payload);
  checkVersion((raw as { v?: unknown } | null)?.v);
  const result = serverHelloSchema.safeParse(raw);
  if (!result.success) throw new ProtocolError('ERR_WARREN_HANDSHAKE', `bad HELLO: ${describe(result.error)}`);
  return result.data;
}

/** The peer's limits assumed until its HELLO arrives. */
export const LIMITS_BEFORE_HELLO: Readonly<HelloLimits> = Object.freeze({ maxFrameBytes: 16 * 1024, initialWindowBytes: 64 * 1024, maxMetadataBytes: 0 });

/** The peer limits a session took last. */
let lastPeerLimits = LIMITS_BEFORE_HELLO;

/** `limits`, as the object a session took last when equal: the peers of a relay nearly all announce the same limits. */
export function sharedLimits(limits: HelloLimits): Readonly<HelloLimits> {
  const last = lastPeerLimits;
  if (limits.maxFrameBytes === last.maxFrameBytes && limits.initialWindowBytes === last.initialWindowBytes && limits.maxMetadataBytes === last.maxMetadataBytes) return last;
  lastPeerLimits = Object.freeze({ maxFrameBytes: limits.maxFrameBytes, initialWindowBytes: limits.initialWindowBytes, maxMetadataBytes: limits.maxMetadataBytes });
  return lastPeerLimits;
}
