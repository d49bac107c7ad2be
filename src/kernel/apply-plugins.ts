/**
 * Constructing and applying plugins, then starting and closing them (Caddy's module lifecycle).
 * @packageDocumentation
 */
import type { DependencyContainer } from 'tsyringe';
import { constructWithOptions, injectionTokensOf } from '../di/container.js';
import { Tokens, resolveToken, type Token } from '../di/tokens.js';
import type { ServiceRegistry } from './api.js';
import { PluginError, SocksmithError, errorMessage } from '../errors.js';
import type { Kernel } from './kernel.js';
import type { SocksmithPlugin } from './plugin.js';
import type { LoadedPlugin } from './plugin-loader.js';

/** A constructed, applied plugin. */
export interface AppliedPlugin {
  readonly name: string;
  readonly instance: SocksmithPlugin;
  /** The module file of a custom plugin (for error messages). */
  readonly file?: string;
  /** A second copy of socksmith/tsyringe seen from the plugin's folder (for error messages). */
  readonly note?: string;
}

/** Services a plugin may supply or decorate in `provision()`: built only after every plugin provisioned. */
const PROVISIONABLE: ReadonlySet<symbol> = new Set<symbol>([Tokens.Resolver, Tokens.NameResolution, Tokens.Upstream, Tokens.UsersStore, Tokens.DestinationCheck]);
/** Finalised in this order, so a decorated Resolver is what NameResolution and the upstream get. */
const FINALISE_ORDER: readonly symbol[] = [Tokens.Resolver, Tokens.NameResolution, Tokens.Upstream, Tokens.UsersStore, Tokens.DestinationCheck];

/**
 * Build one generation's plugins and kernel (Caddy's module lifecycle):
 * 1. construct each plugin through DI (options under `Tokens.PluginOptions`);
 * 2. `provision(services)` in order: a plugin may provide or decorate a service;
 * 3. the services are built (decorators applied) and the kernel with them;
 * 4. `apply(kernel.api)` in order.
 * A throw in any phase is a {@link PluginError} naming the plugin, its file and the phase.
 */
