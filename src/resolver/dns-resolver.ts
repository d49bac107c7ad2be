/**
 * The built-in resolver service: the system's resolver (getaddrinfo) by default, or the DNS
 * servers in `resolver.servers`; answers cached by TTL in a cache partitioned by isolation key.
 * `.onion` names are refused here, at the DNS boundary, so no code path can leak one to DNS.
 * @packageDocumentation
 */
import dns from 'node:dns';
import { inject, injectable } from 'tsyringe';
import { Tokens } from '../di/tokens.js';
import type { ResolvedConfig } from '../config/types.js';
import type { Clock } from '../clock.js';
import { ResolveError, errorMessage } from '../errors.js';
import type { ResolvedAddress } from '../kernel/hooks.js';
import { classifyHost } from '../protocol/address.js';
import { reverseName } from '../protocol/names.js';
import { isOnionName, normalizeHost } from '../protocol/names.js';
import { PartitionedCache } from './cache.js';
import { channels } from '../kernel/diagnostics.js';
import type { LookupOptions, Resolver } from './types.js';

type Cached = { ok: true; addresses: readonly ResolvedAddress[] } | { ok: false; message: string };
type CachedNames = { ok: true; names: readonly string[] } | { ok: false; message: string };

/** DNS resolution with a partitioned TTL cache. */
@injectable()
export class DnsResolver implements Resolver {
  private readonly cache: PartitionedCache<Cached>;
  private readonly ptrCache: PartitionedCache<CachedNames>;
  private readonly inflight = new Map<string, Promise<readonly ResolvedAddress[]>>();
  /** Queries in flight by the client address that started them (see `resolver.maxPendingPerClient`). */
  private readonly pendingByClient = new Map<string, number>();
  private readonly dns: dns.promises.Resolver | undefined;
  private readonly cfg: ResolvedConfig['resolver'];

  constructor(@inject(Tokens.Config) config: ResolvedConfig, @inject(Tokens.Clock) clock: Clock) {
    this.cfg = config.resolver;
    this.cache = new PartitionedCache(this.cfg.cache.maxEntries, clock.now);
    this.ptrCache = new PartitionedCache(this.cfg.cache.maxEntries, clock.now);
    if (this.cfg.servers) {
      this.dns = new dns.promises.Resolver({ timeout: this.cfg.timeout, tries: this.cfg.tries });
      this.dns.setServers([...this.cfg.servers]);
    }
  }

  /** Forward lookup through the cache. IP literals are returned as they are, without DNS. */
  async lookup(raw: string, options: LookupOptions): Promise<readonly ResolvedAddress[]> {
    // The DNS boundary: the name is checked in the form the resolver would query. Node folds every
    // name with UTS-46 before getaddrinfo / c-ares see it (`ｘ.ｏｎｉｏｎ` is queried as `x.onion`),
    // so the onion check runs on the normalised name, and only that name is ever queried.
    const name = normalizeHost(raw);
    if (name === undefined) throw new ResolveError('name does not normalise (UTS-46); refused', { code: 'SOCKSMITH_ERR_RESOLVE_BAD_NAME' });
    const literal = classifyHost(name, 0);
    if (literal.kind !== 'domain') return [{ address: literal.host, family: literal.kind === 'ipv4' ? 4 : 6 }];
    if (isOnionName(name)) {
      throw new ResolveError(`refusing to resolve ${name}: .onion names never go to DNS`, { code: 'SOCKSMITH_ERR_RESOLVE_ONION' });
    }
    const key = `${options.family}:${name}`;
    const hit = this.cache.get(options.partition, key);
    if (hit) {
      if (channels.dns.hasSubscribers) channels.dns.publish({ type: 'forward', cached: true, ok: hit.ok });
      if (hit.ok) return hit.addresses;
      throw new ResolveError(hit.message);
    }
    const flightKey = `${options.partition}\u0000${key}`;
    let p = this.inflight.get(flightKey);
    if (!p) {
      if (this.inflight.size >= this.cfg.maxPending) {
        throw new ResolveError(`cannot resolve ${name}: ${this.cfg.maxPending} lookups already pending (resolver.maxPending)`, { rep: 0x01 });
      }
      // Each client address has its share of the budget, so that one client with lookups stuck
      // at a silent server cannot leave none for the others. A lookup that joins a query already
      // in flight (same name and partition) costs nothing and is never refused here.
      const client = options.client || undefined;
      if (client !== undefined) {
        const mine = this.pendingByClient.get(client) ?? 0;
        if (mine >= this.cfg.maxPendingPerClient) {
          throw new ResolveError(`cannot resolve ${name}: ${mine} lookups of this client already pending (resolver.maxPendingPerClient)`, { rep: 0x01 });
        }
        this.pendingByClient.set(client, mine + 1);
      }
      p = this.query(name, options.family).then(
        ({ addresses, ttl }) => {
          if (channels.dns.hasSubscribers) channels.dns.publish({ type: 'forward', cached: false, ok: true });
          this.cache.set(options.partition, key, { ok: true, addresses }, ttl * 1000);
          return addresses;
        },
        (err: unknown) => {
          if (channels.dns.hasSubscribers) channels.dns.publish({ type: 'forward', cached: false, ok: false });
          const message = `cannot resolve ${name}: ${errorMessage(err)}`;
          this.cache.set(options.partition, key, { ok: false, message }, this.cfg.cache.negativeTtl * 1000);
          throw new ResolveError(message, { cause: err });
        },
      );
      p.finally(() => {
        this.inflight.delete(flightKey);
        if (client === undefined) return;
        const n = (this.pendingByClient.get(client) ?? 1) - 1;
        if (n <= 0) this.pendingByClient.delete(client);
        else this.pendingByClient.set(client, n);
      }).catch(() => {});
      this.inflight.set(flightKey, p);
    }
    return p;
  }

