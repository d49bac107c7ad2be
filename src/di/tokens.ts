/**
 * Typed dependency-injection tokens for socksmith's services.
 *
 * Tokens are `Symbol.for('socksmith.<Name>')`, so a plugin that bundles its own copy of socksmith
 * still resolves the same services (deps.md, dual-instance hazard). Each token carries the type of
 * the service it stands for, so `resolveToken(container, Tokens.Config)` is typed.
 * @packageDocumentation
 */
import type { DependencyContainer } from 'tsyringe';
import type { ResolvedConfig } from '../config/types.js';
import type { Hooks } from '../kernel/hooks.js';
import type { Kernel } from '../kernel/kernel.js';
import type { NameResolution } from '../resolver/name-resolution.js';
import type { Resolver } from '../resolver/types.js';
import type { DispatchInterceptor, Upstream } from '../upstream/types.js';
import type { Logger } from '../logger.js';
import type { Clock } from '../clock.js';
import type { Metrics } from '../metrics/metrics.js';
import type { SecretStore } from './secrets.js';
import type { DestinationCheck, UsersStore } from './services.js';

/** A symbol that stands for a service of type `T`. */
export type Token<T> = symbol & { readonly __service?: T };

function token<T>(name: string): Token<T> {
  return Symbol.for(`socksmith.${name}`) as Token<T>;
}

/** The services every plugin and upstream can inject with `@inject(Tokens.X)`. */
export const Tokens = Object.freeze({
  /** The validated, normalized, frozen configuration ({@link ResolvedConfig}). */
  Config: token<ResolvedConfig>('Config'),
  /** The root pino logger (stderr). Connections log through `conn.log`, a child of it. */
  Logger: token<Logger>('Logger'),
  /** Monotonic and wall clocks, replaceable in tests. */
  Clock: token<Clock>('Clock'),
  /** The six kernel hooks, created once per proxy and frozen. */
  Hooks: token<Hooks>('Hooks'),
  /** The DNS resolver service (cache partitioned by isolation key). */
  Resolver: token<Resolver>('Resolver'),
  /** Name resolution as the kernel does it: `onResolve` taps first, then the resolver service. */
  NameResolution: token<NameResolution>('NameResolution'),
  /** The upstream every stream leaves through. */
  Upstream: token<Upstream>('Upstream'),
  /** The interceptors of `upstream.interceptors`, constructed, in config order (the kernel composes them into its dispatch). */
  UpstreamInterceptors: token<readonly DispatchInterceptor[]>('UpstreamInterceptors'),
  /** The kernel: hooks, services and the connection pipeline. */
  Kernel: token<Kernel>('Kernel'),
  /** The per-process secret ({@link SecretStore}); a cluster worker seeds it with the primary's secret. */
  SecretStore: token<SecretStore>('SecretStore'),
  /** May a stream reach an address outside its CONNECT (a BIND peer, a datagram's target)? Default: allow all; `policy` provides its own. */
  DestinationCheck: token<DestinationCheck>('DestinationCheck'),
  /** A users table that checks credentials; none by default (the `auth` plugin provides one). */
  UsersStore: token<UsersStore>('UsersStore'),
  /** The proxy's Prometheus metrics when `metrics` is configured, else undefined (the same object across reloads). */
  Metrics: token<Metrics | undefined>('Metrics'),
  /** The validated options of the plugin or upstream being constructed (registered in its child container). */
  PluginOptions: token<unknown>('PluginOptions'),
});

/** Resolve a token from a container with its type. */
export function resolveToken<T>(container: DependencyContainer, t: Token<T>): T {
  return container.resolve<T>(t);
}
