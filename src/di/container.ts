/**
 * Building the DI container of one proxy instance: explicit registrations, no global state.
 *
 * Each proxy gets its own child of tsyringe's root container (nothing is ever registered on the
 * root), so two proxies in one process share nothing. Services are registered there as
 * singletons: the instance lives on that registration, so the children that construct plugins
 * resolve the very same kernel, resolver and upstream (ContainerScoped would give each child its
 * own copy). Plugins and custom upstreams are resolved
 * from a further child in which `Tokens.PluginOptions` holds their validated options.
 * @packageDocumentation
 */
import { Lifecycle, container as rootContainer, instanceCachingFactory, type DependencyContainer } from 'tsyringe';
import type { Metrics } from '../metrics/metrics.js';
import { systemClock, type Clock } from '../clock.js';
import type { ResolvedConfig } from '../config/types.js';
import { ConfigError, errorMessage } from '../errors.js';
import { createHooks } from '../kernel/hooks.js';
import { Kernel } from '../kernel/kernel.js';
import { loadDefaultExport, validateOptions } from '../kernel/plugin-loader.js';
import type { Logger } from '../logger.js';
import { DnsResolver } from '../resolver/dns-resolver.js';
import { NameResolution } from '../resolver/name-resolution.js';
import { DirectUpstream } from '../upstream/direct.js';
import { Socks5Upstream } from '../upstream/socks5.js';
import type { Dispatch, DispatchInterceptor, Upstream } from '../upstream/types.js';
import { ProcessSecretStore } from './secrets.js';
import type { DestinationCheck } from './services.js';
import { Tokens } from './tokens.js';

/** A class tsyringe can construct. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Constructor<T> = new (...args: any[]) => T;

/** tsyringe's metadata key for `@inject()` tokens (`INJECTION_TOKEN_METADATA_KEY`): `{ [parameterIndex]: token }`. */
const INJECTION_TOKENS = 'injectionTokens';

/** The required `@inject()` tokens of a class's constructor, by parameter index (none for a plain class). */
export function injectionTokensOf(Class: Function): ReadonlyMap<number, unknown> {
  const raw = Reflect.getOwnMetadata?.(INJECTION_TOKENS, Class) as Record<string, unknown> | undefined;
  const out = new Map<number, unknown>();
  // tsyringe stores `{ token, multiple, isOptional }` for @inject() (and `{ token, transform }` for @injectWithTransform).
  // An optional one (`{ isOptional: true }`) may stand for nothing: tsyringe then passes undefined.
  for (const [k, v] of Object.entries(raw ?? {})) {
    if (v !== null && typeof v === 'object' && 'token' in v) {
      if (!(v as { isOptional?: boolean }).isOptional) out.set(Number(k), (v as { token: unknown }).token);
    } else out.set(Number(k), v);
  }
  return out;
}

function tokenName(t: unknown): string {
  if (typeof t === 'symbol') {
    const key = Symbol.keyFor(t) ?? t.description ?? String(t);
    return key.startsWith('socksmith.') ? `Tokens.${key.slice('socksmith.'.length)}` : key;
  }
  return typeof t === 'function' ? t.name || 'an anonymous class' : String(t);
}

/**
 * Construct `Class` from a child of `parent` in which `Tokens.PluginOptions` is `options`.
 * - no constructor parameters, or a plain class (no `@inject()` tokens, no decorator metadata):
 *   `new Class(options)`;
 * - otherwise every `@inject()` token must be registered, or this throws one line naming the
 *   parameter and the token ({@link UnknownTokenError}); then tsyringe constructs it, and its
 *   error (a constructor that threw, a parameter it cannot resolve) propagates.
 * `onSecondCopy` is for a class whose folder has a second copy of tsyringe (the loader finds it):
 * its decorators recorded it there, so tsyringe here cannot construct it. It runs when
 * construction fails (it may throw a better error); if it returns, `new Class(options)` is used.
 */
export function constructWithOptions<T>(parent: DependencyContainer, Class: Constructor<T>, options: unknown, onSecondCopy?: () => void): T {
  // No parameters to inject: construct directly, handing over the options (harmless if unused).
  if (Class.length === 0) return new Class(options);
  const tokens = injectionTokensOf(Class);
  if (tokens.size === 0 && Reflect.getOwnMetadata?.('design:paramtypes', Class) === undefined) return new Class(options);
  const child = parent.createChildContainer();
  child.register(Tokens.PluginOptions, { useValue: options });
  for (const [index, token] of tokens) {
    // A class token is constructed by tsyringe itself; a string or symbol must be registered.
    if (typeof token !== 'function' && !child.isRegistered(token as symbol, true)) throw new UnknownTokenError(index, tokenName(token));
  }
  if (onSecondCopy === undefined) return child.resolve(Class);
  try {
    return child.resolve(Class);
  } catch {
    onSecondCopy();
    return new Class(options);
  }
}

