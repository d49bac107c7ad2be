/**
 * Structured logging with pino, to stderr, so stdout keeps only the `listening on` lines.
 * @packageDocumentation
 */
import { pino } from 'pino';

/** The logger interface socksmith and its plugins use (pino's). */
export type Logger = pino.Logger;

/** Log levels accepted in the config (`log.level`). */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** One of {@link LOG_LEVELS}. */
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * Create the root logger: JSON lines on stderr, ISO time, level names, passwords redacted.
 *
 * `destination` is for tests; production always writes to fd 2.
 */
export function createLogger(level: LogLevel, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      // Defence in depth: nothing should ever log a password, but if a plugin logs a whole
      // credentials or upstream object, these paths are replaced.
      redact: { paths: ['password', '*.password', 'credentials', '*.credentials', 'upstream.password'], censor: '[redacted]' },
    },
    destination ?? pino.destination({ fd: 2, sync: false }),
  );
}
