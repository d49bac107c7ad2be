/**
 * Name resolution as a chain (undici-style interceptors), outermost first:
 * 1. the kernel: the name normalised (UTS-46), IP literals answered at once (fixed, first);
 * 2. plugin interceptors, `kernel.resolution.intercept({ name, stage }, next => q => …)`, by stage;
 * 3. the `onResolve` hook (bail: a tap may answer instead of the default);
 * 4. the resolver service, with the stream's `ResolverPartition` as cache partition.
 *
 * An interceptor therefore sees, and may filter, whatever answered: an `onResolve` tap at any
 * stage, or the resolver (the `policy` plugin relies on it).
 * @packageDocumentation
 */
import type { ResolveAnswer, ResolveQuery } from '../kernel/hooks.js';

/** Resolve one query (forward: `{ addresses }`; reverse: `{ names }`). Rejects with a `ResolveError` or any error with a numeric `rep`. */
export type Resolve = (query: ResolveQuery) => Promise<ResolveAnswer>;

/** Wrap a {@link Resolve}. */
export type ResolveInterceptor = (next: Resolve) => Resolve;
