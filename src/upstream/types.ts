/**
 * The upstream contract: how a stream leaves the proxy.
 *
 * An upstream opens a stream to a destination for a connection and resolves with a connected
 * Duplex, or rejects with an error carrying the SOCKS5 reply code (`rep`) the client should get.
 * The kernel reaches the upstream through one dispatch function (CONNECT, and RESOLVE F0 /
 * RESOLVE_PTR F1 when the upstream answers them), which plugins and `upstream.interceptors` wrap
 * with interceptors (undici's `Dispatcher.compose`; src/kernel/dispatch.ts).
 * @packageDocumentation
 */
import type { Duplex } from 'node:stream';
import type { ConnectionContext } from '../kernel/context.js';
import type { EarlyData } from '../kernel/early-data.js';
import type { Reply } from '../kernel/hooks.js';
import type { SocksAddress } from '../protocol/address.js';

/** Options for one connect. */
export interface ConnectOptions {
  /**
   * Aborted on connect timeout (reason: an UpstreamError with rep 06) or when the client goes away.
   * In the kernel's CONNECT options it is built when first read (a getter; src/kernel/connect-abort.ts),
   * already aborted if the connect was: read it only when you need it, and pass changed options
   * on with `deriveDispatchOptions()` (exported by socksmith) to keep it unbuilt.
   */
  readonly signal: AbortSignal;
  /**
   * Present when the stream may use optimistic data: the upstream should `early.attach(socket)`
   * as soon as the bytes can go out (right behind its request), before it confirms.
   */
  readonly early: EarlyData | undefined;
}

/**
 * Options of one dispatch: a {@link ConnectOptions} plus the command and the kernel's held early
 * bytes. The upstream's `connect()` receives this object (it is a ConnectOptions too).
 */
export interface DispatchOptions extends ConnectOptions {
  /**
   * `Command.CONNECT`, `Command.RESOLVE` (F0) or `Command.RESOLVE_PTR` (F1) from the kernel;
   * `Command.BIND` or `Command.UDP_ASSOCIATE` from a plugin that owns that command and forwards
   * it (the terminal calls {@link Upstream.open}).
   */
  readonly command: number;
  /**
   * The client bytes the kernel holds for this stream (CONNECT; `undefined` otherwise). An
   * interceptor that grants early sending passes them on as `early` (the optimistic-data plugin).
   */
  readonly held: EarlyData | undefined;
}

/**
 * What a dispatch resolves with: an open stream for CONNECT, the upstream's reply for F0/F1, a
 * session for BIND and UDP ASSOCIATE.
 */
export type DispatchResult = UpstreamStream | Reply | UpstreamSession;

/** Dispatch one command for `conn` to the upstream. Reject with an error that has a numeric `rep` to choose the reply. */
export type Dispatch = (destination: SocksAddress, conn: ConnectionContext, options: DispatchOptions) => Promise<DispatchResult>;

/** Wrap a {@link Dispatch} (`kernel.dispatch.intercept(...)`, or a module in `upstream.interceptors`). */
export type DispatchInterceptor = (next: Dispatch) => Dispatch;

/** True when a dispatch result is an open stream (CONNECT), not a reply or a session. */
export function isStream(result: DispatchResult): result is UpstreamStream {
  return 'stream' in result && !('nextReply' in result);
}

/** True when a dispatch result is an {@link UpstreamSession} (BIND, UDP ASSOCIATE). */
export function isSession(result: DispatchResult): result is UpstreamSession {
  return 'stream' in result && 'nextReply' in result;
}

/** One reply read from an upstream's control connection. */
export interface SessionReply {
  readonly rep: number;
  readonly bound: SocksAddress;
}

/**
 * A two-phase command's control connection at the upstream (BIND, UDP ASSOCIATE), after a
 * successful first reply. The session owns the connection's errors until {@link detach} or
 * {@link close}; an error or EOF settles {@link ended} and fails a pending {@link nextReply}.
 */
