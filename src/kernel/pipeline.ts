/**
 * The one stream pipeline (design of issue 12, §2.3): every front end's request enters here, SOCKS
 * from its handshake, HTTP CONNECT and plugin front ends through `ClientSession.openStream`.
 *
 * runStream: normalise the destination → `onRequest` → a command a plugin registered
 * (`commands.ts`) or the kernel's default decision → the dispatch chain (`dispatch.ts`) →
 * `onReply` → the narrowing of codes outside RFC 1928 (`WideReplyCodes`) → the front end's
 * encoder → relay (`relay.ts`). Functions over the {@link Connection}, which keeps the socket,
 * the timers and the teardown: nothing here allocates per connection beyond what the connection
 * driver did before it was split (docs/performance.md).
 * @packageDocumentation
 */
import { errorMessage, hasCode, PluginHookError, UpstreamError } from '../errors.js';
import type { SocksAddress } from '../protocol/address.js';
import type { SocksRequest } from '../protocol/codec.js';
import { Command, Rep, collapseRep, repName } from '../protocol/constants.js';
import { isOnionName, normalizeDestination } from '../protocol/names.js';
import { onionProblem } from '../protocol/onion.js';
import { repForError } from '../upstream/errors.js';
import { type UpstreamStream, isStream } from '../upstream/types.js';
import { type CommandEntry, CommandStream } from './commands.js';
import { ConnectAbort, lazyDispatchOptions } from './connect-abort.js';
import type { Connection } from './connection.js';
import { onClientData, onClientEndEarly, onIdleTimeout } from './connection.js';
import { channels } from './diagnostics.js';
import { EarlyData } from './early-data.js';
import type { ReplyEncoder, StreamRequest } from './front/types.js';
import { type Reply, callBail, isTapped, isThenable } from './hooks.js';
import { relay } from './relay.js';
import { adopt, discard as discardSocket } from './socket-owner.js';
import { WideReplyCodes } from './stream-keys.js';


// ---------------------------------------------------------------------------------------------
// Commands a plugin registered (api.commands)

/** Hand a request to its command's owner (after onRequest, before the default decision). */
export async function runCommand(c: Connection, entry: CommandEntry, request: StreamRequest): Promise<void> {
  const stream = new CommandStream(c, request);
  try {
    await entry.handler(stream);
  } catch (err) {
    const e = new PluginHookError(entry.owner, 'command', err);
    if (c.isClosed()) {
      c.logHookError(e);
      return;
    }
    c.logHookError(e);
    if (!stream.replied) await answer(c, { rep: repForError(err) }, c.encoder!);
    else c.finish(e);
  }
}

/**
 * A reply that does not start a relay, through `onReply` (a throw keeps the code; 00 becomes 01),
 * the narrowing and the encoder: `final` sends it and closes ({@link answer}); otherwise it is
 * written and the connection stays (a command's `StreamControl.reply`). Resolves true when the
 * connection stays open.
 */
export async function sendReply(c: Connection, reply: Reply, final: boolean): Promise<boolean> {
  const encodeReply = c.encoder!;
  let r = reply;
  try {
    const hook = c.kernel.hooks.onReply;
    if (isTapped(hook)) r = await hook.promise(reply, c.ctx);
  } catch (err) {
    c.logHookError(err);
    r = { rep: reply.rep === Rep.SUCCEEDED ? Rep.GENERAL_FAILURE : reply.rep };
  }
  if (c.isClosed()) return false;
  r = finalReply(c, r);
  c.ctx.reply = r.rep;
  if (final) c.early?.discard();
  const bytes = encodeSafely(c, r, encodeReply);
  if (!final && bytes && bytes !== c.fallbackBytes) {
    c.socket.write(bytes);
    return true;
  }
  if (bytes) c.endWith(bytes);
  else c.finish();
  return false;
}

// ---------------------------------------------------------------------------------------------
// Request

export function pushEarly(c: Connection, chunk: Buffer): void {
  const hook = c.kernel.hooks.onData;
  if (isTapped(hook)) {
    try {
      chunk = hook.call(chunk, c.upInfo);
    } catch (err) {
      c.logHookError(err);
      c.finish(err as Error);
      return;
    }
  }
  c.ctx.bytesUp += chunk.length;
  c.early!.push(chunk);
}

