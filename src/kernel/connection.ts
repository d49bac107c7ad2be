/**
 * The per-connection driver. It owns the client socket: a plugin that takes a connection over
 * (`Takeover`, http-detect) reads and writes it through the takeover object, and only this
 * driver ends or destroys it.
 *
 * It feeds bytes to the sans-IO handshake, calls the hooks, writes replies in order, opens the
 * upstream, then relays with backpressure and half-close. Every way a connection ends goes
 * through one idempotent {@link Connection.finish}. docs/architecture.md draws the lifecycle.
 * @packageDocumentation
 */
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { PluginHookError, errorMessage, hasCode } from '../errors.js';
import { type SocksAddress, ZERO_ADDRESS } from '../protocol/address.js';
import type { SocksRequest } from '../protocol/codec.js';
import { encodeSocks4Reply, encodeSocks5Reply } from '../protocol/codec.js';
import { Command, Method, Rep, Socks4Rep, collapseRep, repName } from '../protocol/constants.js';
import { isOnionName, normalizeDestination } from '../protocol/names.js';
import { onionProblem } from '../protocol/onion.js';
import { ServerHandshake, socks4Rejection, socks5ErrorReply } from '../protocol/server-handshake.js';
import { repForError } from '../upstream/errors.js';
import { type UpstreamStream, isStream } from '../upstream/types.js';
import { UpstreamError } from '../errors.js';
import { ConnectionContext, type Credentials, type SignalSource } from './context.js';
import { EarlyData } from './early-data.js';
import { channels } from './diagnostics.js';
import { type DataInfo, type GreetingDecision, type HandshakeOutcome, type Reply, type Takeover, isTapped } from './hooks.js';
import { WideReplyCodes } from './stream-keys.js';
import type { Kernel } from './kernel.js';
import { relay } from './relay.js';
import { logStreamClosed } from './access-log.js';
import { type SocketOwner, DISCARD, adopt, discard as discardSocket, resetOrDestroy } from './socket-owner.js';

type Phase = 'handshake' | 'request' | 'relay' | 'takeover' | 'closing' | 'closed';

/** Abort reason when a connection is torn down (one shared object: no allocation per connection). */
const CLIENT_GONE = new UpstreamError(Rep.GENERAL_FAILURE, 'client connection closed');

/**
 * Why a tunnel is cut by the proxy itself (drain deadline, second signal). Both sides are reset,
 * as for an ECONNRESET, so neither peer takes the cut for a clean end of the stream.
 */
const TUNNEL_CUT = Object.assign(new Error('tunnel cut at shutdown (drain deadline or second signal)'), { code: 'SOCKSMITH_TUNNEL_CUT' });

/** How long a connection that was answered and ended may linger for the client to read and close. */
const LINGER_MS = 5000;

/** The handshake buffer when empty (one shared instance: no allocation per connection). */
const EMPTY = Buffer.alloc(0);

const kConn = Symbol('socksmith.connection');

/** The client socket, which knows its driver. */
type ClientSocket = Socket & { [kConn]?: Connection };

// Socket and timer listeners are module-level functions shared by every connection; they find
// their connection through `kConn`. A closure per listener per connection would cost heap for
// every open tunnel and allocations on every accept (docs/performance.md).
function onClientData(this: ClientSocket, chunk: Buffer): void {
  this[kConn]!.handshakeData(chunk);
}
function onClientClose(this: ClientSocket): void {
  this[kConn]!.socketClose();
}
function onClientEndEarly(this: ClientSocket): void {
  this[kConn]!.clientEndEarly();
}
function onIdleTimeout(this: ClientSocket): void {
  const c = this[kConn]!;
  c.ctx.log.debug('idle timeout');
  c.finish();
}
function onHandshakeTimeout(c: Connection): void {
  c.handshakeTimeout();
}
function onLingerTimeout(c: Connection): void {
  c.finish();
}
function onConnectTimeout(ac: AbortController, timeout: number): void {
  ac.abort(new UpstreamError(Rep.TTL_EXPIRED, `connect timeout after ${timeout} ms`, { code: 'SOCKSMITH_ERR_UPSTREAM_TIMEOUT' }));
}
function discard(): void {}

