/**
 * Name resolution as the kernel does it: IP literals answered locally, then `onResolve` taps, then
 * the resolver service, with the connection's isolation key as cache partition.
 * @packageDocumentation
 */
import { inject, injectable } from 'tsyringe';
import { Tokens } from '../di/tokens.js';
import { ResolveError } from '../errors.js';
import type { ConnectionContext } from '../kernel/context.js';
import { type Hooks, type ResolvedAddress, isTapped } from '../kernel/hooks.js';
import { classifyHost } from '../protocol/address.js';
import { ResolverPartition } from './partition.js';
import { normalizeHost } from '../protocol/names.js';
import type { Resolver } from './types.js';

/** The `onResolve` → resolver pipeline, shared by upstreams and plugins. */
@injectable()
export class NameResolution {
  constructor(
    @inject(Tokens.Hooks) private readonly hooks: Hooks,
    @inject(Tokens.Resolver) private readonly resolver: Resolver,
  ) {}

  /**
   * Resolve `name` for `conn`. IP literals come back as they are. Rejects with a `ResolveError`
   * (or whatever deliberate error a tap threw).
   */
  async lookup(raw: string, family: 0 | 4 | 6, conn: ConnectionContext | undefined): Promise<readonly ResolvedAddress[]> {
    // Destinations arrive normalised (the kernel does it once, at entry); a name a plugin made up
    // is normalised here, so onResolve taps and the resolver see the same form as every check.
    const name = normalizeHost(raw);
    if (name === undefined) throw new ResolveError('name does not normalise (UTS-46); refused', { code: 'SOCKSMITH_ERR_RESOLVE_BAD_NAME' });
    const literal = classifyHost(name, 0);
    if (literal.kind !== 'domain') return [{ address: literal.host, family: literal.kind === 'ipv4' ? 4 : 6 }];
    if (isTapped(this.hooks.onResolve)) {
      const answer = await this.hooks.onResolve.promise({ conn, type: 'forward', name, family });
      if (answer !== undefined) {
        if (!('addresses' in answer) || answer.addresses.length === 0) throw new ResolveError(`onResolve gave no addresses for ${name}`);
        return answer.addresses;
      }
    }
    return this.resolver.lookup(name, { family, partition: conn ? conn.get(ResolverPartition)! : '', client: conn?.clientAddress });
  }

  /** Reverse-resolve an IP literal for `conn`: `onResolve` taps, then the resolver service. */
  async reverse(address: string, conn: ConnectionContext | undefined): Promise<readonly string[]> {
    if (isTapped(this.hooks.onResolve)) {
      const answer = await this.hooks.onResolve.promise({ conn, type: 'reverse', name: address, family: 0 });
      if (answer !== undefined) {
        if (!('names' in answer) || answer.names.length === 0) throw new ResolveError(`onResolve gave no names for ${address}`);
        return answer.names;
      }
    }
    return this.resolver.reverse(address, { partition: conn ? conn.get(ResolverPartition)! : '', client: conn?.clientAddress });
  }
}
