/**
 * The access log: one `info` line per stream when it closes, and one per client a plugin refused
 * at accept.
 *
 * With JSON lines and safeLogging off (the defaults) each line is built here as one string, in
 * the order and form pino would write it (`level`, `time`, the logger's bindings: `pid`, a
 * worker's `worker`; then the fields; `msg` last; undefined fields left out) and handed to the
 * logger's stream, which batches up to 10 ms of lines into one write (src/logger.ts):
 * no record object, child logger or serializer per connection. Otherwise (pino-pretty, or
 * `log.safeLogging` on, or a logger socksmith did not create) the record goes through pino: under
 * safeLogging through the connection's own logger, whose scrub also knows the connection's
 * destination, client and user strings (src/logger.ts), the one scrub path.
 * @packageDocumentation
 */
import { performance } from 'node:perf_hooks';
import { errorMessage } from '../errors.js';
import { type Logger, isSafeLogging, jsonLineStream } from '../logger.js';
import { formatAddress } from '../protocol/address.js';
import { commandName, repName } from '../protocol/constants.js';
import type { ConnectionContext } from './context.js';
import type { Kernel } from './kernel.js';

/**
 * True when `s` holds a character a JSON string cannot hold as it is: a quote, a backslash, a
 * control character or a lone surrogate (any surrogate, to keep the test simple: a name with one
 * is escaped by JSON.stringify, which writes a valid pair as it is). A loop, not a RegExp: the
 * access line tests a few short strings per stream, where a RegExp call costs more than the scan.
 */
function needsEscape(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x22 || c === 0x5c || (c >= 0xd800 && c <= 0xdfff)) return true;
  }
  return false;
}

/** `s` as a JSON string: quoted as it is when nothing needs escaping, else by JSON.stringify. */
function str(s: string): string {
  return needsEscape(s) ? JSON.stringify(s) : `"${s}"`;
}

let isoMs = -1;
let isoText = '';
/** Date.now() − performance.now(), refreshed once a second (a clock step shows within a second). */
let wallOffset = 0;
let wallOffsetAt = Number.NEGATIVE_INFINITY;
/**
 * The time as `new Date().toISOString()` gives it, from the monotonic clock plus an offset to the
 * wall clock read once a second, and formatted once per millisecond: a busy proxy closes several
 * streams in one, and `Date.now()` is a runtime call each time.
 */
function isoNow(): string {
  const mono = performance.now();
  if (mono - wallOffsetAt >= 1000) {
    wallOffset = Date.now() - mono;
    wallOffsetAt = mono;
  }
  const ms = Math.floor(wallOffset + mono);
  if (ms !== isoMs) {
    isoMs = ms;
    isoText = new Date(ms).toISOString();
  }
  return isoText;
}

/** `,"key":"value"`, or nothing when the value is undefined (pino leaves undefined fields out). */
function opt(key: string, value: string | undefined): string {
  return value === undefined ? '' : `,"${key}":${str(value)}`;
}

/**
 * `stream closed`: client, user (when a plugin authenticated one), version, command,
 * destination, upstream, reply, refusal (reason and rule) or failure (the connect error), bytes
 * and duration. `err` is the relay's error, when the tunnel ended with one.
 */
export function logStreamClosed(kernel: Kernel, ctx: ConnectionContext, err: Error | undefined): void {
  const request = ctx.request!;
  const durationMs = Math.round(kernel.clock.now() - ctx.acceptedAt);
  const fast = jsonLineStream(kernel.logger);
  if (fast) {
    fast.stream.write(
      `{"level":"info","time":"${isoNow()}"${fast.bindings},"conn":${ctx.id},"client":${str(ctx.clientAddress)}${opt('user', ctx.user)},"version":${ctx.version},"command":"${commandName(request.command)}","destination":${str(formatAddress(request.destination))}${opt('upstream', ctx.upstream)}${ctx.reply === undefined ? '' : `,"reply":"${repName(ctx.reply)}"`}${opt('refused', ctx.refusal)}${opt('failure', ctx.failure)},"bytesUp":${ctx.bytesUp},"bytesDown":${ctx.bytesDown},"durationMs":${durationMs}${opt('err', err ? errorMessage(err) : undefined)},"msg":"stream closed"}\n`,
    );
    return;
  }
  const [log, conn] = loggerFor(kernel, ctx);
  log.info(
    {
      conn,
      client: ctx.clientAddress,
      user: ctx.user,
      version: ctx.version,
      command: commandName(request.command),
      destination: kernel.config.log.safeLogging ? '[scrubbed]' : formatAddress(request.destination),
      upstream: ctx.upstream,
      reply: ctx.reply === undefined ? undefined : repName(ctx.reply),
      refused: ctx.refusal,
      failure: ctx.failure,
      bytesUp: ctx.bytesUp,
      bytesDown: ctx.bytesDown,
      durationMs,
      err: err ? errorMessage(err) : undefined,
    },
    'stream closed',
  );
}

/** `connection refused`: a client an `onAccept` tap closed (the policy plugin's client ACL), with its reason. */
export function logConnectionRefused(kernel: Kernel, ctx: ConnectionContext): void {
  const fast = jsonLineStream(kernel.logger);
  if (fast) {
    fast.stream.write(
      `{"level":"info","time":"${isoNow()}"${fast.bindings},"conn":${ctx.id},"client":${str(ctx.clientAddress)},"refused":${str(ctx.refusal ?? 'onAccept')},"msg":"connection refused"}\n`,
    );
    return;
  }
  const [log, conn] = loggerFor(kernel, ctx);
  log.info({ conn, client: ctx.clientAddress, refused: ctx.refusal ?? 'onAccept' }, 'connection refused');
}

/** The root logger and the `conn` field; under safeLogging the connection's logger (it binds `conn` itself). */
function loggerFor(kernel: Kernel, ctx: ConnectionContext): [Logger, number | undefined] {
  return isSafeLogging(kernel.logger) ? [ctx.log, undefined] : [kernel.logger, ctx.id];
}
