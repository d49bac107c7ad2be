/**
 * Loading plugin classes (built-in or from a module), validating their options against their own
 * schema, and checking `dependsOn`. Errors are ConfigErrors naming `plugins.<name>…`.
 * @packageDocumentation
 */
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
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
  /** The module file a custom plugin was loaded from (undefined for built-ins). */
  readonly file?: string;
  /**
   * Set when the plugin's folder resolves socksmith or tsyringe to another copy than the one
   * running: a sentence added to the plugin's failure messages (see {@link secondCopyNote}).
   */
  readonly note?: string;
}

/** True if `value` looks like a plugin class (a constructor with `meta.name` and `prototype.apply`). */
export function isPluginClass(value: unknown): value is PluginClass {
  return (
    typeof value === 'function' &&
    typeof (value as { meta?: { name?: unknown } }).meta?.name === 'string' &&
    typeof (value as { prototype?: { apply?: unknown } }).prototype?.apply === 'function'
  );
}

/**
 * Load a module and return its default export (or the module itself when it has none).
 *
 * A CommonJS module compiled by tsc from `export default class …` sets `exports.default`; Node's
 * ESM loader hands over `module.exports` as the default, so the class sits at
 * `.default.default`. That inner default is returned when the outer one is an object holding it.
 */
export async function loadDefaultExport(specifier: string, fromDir: string, key: string): Promise<unknown> {
  let mod: unknown;
  try {
    mod = await importModule(specifier, fromDir);
  } catch (err) {
    throw new ConfigError(key, `cannot load module ${specifier}: ${errorMessage(err).split('\n')[0]}`, 'SOCKSMITH_ERR_CONFIG_MODULE', { cause: err });
  }
  const m = mod as { default?: unknown };
  const d = m && typeof m === 'object' && 'default' in m ? m.default : mod;
  if (d !== null && typeof d === 'object' && typeof (d as { default?: unknown }).default === 'function') return (d as { default: unknown }).default;
  return d;
}

/** The folder of the package that holds `file` (the nearest folder with a package.json). */
function packageRoot(file: string): string | undefined {
  let dir = path.dirname(file);
  for (let i = 0; i < 64; i++) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) return undefined;
    dir = up;
  }
  return undefined;
}

/** Where `name` resolves from `file` (its package folder, real path), or undefined if it does not. */
function resolvedPackage(name: string, fromFile: string): string | undefined {
  try {
    const entry = createRequire(fromFile).resolve(name);
    const root = packageRoot(entry);
    return root && fs.realpathSync(root);
  } catch {
    return undefined;
  }
}

const selfFile = fileURLToPath(import.meta.url);

/**
 * A sentence naming a second copy of socksmith or tsyringe that `moduleFile` would import (its
 * own `node_modules` holds one), or undefined when it resolves the running copies or none.
 * With a second tsyringe, `@injectable()` records the class in a container this proxy never
 * sees, so every injected parameter is `undefined` ("reading 'info'" of an undefined logger).
 */
export function secondCopyNote(moduleFile: string): string | undefined {
  const copies: string[] = [];
  for (const name of ['socksmith', 'tsyringe']) {
    const theirs = resolvedPackage(name, moduleFile);
    if (theirs === undefined) continue;
    const ours = name === 'socksmith' ? packageRoot(selfFile) && fs.realpathSync(packageRoot(selfFile)!) : resolvedPackage(name, selfFile);
    if (ours !== undefined && theirs !== ours) copies.push(`${name} at ${theirs} (this process runs ${ours})`);
  }
  if (copies.length === 0) return undefined;
  return `the plugin's folder has a second copy of ${copies.join(' and ')}: its @inject() decorators and classes are not this proxy's; install socksmith once (a peerDependency of the plugin) and remove the other copy`;
}

/** The file a plugin specifier names (a package name resolved from `dir`). */
function moduleFile(specifier: string, dir: string): string {
  if (path.isAbsolute(specifier)) return specifier;
  try {
    return createRequire(path.join(dir, 'noop.js')).resolve(specifier);
  } catch {
    return specifier;
  }
}

/** A short description of a value for error messages: `an object with keys a, b`, `undefined`, … */
function describeValue(v: unknown): string {
  if (v === null || v === undefined) return String(v);
  if (typeof v === 'function') return `a function without static meta.name or prototype.apply (${v.name || 'anonymous'})`;
  if (typeof v === 'object') {
    const keys = Object.keys(v);
    return keys.length ? `an object with keys ${keys.slice(0, 5).join(', ')}` : 'an empty object';
  }
  return `a ${typeof v}`;
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
  // Every plugin's problems at once (one line each), not one per run.
  const errors: ConfigError[] = [];
  for (const entry of config.plugins) {
    try {
      const p = await loadPlugin(entry, config);
      out.push(p);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      errors.push(...(err.errors as ConfigError[]));
    }
  }
  if (errors.length > 0) throw ConfigError.all(errors);
  const names = new Set(config.plugins.map((p) => p.name));
  for (const p of out) {
    for (const dep of p.Class.meta.dependsOn ?? []) {
      if (!names.has(dep)) {
        errors.push(new ConfigError(`plugins.${p.name}`, `plugin "${p.name}" depends on plugin "${dep}", which is not enabled`, 'SOCKSMITH_ERR_PLUGIN_DEPENDENCY'));
      }
    }
  }
  if (errors.length > 0) throw ConfigError.all(errors);
  return out;
}

/** Load one plugin entry: its class (built-in or module), its validated options. */
async function loadPlugin(entry: ResolvedConfig['plugins'][number], config: ResolvedConfig): Promise<LoadedPlugin> {
  const key = `plugins.${entry.name}`;
  let Class: unknown;
  if (entry.builtin) {
    // A built-in goes through the loader a third-party plugin uses; only its specifier is preset.
    const specifier = BUILTIN_PLUGINS.find((b) => b.name === entry.name)?.module;
    if (!specifier) throw new ConfigError(key, 'built-in plugin is not available in this build');
    Class = await loadBuiltin(specifier, key);
    if (!isPluginClass(Class)) throw new ConfigError(key, `built-in plugin is not available in this build: ${specifier} exports ${describeValue(Class)}`, 'SOCKSMITH_ERR_CONFIG_MODULE');
  } else {
    Class = await loadDefaultExport(entry.module!, config.source.dir, `${key}.module`);
    if (!isPluginClass(Class)) {
      throw new ConfigError(
        `${key}.module`,
        `${entry.module} must export (default) a class with static meta = { name } and an apply(kernel) method (a CommonJS module's exports.default is accepted too); its default export is ${describeValue(Class)}`,
        'SOCKSMITH_ERR_CONFIG_MODULE',
      );
    }
  }
  const C = Class as PluginClass;
  const file = entry.builtin ? undefined : moduleFile(entry.module!, config.source.dir);
  const note = file ? secondCopyNote(file) : undefined;
  return { name: entry.name, Class: C, options: validateOptions(C.meta.schema, entry.options, key), ...(file ? { file } : {}), ...(note ? { note } : {}) };
}
