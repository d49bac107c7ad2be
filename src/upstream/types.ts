/**
 * The upstream contract: how a stream leaves the proxy.
 *
 * An upstream opens a stream to a destination for a connection and resolves with a connected
 * Duplex, or rejects with an error carrying the SOCKS5 reply code (`rep`) the client should get.
 * Interceptors wrap the connect function (undici's `Dispatcher.compose`).
 * @packageDocumentation
 */
import type { Duplex } from 'node:stream';
import type { ConnectionContext } from '../kernel/context.js';
import type { EarlyData } from '../kernel/early-data.js';
import type { Reply } from '../kernel/hooks.js';
import type { SocksAddress } from '../protocol/address.js';

/** Options for one connect. */
export interface ConnectOptions {
  /** Aborted on connect timeout (reason: an UpstreamError with rep 06) or when the client goes away. */
  readonly signal: AbortSignal;
  /**
   * Present when the stream may use optimistic data: the upstream should `early.attach(socket)`
   * as soon as the bytes can go out (right behind its request), before it confirms.
   */
  readonly early: EarlyData | undefined;
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
    ...(upstream.close ? { close: upstream.close.bind(upstream) } : {}),
  };
  return composed;
}