/** Encode a reply for SOCKS5: `05 REP 00 ATYP BND.ADDR BND.PORT`. */
function encodeReplyV5(reply: Reply): Buffer {
  return encodeSocks5Reply(reply.rep, reply.bound ?? ZERO_ADDRESS);
}

/**
 * Encode a reply for SOCKS4: 5A for success, 5B otherwise. The address field carries a RESOLVE
 * answer; CONNECT replies carry zeros, as Tor sends them.
 */
function encodeReplyV4(reply: Reply, request: SocksRequest): Buffer {
  if (reply.rep !== Rep.SUCCEEDED) return socks4Rejection();
  const b = reply.bound;
  if (request.command !== Command.CONNECT && b && b.kind === 'ipv4') return encodeSocks4Reply(Socks4Rep.GRANTED, 0, b.host);
  return encodeSocks4Reply(Socks4Rep.GRANTED);
}

/** One client connection. */
export class Connection implements SignalSource, SocketOwner {
  readonly ctx: ConnectionContext;
  private phase: Phase = 'handshake';
  private readonly hs = new ServerHandshake();
  private buf: Buffer = EMPTY;
  private off = 0;
  private processing = false;
  private greeted = false;
  private handshakeTimer: NodeJS.Timeout | undefined;
  private lingerTimer: NodeJS.Timeout | undefined;
  private early: EarlyData | undefined;
  private upstream: UpstreamStream | undefined;
  /** An error of the upstream socket after it connected and before the relay took it. */
  private upstreamError: Error | undefined;
  /** Created on first use of `ctx.signal`; aborted by the teardown. */
  private abort: AbortController | undefined;
  /** The connect in progress, aborted directly by the teardown. */
  private connectAbort: AbortController | undefined;
  /** onData's second argument per direction, built when a plugin taps onData. */
  private upInfoObj: DataInfo | undefined;
  private downInfoObj: DataInfo | undefined;
  private closeWaiters: Array<() => void> | undefined;
  /** How the handshake ended when no request came (set where it ends; default client_closed). */
  private outcome: HandshakeOutcome | undefined;

  constructor(
    private readonly kernel: Kernel,
    private readonly socket: ClientSocket,
    ctxInit: Omit<ConstructorParameters<typeof ConnectionContext>[0], 'signal'>,
  ) {
    this.ctx = new ConnectionContext({ ...ctxInit, signal: this });
    socket[kConn] = this;
    // The client socket's owner from here to the relay (docs/architecture.md, "Socket ownership").
    adopt(socket, this);
  }

  /** The teardown signal, created on first use of `ctx.signal`. @internal */
  teardownSignal(): AbortSignal {
    return (this.abort ??= new AbortController()).signal;
  }

  private get upInfo(): DataInfo {
    return (this.upInfoObj ??= Object.freeze({ conn: this.ctx, direction: 'up' as const }));
  }

  private get downInfo(): DataInfo {
    return (this.downInfoObj ??= Object.freeze({ conn: this.ctx, direction: 'down' as const }));
  }

  /** Start reading; `initial` is data already read from the socket (after a PROXY header). */
  start(initial?: Buffer): void {
    const s = this.socket;
    s.on('data', onClientData);
    s.on('close', onClientClose);
    s.on('end', onClientEndEarly);
    this.handshakeTimer = setTimeout(onHandshakeTimeout, this.kernel.config.timeouts.handshake, this);
    this.handshakeTimer.unref?.();
    if (initial && initial.length > 0) this.handshakeData(initial);
    // A PROXY-protocol listener hands the socket over paused; resume unless the bytes already
    // read are over the handshake bound (then the handshake resumes it when it catches up).
    if (s.isPaused() && this.buf.length - this.off <= this.kernel.config.limits.handshakeBuffer) s.resume();
  }

  /** Resolves when the connection is fully torn down. */
  closed(): Promise<void> {
    if (this.phase === 'closed') return Promise.resolve();
    return new Promise((resolve) => (this.closeWaiters ??= []).push(resolve));
  }

  /** True while bytes flow (after a success reply). */
  get relaying(): boolean {
    return this.phase === 'relay';
  }

