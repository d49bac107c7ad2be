/**
 * Finding and loading the config file: cosmiconfig 9 for the search and for JSON/YAML/JS, and
 * jiti for TypeScript (it keeps decorator metadata and lets the config import `.ts` plugins;
 * see docs/config.md and the research notes on cosmiconfig's own `.ts` loader).
 * @packageDocumentation
 */
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { cosmiconfig, type Loader } from 'cosmiconfig';
import { createJiti } from 'jiti';
import { ConfigError, errorMessage } from '../errors.js';
import type { ResolvedConfig } from './types.js';
import { resolveConfig } from './normalize.js';

/** Where `npx socksmith` looks, in order, in the working directory. */
export const SEARCH_PLACES = [
  'proxy.config.ts',
  'proxy.config.mts',
  'proxy.config.js',
  'proxy.config.mjs',
  'proxy.config.cjs',
  'proxy.config.json',
  'proxy.config.yaml',
  'proxy.config.yml',
  'package.json',
  '.socksmithrc',
  '.socksmithrc.json',
  '.socksmithrc.yaml',
  '.socksmithrc.yml',
  'socksmith.config.ts',
  'socksmith.config.js',
  'socksmith.config.mjs',
] as const;

let jitiInstance: ReturnType<typeof createJiti> | undefined;

/** The jiti instance that loads TypeScript configs and modules (no disk cache, no module cache). */
export function tsImporter(): ReturnType<typeof createJiti> {
  // moduleCache off: a reload (SIGHUP) must see edited files; fsCache off: nothing written to disk,
  // so read-only deployments work.
  jitiInstance ??= createJiti(import.meta.url, { fsCache: false, moduleCache: false, interopDefault: true });
  return jitiInstance;
}

const jitiLoader: Loader = async (filepath) => tsImporter().import(filepath, { default: true });

/**
 * Import a plugin or upstream module named in the config: TypeScript through jiti, JavaScript
 * natively, package names through Node's resolution from the config's folder.
 */
export async function importModule(specifier: string, fromDir: string): Promise<unknown> {
  let target = specifier;
  if (!path.isAbsolute(specifier)) {
    const { createRequire } = await import('node:module');
    target = createRequire(path.join(fromDir, 'noop.js')).resolve(specifier);
  }
  if (/\.[mc]?ts$/.test(target)) return tsImporter().import(target);
  return import(pathToFileURL(target).href);
}

/** A config file's raw contents and where it came from. */
export interface RawConfig {
  readonly raw: unknown;
  readonly source: { readonly file: string | undefined; readonly dir: string };
}

/** Load and resolve the config: `file` if given, else the first of {@link SEARCH_PLACES} in `cwd`, else defaults. */
export async function loadConfig(options: { file?: string; cwd: string }): Promise<ResolvedConfig> {
  const { raw, source } = await loadConfigFile(options);
  return resolveConfig(raw, source);
}

/** Find and load the config file without validating it (the CLI applies its overrides first). */
export async function loadConfigFile(options: { file?: string; cwd: string }): Promise<RawConfig> {
  const explorer = cosmiconfig('socksmith', {
    searchPlaces: [...SEARCH_PLACES],
    searchStrategy: 'none',
    loaders: { '.ts': jitiLoader, '.mts': jitiLoader, '.cts': jitiLoader },
    cache: false,
  });
  let result: { config: unknown; filepath: string } | null;
  if (options.file) {
    const file = path.resolve(options.cwd, options.file);
    if (!fs.existsSync(file)) throw new ConfigError('', `config file not found: ${file}`, 'SOCKSMITH_ERR_CONFIG_NOT_FOUND');
    try {
      result = await explorer.load(file);
    } catch (err) {
      throw new ConfigError('', `cannot load ${file}: ${firstLine(errorMessage(err))}`, 'SOCKSMITH_ERR_CONFIG_NOT_FOUND', { cause: err });
    }
    if (!result) result = { config: {}, filepath: file };
  } else {
    try {
      result = await explorer.search(options.cwd);
    } catch (err) {
      throw new ConfigError('', `cannot load config: ${firstLine(errorMessage(err))}`, 'SOCKSMITH_ERR_CONFIG_NOT_FOUND', { cause: err });
    }
  }
  if (!result) return { raw: {}, source: { file: undefined, dir: options.cwd } };
  return { raw: result.config ?? {}, source: { file: result.filepath, dir: path.dirname(result.filepath) } };
}

/** The message on one line: line breaks folded, blank lines dropped (errors must fit one line). */
function firstLine(s: string): string {
  return s
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .join(' ');
}
