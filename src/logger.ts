/**
 * Structured logging with pino, to stderr, so stdout keeps only the `listening on` lines.
 * @packageDocumentation
 */
import { createRequire } from 'node:module';
import { pino } from 'pino';

/** The logger interface socksmith and its plugins use (pino's). */
export type Logger = pino.Logger;

/** Log levels accepted in the config (`log.level`). */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** One of {@link LOG_LEVELS}. */
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Log line formats: `json` (one JSON object per line) or `pretty` (pino-pretty, for people). */
export const LOG_FORMATS = ['json', 'pretty'] as const;

/** One of {@link LOG_FORMATS}. */
export type LogFormat = (typeof LOG_FORMATS)[number];

let defaultFormat: LogFormat | undefined;

/**
 * Set the format of loggers created without a destination from now on (the CLI's
 * `--log-format`). Without a call: `pretty` when stderr is a terminal, `json` otherwise.
 */
export function setLogFormat(format: LogFormat | undefined): void {
  defaultFormat = format;
}

/** The format {@link createLogger} uses for stderr. */
export function logFormat(): LogFormat {
  return defaultFormat ?? (process.stderr.isTTY ? 'pretty' : 'json');
}

/** pino-pretty writing to fd 2, loaded only when the pretty format is used. */
function prettyStream(): pino.DestinationStream {
  const pretty = createRequire(import.meta.url)('pino-pretty') as (options: object) => pino.DestinationStream;
  return pretty({
    destination: 2,
    // Synchronous: a person reads these lines, and none may be lost when the process exits.
    sync: true,
    colorize: process.stderr.isTTY === true,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,hostname',
    singleLine: true,
  });
}

/**
 * Create the root logger: JSON lines on stderr, ISO time, level names, passwords redacted. In
 * the `pretty` format ({@link logFormat}) the same records go through pino-pretty: one
 * human-readable line each, local time, colours on a terminal.
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
    destination ?? (logFormat() === 'pretty' ? prettyStream() : pino.destination({ fd: 2, sync: false })),
  );
}