export async function runStream(c: Connection, sent: SocksRequest, encodeReply: ReplyEncoder, leftover: Buffer): Promise<void> {
  const ctx = c.ctx;
  // Every destination name is normalised once, here, where every front end (SOCKS4a, SOCKS5,
  // HTTP CONNECT) enters: hooks, checks, upstreams, isolation and logs all see this one form
  // (src/protocol/names.ts normalizeHost). A name that does not normalise is refused below.
  const destination = normalizeDestination(sent.destination);
  const request = destination === undefined || destination === sent.destination ? sent : { ...sent, destination };
  ctx.request = request;
  c.encoder = encodeReply;
  ctx.destination = request.destination;
  c.phase = 'request';
  c.kernel.handshakeDone(c);
  if (channels.request.hasSubscribers) channels.request.publish({ conn: ctx, handshakeMs: c.kernel.clock.now() - ctx.acceptedAt });
  c.kernel.handshakeDeadlines.delete(c);
  c.early = new EarlyData(c.kernel.config.limits.earlyData, c.socket);
  if (leftover.length > 0) pushEarly(c, Buffer.from(leftover));
  if (c.socket.isPaused() && c.early.bytes < c.kernel.config.limits.earlyData) c.socket.resume();
  if (destination === undefined) {
    ctx.log.debug({ destination: sent.destination.host }, 'destination name does not normalise; refused');
    await answer(c, { rep: Rep.HOST_UNREACHABLE }, encodeReply);
    return;
  }
  let reply: Reply | undefined;
  try {
    const hook = c.kernel.hooks.onRequest;
    if (isTapped(hook)) {
      // At once when every tap answers synchronously (the defaults' isolation, resolve, resolve-ptr on a CONNECT).
      const r = callBail<Reply>(hook, ctx, request);
      reply = isThenable(r) ? await r : r;
    }
    if (c.isClosed()) return;
    if (reply) {
      await answer(c, reply, encodeReply);
      return;
    }
    if (request.command !== Command.CONNECT && c.kernel.commands.size > 0) {
      // A command a plugin registered (api.commands): its owner drives the stream.
      const entry = c.kernel.commands.lookup(request.command, request.version);
      if (entry !== undefined) return await runCommand(c, entry, request);
    }
    reply = defaultDecision(c, request);
    if (reply) {
      await answer(c, reply, encodeReply);
      return;
    }
  } catch (err) {
    if (c.isClosed()) return;
    if (!(typeof (err as { rep?: unknown })?.rep === 'number')) c.logHookError(err);
    await answer(c, { rep: repForError(err) }, encodeReply);
    return;
  }
  await connect(c, ctx.destination ?? request.destination, encodeReply);
}

/** The kernel's own answer for requests no plugin answered; `undefined` means "connect". */
export function defaultDecision(c: Connection, request: SocksRequest): Reply | undefined {
  if (request.command !== Command.CONNECT) return { rep: Rep.COMMAND_NOT_SUPPORTED };
  const d = c.ctx.destination ?? request.destination;
  // Port 0 and the unspecified address can never be a real destination (Tor answers 01 / 5B).
  if (d.port === 0 || d.host === '0.0.0.0' || d.host === '::') return { rep: Rep.GENERAL_FAILURE };
  // A .onion name that is not a valid v3 address never leaves this process, whatever the
  // upstream and whether extended-errors is on: another SOCKS5 server might answer 00 to it.
  // F6 reaches the client only with extended errors on; finalReply collapses it to 01 otherwise.
  if (d.kind === 'domain' && isOnionName(d.host)) {
    const problem = onionProblem(d.host);
    if (problem !== undefined) {
      c.ctx.log.debug({ problem }, 'invalid .onion address; refused');
      return { rep: Rep.ONION_BAD_ADDRESS };
    }
  }
  return undefined;
}