  private async query(name: string, family: 0 | 4 | 6): Promise<{ addresses: ResolvedAddress[]; ttl: number }> {
    const maxTtl = this.cfg.cache.maxTtl;
    if (!this.dns) {
      const res = await dns.promises.lookup(name, { all: true, family, order: 'ipv4first' });
      if (res.length === 0) throw new Error('no addresses');
      return { addresses: res.map((r) => ({ address: r.address, family: r.family === 6 ? 6 : 4 })), ttl: Math.min(this.cfg.cache.systemTtl, maxTtl) };
    }
    const resolver = this.dns;
    const want4 = family !== 6;
    const want6 = family !== 4;
    const [r4, r6] = await Promise.allSettled([
      want4 ? resolver.resolve4(name, { ttl: true }) : Promise.resolve([]),
      want6 ? resolver.resolve6(name, { ttl: true }) : Promise.resolve([]),
    ]);
    const addresses: ResolvedAddress[] = [];
    let ttl = maxTtl;
    if (r4.status === 'fulfilled') for (const a of r4.value) (addresses.push({ address: a.address, family: 4 }), (ttl = Math.min(ttl, a.ttl)));
    if (r6.status === 'fulfilled') for (const a of r6.value) (addresses.push({ address: a.address, family: 6 }), (ttl = Math.min(ttl, a.ttl)));
    if (addresses.length === 0) {
      const failure = [r4, r6].find((r) => r.status === 'rejected') as PromiseRejectedResult | undefined;
      throw failure ? failure.reason : new Error('no addresses');
    }
    return { addresses, ttl };
  }

  /** Reverse lookup through the cache. */
  async reverse(address: string, options: Pick<LookupOptions, 'partition'>): Promise<readonly string[]> {
    const key = `ptr:${address}`;
    const hit = this.ptrCache.get(options.partition, key);
    if (hit) {
      if (channels.dns.hasSubscribers) channels.dns.publish({ type: 'reverse', cached: true, ok: hit.ok });
      if (hit.ok) return hit.names;
      throw new ResolveError(hit.message);
    }
    try {
      // With configured servers, ask them for the PTR record itself: Resolver.reverse() would
      // answer from /etc/hosts first and never ask the servers.
      const names = this.dns ? await this.dns.resolvePtr(reverseName(address)) : await dns.promises.reverse(address);
      if (names.length === 0) throw new Error('no PTR record');
      if (channels.dns.hasSubscribers) channels.dns.publish({ type: 'reverse', cached: false, ok: true });
      this.ptrCache.set(options.partition, key, { ok: true, names }, Math.min(this.cfg.cache.systemTtl, this.cfg.cache.maxTtl) * 1000);
      return names;
    } catch (err) {
      if (channels.dns.hasSubscribers) channels.dns.publish({ type: 'reverse', cached: false, ok: false });
      const message = `cannot reverse-resolve ${address}: ${errorMessage(err)}`;
      this.ptrCache.set(options.partition, key, { ok: false, message }, this.cfg.cache.negativeTtl * 1000);
      throw new ResolveError(message, { cause: err });
    }
  }

  /** Drop all cached answers. */
  clear(): void {
    this.cache.clear();
    this.ptrCache.clear();
  }
}
