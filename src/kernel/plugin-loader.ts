/**
 * Loading plugin classes (built-in or from a module), validating their options against their own
 * schema, and checking `dependsOn`. Errors are ConfigErrors naming `plugins.<name>…`.
 * @packageDocumentation
 */
import { BUILTIN_PLUGINS } from '../config/builtins.js';
import { importModule } from '../config/load.js';
import type { ResolvedConfig } from '../config/types.js';
import { deepFreeze, validate } from '../config/validate.js';
import { ConfigError, errorMessage } from '../errors.js';
import type { PluginClass } from './plugin.js';

/** A plugin class with validated options, ready to construct. */
export interface LoadedPlugin {
  readonly name: string;
  readonly Class: PluginClass;
  readonly options: unknown;
}

/** True if `value` looks like a plugin class (a constructor with `meta.name` and `prototype.apply`). */
export function isPluginClass(value: unknown): value is PluginClass {
  return (
    typeof value === 'function' &&
    typeof (value as { meta?: { name?: unknown } }).meta?.name === 'string' &&
    typeof (value as { prototype?: { apply?: unknown } }).prototype?.apply === 'function'
  );
}

/** Load a module and return its default export (or the module itself when it has none). */
export async function loadDefaultExport(specifier: string, fromDir: string, key: string): Promise<unknown> {
  let mod: unknown;
  try {
    mod = await importModule(specifier, fromDir);
  } catch (err) {
    throw new ConfigError(key, `cannot load module ${specifier}: ${errorMessage(err).split('\n')[0]}`, 'SOCKSMITH_ERR_CONFIG_MODULE', { cause: err });
  }
  const m = mod as { default?: unknown };
  return m && typeof m === 'object' && 'default' in m ? m.default : mod;
}

/**
 * Load a built-in plugin's class by its package specifier (`socksmith/plugins/<name>`). The
 * `import()` runs here, inside the package, so Node resolves the specifier through the package's
 * own `exports` (a self-reference) to the same module instance a user's `import` would get.
 */
async function loadBuiltin(specifier: string, key: string): Promise<unknown> {
  let mod: { default?: unknown };
  try {
    mod = (await import(specifier)) as { default?: unknown };
  } catch (err) {
    throw new ConfigError(key, `built-in plugin is not available in this build: cannot load ${specifier}: ${errorMessage(err).split('\n')[0]}`, 'SOCKSMITH_ERR_CONFIG_MODULE', { cause: err });
  }
  return mod.default;
}

/** Validate options against a class's `meta.schema` (if any), prefixing errors with `key`. */
export function validateOptions(schema: object | undefined, options: unknown, key: string): unknown {
  if (!schema) return deepFreeze(options ?? {});
  return deepFreeze(validate(schema, options ?? {}, key));
}

/** Load every enabled plugin in `config`, validate options and dependencies. */
export async function loadPlugins(config: ResolvedConfig): Promise<LoadedPlugin[]> {
  const out: LoadedPlugin[] = [];
  for (const entry of config.plugins) {
    const key = `plugins.${entry.name}`;
    let Class: unknown;
    if (entry.builtin) {
      // A built-in goes through the loader a third-party plugin uses; only its specifier is preset.
      const specifier = BUILTIN_PLUGINS.find((b) => b.name === entry.name)?.module;
      if (!specifier) throw new ConfigError(key, 'built-in plugin is not available in this build');
      Class = await loadBuiltin(specifier, key);
    } else {
      Class = await loadDefaultExport(entry.module!, config.source.dir, `${key}.module`);
    }
    if (!isPluginClass(Class)) {
      throw new ConfigError(`${key}.module`, `${entry.module ?? key} must export (default) a class with static meta = { name } and an apply(kernel) method`, 'SOCKSMITH_ERR_CONFIG_MODULE');
    }
    const C = Class as PluginClass;
    out.push({ name: entry.name, Class: C, options: validateOptions(C.meta.schema, entry.options, key) });
  }
  const names = new Set(out.map((p) => p.name));
  for (const p of out) {
    for (const dep of p.Class.meta.dependsOn ?? []) {
      if (!names.has(dep)) {
        throw new ConfigError(`plugins.${p.name}`, `plugin "${p.name}" depends on plugin "${dep}", which is not enabled`, 'SOCKSMITH_ERR_PLUGIN_DEPENDENCY');
      }
    }
  }
  return out;
}