  /** True while no request has arrived yet (nothing accepted that could be lost). */
  get handshaking(): boolean {
    return this.phase === 'handshake';
  }

  // ---------------------------------------------------------------------------------------------
  // Socket events before the relay

  /** A chunk from the client before the relay. @internal */
  handshakeData(chunk: Buffer): void {
    if (this.phase === 'request') {
      this.pushEarly(chunk);
      return;
    }
    if (this.phase !== 'handshake') return; // closing: discard what a client sends after its answer
    if (this.off >= this.buf.length) {
      this.buf = chunk;
      this.off = 0;
    } else {
      this.buf = Buffer.concat([this.buf.subarray(this.off), chunk]);
      this.off = 0;
    }
    // Pipelined data beyond what any handshake needs is held but bounded: pause the client until
    // the handshake catches up (never drop).
    if (this.buf.length > this.kernel.config.limits.handshakeBuffer) this.socket.pause();
    if (!this.processing) void this.process();
  }

  /** EOF from the client before the relay. @internal */
  clientEndEarly(): void {
    // EOF before the relay: the client gave up (Tor: no reply). A request already parsed still
    // deserves its answer only while the socket can carry it; half-closed clients (tor-resolve
    // does not, but some scripts do) still get the reply because allowHalfOpen keeps our side open.
    if (this.phase === 'handshake' && !this.processing) this.finish();
  }

  /**
   * @internal An error on a socket this connection owns: the client socket until the relay, the
   * upstream socket between its connect and the relay.
   */
  socketError(socket: Duplex, err: Error): void {
    if (socket === this.socket) {
      this.ctx.log.debug({ err: errorMessage(err) }, 'client socket error');
      this.finish(err);
      return;
    }
    // The upstream failed after it connected, while onReply runs: the client gets the failure's
    // reply instead of a success (connect() checks once onReply is done).
    this.ctx.log.debug({ err: errorMessage(err) }, 'upstream socket error before the relay');
    if (this.phase === 'request') this.upstreamError ??= err;
    else this.finish(err);
  }

  /** @internal */
  socketClose(): void {
    if (this.phase !== 'relay') this.finish();
  }

