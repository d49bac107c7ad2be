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
import { errorMessage } from '../errors.js';
import { type Logger, isSafeLogging, jsonLineStream } from '../logger.js';
import { formatAddress } from '../protocol/address.js';
import { commandName, repName } from '../protocol/constants.js';
import type { ConnectionContext } from './context.js';
import type { Kernel } from './kernel.js';

// Characters a JSON string cannot hold as they are: quote, backslash, controls, lone surrogates.
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;

/** `s` as a JSON string: quoted as it is when nothing needs escaping, else by JSON.stringify. */
function str(s: string): string {
  return NEEDS_ESCAPE.test(s) ? JSON.stringify(s) : `"${s}"`;
}

let isoMs = -1;
let isoText = '';
/** `new Date().toISOString()`, built once per millisecond (a busy proxy closes several streams in one). */
function isoNow(): string {
  const now = Date.now();
  if (now !== isoMs) {
    isoMs = now;
    isoText = new Date(now).toISOString();
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
      `{"level":"info","time":"${isoNow()}"${fast.bindings},"conn":${ctx.id},"client":${str(ctx.clientAddress)}${opt('user', ctx.user)},"version":${ctx.version},"command":${str(commandName(request.command))},"destination":${str(formatAddress(request.destination))}${opt('upstream', ctx.upstream)}${opt('reply', ctx.reply === undefined ? undefined : repName(ctx.reply))}${opt('refused', ctx.refusal)}${opt('failure', ctx.failure)},"bytesUp":${ctx.bytesUp},"bytesDown":${ctx.bytesDown},"durationMs":${durationMs}${opt('err', err ? errorMessage(err) : undefined)},"msg":"stream closed"}\n`,
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
