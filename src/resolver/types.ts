/**
 * The resolver service interface. The built-in implementation is {@link DnsResolver}; a plugin can
 * supply its own (`services.provide(Tokens.Resolver, …)`) or wrap it (`services.decorate`) in
 * `provision()`, or answer single lookups by tapping `onResolve`.
 * @packageDocumentation
 */
import type { ResolvedAddress } from '../kernel/hooks.js';

/** Options of one lookup. */
export interface LookupOptions {
  /** 4, 6, or 0 for both families. */
  readonly family: 0 | 4 | 6;
  /**
   * Cache partition: answers cached under one partition are never served to another. The kernel
   * passes the connection's isolation key (`''` when there is none).
   */
  readonly partition: string;
  /**
   * The client address the lookup is made for (`conn.clientAddress`), for the per-client share of
   * `resolver.maxPending` (counted by `clientKey(client)`: an IPv6 client by its /64).
   * `undefined` or `''` (no connection, a unix-socket client): only the global budget applies.
   */
  readonly client?: string;
}

/**
 * Resolves names and addresses. Implementations must refuse `.onion` names in every spelling a
 * resolver would fold to `.onion`: check `isOnionName(normalizeHost(name))` (src/protocol/names.ts),
 * as {@link DnsResolver} does, and query only the normalised name.
 */
export interface Resolver {
  /** Forward lookup; rejects with a `ResolveError` (code `SOCKSMITH_ERR_RESOLVE_*`) on failure. */
  lookup(name: string, options: LookupOptions): Promise<readonly ResolvedAddress[]>;
  /** Reverse (PTR) lookup of an IP literal; rejects with a `ResolveError` on failure. */
  reverse(address: string, options: Pick<LookupOptions, 'partition' | 'client'>): Promise<readonly string[]>;
  /** Drop every cached answer (all partitions). */
  clear(): void;
  /**
   * Optional: called once when the proxy (or a configuration a reload replaced) closes, after its
   * connections are gone. End pending lookups and release their sockets and timers, so that
   * nothing outlives `proxy.close()`.
   */
  close?(): void | Promise<void>;
}
