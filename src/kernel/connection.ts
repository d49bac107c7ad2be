/**
 * The per-connection driver. It owns the client socket: a front end a plugin added (http-detect's
 * HTTP) reads and writes it through {@link ClientSession}, a command's owner through
 * {@link StreamControl}, and only this driver ends or destroys it.
 *
 * It holds the connection's state and timers, and feeds bytes to the SOCKS front end
 * (`front/socks.ts`: the handshake loop, SOCKS5's direct path and the detect stage's catch-all;
 * the detect stage itself is `detect.ts`); a request, from whichever front end, runs through the stream pipeline
 * (`pipeline.ts`: hooks, upstream, replies in order, relay with backpressure and half-close),
 * which works on this object's fields. Every way a connection ends goes through one idempotent
 * {@link Connection.finish}. docs/architecture.md draws the lifecycle. Members without `private`
 * that are not part of {@link ClientSession} are for pipeline.ts and front/socks.ts only.
 * @packageDocumentation
 */
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { PluginHookError, errorMessage, hasCode } from '../errors.js';
import type { SocksRequest } from '../protocol/codec.js';
import { Rep } from '../protocol/constants.js';
import { ServerHandshake } from '../protocol/server-handshake.js';
import type { UpstreamStream } from '../upstream/types.js';
import { UpstreamError } from '../errors.js';
import { ConnectionContext, type Credentials, type SignalSource } from './context.js';
import { EarlyData } from './early-data.js';
import type { ConnectAbort } from './connect-abort.js';
import { channels } from './diagnostics.js';
import { type AuthDecision, type DataInfo, type HandshakeOutcome, type Reply, type Takeover, callBail, isTapped, isThenable } from './hooks.js';
import type { ClientSession, FrontEnd, ReplyEncoder, StreamRequest } from './front/types.js';
import type { StreamHost } from './commands.js';
import type { Kernel } from './kernel.js';
import { pushEarly, runStream, sendReply, startRelay } from './pipeline.js';
import { socksFeed } from './front/socks.js';
export { defaultMethod } from './front/socks.js';
import { logStreamClosed } from './access-log.js';
import { type SocketOwner, DISCARD, adopt, discard as discardSocket, resetOrDestroy } from './socket-owner.js';

type Phase = 'handshake' | 'request' | 'relay' | 'held' | 'takeover' | 'closing' | 'closed';

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
/** @internal */
export function onClientData(this: ClientSocket, chunk: Buffer): void {
  this[kConn]!.handshakeData(chunk);
}
function onClientClose(this: ClientSocket): void {
  this[kConn]!.socketClose();
}
/** @internal */
export function onClientEndEarly(this: ClientSocket): void {
  this[kConn]!.clientEndEarly();
}
/** @internal */
export function onIdleTimeout(this: ClientSocket): void {
  const c = this[kConn]!;
  c.ctx.log.debug('idle timeout');
  c.finish();
}
function onLingerTimeout(c: Connection): void {
  c.finish();
}
function discard(): void {}

/** One client connection. */
export class Connection implements SignalSource, SocketOwner, ClientSession, StreamHost {
  readonly ctx: ConnectionContext;
  phase: Phase = 'handshake';
  readonly hs = new ServerHandshake();
  buf: Buffer = EMPTY;
  off = 0;
  processing = false;
  greeted = false;
  /** onGreeting passed on a first byte other than 05 and a plugin's front end needs more bytes to decide. */
  detecting = false;
  private lingerTimer: NodeJS.Timeout | undefined;
  early: EarlyData | undefined;
  upstream: UpstreamStream | undefined;
  /** An error of the upstream socket after it connected and before the relay took it. */
  upstreamError: Error | undefined;
  /** Created on first use of `ctx.signal`; aborted by the teardown. */
  private abort: AbortController | undefined;
  /** The connect in progress, aborted directly by the teardown. */
  connectAbort: ConnectAbort | undefined;
  /** onData's second argument per direction, built when a plugin taps onData. */
  private upInfoObj: DataInfo | undefined;
  private downInfoObj: DataInfo | undefined;
  private closeWaiters: Array<() => void> | undefined;
  /** The general-failure bytes sent when a reply could not be encoded (pipeline.ts `encodeSafely`). */
  fallbackBytes: Buffer | undefined;
  /** The front end's reply encoder for the stream (set when the request arrives). */
  encoder: ReplyEncoder | undefined;
  /** The client's key for the per-client budgets (kernel.ts `clientKey`), computed once at accept. */
  clientKey = '';
  /** How the handshake ended when no request came (set where it ends; default client_closed). */
  outcome: HandshakeOutcome | undefined;

