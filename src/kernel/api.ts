/**
 * What a plugin gets: {@link PluginApi} in `apply()`, and {@link ServiceRegistry} in the optional
 * `provision()` before it (Caddy's Provision). Plugins see these narrow views, not the kernel's
 * internals (connections, limits, teardown).
 * @packageDocumentation
 */
import type { Clock } from '../clock.js';
import type { ResolvedConfig } from '../config/types.js';
import type { Token } from '../di/tokens.js';
import type { Logger } from '../logger.js';
import type { NameResolution } from '../resolver/name-resolution.js';
import type { ConnectionContext } from './context.js';
import type { UpstreamDispatch } from './dispatch.js';
import type { Hooks } from './hooks.js';

/** The services a plugin reads (any token of `Tokens`). */
export interface ServiceReader {
  /** The service behind `token` (the proxy's singleton, as provided and decorated). */
  get<T>(token: Token<T>): T;
}

/**
 * What `provision(services)` receives: supply or decorate a service before the kernel is built.
 * Provisionable: `Tokens.Resolver`, `Tokens.NameResolution`, `Tokens.Upstream`,
 * `Tokens.UsersStore`, `Tokens.DestinationCheck` (and any token of your own).
 */
export interface ServiceRegistry extends ServiceReader {
  /** Replace the service behind `token` (the last provider wins; a debug line names both plugins). */
  provide<T>(token: Token<T>, value: T): void;
  /** Wrap the service behind `token`; wrappers stack in provision order, applied when the service is first built. */
  decorate<T>(token: Token<T>, wrap: (inner: T) => T): void;
}

/** What `apply(api)` receives. */
export interface PluginApi {
  /** The hooks (onAccept, onGreeting, onAuth, onRequest, onResolve, onReply, onData). Tap them here. */
  readonly hooks: Hooks;
  /** The validated, frozen configuration. */
  readonly config: ResolvedConfig;
  /** The root logger (per connection use `conn.log`). */
  readonly logger: Logger;
  /** Monotonic and wall clocks. */
  readonly clock: Clock;
  /** The proxy's services, by token (read-only after provision). */
  readonly services: ServiceReader;
  /** The upstream dispatch: add interceptors; run F0/F1 at the upstream (`canQuery`). */
  readonly dispatch: UpstreamDispatch;
  /** Name resolution: add interceptors; `lookup()` / `reverse()` the way the kernel does. */
  readonly resolution: NameResolution;
  /** A signal that aborts after `timeouts.connect` or when the connection goes away (for a lookup made for `conn`). */
  lookupSignal(conn: ConnectionContext): AbortSignal;
}
