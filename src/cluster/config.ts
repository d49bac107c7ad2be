/**
 * What the CLI's single process, the cluster primary and every worker share: loading the config
 * with the command-line overrides, recognising config errors, and naming a listener the way the
 * `socksmith listening on …` line does.
 * @packageDocumentation
 */
import type { CliArgs } from '../cli/args.js';
import { loadConfigFile } from '../config/load.js';
import { partialConfigOf, resolveConfig } from '../config/normalize.js';
import { ConfigError } from '../errors.js';
import { loadPlugins } from '../kernel/plugin-loader.js';
import type { ResolvedConfig } from '../config/types.js';
import type { ListenerInfo } from '../kernel/context.js';
import { formatHostPort } from '../protocol/address.js';

/** Where a config came from (`ResolvedConfig.source`). */
export interface ConfigSource {
  /** The config file, or undefined when none was found (defaults). */
  readonly file: string | undefined;
  /** The folder relative paths in the config are resolved against. */
  readonly dir: string;
}

/** A config as the CLI loaded it: the raw object (overrides applied), its source, and the resolved result. */
export interface LoadedConfig {
  /** The file's contents with the command-line overrides applied, before validation. */
  readonly raw: unknown;
  readonly source: ConfigSource;
  readonly config: ResolvedConfig;
}

/** True for errors that mean "bad configuration" (exit 78, one line naming the key). */
export function isConfigError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' && (code.startsWith('SOCKSMITH_ERR_CONFIG_') || code === 'SOCKSMITH_ERR_PLUGIN_DEPENDENCY');
}

/** Apply command-line overrides to the raw config, before validation. */
export function withOverrides(raw: unknown, args: CliArgs): unknown {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return raw; // validation reports it
  const out: Record<string, unknown> = { ...(raw as Record<string, unknown>) };
  if (args.listen.length > 0) out.listen = args.listen;
  if (args.logLevel !== undefined) out.log = { ...(out.log as object | undefined), level: args.logLevel };
  if (args.workers !== undefined) out.workers = args.workers;
  return out;
}

/**
 * Load the config the command line names (or finds), apply the overrides and resolve it.
 * Throws a ConfigError naming the key.
 */
export async function loadCliConfig(args: CliArgs, cwd: string = process.cwd()): Promise<LoadedConfig> {
  const { raw, source } = await loadConfigFile({ file: args.config, cwd });
  const overridden = withOverrides(raw, args);
  try {
    return { raw: overridden, source, config: resolveConfig(overridden, source) };
  } catch (err) {
    // Every mistake in one run: with the file's errors, those of the enabled plugins' options.
    const partial = partialConfigOf(err);
    if (partial) {
      try {
        await loadPlugins(partial);
      } catch (more) {
        if (more instanceof ConfigError) throw ConfigError.all([err as ConfigError, more]);
      }
    }
    throw err;
  }
}

/** `HOST:PORT`, `[v6]:PORT` or `unix:/path`: how the `listening on` line names a listener. */
export function listenerLabel(b: ListenerInfo): string {
  return b.path !== undefined ? `unix:${b.path}` : formatHostPort(b.host, b.port);
}

/**
 * True when `value` is plain data (JSON-like values, plain objects and arrays), which the
 * primary can send to a worker over IPC unchanged. A TypeScript config may hold functions or
 * class instances; those configs are re-read from the file by each worker instead.
 */
export function isPlainData(value: unknown, depth = 0): boolean {
  if (depth > 64) return false;
  if (value === null || value === undefined) return true;
  const t = typeof value;
  if (t === 'string' || t === 'boolean') return true;
  if (t === 'number') return Number.isFinite(value);
  if (t !== 'object') return false;
  if (Array.isArray(value)) return value.every((v) => isPlainData(v, depth + 1));
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return false;
  return Object.values(value as object).every((v) => isPlainData(v, depth + 1));
}