  constructor(
    readonly kernel: Kernel,
    /** The client socket (a front end's, paused, while it serves; see {@link ClientSession.socket}). */
    readonly socket: ClientSocket,
    /** The context's fields; its `signal` is set here, to this driver (the kernel passes a fresh object: no copy per connection). */
    ctxInit: Omit<ConstructorParameters<typeof ConnectionContext>[0], 'signal'> & { signal?: SignalSource },
  ) {
    const init = ctxInit as ConstructorParameters<typeof ConnectionContext>[0] & { signal: SignalSource };
    init.signal = this;
    this.ctx = new ConnectionContext(init);
    socket[kConn] = this;
    // The client socket's owner from here to the relay (docs/architecture.md, "Socket ownership").
    adopt(socket, this);
  }

  /** The teardown signal, created on first use of `ctx.signal`. @internal */
  teardownSignal(): AbortSignal {
    return (this.abort ??= new AbortController()).signal;
  }

  get upInfo(): DataInfo {
    return (this.upInfoObj ??= Object.freeze({ conn: this.ctx, direction: 'up' as const }));
  }

  get downInfo(): DataInfo {
    return (this.downInfoObj ??= Object.freeze({ conn: this.ctx, direction: 'down' as const }));
  }

  /** Start reading; `initial` is data already read from the socket (after a PROXY header). */
  start(initial?: Buffer): void {
    const s = this.socket;
    s.on('data', onClientData);
    s.on('close', onClientClose);
    s.on('end', onClientEndEarly);
    // timeouts.handshake: the kernel's one queue of handshake deadlines (deadlines.ts), not a timer each.
    this.kernel.handshakeDeadlines.add(this);
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
      pushEarly(this, chunk);
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
    if (!this.processing) void socksFeed(this);
  }

