/**
 * Name resolution as the kernel does it, a chain (src/resolver/chain.ts): IP literals answered
 * locally, then plugin interceptors, then `onResolve` taps, then the resolver service, with the
 * stream's `ResolverPartition` as cache partition.
 * @packageDocumentation
 */
import { inject, injectable } from 'tsyringe';
import { Tokens } from '../di/tokens.js';
import { ResolveError } from '../errors.js';
import type { ConnectionContext } from '../kernel/context.js';
import { InterceptorChain, type ChainRegistry } from '../kernel/dispatch.js';
import { type Hooks, type ResolveAnswer, type ResolveQuery, type ResolvedAddress, isTapped } from '../kernel/hooks.js';
import type { StageValue } from '../kernel/stages.js';
import type { Resolve, ResolveInterceptor } from './chain.js';
import { classifyHost } from '../protocol/address.js';
import { ResolverPartition } from './partition.js';
import { normalizeHost } from '../protocol/names.js';
import type { Resolver } from './types.js';

/** The resolution chain, shared by the kernel, upstreams and plugins (`kernel.resolution`, `kernel.names`). */
@injectable()
export class NameResolution implements ChainRegistry<ResolveInterceptor> {
  private readonly chain = new InterceptorChain<Resolve, ResolveInterceptor>();
  /** The composed chain (plugin interceptors → onResolve → resolver), once sealed. */
  private composed: Resolve | undefined;
  /** True once sealed with no plugin interceptor: an untapped onResolve then costs nothing (no query object). */
  private plain = false;
  private readonly inner: Resolve;

  constructor(
    @inject(Tokens.Hooks) private readonly hooks: Hooks,
    @inject(Tokens.Resolver) private readonly resolver: Resolver,
  ) {
    this.inner = (q) => this.answer(q);
  }

  /** Add a plugin interceptor (in `apply()`); throws `SOCKSMITH_ERR_PLUGIN_LATE` after {@link seal}. */
  intercept(options: { readonly name: string; readonly stage?: StageValue }, interceptor: ResolveInterceptor): void {
    this.chain.intercept(options, interceptor);
  }

  /** Compose the chain once and freeze it (`kernel.seal()`, or the first lookup). Hooks stay tappable. */
  seal(): void {
    if (this.composed !== undefined) return;
    this.composed = this.chain.seal(this.inner);
    this.plain = this.composed === this.inner;
  }

  /**
   * Resolve `name` for `conn`. IP literals come back as they are. Rejects with a `ResolveError`
   * (or whatever deliberate error a tap or interceptor threw).
   */
  async lookup(raw: string, family: 0 | 4 | 6, conn: ConnectionContext | undefined): Promise<readonly ResolvedAddress[]> {
    // Destinations arrive normalised (the kernel does it once, at entry); a name a plugin made up
    // is normalised here, so interceptors, onResolve taps and the resolver see the same form as every check.
    const name = normalizeHost(raw);
    if (name === undefined) throw new ResolveError('name does not normalise (UTS-46); refused', { code: 'SOCKSMITH_ERR_RESOLVE_BAD_NAME' });
    const literal = classifyHost(name, 0);
    if (literal.kind !== 'domain') return [{ address: literal.host, family: literal.kind === 'ipv4' ? 4 : 6 }];
    if (this.composed === undefined) this.seal();
    // Nothing to run but the resolver: no query object, no extra promise (the common case).
    if (this.plain && !isTapped(this.hooks.onResolve)) return this.resolver.lookup(name, { family, partition: conn ? conn.get(ResolverPartition)! : '', client: conn?.clientAddress });
    const answer = await this.composed!({ conn, type: 'forward', name, family });
    if (!('addresses' in answer) || answer.addresses.length === 0) throw new ResolveError(`no addresses for ${name}`);
    return answer.addresses;
  }

  /** Reverse-resolve an IP literal for `conn`: interceptors, `onResolve` taps, then the resolver service. */
  async reverse(address: string, conn: ConnectionContext | undefined): Promise<readonly string[]> {
    if (this.composed === undefined) this.seal();
    if (this.plain && !isTapped(this.hooks.onResolve)) return this.resolver.reverse(address, { partition: conn ? conn.get(ResolverPartition)! : '', client: conn?.clientAddress });
    const answer = await this.composed!({ conn, type: 'reverse', name: address, family: 0 });
    if (!('names' in answer) || answer.names.length === 0) throw new ResolveError(`no names for ${address}`);
    return answer.names;
  }

  /** The chain's inner end: `onResolve` (bail) if tapped, else the resolver service. */
  private async answer(q: ResolveQuery): Promise<ResolveAnswer> {
    if (isTapped(this.hooks.onResolve)) {
      const answer = await this.hooks.onResolve.promise(q);
      if (answer !== undefined) {
        if (q.type === 'forward' ? !('addresses' in answer) || answer.addresses.length === 0 : !('names' in answer) || answer.names.length === 0) {
          throw new ResolveError(q.type === 'forward' ? `onResolve gave no addresses for ${q.name}` : `onResolve gave no names for ${q.name}`);
        }
        return answer;
      }
    }
    const options = { partition: q.conn ? q.conn.get(ResolverPartition)! : '', client: q.conn?.clientAddress };
    if (q.type === 'forward') return { addresses: await this.resolver.lookup(q.name, { family: q.family, ...options }) };
    return { names: await this.resolver.reverse(q.name, options) };
  }
}
