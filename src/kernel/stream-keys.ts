/**
 * Stream keys: per-stream state that a plugin owns, typed, without a field on
 * {@link ConnectionContext} for it. A plugin declares a key once, at module level, and reads and
 * writes it on the stream (`conn.get(key)`, `conn.set(key, v)`, `conn.setLazy(key, fn)`); another
 * plugin may read it if it imports the key. The kernel declares the few keys it reads itself, with
 * neutral names: {@link WideReplyCodes} here, `ResolverPartition` (src/resolver/partition.ts) and
 * `UpstreamAuth` (src/upstream/credentials.ts).
 *
 * Storage is an array indexed by the key's number, created on a stream's first write, so a stream
 * nobody writes to allocates nothing.
 * @packageDocumentation
 */

/** A typed slot of per-stream state. Declare it with {@link declareKey}; never build one by hand. */
export interface StreamKey<T> {
  /** For humans (error messages, debugging): `'<plugin>.<what>'` by convention. */
  readonly name: string;
  /** The slot's index, unique in the process. */
  readonly index: number;
  /** What `conn.get(key)` returns when nothing was set. */
  readonly default: T | undefined;
  /** Carries `T` for the type checker only. */
  readonly __t?: T;
}

/** The process-wide key counter, shared by every copy of socksmith in the process (a plugin that bundles its own still gets distinct slots). */
const COUNTER = Symbol.for('socksmith.streamKeys');
type Counter = { count: number };

/** Number of keys declared so far in this process. */
export function streamKeyCount(): number {
  return ((globalThis as Record<symbol, Counter | undefined>)[COUNTER]?.count ?? 0);
}

/**
 * Declare a stream key. Call it once, at module level (each call makes a new slot).
 * @example
 * ```ts
 * export const Tenant = declareKey<string>('my-plugin.tenant');
 * // in an onRequest tap: conn.set(Tenant, 'a');   elsewhere: conn.get(Tenant)
 * ```
 */
export function declareKey<T>(name: string, options?: { readonly default?: T }): StreamKey<T> {
  const g = globalThis as Record<symbol, Counter | undefined>;
  const counter = (g[COUNTER] ??= { count: 0 });
  return Object.freeze({ name, index: counter.count++, default: options?.default });
}

/**
 * Whether reply codes outside RFC 1928 (above `08`: Tor's F0–F7, or a plugin's) reach the client
 * as they are. Default false: the pipeline narrows such a code to its RFC 1928 equivalent
 * (`collapseRep`) after `onReply`. The `extended-errors` plugin sets it for the streams it serves.
 */
export const WideReplyCodes: StreamKey<boolean> = declareKey<boolean>('socksmith.wideReplyCodes', { default: false });