  /** EOF from the client before the relay. @internal */
  clientEndEarly(): void {
    // EOF before the relay: the client gave up (Tor: no reply). A request already parsed still
    // deserves its answer only while the socket can carry it; half-closed clients (tor-resolve
    // does not, but some scripts do) still get the reply because allowHalfOpen keeps our side open.
    if ((this.phase === 'handshake' && !this.processing) || this.phase === 'held') this.finish();
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

  /**
   * onAuth's verdict: `true` at once when no plugin taps it, the verdict at once when every tap
   * answers synchronously, else a promise of it ({@link callBail}).
   */
  authVerdict(credentials: Credentials): Promise<boolean> | boolean {
    const hook = this.kernel.hooks.onAuth;
    if (!isTapped(hook)) return true;
    const d = callBail<AuthDecision>(hook, { conn: this.ctx, credentials });
    if (isThenable(d)) return (d as Promise<AuthDecision | undefined>).then((v) => v === undefined || v.accept);
    return d === undefined || d.accept;
  }
  logHookError(err: unknown): void {
    if (err instanceof PluginHookError || (err as { code?: string })?.code === 'SOCKSMITH_ERR_PLUGIN_HOOK') {
      const e = err as PluginHookError;
      if (channels.pluginError.hasSubscribers) channels.pluginError.publish({ plugin: e.plugin, hook: e.hook, conn: this.ctx });
      this.ctx.log.warn({ plugin: e.plugin, hook: e.hook, err: errorMessage(e.cause) }, e.message);
    } else {
      this.ctx.log.error({ err: errorMessage(err), stack: (err as Error)?.stack }, 'internal error in connection');
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Front ends a plugin added (http-detect's HTTP) and the legacy takeover

  /** Hand the connection to `fe` (the detect stage chose it): the socket paused, the bytes read so far kept in {@link buffered}. */
  serveWith(fe: FrontEnd): void {
    this.phase = 'takeover';
    // Paused so that nothing is emitted while no one listens; the front end resumes it.
    this.socket.pause();
    this.socket.removeListener('data', onClientData);
    Promise.resolve()
      .then(() => fe.serve(this))
      .catch((err: unknown) => this.frontEndFailed(err));
  }

  /** A front end (or a legacy takeover handler) threw or rejected. */
  private frontEndFailed(err: unknown): void {
    this.logHookError(err);
    if (!this.ctx.request) this.outcome = 'plugin_error';
    this.finish(err instanceof Error ? err : new Error(String(err)));
  }

  /** {@link ClientSession.conn}: the context. */
  get conn(): ConnectionContext {
    return this.ctx;
  }

  /** {@link ClientSession.buffered}: bytes read and not consumed, from the first byte (empty once a stream opened). */
  get buffered(): Buffer {
    return this.off === 0 ? this.buf : this.buf.subarray(this.off);
  }

  /** {@link ClientSession.authenticate}: record `credentials` on the context and run onAuth. */
  async authenticate(credentials: Credentials): Promise<boolean> {
    this.ctx.credentials = credentials;
    return this.authVerdict(credentials);
  }

  /** {@link ClientSession.openStream}: run a front end's request through the pipeline. */
  async openStream(request: StreamRequest, encoder: ReplyEncoder, leftover: Buffer): Promise<void> {
    if (this.phase !== 'takeover') throw new Error('openStream (runRequest) called twice or after the connection closed');
    this.buf = EMPTY;
    this.off = 0;
    this.socket.on('data', onClientData);
    const req: SocksRequest =
      'userId' in request && 'socks4a' in request
        ? (request as SocksRequest)
        : { version: request.version, command: request.command, destination: request.destination, userId: request.userId, socks4a: request.socks4a ?? false };
    await runStream(this, req, encoder, leftover);
  }

  /** {@link ClientSession.end}: send `bytes`, end gracefully, tear down. */
  end(bytes?: Buffer, outcome?: HandshakeOutcome): void {
    if (this.phase === 'takeover') this.outcome = outcome ?? 'takeover';
    this.endWith(bytes);
  }

  /**
   * The legacy `onGreeting` `{ takeover }` decision (deprecated: register a front end): the same
   * {@link ClientSession}, under the old names.
   */
  takeover(handler: (t: Takeover) => void | Promise<void>): void {
    this.phase = 'takeover';
    this.socket.pause();
    this.socket.removeListener('data', onClientData);
    const takeover: Takeover = {
      conn: this.ctx,
      socket: this.socket,
      buffered: this.buffered,
      runRequest: (request, encodeReply, leftover) => this.openStream(request, encodeReply, leftover),
      authenticate: (credentials) => this.authenticate(credentials),
      finish: (bytes, outcome) => this.end(bytes, outcome),
    };
    Promise.resolve()
      .then(() => handler(takeover))
      .catch((err: unknown) => this.frontEndFailed(err));
  }

  // ---------------------------------------------------------------------------------------------
  // What the stream pipeline (pipeline.ts) and a command's StreamControl call

  /** @internal {@link StreamControl.reply} / `fail` (pipeline.ts `sendReply`). */
  sendReply(reply: Reply, final: boolean): Promise<boolean> {
    return sendReply(this, reply, final);
  }
  /** @internal {@link StreamControl.relay}: relay the client with a command's upstream (also after {@link hold}). */
  relayWith(up: UpstreamStream): void {
    if (this.isClosed() || this.phase === 'relay') {
      discardSocket(up.stream);
      return;
    }
    adopt(up.stream, this);
    this.upstream = up;
    // After hold(): client bytes were being discarded; from here on they go to `up`.
    if (this.phase === 'held') this.socket.removeListener('data', discard);
    startRelay(this, up);
  }
  /** @internal {@link StreamControl.hold}: keep the connection without a relay; client bytes are discarded. */
  hold(): void {
    if (this.isClosed() || this.phase === 'relay' || this.phase === 'held') return;
    this.phase = 'held';
    this.early?.discard();
    this.early = undefined;
    this.socket.removeListener('data', onClientData);
    this.socket.on('data', discard);
    this.socket.resume();
  }
  /** The relay is over (both sides closed, or an error). */
  relayEnded(err?: Error): void {
    if (hasCode(err, 'SOCKSMITH_ERR_PLUGIN_HOOK')) this.logHookError(err);
    this.finish(err);
  }

  // ---------------------------------------------------------------------------------------------
  // Endings

  isClosed(): boolean {
    return this.phase === 'closing' || this.phase === 'closed';
  }

  /**
   * Send `bytes` (if any), end our side, and linger briefly so the client reads them before the
   * socket is destroyed (destroying with unread input would send RST and could lose the reply).
   */
  endWith(bytes: Buffer | undefined): void {
    if (this.isClosed()) return;
    this.phase = 'closing';
    this.kernel.handshakeDeadlines.delete(this);
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
    this.kernel.handshakeDeadlines.delete(this);
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
