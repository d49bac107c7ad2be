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
import { clientKey } from '../kernel/client-key.js';
import type { LookupOptions, Resolver } from './types.js';

type Cached = { ok: true; addresses: readonly ResolvedAddress[] } | { ok: false; message: string };
type CachedNames = { ok: true; names: readonly string[] } | { ok: false; message: string };

/**
 * Lookups in flight: what `resolver.maxPending` and `resolver.maxPendingPerClient` count. One per
 * proxy, handed from each configuration's resolver to the next on a reload, as the connection
 * budget is: the lookups an old configuration still waits for count against the new one's limits.
 */
class PendingBudget {
  /** Queries in flight (forward and reverse), every generation together. */
  total = 0;
  /** The same by the client that started them, keyed by {@link clientKey} (an IPv6 client by its /64). */
  readonly byClient = new Map<string, number>();
}

/** DNS resolution with a partitioned TTL cache. */
@injectable()
export class DnsResolver implements Resolver {
  private readonly cache: PartitionedCache<Cached>;
  private readonly ptrCache: PartitionedCache<CachedNames>;
  private readonly inflight = new Map<string, Promise<readonly ResolvedAddress[]>>();
  private readonly ptrInflight = new Map<string, Promise<readonly string[]>>();
  /**
   * Queries in flight, in all and by client, for `resolver.maxPending` and
   * `resolver.maxPendingPerClient`; handed on across a reload ({@link DnsResolver.shareBudget}).
   */
  private budget = new PendingBudget();
  /** Set by close(): new lookups are refused. */
  private closed = false;
  /** Fail each pending query at once (close()). */
  private readonly failPending = new Set<(err: Error) => void>();
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
      const client = this.admit(`resolve ${name}`, options.client);
      p = this.untilClosed(this.query(name, options.family)).then(
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
        this.settled(client);
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

  /**
   * Reverse lookup through the cache. Counted in `resolver.maxPending` and the client's
   * `resolver.maxPendingPerClient` like a forward lookup; one that joins the same query already
   * in flight (same address and partition) costs nothing.
   */
  async reverse(address: string, options: Pick<LookupOptions, 'partition' | 'client'>): Promise<readonly string[]> {
    const key = `ptr:${address}`;
    const hit = this.ptrCache.get(options.partition, key);
    if (hit) {
      if (channels.dns.hasSubscribers) channels.dns.publish({ type: 'reverse', cached: true, ok: hit.ok });
      if (hit.ok) return hit.names;
      throw new ResolveError(hit.message);
    }
    const flightKey = `${options.partition}\u0000${key}`;
    let p = this.ptrInflight.get(flightKey);
    if (!p) {
      const client = this.admit(`reverse-resolve ${address}`, options.client);
      p = this.untilClosed(this.queryPtr(address)).then(
        (names) => {
          if (channels.dns.hasSubscribers) channels.dns.publish({ type: 'reverse', cached: false, ok: true });
          this.ptrCache.set(options.partition, key, { ok: true, names }, Math.min(this.cfg.cache.systemTtl, this.cfg.cache.maxTtl) * 1000);
          return names;
        },
        (err: unknown) => {
          if (channels.dns.hasSubscribers) channels.dns.publish({ type: 'reverse', cached: false, ok: false });
          const message = `cannot reverse-resolve ${address}: ${errorMessage(err)}`;
          this.ptrCache.set(options.partition, key, { ok: false, message }, this.cfg.cache.negativeTtl * 1000);
          throw new ResolveError(message, { cause: err });
        },
      );
      p.finally(() => {
        this.ptrInflight.delete(flightKey);
        this.settled(client);
      }).catch(() => {});
      this.ptrInflight.set(flightKey, p);
    }
    return p;
  }

  private async queryPtr(address: string): Promise<readonly string[]> {
    // With configured servers, ask them for the PTR record itself: Resolver.reverse() would
    // answer from /etc/hosts first and never ask the servers.
    const names = this.dns ? await this.dns.resolvePtr(reverseName(address)) : await dns.promises.reverse(address);
    if (names.length === 0) throw new Error('no PTR record');
    return names;
  }

  /**
   * Take one query of the budgets, or throw (REP 01) when `resolver.maxPending` is used up, the
   * client (by {@link clientKey}) holds its `resolver.maxPendingPerClient` share, or the
   * resolver is closed. Each client has its share so that one client with lookups stuck at a
   * silent server cannot leave none for the others. Returns the client key to give back to
   * {@link settled}.
   */
  private admit(what: string, client: string | undefined): string | undefined {
    if (this.closed) throw new ResolveError(`cannot ${what}: the resolver is closed`, { rep: 0x01 });
    const b = this.budget;
    if (b.total >= this.cfg.maxPending) {
      throw new ResolveError(`cannot ${what}: ${this.cfg.maxPending} lookups already pending (resolver.maxPending)`, { rep: 0x01 });
    }
    const k = client ? clientKey(client) : undefined;
    if (k !== undefined) {
      const mine = b.byClient.get(k) ?? 0;
      if (mine >= this.cfg.maxPendingPerClient) {
        throw new ResolveError(`cannot ${what}: ${mine} lookups of this client already pending (resolver.maxPendingPerClient)`, { rep: 0x01 });
      }
      b.byClient.set(k, mine + 1);
    }
    b.total++;
    return k;
  }

  /** Give back what {@link admit} took. */
  private settled(k: string | undefined): void {
    const b = this.budget;
    b.total--;
    if (k === undefined) return;
    const n = (b.byClient.get(k) ?? 1) - 1;
    if (n <= 0) b.byClient.delete(k);
    else b.byClient.set(k, n);
  }

  /**
   * @internal On a reload, before this (new) resolver takes a lookup: count the lookups that
   * `previous` (the replaced configuration's resolver) still has in flight against this one's
   * `resolver.maxPending` and `maxPendingPerClient`, and share the counts from now on, so that a
   * reload does not hand every client a fresh allowance. Each resolver checks the shared counts
   * against its own configuration's limits: after a reload that changes them, new lookups meet
   * the new limits at once (a raised limit admits more as soon as it is in force; a lowered one
   * refuses new lookups until the ones in flight, old and new, are back under it), and the old
   * configuration's connections, still on the old resolver, keep meeting the old limits.
   */
  shareBudget(previous: DnsResolver): void {
    if (this.budget.total > 0) throw new Error('shareBudget: this resolver has lookups in flight already');
    this.budget = previous.budget;
  }

  /** `work`, or a rejection as soon as the resolver closes, whichever comes first. */
  private untilClosed<T>(work: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.failPending.add(reject);
      work.then(
        (v) => {
          this.failPending.delete(reject);
          resolve(v);
        },
        (err: unknown) => {
          this.failPending.delete(reject);
          reject(err);
        },
      );
    });
  }

  /**
   * End every pending lookup (each fails at once with a `ResolveError`) and refuse new ones.
   * With `resolver.servers`, the queries are cancelled, so their sockets and timers go too; the
   * system resolver's getaddrinfo calls cannot be cancelled and finish in the thread pool on
   * their own, their answers unused. Idempotent.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const pending = [...this.failPending];
    this.failPending.clear();
    for (const fail of pending) fail(new Error('the resolver closed'));
    this.dns?.cancel();
    this.clear();
  }

  /** Drop all cached answers. */
  clear(): void {
    this.cache.clear();
    this.ptrCache.clear();
  }
}