export interface UpstreamSession {
  /** The upstream's control connection. Do not add listeners or read from it; use the methods. */
  readonly stream: Duplex;
  /** BND.ADDR/BND.PORT of the first reply (BIND: where the upstream listens; UDP ASSOCIATE: the upstream's relay). */
  readonly bound: SocksAddress;
  /**
   * Read the next reply (BIND's second). A failure REP rejects with an `UpstreamError` carrying it
   * (`rep`); EOF, an error, or an unparsable reply rejects with rep 01. `signal` aborting rejects
   * with its reason and closes the session.
   */
  nextReply(signal: AbortSignal): Promise<SessionReply>;
  /** Settles once (never rejects) when the control connection ends: EOF, error, {@link close}. Not after {@link detach}. */
  readonly ended: Promise<void>;
  /**
   * Hand the control connection over as a stream for `StreamControl.relay()` (BIND after its
   * second reply); bytes read past the last reply go back into it. The session is done after this.
   */
  detach(): UpstreamStream;
  /** Destroy the control connection (idempotent). */
  close(): void;
}

/** Options of {@link Upstream.open}. */
export interface OpenOptions {
  /** Aborted on timeout or when the client goes away: the attempt (and the session) is torn down. */
  readonly signal: AbortSignal;
}

/** A stream that is open. */
export interface UpstreamStream {
  /**
   * Connected duplex; `allowHalfOpen` semantics expected (end one side, keep the other). It must
   * have an `'error'` listener until the kernel adopts it (when `connect` resolves); the built-in
   * upstreams leave it `release()`d (docs/architecture.md, "Socket ownership").
   */
  readonly stream: Duplex;
  /** BND.ADDR/BND.PORT for the success reply (the local address, or what an upstream proxy said). */
  readonly bound: SocksAddress | undefined;
}

/** Open a stream to `destination` for `conn`. */
export type ConnectFn = (destination: SocksAddress, conn: ConnectionContext, options: ConnectOptions) => Promise<UpstreamStream>;

/** Wrap a {@link ConnectFn} (logging, retries, choosing among several upstreams…). */
export type UpstreamInterceptor = (next: ConnectFn) => ConnectFn;

/** How streams leave the proxy. */
export interface Upstream {
  /** Short name for logs (`direct`, `socks5 127.0.0.1:9050`). */
  readonly name: string;
  /** Open a stream. Reject with an error that has a numeric `rep` (e.g. `UpstreamError`) to choose the reply. */
  connect: ConnectFn;
  /**
   * Optional: answer a one-reply command (Tor's RESOLVE F0 / RESOLVE_PTR F1) remotely, so the
   * lookup happens at the upstream (no local DNS leak). The `resolve` plugins use it when present.
   */
  query?(command: number, destination: SocksAddress, conn: ConnectionContext, options: Pick<ConnectOptions, 'signal'>): Promise<Reply>;
  /**
   * Optional: run a two-phase command (BIND 02, UDP ASSOCIATE 03) at the upstream and resolve
   * with its control connection after a successful first reply; a failure reply rejects with an
   * error carrying its REP. Without it such a command forwarded by a plugin gets 07.
   */
  open?(command: number, destination: SocksAddress, conn: ConnectionContext, options: OpenOptions): Promise<UpstreamSession>;
  /** Optional cleanup at shutdown. */
  close?(): Promise<void> | void;
}

/** Apply interceptors to an upstream's connect function (the first interceptor is outermost). */
export function composeUpstream(upstream: Upstream, ...interceptors: UpstreamInterceptor[]): Upstream {
  const connect = interceptors.reduceRight<ConnectFn>((next, ic) => ic(next), upstream.connect.bind(upstream));
  const composed: Upstream = {
    name: upstream.name,
    connect,
    ...(upstream.query ? { query: upstream.query.bind(upstream) } : {}),
    ...(upstream.open ? { open: upstream.open.bind(upstream) } : {}),
    ...(upstream.close ? { close: upstream.close.bind(upstream) } : {}),
  };
  return composed;
}
