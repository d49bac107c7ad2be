/**
 * The access log: one `info` line per stream when it closes, and one per client a plugin refused
 * at accept. Written through the root logger with the connection id in the record: no child
 * logger and nothing else is built per connection (the line costs one object and pino's
 * serialization). With `log.safeLogging` on, through the connection's own logger instead, whose
 * scrub also knows the connection's destination, client and user strings (src/logger.ts).
 * @packageDocumentation
 */
import { errorMessage } from '../errors.js';
import { type Logger, isSafeLogging } from '../logger.js';
import { formatAddress } from '../protocol/address.js';
import { commandName, repName } from '../protocol/constants.js';
import type { ConnectionContext } from './context.js';
import type { Kernel } from './kernel.js';

/**
 * `stream closed`: client, user (when a plugin authenticated one), version, command,
 * destination, upstream, reply, refusal (reason and rule) or failure (the connect error), bytes
 * and duration. `err` is the relay's error, when the tunnel ended with one.
 */
export function logStreamClosed(kernel: Kernel, ctx: ConnectionContext, err: Error | undefined): void {
  const request = ctx.request!;
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
      durationMs: Math.round(kernel.clock.now() - ctx.acceptedAt),
      err: err ? errorMessage(err) : undefined,
    },
    'stream closed',
  );
}

/** `connection refused`: a client an `onAccept` tap closed (the policy plugin's client ACL), with its reason. */
export function logConnectionRefused(kernel: Kernel, ctx: ConnectionContext): void {
  const [log, conn] = loggerFor(kernel, ctx);
  log.info({ conn, client: ctx.clientAddress, refused: ctx.refusal ?? 'onAccept' }, 'connection refused');
}

/** The root logger and the `conn` field; under safeLogging the connection's logger (it binds `conn` itself). */
function loggerFor(kernel: Kernel, ctx: ConnectionContext): [Logger, number | undefined] {
  return isSafeLogging(kernel.logger) ? [ctx.log, undefined] : [kernel.logger, ctx.id];
}
