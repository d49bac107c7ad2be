/**
 * Structured logging with pino, to stderr, so stdout keeps only the `listening on` lines.
 *
 * `log.safeLogging` (Tor's SafeLogging) is enforced here, in the logger, not at call sites: every
 * line a logger from {@link createLogger} writes, at every level, from the kernel, a plugin or a
 * child logger, passes one scrub ({@link scrubLine}) before it reaches the stream.
 * @packageDocumentation
 */
import fs from 'node:fs';
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
const kJson = Symbol('socksmith.logger.json');

type Scrubbable = { [kScrub]?: ScrubState; [kSensitive]?: () => readonly string[]; [kJson]?: boolean };

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
 * `destination` is for tests; production always writes to fd 2 (JSON: batched, non-blocking,
 * holding at most `options.bufferLimit` bytes, default {@link LOG_BUFFER_LIMIT}, for a slow reader).
 */
export function createLogger(level: LogLevel, destination?: pino.DestinationStream, options: { safeLogging?: boolean; bufferLimit?: number } = {}): Logger {
  const pretty = destination === undefined && logFormat() === 'pretty';
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
    destination ?? (pretty ? prettyStream() : (new BatchedStderr(options.bufferLimit ?? LOG_BUFFER_LIMIT) as unknown as pino.DestinationStream)),
  );
  (logger as unknown as Scrubbable)[kScrub] = state;
  // JSON lines (not pino-pretty): the access log may write preformatted lines to the stream.
  if (destination !== undefined || !pretty) (logger as unknown as Scrubbable)[kJson] = true;
  return logger;
}

/**
 * How many bytes of log lines may wait in memory for stderr (8 MiB, some 30,000 access lines).
 * A reader that does not keep up (a blocked pipe, a stopped terminal) costs at most this much;
 * lines beyond it are dropped whole and counted, and one `warn` line says how many once stderr
 * takes lines again ({@link BatchedStderr}).
 */
export const LOG_BUFFER_LIMIT = 8 * 1024 * 1024;

/**
 * The JSON destination on fd 2. Lines are collected for {@link LOG_BATCH_MS} ms from the first
 * one and written with one `write(2)` from the main thread: under load one write carries dozens
 * to hundreds of lines (a write per event-loop turn still cost ~10 % of a handshake: the pipe
 * write and the reader's wake-up), a line waits at most 10 ms, and no thread-pool round trip is
 * paid per write (pino's sonic-boom writes from libuv's thread pool). A pipe or socket on fd 2
 * is put in non-blocking mode (Node's own stderr handle does that), so a reader that falls behind
 * never blocks the proxy: what it does not take yet (EAGAIN or a short write) waits in memory and
 * is retried every 10 ms, up to `limit` bytes. A batch that would pass the limit is dropped whole
 * (lines are never split) and counted, and the next batch written starts with a `warn` line
 * `{"linesDropped": N}`. On exit (`process.exit` included) everything waiting is written
 * synchronously, for at most 2 s if stderr stays full.
 */
/** How long a JSON log line may wait for others to share its write (ms). */
export const LOG_BATCH_MS = 10;

/** The JSON destinations that wrote a line: each writes what still waits on exit. */
const exitFlush = new Set<{ flushSync(): void }>();

let stderrChecked = false;

/** Put a pipe or socket on fd 2 in non-blocking mode, once: Node's stderr handle does (libuv's uv_pipe_open). */
function nonBlockingStderr(): void {
  if (stderrChecked) return;
  stderrChecked = true;
  try {
    const st = fs.fstatSync(2);
    if (st.isFIFO() || st.isSocket()) void process.stderr.writable;
  } catch {
    /* no fd 2: writes fail and stop */
  }
}

class BatchedStderr {
  private pending = '';
  private scheduled = false;
  /** Bytes the fd did not take yet, in order (only when it returned EAGAIN or a short write). */
  private readonly waiting: Buffer[] = [];
  private waitingBytes = 0;
  private retry: NodeJS.Timeout | undefined;
  private dropped = 0;
  private dead = false;
  private readonly flushNow = (): void => this.drainPending();
  private readonly drained: Array<() => void> = [];

  private registered = false;

  constructor(
    private readonly limit: number,
    private readonly fd = 2,
  ) {}

