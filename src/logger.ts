/**
 * Structured logging with pino, to stderr, so stdout keeps only the `listening on` lines.
 *
 * `log.safeLogging` (Tor's SafeLogging) is enforced here, in the logger, not at call sites: every
 * line a logger from {@link createLogger} writes, at every level, from the kernel, a plugin or a
 * child logger, passes one scrub ({@link scrubLine}) before it reaches the stream.
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

/** What replaces a scrubbed value (Tor writes the same). */
export const SCRUBBED = '[scrubbed]';

/** The scrub switch, shared by a root logger and all its children. */
interface ScrubState {
  safe: boolean;
}

const kScrub = Symbol('socksmith.logger.scrub');
const kSensitive = Symbol('socksmith.logger.sensitive');

type Scrubbable = { [kScrub]?: ScrubState; [kSensitive]?: () => readonly string[] };

/**
 * Keys whose values are replaced whole: destinations, names, addresses (of destinations, clients,
 * PROXY-protocol peers, resolved answers) and user names. Matched case-insensitively, at any depth.
 */
export const SENSITIVE_KEYS: ReadonlySet<string> = new Set([
  'destination',
  'dest',
  'target',
  'host',
  'hostname',
  'name',
  'names',
  'address',
  'addresses',
  'bound',
  'dropped',
  'ip',
  'client',
  'clientaddress',
  'peer',
  'remote',
  'remoteaddress',
  'user',
  'username',
  'credentials',
]);

/**
 * Keys whose values are this process's own configuration (its listeners, its upstream, file
 * paths, plugin names), left as they are. Every other string value, and the message, has the
 * addresses and names in its text replaced ({@link scrubText}).
 */
export const CONFIG_KEYS: ReadonlySet<string> = new Set(['level', 'time', 'pid', 'conn', 'worker', 'workerpid', 'listeners', 'upstream', 'config', 'file', 'dir', 'plugin', 'plugins', 'hook', 'code', 'reply', 'rep', 'command', 'version', 'protocol', 'source', 'signal']);

// IPv4 dotted quads; IPv6 text (two or more colons between hex groups, with brackets, an embedded
// IPv4 tail or a zone id); DNS names as socksmith logs them, normalised to lower case
// (src/protocol/names.ts): two or more labels, the last one not all digits. Config keys in
// camelCase (`limits.maxConnections`) are not names and stay readable.
const IPV4_TEXT = /(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?!\w)/g;
const IPV6_TEXT = /(?<![\w:.])\[?(?:[0-9a-f]{0,4}:){2,7}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9a-f]{1,4})?(?:%[\w.-]+)?\]?(?!\w)/gi;
const NAME_TEXT = /(?<![\w.-])(?:[a-z0-9_*-]+\.)+[a-z0-9_-]*[a-z_-][a-z0-9_-]*\.?(?![\w-])/g;

/** Replace every address and name in free text with {@link SCRUBBED}, and every string of `exact`. */
export function scrubText(text: string, exact: readonly string[] = []): string {
  let out = text;
  for (const s of exact) {
    // Whole words only: a user name `bob` is scrubbed in "user bob refused", not in "bobcat".
    if (s.length > 0 && out.includes(s)) out = out.replace(new RegExp(`(?<![\\w.-])${s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?![\\w-])`, 'g'), SCRUBBED);
  }
  return out.replace(IPV6_TEXT, SCRUBBED).replace(IPV4_TEXT, SCRUBBED).replace(NAME_TEXT, SCRUBBED);
}

/** Scrub one parsed JSON value: sensitive keys replaced whole, config keys kept, other strings through {@link scrubText}. */
function scrubValue(value: unknown, key: string | undefined, exact: readonly string[], depth: number): unknown {
  const k = key?.toLowerCase();
  if (k !== undefined && SENSITIVE_KEYS.has(k)) return value === undefined || value === null ? value : SCRUBBED;
  if (k !== undefined && CONFIG_KEYS.has(k)) return value;
  if (typeof value === 'string') return scrubText(value, exact);
  if (value === null || typeof value !== 'object') return value;
  if (depth > 8) return SCRUBBED;
  if (Array.isArray(value)) return value.map((v) => scrubValue(v, undefined, exact, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k2, v] of Object.entries(value)) out[k2] = scrubValue(v, k2, exact, depth + 1);
  return out;
}