/** A constructor parameter asks for a token no socksmith service (nor an earlier provide()) stands for. */
export class UnknownTokenError extends Error {
  constructor(
    readonly index: number,
    readonly token: string,
  ) {
    super(`constructor parameter ${index} asks for ${token}, which is not a socksmith service (see Tokens)`);
    this.name = 'UnknownTokenError';
  }
}

/** Is this a class whose instances look like an {@link Upstream}? */
function isUpstreamClass(value: unknown): value is Constructor<Upstream> & { meta?: { schema?: object } } {
  return typeof value === 'function' && typeof (value as { prototype?: { connect?: unknown } }).prototype?.connect === 'function';
}

/** A class whose instances wrap the upstream dispatch (an `upstream.interceptors` module). */
function isInterceptorClass(value: unknown): value is Constructor<{ intercept(next: Dispatch): Dispatch }> & { meta?: { schema?: object } } {
  return typeof value === 'function' && typeof (value as { prototype?: { intercept?: unknown } }).prototype?.intercept === 'function';
}

/** Load, validate and construct the `upstream.interceptors` modules, in order; every problem at once. */
async function loadInterceptors(c: DependencyContainer, config: ResolvedConfig): Promise<DispatchInterceptor[]> {
  const out: DispatchInterceptor[] = [];
  const errors: ConfigError[] = [];
  for (const [i, entry] of (config.upstream.interceptors ?? []).entries()) {
    const key = `upstream.interceptors.${i}`;
    try {
      const Class = await loadDefaultExport(entry.module, config.source.dir, `${key}.module`);
      if (!isInterceptorClass(Class)) {
        throw new ConfigError(`${key}.module`, `${entry.module} must export (default) a class with an intercept(next) method`, 'SOCKSMITH_ERR_CONFIG_MODULE');
      }
      const options = validateOptions(Class.meta?.schema, entry.options, `${key}.options`);
      const instance = constructWithOptions(c, Class, options);
      out.push((next) => instance.intercept(next));
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      errors.push(...(err.errors as ConfigError[]));
    }
  }
  if (errors.length > 0) throw ConfigError.all(errors);
  return out;
}

/** The default `Tokens.DestinationCheck`: every destination allowed. */
const allowAll: DestinationCheck = () => undefined;

/** Build the container for one proxy: config, logger, clock, hooks, secret store, resolver, upstream, kernel. */
export async function createContainer(config: ResolvedConfig, logger: Logger, clock: Clock = systemClock, metrics?: Metrics): Promise<DependencyContainer> {
  const c = rootContainer.createChildContainer();
  c.register(Tokens.Config, { useValue: config });
  c.register(Tokens.Logger, { useValue: logger });
  c.register(Tokens.Clock, { useValue: clock });
  c.register(Tokens.Hooks, { useValue: createHooks() });
  c.register(Tokens.SecretStore, { useValue: new ProcessSecretStore() });
  c.register(Tokens.Metrics, { useValue: metrics });
  // Allow-all until a plugin provides its own (policy does).
  c.register(Tokens.DestinationCheck, { useValue: allowAll });
  c.register(Tokens.Resolver, { useClass: DnsResolver }, { lifecycle: Lifecycle.Singleton });
  c.register(Tokens.NameResolution, { useClass: NameResolution }, { lifecycle: Lifecycle.Singleton });
  const up = config.upstream;
  if (up.type === 'direct') {
    c.register(Tokens.Upstream, { useClass: DirectUpstream }, { lifecycle: Lifecycle.Singleton });
  } else if (up.type === 'socks5') {
    c.register(Tokens.Upstream, { useClass: Socks5Upstream }, { lifecycle: Lifecycle.Singleton });
  } else {
    const Class = await loadDefaultExport(up.module, config.source.dir, 'upstream.module');
    if (!isUpstreamClass(Class)) {
      throw new ConfigError('upstream.module', `${up.module} must export (default) a class with a connect(destination, conn, options) method`, 'SOCKSMITH_ERR_CONFIG_MODULE');
    }
    const options = validateOptions(Class.meta?.schema, up.options, 'upstream.options');
    // Constructed when first resolved: after every plugin's provision(), so it gets the services as provided and decorated.
    c.register(Tokens.Upstream, { useFactory: instanceCachingFactory((child) => constructWithOptions(child, Class, options)) });
  }
  c.register(Tokens.UpstreamInterceptors, { useValue: await loadInterceptors(c, config) });
  c.register(Tokens.Kernel, { useClass: Kernel }, { lifecycle: Lifecycle.Singleton });
  return c;
}
