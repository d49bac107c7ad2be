/**
 * Interceptor chains (undici's `Dispatcher.compose`): a step the kernel takes for a stream, which
 * plugins and the config may wrap. Interceptors are registered during `apply()`; the chain is
 * composed once, at {@link UpstreamDispatch.seal} (`proxy.listen()`, or the first use), and frozen
 * after that. With no interceptor the composed function is the terminal itself.
 *
 * Order, outermost first: plugin interceptors by ascending `stage` (ties in registration order),
 * then the config's (`upstream.interceptors`, in list order), then the terminal.
 * @packageDocumentation
 */
import { SocksmithError, UpstreamError } from '../errors.js';
import { Command, Rep } from '../protocol/constants.js';
import type { SocksAddress } from '../protocol/address.js';
import type { Dispatch, DispatchInterceptor, DispatchOptions, DispatchResult, Upstream } from '../upstream/types.js';
import type { ConnectionContext } from './context.js';
import { Stage, type StageValue } from './stages.js';

/** Where plugins add interceptors to a chain (`kernel.dispatch`). */
export interface ChainRegistry<I> {
  /**
   * Add `interceptor` (`(next) => fn`) to the chain, in `apply()`. `name` is the plugin's (for
   * errors); `stage` orders it (default `Stage.DEFAULT`; lower runs first, i.e. further out).
   * Throws `SOCKSMITH_ERR_PLUGIN_LATE` once the chain is sealed (the proxy started).
   */
  intercept(options: { readonly name: string; readonly stage?: StageValue }, interceptor: I): void;
}

interface Entry<I> {
  readonly name: string;
  readonly stage: number;
  readonly interceptor: I;
}

/** A list of interceptors that composes into one function once. */
export class InterceptorChain<F, I extends (next: F) => F> implements ChainRegistry<I> {
  private readonly entries: Entry<I>[] = [];
  private sealed = false;

  intercept(options: { readonly name: string; readonly stage?: StageValue }, interceptor: I): void {
    if (this.sealed) throw new SocksmithError('SOCKSMITH_ERR_PLUGIN_LATE', `plugin "${options.name}": intercept() after start`);
    this.entries.push({ name: options.name, stage: options.stage ?? Stage.DEFAULT, interceptor });
  }

  /** Compose `plugin interceptors (by stage) → inner (in order) → terminal` and freeze the registry. */
  seal(terminal: F, inner: readonly I[] = []): F {
    this.sealed = true;
    // Array.prototype.sort is stable: ties keep registration order.
    const ordered = [...this.entries].sort((a, b) => a.stage - b.stage).map((e) => e.interceptor);
    return [...ordered, ...inner].reduceRight<F>((next, ic) => ic(next), terminal);
  }
}

/**
 * The upstream dispatch: one function for CONNECT, for one-reply commands (RESOLVE F0,
 * RESOLVE_PTR F1) and for two-phase commands a plugin forwards (BIND, UDP ASSOCIATE) that go to
 * the upstream. Its terminal is the `Upstream` service: `connect()` for CONNECT, `open()` for
 * BIND and UDP ASSOCIATE, `query()` for the others (07 if the upstream has no such method).
 */
export class UpstreamDispatch implements ChainRegistry<DispatchInterceptor> {
  private readonly chain = new InterceptorChain<Dispatch, DispatchInterceptor>();
  private composed: Dispatch | undefined;
  private readonly terminal: Dispatch;
  /** True when the upstream answers F0/F1 itself (`Upstream.query`): the resolve plugins' `auto` mode. */
  readonly canQuery: boolean;
  /** True when the upstream runs BIND and UDP ASSOCIATE itself (`Upstream.open`): plugins that own those commands may forward them. */
  readonly canOpen: boolean;
  /** The upstream's `name` (the access line's `upstream` field). */
  readonly upstreamName: string;

  constructor(
    upstream: Upstream,
    private readonly configured: readonly DispatchInterceptor[] = [],
  ) {
    this.canQuery = typeof upstream.query === 'function';
    this.canOpen = typeof upstream.open === 'function';
    this.upstreamName = upstream.name;
    this.terminal = (destination, conn, options) => {
      if (options.command === Command.CONNECT) return upstream.connect(destination, conn, options);
      if (options.command === Command.BIND || options.command === Command.UDP_ASSOCIATE) {
        if (upstream.open) return upstream.open(options.command, destination, conn, options);
      } else if (upstream.query) return upstream.query(options.command, destination, conn, options);
      return Promise.reject(new UpstreamError(Rep.COMMAND_NOT_SUPPORTED, `upstream ${upstream.name} cannot answer command ${options.command}`));
    };
  }

  intercept(options: { readonly name: string; readonly stage?: StageValue }, interceptor: DispatchInterceptor): void {
    this.chain.intercept(options, interceptor);
  }

  /** Compose the chain (once) and freeze it. */
  seal(): void {
    this.composed ??= this.chain.seal(this.terminal, this.configured);
  }

  /** Dispatch one command for `conn` through the chain. Seals it on first use. */
  run(destination: SocksAddress, conn: ConnectionContext, options: DispatchOptions): Promise<DispatchResult> {
    if (this.composed === undefined) this.seal();
    return this.composed!(destination, conn, options);
  }
}