/**
 * The scrub every line goes through with safeLogging on: the whole JSON line, bindings and message
 * included. A line that is not JSON (never written by pino) is scrubbed as text.
 */
export function scrubLine(line: string, exact: readonly string[] = []): string {
  const trailing = line.endsWith('\n') ? '\n' : '';
  try {
    const parsed = JSON.parse(line) as Record<string, unknown>;
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(parsed)) out[k] = k === 'msg' ? scrubValue(v, undefined, exact, 0) : scrubValue(v, k, exact, 0);
    return JSON.stringify(out) + trailing;
  } catch {
    return scrubText(line, exact);
  }
}

/**
 * Create the root logger: JSON lines on stderr, ISO time, level names, passwords redacted, and the
 * safeLogging scrub wired in (off until {@link setSafeLogging} or `options.safeLogging` turns it on).
 * In the `pretty` format ({@link logFormat}) the same (scrubbed) records go through pino-pretty:
 * one human-readable line each, local time, colours on a terminal.
 *
 * `destination` is for tests; production always writes to fd 2.
 */
export function createLogger(level: LogLevel, destination?: pino.DestinationStream, options: { safeLogging?: boolean } = {}): Logger {
  const state: ScrubState = { safe: options.safeLogging === true };
  // Strings of the connection being logged (destination, client address, user name): replaced
  // wherever they appear, also where no pattern would know them (a single-label name in an error
  // text). Handed from the logMethod hook, which knows the child logger, to streamWrite, which
  // runs synchronously inside the same call.
  let exact: readonly string[] = [];
  const logger = pino(
    {
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      // Defence in depth: nothing should ever log a password, but if a plugin logs a whole
      // credentials or upstream object, these paths are replaced.
      redact: { paths: ['password', '*.password', 'credentials', '*.credentials', 'upstream.password'], censor: '[redacted]' },
      hooks: {
        logMethod(this: Logger, args: Parameters<pino.LogFn>, method: pino.LogFn) {
          if (!state.safe) return method.apply(this, args);
          const sensitive = (this as unknown as Scrubbable)[kSensitive];
          exact = sensitive ? sensitive() : [];
          try {
            return method.apply(this, args);
          } finally {
            exact = [];
          }
        },
        streamWrite: (line: string) => (state.safe ? scrubLine(line, exact) : line),
      },
    },
    destination ?? (logFormat() === 'pretty' ? prettyStream() : pino.destination({ fd: 2, sync: false })),
  );
  (logger as unknown as Scrubbable)[kScrub] = state;
  return logger;
}

/**
 * Turn the safeLogging scrub on or off for `logger` (made by {@link createLogger}, or a child of
 * one) and every logger sharing its root. Returns false for a logger socksmith did not create.
 */
export function setSafeLogging(logger: Logger, safe: boolean): boolean {
  const state = (logger as unknown as Scrubbable)[kScrub];
  if (!state) return false;
  state.safe = safe;
  return true;
}

/** True when `logger` was made by {@link createLogger} (or is a child of one), so it can scrub. */
export function canScrub(logger: Logger): boolean {
  return (logger as unknown as Scrubbable)[kScrub] !== undefined;
}

/** True when `logger` scrubs its lines (safeLogging on). */
export function isSafeLogging(logger: Logger): boolean {
  return (logger as unknown as Scrubbable)[kScrub]?.safe === true;
}

/**
 * Attach to a (child) logger the strings that identify its subject, replaced in every line it
 * writes while safeLogging is on; the kernel attaches a connection's destination, client address
 * and user name to the connection's logger.
 */
export function bindSensitive(logger: Logger, strings: () => readonly string[]): void {
  (logger as unknown as Scrubbable)[kSensitive] = strings;
}
