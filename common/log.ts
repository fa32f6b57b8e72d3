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
}

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
    options.destination ?? pino.destination({ fd: 1, sync: false }),
  );
}

/** A logger that writes nothing: the default for library objects created without one. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