  /** @internal */
  handshakeTimeout(): void {
    if (this.phase === 'handshake' || this.phase === 'takeover') {
      this.outcome = 'timeout';
      this.finish();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Handshake

  private async process(): Promise<void> {
    this.processing = true;
    try {
      while (this.phase === 'handshake' && this.off < this.buf.length) {
        if (!this.greeted && this.buf[this.off] !== 0x05) {
          // SOCKS4 and unknown protocols meet onGreeting at their first byte (http-detect answers
          // on one byte, as Tor does); SOCKS5 meets it with its whole greeting.
          this.greeted = true;
          const first = this.buf[this.off]!;
          this.ctx.protocol = first === 0x04 ? 'socks4' : 'unknown';
          const pending = this.greeting(first, []);
          const decision = pending && (await pending);
          if (this.phase !== 'handshake') return;
          if (decision && 'takeover' in decision) return this.takeover(decision.takeover);
          if (decision && 'reject' in decision) {
            this.outcome = 'refused';
            return this.endWith(undefined);
          }
          continue;
        }
        const ev = this.hs.step(this.buf, this.off);
        switch (ev.type) {
          case 'need-more':
            if (this.socket.readableEnded) return this.finish(); // EOF mid-handshake: nothing to answer
            if (this.socket.isPaused() && this.phase === 'handshake') this.socket.resume();
            return;
          case 'unknown-protocol':
            this.ctx.log.debug({ firstByte: ev.firstByte }, 'unknown protocol, closing');
            this.outcome = 'protocol_error';
            return this.endWith(undefined);
          case 'error':
            this.ctx.log.debug({ err: ev.error.message, code: ev.error.code }, 'handshake error');
            this.outcome = 'protocol_error';
            if (ev.reply) this.ctx.reply = this.hs.version === 4 ? Rep.GENERAL_FAILURE : ev.reply[1];
            return this.endWith(ev.reply);
          case 'greeting': {
            this.off += ev.length;
            this.greeted = true;
            this.ctx.protocol = 'socks5';
            this.ctx.version = 5;
            const pending = this.greeting(0x05, ev.greeting.methods);
            const decision = pending && (await pending);
            if (this.phase !== 'handshake') return;
            if (decision && 'takeover' in decision) return this.takeover(decision.takeover);
            let method: number;
            if (decision && 'method' in decision) method = decision.method;
            else if (decision && 'reject' in decision) method = Method.NO_ACCEPTABLE;
            else method = defaultMethod(ev.greeting.methods);
            this.ctx.method = method;
            const bytes = this.hs.selectMethod(method);
            if (method === Method.NO_ACCEPTABLE) {
              this.outcome = 'refused';
              return this.endWith(bytes);
            }
            this.socket.write(bytes);
            break;
          }
          case 'auth': {
            this.off += ev.length;
            const credentials: Credentials = { source: 'rfc1929', username: ev.auth.username, password: ev.auth.password };
            this.ctx.credentials = credentials;
            const verdict = this.authenticate(credentials);
            const accepted = verdict === true || (await verdict);
            if (this.phase !== 'handshake') return;
            const bytes = this.hs.authResult(accepted);
            if (!accepted) {
              this.outcome = 'refused';
              return this.endWith(bytes);
            }
            this.socket.write(bytes);
            break;
          }
          case 'request': {
            this.off += ev.length;
            const req = ev.request;
            this.ctx.version = req.version;
            if (req.version === 4) {
              this.ctx.protocol = 'socks4';
              const credentials: Credentials = { source: 'socks4-userid', username: req.userId ?? Buffer.alloc(0), password: undefined };
              this.ctx.credentials = credentials;
              const verdict = this.authenticate(credentials);
              const accepted = verdict === true || (await verdict);
              if (this.phase !== 'handshake') return;
              if (!accepted) {
                this.ctx.reply = Rep.NOT_ALLOWED;
                return this.endWith(socks4Rejection());
              }
            }
            const leftover = this.buf.subarray(this.off);
            this.buf = EMPTY;
            this.off = 0;
            const encode = req.version === 5 ? encodeReplyV5 : (r: Reply) => encodeReplyV4(r, req);
            await this.runRequest(req, encode, leftover);
            return;
          }
        }
      }
    } catch (err) {
      this.failHandshake(err);
    } finally {
      this.processing = false;
    }
  }

  /** onGreeting's decision; `undefined` at once (no promise, no await) when no plugin taps it. */
  private greeting(firstByte: number, methods: readonly number[]): Promise<GreetingDecision | undefined> | undefined {
    const hook = this.kernel.hooks.onGreeting;
    if (!isTapped(hook)) return undefined;
    return hook.promise({ conn: this.ctx, firstByte, methods });
  }

  /** onAuth's verdict; `true` at once when no plugin taps it. */
  private authenticate(credentials: Credentials): Promise<boolean> | true {
    const hook = this.kernel.hooks.onAuth;
    if (!isTapped(hook)) return true;
    return hook.promise({ conn: this.ctx, credentials }).then((d) => d === undefined || d.accept);
  }

  /** A hook failed (or a bug) during the handshake: answer in the form the state allows, then close. */
  private failHandshake(err: unknown): void {
    this.logHookError(err);
    if (this.phase !== 'handshake') return;
    this.outcome = 'plugin_error';
    let bytes: Buffer | undefined;
    switch (this.hs.state) {
      case 'await-method-decision':
        bytes = Buffer.from([0x05, Method.NO_ACCEPTABLE]);
        break;
      case 'await-auth-decision':
        bytes = Buffer.from([0x01, 0x01]);
        break;
      default:
        // onGreeting runs on a SOCKS4 client's first byte, before the state machine knows the
        // version: the front end's protocol decides the form of the answer.
        bytes =
          this.hs.version === 4 || this.ctx.protocol === 'socks4'
            ? socks4Rejection()
            : this.hs.version === 5
              ? socks5ErrorReply(Rep.GENERAL_FAILURE)
              : undefined;
    }
    this.ctx.reply = Rep.GENERAL_FAILURE;
    this.endWith(bytes);
  }

  private logHookError(err: unknown): void {
    if (err instanceof PluginHookError || (err as { code?: string })?.code === 'SOCKSMITH_ERR_PLUGIN_HOOK') {
      const e = err as PluginHookError;
      if (channels.pluginError.hasSubscribers) channels.pluginError.publish({ plugin: e.plugin, hook: e.hook, conn: this.ctx });
      this.ctx.log.warn({ plugin: e.plugin, hook: e.hook, err: errorMessage(e.cause) }, e.message);
    } else {
      this.ctx.log.error({ err: errorMessage(err), stack: (err as Error)?.stack }, 'internal error in connection');
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Takeover (a plugin serves the connection, e.g. http-detect)

  private takeover(handler: (t: Takeover) => void | Promise<void>): void {
    this.phase = 'takeover';
    // Paused so that nothing is emitted while no one listens; the handler resumes it.
    this.socket.pause();
    this.socket.removeListener('data', onClientData);
    const buffered = this.buf.subarray(this.off);
    this.buf = EMPTY;
    this.off = 0;
    const takeover: Takeover = {
      conn: this.ctx,
      socket: this.socket,
      buffered,
      runRequest: async (request, encodeReply, leftover) => {
        if (this.phase !== 'takeover') throw new Error('runRequest called twice or after the connection closed');
        this.socket.on('data', onClientData);
        await this.runRequest(request, encodeReply, leftover);
      },
      authenticate: async (credentials) => {
        this.ctx.credentials = credentials;
        return this.authenticate(credentials);
      },
      finish: (bytes, outcome) => {
        if (this.phase === 'takeover') this.outcome = outcome ?? 'takeover';
        this.endWith(bytes);
      },
    };
    Promise.resolve()
      .then(() => handler(takeover))
      .catch((err: unknown) => {
        this.logHookError(err);
        if (!this.ctx.request) this.outcome = 'plugin_error';
        this.finish(err instanceof Error ? err : new Error(String(err)));
      });
  }

  // ---------------------------------------------------------------------------------------------
  // Request

  private pushEarly(chunk: Buffer): void {
    const hook = this.kernel.hooks.onData;
    if (isTapped(hook)) {
      try {
        chunk = hook.call(chunk, this.upInfo);
      } catch (err) {
        this.logHookError(err);
        this.finish(err as Error);
        return;
      }
    }
    this.ctx.bytesUp += chunk.length;
    this.early!.push(chunk);
  }

  private async runRequest(sent: SocksRequest, encodeReply: (reply: Reply) => Buffer, leftover: Buffer): Promise<void> {
    const ctx = this.ctx;
    // Every destination name is normalised once, here, where every front end (SOCKS4a, SOCKS5,
    // HTTP CONNECT) enters: hooks, checks, upstreams, isolation and logs all see this one form
    // (src/protocol/names.ts normalizeHost). A name that does not normalise is refused below.
    const destination = normalizeDestination(sent.destination);
    const request = destination === undefined || destination === sent.destination ? sent : { ...sent, destination };
    ctx.request = request;
    ctx.destination = request.destination;
    this.phase = 'request';
    this.kernel.handshakeDone(this);
    if (channels.request.hasSubscribers) channels.request.publish({ conn: ctx, handshakeMs: this.kernel.clock.now() - ctx.acceptedAt });
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    this.early = new EarlyData(this.kernel.config.limits.earlyData, this.socket);
    if (leftover.length > 0) this.pushEarly(Buffer.from(leftover));
    if (this.socket.isPaused() && this.early.bytes < this.kernel.config.limits.earlyData) this.socket.resume();
    if (destination === undefined) {
      ctx.log.debug({ destination: sent.destination.host }, 'destination name does not normalise; refused');
      await this.answer({ rep: Rep.HOST_UNREACHABLE }, encodeReply);
      return;
    }
    let reply: Reply | undefined;
    try {
      const hook = this.kernel.hooks.onRequest;
      if (isTapped(hook)) reply = await hook.promise(ctx, request);
      if (this.isClosed()) return;
      if (reply) {
        await this.answer(reply, encodeReply);
        return;
      }
      reply = this.defaultDecision(request);
      if (reply) {
        await this.answer(reply, encodeReply);
        return;
      }
    } catch (err) {
      if (this.isClosed()) return;
      if (!(typeof (err as { rep?: unknown })?.rep === 'number')) this.logHookError(err);
      await this.answer({ rep: repForError(err) }, encodeReply);
      return;
    }
    await this.connect(ctx.destination ?? request.destination, encodeReply);
  }

  /** The kernel's own answer for requests no plugin answered; `undefined` means "connect". */
  private defaultDecision(request: SocksRequest): Reply | undefined {
    if (request.command !== Command.CONNECT) return { rep: Rep.COMMAND_NOT_SUPPORTED };
    const d = this.ctx.destination ?? request.destination;
    // Port 0 and the unspecified address can never be a real destination (Tor answers 01 / 5B).
    if (d.port === 0 || d.host === '0.0.0.0' || d.host === '::') return { rep: Rep.GENERAL_FAILURE };
    // A .onion name that is not a valid v3 address never leaves this process, whatever the
    // upstream and whether extended-errors is on: another SOCKS5 server might answer 00 to it.
    // F6 reaches the client only with extended errors on; finalReply collapses it to 01 otherwise.
    if (d.kind === 'domain' && isOnionName(d.host)) {
      const problem = onionProblem(d.host);
      if (problem !== undefined) {
        this.ctx.log.debug({ problem }, 'invalid .onion address; refused');
        return { rep: Rep.ONION_BAD_ADDRESS };
      }
    }
    return undefined;
  }

  private async connect(destination: SocksAddress, encodeReply: (reply: Reply) => Buffer): Promise<void> {
    const ctx = this.ctx;
    const timeout = this.kernel.config.timeouts.connect;
    const ac = new AbortController();
    this.connectAbort = ac;
    const timer = setTimeout(onConnectTimeout, timeout, ac, timeout);
    let up: UpstreamStream;
    const connectStart = this.kernel.clock.now();
    const dispatch = this.kernel.dispatch;
    ctx.upstream ??= dispatch.upstreamName;
    try {
      // `early` stays undefined unless an interceptor grants early sending (optimistic-data): the held bytes then go with the connect.
      const r = await dispatch.run(destination, ctx, { command: Command.CONNECT, signal: ac.signal, early: undefined, held: this.early });
      if (!isStream(r)) throw new UpstreamError(r.rep === Rep.SUCCEEDED ? Rep.GENERAL_FAILURE : r.rep, 'an upstream interceptor answered CONNECT with a reply, not a stream');
      up = r;
    } catch (err) {
      if (this.isClosed()) return;
      const rep = repForError(err);
      const cause = (err as { cause?: unknown })?.cause;
      // Under log.safeLogging the message (which names the destination) is reduced to its code.
      ctx.failure = this.kernel.config.log.safeLogging ? String((err as { code?: unknown })?.code ?? 'connect failed') : errorMessage(err);
      if (hasCode(err, 'SOCKSMITH_ERR_PLUGIN_HOOK')) this.logHookError(err);
      else if (hasCode(cause, 'SOCKSMITH_ERR_PLUGIN_HOOK')) this.logHookError(cause);
      else ctx.log.debug({ err: errorMessage(err), rep: repName(rep) }, 'upstream connect failed');
      this.early?.discard();
      await this.answer({ rep }, encodeReply);
      return;
    } finally {
      clearTimeout(timer);
      this.connectAbort = undefined;
    }
    if (this.isClosed()) {
      discardSocket(up.stream);
      return;
    }
    // The kernel owns the upstream socket from here; an error held since its connect arrives now.
    adopt(up.stream, this);
    this.upstream = up;
    if (channels.connected.hasSubscribers) channels.connected.publish({ conn: ctx, connectMs: this.kernel.clock.now() - connectStart });
    let reply: Reply = { rep: Rep.SUCCEEDED, bound: up.bound };
    try {
      const hook = this.kernel.hooks.onReply;
      if (isTapped(hook)) reply = await hook.promise(reply, ctx);
    } catch (err) {
      this.logHookError(err);
      reply = { rep: Rep.GENERAL_FAILURE };
    }
    if (this.isClosed()) return;
    if (this.upstreamError && reply.rep === Rep.SUCCEEDED) {
      // The destination went away (reset, EPIPE) before the client was told: say so instead.
      reply = { rep: repForError(this.upstreamError) };
    }
    reply = this.finalReply(reply);
    ctx.reply = reply.rep;
    const bytes = this.encodeSafely(reply, encodeReply);
    // A plugin turned success into failure (or its reply could not be encoded): honour the
    // failure, never relay.
    if (!bytes || reply.rep !== Rep.SUCCEEDED || bytes === this.fallbackBytes) {
      this.early?.discard();
      this.upstream = undefined;
      discardSocket(up.stream); // never relayed: close it now, not when the client finally goes
      if (bytes) this.endWith(bytes);
      else this.finish();
      return;
    }
    this.socket.write(bytes);
    this.startRelay(up);
  }

  /** The last word on a reply: a code outside RFC 1928 (> 08) is narrowed (`collapseRep`) unless the stream allows wide reply codes (`WideReplyCodes`). */
  private finalReply(reply: Reply): Reply {
    if (reply.rep <= Rep.ADDRESS_TYPE_NOT_SUPPORTED || this.ctx.get(WideReplyCodes) === true) return reply;
    return { ...reply, rep: collapseRep(reply.rep) };
  }

  /** Send a final reply (through onReply) and close. */
  private async answer(reply: Reply, encodeReply: (reply: Reply) => Buffer): Promise<void> {
    let r = reply;
    try {
      const hook = this.kernel.hooks.onReply;
      if (isTapped(hook)) r = await hook.promise(reply, this.ctx);
    } catch (err) {
      this.logHookError(err);
      r = { rep: reply.rep === Rep.SUCCEEDED ? Rep.GENERAL_FAILURE : reply.rep };
    }
    if (this.isClosed()) return;
    r = this.finalReply(r);
    this.ctx.reply = r.rep;
    this.early?.discard();
    const bytes = this.encodeSafely(r, encodeReply);
    if (bytes) this.endWith(bytes);
    else this.finish();
  }

  private fallbackBytes: Buffer | undefined;

  /**
   * Encode a reply; if a plugin produced one that cannot be encoded (a name over 255 bytes, a
   * bad IP string), log it and send a general failure instead (recorded in `fallbackBytes`), or
   * `undefined` when even that cannot be encoded.
   */
  private encodeSafely(reply: Reply, encodeReply: (reply: Reply) => Buffer): Buffer | undefined {
    try {
      return encodeReply(reply);
    } catch (err) {
      this.ctx.log.warn({ err: errorMessage(err), rep: repName(reply.rep) }, 'reply cannot be encoded; sending general failure');
      this.ctx.reply = Rep.GENERAL_FAILURE;
      try {
        this.fallbackBytes = encodeReply({ rep: Rep.GENERAL_FAILURE });
        return this.fallbackBytes;
      } catch {
        return undefined;
      }
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Relay

  private startRelay(up: UpstreamStream): void {
    this.phase = 'relay';
    this.socket.removeListener('data', onClientData);
    this.socket.removeListener('end', onClientEndEarly);
    const early = this.early!;
    // Early bytes not yet sent (optimistic data off, or the upstream did not take them) go now,
    // ahead of anything read later.
    early.attach(up.stream);
    this.early = undefined;
    const idle = this.kernel.config.timeouts.idle;
    if (idle > 0) {
      this.socket.setTimeout(idle);
      this.socket.on('timeout', onIdleTimeout);
    }
    const hook = this.kernel.hooks.onData;
    const tapped = isTapped(hook);
    relay(this.socket, up.stream, {
      ctx: this.ctx,
      onData: tapped ? hook : undefined,
      upInfo: tapped ? this.upInfo : undefined,
      downInfo: tapped ? this.downInfo : undefined,
      done: (err) => this.relayEnded(err),
    });
  }

  /** The relay is over (both sides closed, or an error). */
  private relayEnded(err?: Error): void {
    if (hasCode(err, 'SOCKSMITH_ERR_PLUGIN_HOOK')) this.logHookError(err);
    this.finish(err);
  }

  // ---------------------------------------------------------------------------------------------
  // Endings

  private isClosed(): boolean {
    return this.phase === 'closing' || this.phase === 'closed';
  }

  /**
   * Send `bytes` (if any), end our side, and linger briefly so the client reads them before the
   * socket is destroyed (destroying with unread input would send RST and could lose the reply).
   */
  private endWith(bytes: Buffer | undefined): void {
    if (this.isClosed()) return;
    this.phase = 'closing';
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    this.early?.discard();
    this.socket.removeListener('data', onClientData);
    this.socket.on('data', discard); // drain and discard whatever the client still sends
    this.socket.resume();
    if (bytes) this.socket.end(bytes);
    else this.socket.end();
    // 'close' (both halves done) ends it through onSocketClose; the timer bounds a client that
    // never closes its side.
    this.lingerTimer = setTimeout(onLingerTimeout, LINGER_MS, this);
    this.lingerTimer.unref?.();
  }

  /** A connection closed before its request: a debug line and the `handshake ended` channel. */
  private handshakeEnded(err: Error | undefined): void {
    const outcome = this.outcome ?? 'client_closed';
    if (this.kernel.logger.isLevelEnabled('debug')) {
      this.kernel.logger.debug(
        { conn: this.ctx.id, client: this.ctx.clientAddress, outcome, durationMs: Math.round(this.kernel.clock.now() - this.ctx.acceptedAt), ...(err ? { err: errorMessage(err) } : {}) },
        'handshake ended without a request',
      );
    }
    if (channels.handshakeEnded.hasSubscribers) channels.handshakeEnded.publish({ conn: this.ctx, outcome });
  }

  /**
   * Cut the connection now (drain deadline, second signal). A tunnel is reset on both sides, so
   * the client (and the destination) can tell the cut from a complete stream; a connection not
   * yet relaying is closed as by {@link finish}.
   */
  cut(): void {
    this.outcome ??= 'shutdown';
    this.finish(this.phase === 'relay' ? TUNNEL_CUT : undefined);
  }

  /**
   * Close a connection still in its handshake for a reason of the kernel's (`shed`: a limit made
   * room for a new one; `shutdown`: the proxy is stopping), which the handshake-ended line and
   * metric report.
   */
  endHandshake(outcome: HandshakeOutcome): void {
    this.outcome ??= outcome;
    this.finish();
  }

  /** The one teardown: idempotent, destroys both sockets, logs the access line. */
  finish(err?: Error): void {
    if (this.phase === 'closed') return;
    const wasRelaying = this.phase === 'relay';
    this.phase = 'closed';
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    // Explicit reasons: abort() without one builds a DOMException per connection (measurable).
    this.connectAbort?.abort(CLIENT_GONE);
    this.abort?.abort(CLIENT_GONE);
    this.early?.discard();
    this.early = undefined;
    // From here on both sockets belong to the teardown: what they still emit needs no action.
    adopt(this.socket, DISCARD);
    if (this.upstream) adopt(this.upstream.stream, DISCARD);
    if (err === TUNNEL_CUT || (err as NodeJS.ErrnoException | undefined)?.code === 'ECONNRESET') {
      // Pass a reset on as a reset, so the other peer can tell an aborted stream from a
      // finished one (a FIN would look like a clean end).
      resetOrDestroy(this.socket);
      if (this.upstream) resetOrDestroy(this.upstream.stream);
    }
    this.socket.destroy();
    this.upstream?.stream.destroy();
    this.kernel.forget(this);
    const ctx = this.ctx;
    if (ctx.request) {
      if (this.kernel.logger.isLevelEnabled('info')) logStreamClosed(this.kernel, ctx, wasRelaying ? err : undefined);
    } else this.handshakeEnded(err);
    if (channels.closed.hasSubscribers) channels.closed.publish({ conn: ctx, durationMs: this.kernel.clock.now() - ctx.acceptedAt });
    const waiters = this.closeWaiters;
    this.closeWaiters = undefined;
    if (waiters) for (const w of waiters) w();
  }
}

/** Method choice without plugins: 00 if offered, else 02 (credentials accepted unchecked), else FF. */
export function defaultMethod(methods: readonly number[]): number {
  if (methods.includes(Method.NO_AUTH)) return Method.NO_AUTH;
  if (methods.includes(Method.USERPASS)) return Method.USERPASS;
  return Method.NO_ACCEPTABLE;
}