export function applyPlugins(container: DependencyContainer, plugins: readonly LoadedPlugin[]): { kernel: Kernel; plugins: AppliedPlugin[] } {
  const out: AppliedPlugin[] = [];
  /** Provisionable services a constructor already took (they are fixed from then on), and by whom. */
  const fixedBy = new Map<symbol, string>();
  for (const p of plugins) {
    let instance: SocksmithPlugin;
    try {
      // A class decorated against a second copy of tsyringe: the loader named that copy.
      const onSecondCopy = p.note
        ? () => {
            if (p.Class.length > 1) throw new Error(`tsyringe has no type information for its ${p.Class.length} constructor parameters`);
          }
        : undefined;
      instance = constructWithOptions(container, p.Class, p.options, onSecondCopy);
    } catch (err) {
      throw passConfigError(err) ?? new PluginError(p.name, 'constructor', p.file, err, p.note);
    }
    for (const token of injectionTokensOf(p.Class).values()) {
      // The kernel pulls the resolver, name resolution and upstream with it.
      const fixes = token === Tokens.Kernel ? [Tokens.Resolver, Tokens.NameResolution, Tokens.Upstream] : typeof token === 'symbol' && PROVISIONABLE.has(token) ? [token] : [];
      for (const t of fixes) if (!fixedBy.has(t)) fixedBy.set(t, p.name);
    }
    out.push({ name: p.name, instance, ...(p.file ? { file: p.file } : {}), ...(p.note ? { note: p.note } : {}) });
  }

  const logger = resolveToken(container, Tokens.Logger);
  const providedBy = new Map<symbol, string>();
  const decorators = new Map<symbol, Array<(inner: unknown) => unknown>>();
  let current: AppliedPlugin | undefined;
  const late = (token: symbol, what: string): Error => {
    const by = fixedBy.get(token);
    return new Error(`cannot ${what} ${String(Symbol.keyFor(token) ?? token.description)}: it was already built (${by ? `injected into plugin "${by}"'s constructor` : 'read with services.get()'}); provide it in provision() and read it in apply()`);
  };
  const registry: ServiceRegistry = {
    get<T>(token: Token<T>): T {
      if (PROVISIONABLE.has(token) && !fixedBy.has(token)) fixedBy.set(token, current?.name ?? '?');
      return container.resolve<T>(token);
    },
    provide<T>(token: Token<T>, value: T): void {
      if (fixedBy.has(token)) throw late(token, 'provide');
      const before = providedBy.get(token);
      if (before !== undefined) logger.debug({ plugin: current?.name, replaces: before, service: Symbol.keyFor(token) }, 'service provided again: the last provider wins');
      providedBy.set(token, current?.name ?? '?');
      container.register(token, { useValue: value });
    },
    decorate<T>(token: Token<T>, wrap: (inner: T) => T): void {
      if (fixedBy.has(token)) throw late(token, 'decorate');
      const list = decorators.get(token) ?? [];
      list.push(wrap as (inner: unknown) => unknown);
      decorators.set(token, list);
    },
  };
  for (const p of out) {
    if (!p.instance.provision) continue;
    current = p;
    try {
      p.instance.provision(registry);
    } catch (err) {
      throw passConfigError(err) ?? new PluginError(p.name, 'provision()', p.file, err, p.note);
    }
  }
  current = undefined;
  for (const token of [...FINALISE_ORDER, ...decorators.keys()]) {
    const wraps = decorators.get(token);
    if (!wraps) continue;
    decorators.delete(token);
    const value = wraps.reduce((inner, wrap) => wrap(inner), container.resolve<unknown>(token));
    container.register(token, { useValue: value });
  }

  const kernel = resolveToken(container, Tokens.Kernel);
  kernel.attachServices({ get: <T>(token: Token<T>): T => container.resolve<T>(token) });
  const api = kernel.api;
  for (const p of out) {
    try {
      p.instance.apply(api);
    } catch (err) {
      throw passConfigError(err) ?? new PluginError(p.name, 'apply()', p.file, err, p.note);
    }
  }
  return { kernel, plugins: out };
}

/**
 * Run every `start()`, each bounded by `timeoutMs`. A throw or rejection is a
 * {@link PluginError} naming the plugin, its file and `start()`; a timeout is
 * `SOCKSMITH_ERR_PLUGIN_START_TIMEOUT`, naming the plugin.
 */
export async function startPlugins(plugins: readonly AppliedPlugin[], timeoutMs: number): Promise<void> {
  for (const p of plugins) {
    if (!p.instance.start) continue;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        (async () => p.instance.start!())().catch((err: unknown) => {
          throw passConfigError(err) ?? new PluginError(p.name, 'start()', p.file, err, p.note);
        }),
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new SocksmithError('SOCKSMITH_ERR_PLUGIN_START_TIMEOUT', `plugin "${p.name}" did not start within ${timeoutMs} ms`)),
            timeoutMs,
          );
        }),
      ]);
    } finally {
      if (timer) clearTimeout(timer);
    }
  }
}

/** A config error (it names its `plugins.<name>…` key already, exit 78) passes unchanged. */
function passConfigError(err: unknown): unknown {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' && (code.startsWith('SOCKSMITH_ERR_CONFIG_') || code === 'SOCKSMITH_ERR_PLUGIN_DEPENDENCY') ? err : undefined;
}

/** Run every `close()` (in reverse order), logging failures instead of throwing. */
export async function closePlugins(plugins: readonly AppliedPlugin[], log: (msg: string) => void): Promise<void> {
  for (const p of [...plugins].reverse()) {
    try {
      await p.instance.close?.();
    } catch (err) {
      log(`plugin "${p.name}" failed to close: ${errorMessage(err)}`);
    }
  }
}
