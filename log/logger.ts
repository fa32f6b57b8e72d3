/**
 * Logging: pino JSON lines with stable field names (connId, tunnelId, streamId, code, region).
 * Token, key and cookie fields are redacted wherever they appear; callers should still never
 * put a secret in a message string.
 */
import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger } from 'pino';

/** Field paths whose values are replaced by "[redacted]" in every log line. */
export const REDACT_PATHS = [
  'token',
  '*.token',
  'authorization',
  '*.authorization',
  '*.headers.authorization',
  '*.headers.cookie',
  '*.headers["set-cookie"]',
  'cookie',
  'key',
  '*.key',
  'privateKey',
  '*.privateKey',
  'secret',
  '*.secret',
];

/** Options for createLogger. */
export interface LoggerOptions {
  /** pino level: fatal, error, warn, info, debug, trace or silent. Default info. */
  level?: string;
  /** Where lines go; default standard output. */
  destination?: DestinationStream | NodeJS.WritableStream;
  /** Fields added to every line (for example `{ role: 'relay', region: 'eu-1' }`). */
  base?: Record<string, unknown>;
  /**
   * Write standard output in batches: when LOG_BATCH_BYTES are waiting or LOG_FLUSH_MS after the
   * last write, whichever comes first (and on exit). For lines written per request, whose one
   * write each would cost more than making the line.
   */
  batched?: boolean;
}

/** A batched logger writes once this much is waiting... */
export const LOG_BATCH_BYTES = 4096;
/** ...or this long after its last write. */
export const LOG_FLUSH_MS = 1000;

/** Creates a JSON-lines logger with Warren's redaction rules. */
export function createLogger(options: LoggerOptions = {}): Logger {
  return pino(
    {
      level: options.level ?? 'info',
      base: options.base ?? null,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    options.destination ??
      pino.destination(options.batched ? { fd: 1, sync: false, minLength: LOG_BATCH_BYTES, periodicFlush: LOG_FLUSH_MS } : { fd: 1, sync: false }),
  );
}

/** A logger that writes nothing: the default for library objects created without one. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