export async function connect(c: Connection, destination: SocksAddress, encodeReply: ReplyEncoder): Promise<void> {
  const ctx = c.ctx;
  // The signal in the options is built only if something reads it (connect-abort.ts); the
  // timeout is the kernel's one queue of connect deadlines (deadlines.ts), not a timer each.
  const deadlines = c.kernel.connectDeadlines;
  const ac = new ConnectAbort(deadlines.durationMs);
  c.connectAbort = ac;
  deadlines.add(ac);
  let up: UpstreamStream;
  const connectStart = c.kernel.clock.now();
  const dispatch = c.kernel.dispatch;
  ctx.upstream ??= dispatch.upstreamName;
  try {
    // `early` stays undefined unless an interceptor grants early sending (optimistic-data): the held bytes then go with the connect.
    const r = await dispatch.run(destination, ctx, lazyDispatchOptions(Command.CONNECT, undefined, c.early, ac));
    if (!isStream(r)) throw new UpstreamError(r.rep === Rep.SUCCEEDED ? Rep.GENERAL_FAILURE : r.rep, 'an upstream interceptor answered CONNECT with a reply, not a stream');
    up = r;
  } catch (err) {
    if (c.isClosed()) return;
    const rep = repForError(err);
    const cause = (err as { cause?: unknown })?.cause;
    // Under log.safeLogging the message (which names the destination) is reduced to its code.
    ctx.failure = c.kernel.config.log.safeLogging ? String((err as { code?: unknown })?.code ?? 'connect failed') : errorMessage(err);
    if (hasCode(err, 'SOCKSMITH_ERR_PLUGIN_HOOK')) c.logHookError(err);
    else if (hasCode(cause, 'SOCKSMITH_ERR_PLUGIN_HOOK')) c.logHookError(cause);
    else ctx.log.debug({ err: errorMessage(err), rep: repName(rep) }, 'upstream connect failed');
    c.early?.discard();
    await answer(c, { rep }, encodeReply);
    return;
  } finally {
    deadlines.delete(ac);
    c.connectAbort = undefined;
  }
  if (c.isClosed()) {
    discardSocket(up.stream);
    return;
  }
  // The kernel owns the upstream socket from here; an error held since its connect arrives now.
  adopt(up.stream, c);
  c.upstream = up;
  if (channels.connected.hasSubscribers) channels.connected.publish({ conn: ctx, connectMs: c.kernel.clock.now() - connectStart });
  let reply: Reply = { rep: Rep.SUCCEEDED, bound: up.bound };
  try {
    const hook = c.kernel.hooks.onReply;
    if (isTapped(hook)) reply = await hook.promise(reply, ctx);
  } catch (err) {
    c.logHookError(err);
    reply = { rep: Rep.GENERAL_FAILURE };
  }
  if (c.isClosed()) return;
  if (c.upstreamError && reply.rep === Rep.SUCCEEDED) {
    // The destination went away (reset, EPIPE) before the client was told: say so instead.
    reply = { rep: repForError(c.upstreamError) };
  }
  reply = finalReply(c, reply);
  ctx.reply = reply.rep;
  const bytes = encodeSafely(c, reply, encodeReply);
  // A plugin turned success into failure (or its reply could not be encoded): honour the
  // failure, never relay.
  if (!bytes || reply.rep !== Rep.SUCCEEDED || bytes === c.fallbackBytes) {
    c.early?.discard();
    c.upstream = undefined;
    discardSocket(up.stream); // never relayed: close it now, not when the client finally goes
    if (bytes) c.endWith(bytes);
    else c.finish();
    return;
  }
  c.socket.write(bytes);
  startRelay(c, up);
}

/** The last word on a reply: a code outside RFC 1928 (> 08) is narrowed (`collapseRep`) unless the stream allows wide reply codes (`WideReplyCodes`). */
export function finalReply(c: Connection, reply: Reply): Reply {
  if (reply.rep <= Rep.ADDRESS_TYPE_NOT_SUPPORTED || c.ctx.get(WideReplyCodes) === true) return reply;
  return { ...reply, rep: collapseRep(reply.rep) };
}

/** Send a final reply (through onReply) and close: {@link sendReply}, final (no extra promise). */
export function answer(c: Connection, reply: Reply, encodeReply: ReplyEncoder): Promise<boolean> {
  c.encoder = encodeReply;
  return sendReply(c, reply, true);
}

/**
 * Encode a reply; if a plugin produced one that cannot be encoded (a name over 255 bytes, a
 * bad IP string), log it and send a general failure instead (recorded in `fallbackBytes`), or
 * `undefined` when even that cannot be encoded.
 */
export function encodeSafely(c: Connection, reply: Reply, encodeReply: ReplyEncoder): Buffer | undefined {
  try {
    return encodeReply(reply, c.ctx.request!);
  } catch (err) {
    c.ctx.log.warn({ err: errorMessage(err), rep: repName(reply.rep) }, 'reply cannot be encoded; sending general failure');
    c.ctx.reply = Rep.GENERAL_FAILURE;
    try {
      c.fallbackBytes = encodeReply({ rep: Rep.GENERAL_FAILURE }, c.ctx.request!);
      return c.fallbackBytes;
    } catch {
      return undefined;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Relay

export function startRelay(c: Connection, up: UpstreamStream): void {
  c.phase = 'relay';
  c.socket.removeListener('data', onClientData);
  c.socket.removeListener('end', onClientEndEarly);
  // Early bytes not yet sent (optimistic data off, or the upstream did not take them) go now,
  // ahead of anything read later. None after a command's hold(), which discarded them.
  c.early?.attach(up.stream);
  c.early = undefined;
  const idle = c.kernel.config.timeouts.idle;
  if (idle > 0) {
    c.socket.setTimeout(idle);
    c.socket.on('timeout', onIdleTimeout);
  }
  const hook = c.kernel.hooks.onData;
  const tapped = isTapped(hook);
  relay(c.socket, up.stream, {
    ctx: c.ctx,
    onData: tapped ? hook : undefined,
    upInfo: tapped ? c.upInfo : undefined,
    downInfo: tapped ? c.downInfo : undefined,
    done: (err) => c.relayEnded(err),
  });
}

