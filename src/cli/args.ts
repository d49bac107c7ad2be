/**
 * Command-line parsing with node's built-in `util.parseArgs`.
 * @packageDocumentation
 */
import { parseArgs } from 'node:util';
import { ConfigError } from '../errors.js';
import { MAX_WORKERS, type ListenConfig } from '../config/schema.js';
import { LOG_FORMATS, LOG_LEVELS, type LogFormat } from '../logger.js';

/** Parsed command line. */
export interface CliArgs {
  readonly config: string | undefined;
  readonly listen: ListenConfig[];
  readonly help: boolean;
  readonly version: boolean;
  readonly check: boolean;
  readonly logLevel: string | undefined;
  /** `--log-format json|pretty`; undefined: pretty when stderr is a terminal, JSON otherwise. */
  readonly logFormat: LogFormat | undefined;
  /** `--workers N|auto`: overrides the config's `workers`. */
  readonly workers: number | 'auto' | undefined;
}

/** The `--help` text. */
export const USAGE = `Usage: socksmith [options]
       socksmith passwd [--socks4] [--users-file FILE] USER

A plugin-based SOCKS4/4a/5 proxy with Tor's SOCKS extensions.

Options:
  -c, --config FILE       load FILE (.ts .js .mjs .json .yaml) instead of searching
                          for proxy.config.ts (and friends) in the working directory
  -l, --listen HOST:PORT  listen here instead of the config's listeners; repeatable;
                          IPv6 as [::1]:1080; port 0 picks a free port; unix:/path
                          for a unix socket
      --log-level LEVEL   fatal, error, warn, info, debug, trace or silent
      --log-format FORMAT json or pretty (default: pretty when stderr is a
                          terminal, json otherwise)
      --workers N|auto    serve with N processes (node:cluster); auto: one per CPU
      --check             run every check a start runs (config, plugins and their
                          start(), the open-proxy guard), bind nothing, say which
                          listen addresses are taken right now, and exit
  -h, --help              show this help
  -V, --version           print the version

passwd prints a users-file line for the auth plugin (password from the terminal,
not echoed, or the first line of stdin); with --users-file it adds or replaces USER's
line in FILE.

Prints "socksmith listening on HOST:PORT" on stdout per listener once all are bound
(and "socksmith metrics on HOST:PORT" with metrics on); logs go to stderr (JSON lines,
or pretty lines on a terminal). SIGTERM/SIGINT drain open tunnels (timeouts.drain),
then exit 0 (with workers: every worker drains, then the primary exits 0); SIGHUP
reloads the config.
Exit codes: 0 ok, 64 bad flags, 69 cannot listen, 70 runtime error, 78 bad config.
Docs: README.md, docs/ and plugins/*/README.md in the package.`;

/** Parse `HOST:PORT`, `[IPv6]:PORT` or `unix:/path`. */
export function parseListen(value: string): ListenConfig {
  if (value.startsWith('unix:') && value.length > 5) return { path: value.slice(5) };
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(value) ?? /^([^:\s]+):(\d+)$/.exec(value);
  if (!m || Number(m[2]) > 65535) throw new ConfigError('--listen', `must be HOST:PORT or [IPv6]:PORT, got ${JSON.stringify(value)}`);
  return { host: m[1]!, port: Number(m[2]) };
}

/** Parse `--workers`: an integer 1–{@link MAX_WORKERS} or `auto`. */
export function parseWorkers(value: string | undefined): number | 'auto' | undefined {
  if (value === undefined || value === 'auto') return value;
  const n = /^\d{1,7}$/.test(value) ? Number(value) : NaN;
  if (!(n >= 1 && n <= MAX_WORKERS)) throw new ConfigError('--workers', `must be an integer from 1 to ${MAX_WORKERS} or auto, got ${JSON.stringify(value)}`);
  return n;
}

/** Parse argv (without node and script). Throws a ConfigError with key `--flag` on bad input. */
export function parseCliArgs(argv: readonly string[]): CliArgs {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        config: { type: 'string', short: 'c' },
        listen: { type: 'string', short: 'l', multiple: true },
        'log-level': { type: 'string' },
        'log-format': { type: 'string' },
        workers: { type: 'string' },
        check: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
        version: { type: 'boolean', short: 'V', default: false },
      },
    }));
  } catch (err) {
    throw new ConfigError('', (err as Error).message.split('\n')[0] ?? 'bad arguments');
  }
  const logLevel = values['log-level'];
  if (logLevel !== undefined && !(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new ConfigError('--log-level', `must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(logLevel)}`);
  }
  const logFormat = values['log-format'];
  if (logFormat !== undefined && !(LOG_FORMATS as readonly string[]).includes(logFormat)) {
    throw new ConfigError('--log-format', `must be one of ${LOG_FORMATS.join(', ')}, got ${JSON.stringify(logFormat)}`);
  }
  return {
    logFormat: logFormat as LogFormat | undefined,
    workers: parseWorkers(values.workers),
    config: values.config,
    listen: (values.listen ?? []).map(parseListen),
    help: values.help ?? false,
    version: values.version ?? false,
    check: values.check ?? false,
    logLevel,
  };
}