  /** One line from pino, or a preformatted access line. */
  write(line: string): boolean {
    if (!this.registered) {
      // On the first line (a silent logger never gets here): non-blocking fd, flush on exit.
      this.registered = true;
      nonBlockingStderr();
      exitFlush.add(this);
      if (exitFlush.size === 1) process.once('exit', () => exitFlush.forEach((b) => b.flushSync()));
    }
    this.pending += line;
    if (!this.scheduled) {
      this.scheduled = true;
      setTimeout(this.flushNow, LOG_BATCH_MS);
    }
    return true;
  }

  private drainPending(): void {
    this.scheduled = false;
    if (this.pending === '') return;
    let batch = this.pending;
    this.pending = '';
    if (this.waitingBytes + Buffer.byteLength(batch) > this.limit) {
      let n = 0;
      for (let i = batch.indexOf('\n'); i !== -1; i = batch.indexOf('\n', i + 1)) n++;
      this.dropped += n;
      return;
    }
    if (this.dropped > 0) {
      batch = `{"level":"warn","time":"${new Date().toISOString()}","pid":${process.pid},"linesDropped":${this.dropped},"msg":"log lines dropped: stderr did not take them fast enough (log buffer full)"}\n${batch}`;
      this.dropped = 0;
    }
    const buf = Buffer.from(batch);
    if (this.waiting.length > 0) this.queue(buf);
    else this.writeOut(buf);
  }

  private queue(buf: Buffer): void {
    this.waiting.push(buf);
    this.waitingBytes += buf.length;
    this.retry ??= setTimeout(() => this.retryWaiting(), 10);
  }

  /** Write `buf` now; what the fd does not take waits. */
  private writeOut(buf: Buffer): void {
    if (this.dead) return;
    let n: number;
    try {
      n = fs.writeSync(this.fd, buf);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') return this.queue(buf);
      // EPIPE, EBADF: nobody reads stderr any more; stop writing (as pino does on EPIPE).
      this.dead = true;
      return;
    }
    if (n < buf.length) this.queue(buf.subarray(n));
    else this.signalDrained();
  }

  private retryWaiting(): void {
    this.retry = undefined;
    while (this.waiting.length > 0 && !this.dead) {
      const buf = this.waiting[0]!;
      let n: number;
      try {
        n = fs.writeSync(this.fd, buf);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') this.dead = true;
        break;
      }
      this.waitingBytes -= n;
      if (n < buf.length) {
        this.waiting[0] = buf.subarray(n);
        break;
      }
      this.waiting.shift();
    }
    if (this.dead) {
      this.waiting.length = 0;
      this.waitingBytes = 0;
    }
    if (this.waiting.length > 0) this.retry = setTimeout(() => this.retryWaiting(), 10);
    else this.signalDrained();
  }

  private signalDrained(): void {
    for (const cb of this.drained.splice(0)) cb();
  }

  /** pino's `logger.flush(cb)`: write the collected lines now; `cb` once nothing waits. */
  flush(cb?: (err?: Error) => void): void {
    this.drainPending();
    if (!cb) return;
    if (this.waiting.length === 0) cb();
    else this.drained.push(() => cb());
  }

  /** Write everything now, blocking; bounded to 2 s of a full stderr (on exit). */
  flushSync(): void {
    this.drainPending();
    if (this.retry) clearTimeout(this.retry);
    this.retry = undefined;
    const deadline = Date.now() + 2000;
    const nap = new Int32Array(new SharedArrayBuffer(4));
    for (let i = 0; i < 100_000 && this.waiting.length > 0 && !this.dead; i++) {
      this.retryWaiting();
      if (this.retry) clearTimeout(this.retry);
      this.retry = undefined;
      if (this.waiting.length === 0 || Date.now() > deadline) break;
      Atomics.wait(nap, 0, 0, 5);
    }
  }
}

/**
 * Where the access log writes its preformatted lines for `logger`, with the fields `logger` adds
 * to every line (`,"pid":N` and a worker's `,"worker":N`); undefined when pino must write the
 * line itself: pretty format, safeLogging on (the scrub runs in pino's hooks), or a logger
 * socksmith did not create.
 */
export function jsonLineStream(logger: Logger): { stream: pino.DestinationStream; bindings: string } | undefined {
  const l = logger as unknown as Scrubbable & Record<symbol, unknown>;
  if (l[kJson] !== true || l[kScrub]?.safe !== false) return undefined;
  return { stream: l[pino.symbols.streamSym] as pino.DestinationStream, bindings: l[pino.symbols.chindingsSym] as string };
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
