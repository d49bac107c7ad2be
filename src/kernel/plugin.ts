/**
 * The plugin contract: a class with static `meta` and an `apply(kernel)` method.
 *
 * Lifecycle (Caddy's modules, fastify's pluginTimeout): options validated against `meta.schema` →
 * construct (through DI, options injected under `Tokens.PluginOptions`; no side effects) →
 * `provision(services)` (optional) → `apply(api)` taps hooks → `start()` (async, bounded by `timeouts.pluginStart`) → … →
 * `close()` (must work even if `start()` failed or never ran).
 * @packageDocumentation
 */
import type { PluginApi, ServiceRegistry } from './api.js';

/** Static description of a plugin class. */
export interface PluginMeta {
  /** The plugin's name: its config key and the name of its taps (kebab-case). */
  readonly name: string;
  /** Plugins that must be enabled too; checked at registration, the error names both. */
  readonly dependsOn?: readonly string[];
  /** JSON schema of the options object (additionalProperties: false, a description per key). */
  readonly schema?: object;
  /** One line for docs and `--help`. */
  readonly description?: string;
}

/** A plugin instance. */
export interface SocksmithPlugin {
  /**
   * Optional, before `apply()`: supply (`services.provide`) or wrap (`services.decorate`) a
   * service such as `Tokens.Resolver`, `Tokens.Upstream`, `Tokens.UsersStore` or
   * `Tokens.DestinationCheck`. Synchronous; in config order; the kernel is built after it.
   */
  provision?(services: ServiceRegistry): void;
  /** Tap the hooks and add interceptors. Called once, synchronously, before any listener binds. */
  apply(api: PluginApi): void;
  /** Optional async start (open files, warm caches). Bounded by `timeouts.pluginStart`. */
  start?(): Promise<void> | void;
  /**
   * True when this plugin, as configured, keeps unknown clients out (authentication, a client
   * ACL admitting only loopback and private networks). socksmith refuses to listen on a non-loopback address unless some plugin says so, or
   * the config sets `allowOpenProxy: true`.
   */
  restrictsClients?(): boolean;
  /**
   * When this plugin tries to keep clients out but, as configured, does not keep the public out
   * (`restrictsClients()` false): the config key at fault and why, in a few words. The open-proxy
   * check names it instead of the listener.
   */
  openProxyProblem?(): { readonly key: string; readonly reason: string } | undefined;
  /** Optional cleanup at shutdown; called even if `start()` failed. */
  close?(): Promise<void> | void;
}

/** A plugin class: constructible (through tsyringe) and carrying {@link PluginMeta}. */
export interface PluginClass {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  new (...args: any[]): SocksmithPlugin;
  readonly meta: PluginMeta;
}
