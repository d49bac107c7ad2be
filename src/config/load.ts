/**
 * Finding and loading the config file: cosmiconfig 9 for the search and for JSON/YAML/JS, and
 * jiti for TypeScript (it keeps decorator metadata and lets the config import `.ts` plugins;
 * see docs/config.md and the research notes on cosmiconfig's own `.ts` loader).
 * @packageDocumentation
 */
import { stripVTControlCharacters } from 'node:util';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { cosmiconfig, defaultLoaders, type Loader } from 'cosmiconfig';
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
  // Running from the TypeScript sources (bin/socksmith.js in a git checkout not built yet): a
  // config's `import … from 'socksmith'` would resolve to dist/, which does not exist; point it
  // at the sources instead.
  const fromSource = import.meta.url.endsWith('.ts');
  const alias = fromSource ? { socksmith: fileURLToPath(new URL('../index.ts', import.meta.url)) } : undefined;
  jitiInstance ??= createJiti(import.meta.url, { fsCache: false, moduleCache: false, interopDefault: true, ...(alias ? { alias } : {}) });
  return jitiInstance;
}

const jitiLoader: Loader = async (filepath) => tsImporter().import(filepath, { default: true });

/** The file a loader failed on, kept on its error (a search does not say which file it was). */
const kConfigFile = Symbol('socksmith.configFile');

/** `loader`, with the file it fails on remembered on the error, so the message can name it. */
function naming(loader: Loader): Loader {
  return async (filepath, content) => {
    try {
      return await loader(filepath, content);
    } catch (err) {
      if (err !== null && typeof err === 'object' && !(kConfigFile in err)) Object.defineProperty(err, kConfigFile, { value: filepath });
      throw err;
    }
  };
}

/** Every loader of a config file, each naming the file it fails on. */
const LOADERS: Record<string, Loader> = {
  ...Object.fromEntries(Object.entries(defaultLoaders).map(([ext, l]) => [ext, naming(l as Loader)])),
  '.ts': naming(jitiLoader),
  '.mts': naming(jitiLoader),
  '.cts': naming(jitiLoader),
};

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
    loaders: LOADERS,
    cache: false,
  });
  let result: { config: unknown; filepath: string } | null;
  if (options.file) {
    const file = path.resolve(options.cwd, options.file);
    if (!fs.existsSync(file)) throw new ConfigError('', `config file not found: ${file}`, 'SOCKSMITH_ERR_CONFIG_NOT_FOUND');
    try {
      result = await explorer.load(file);
    } catch (err) {
      throw loadError(file, err);
    }
    if (!result) result = { config: {}, filepath: file };
  } else {
    try {
      result = await explorer.search(options.cwd);
    } catch (err) {
      // A search names no file: the loader that failed left it on the error.
      const file = err !== null && typeof err === 'object' && kConfigFile in err ? (err as { [kConfigFile]: string })[kConfigFile] : undefined;
      throw loadError(file, err);
    }
  }
  if (!result) return { raw: {}, source: { file: undefined, dir: options.cwd } };
  return { raw: esModuleDefault(result.config ?? {}), source: { file: result.filepath, dir: path.dirname(result.filepath) } };
}

/**
 * A CommonJS config that tsc compiled from `export default …` (a package without
 * `"type": "module"`, as `npm init -y` writes) reaches us as `module.exports`, that is
 * `{ default: config }` marked `__esModule`: its config is the `default`. Plugin modules get the
 * same treatment (see plugin loading). A plain object whose only key is `default` is left alone.
 */
function esModuleDefault(raw: unknown): unknown {
  if (raw === null || typeof raw !== 'object') return raw;
  const exports = raw as { __esModule?: unknown; default?: unknown };
  const keys = Object.keys(raw);
  if (exports.__esModule === true && keys.length === 1 && keys[0] === 'default') return exports.default ?? {};
  return raw;
}

/** A code-frame line of a parse error (`> 3 | …`, `  4 | …`, `    |   ^`, `--------^`). */
const FRAME_LINE = /^\s*>?\s*\d+ \||^\s*\|\s*\^|^-+\^\s*$/;

/**
 * The ConfigError for a config file that cannot be loaded. A parse error keeps its position and
 * its code frame: the message is one line ending in `(line L, column C)`, `frame` holds the
 * parser's lines around the mistake (printed below it). A TypeScript config that imports
 * socksmith where socksmith is not installed says how to fix that.
 */
function loadError(file: string | undefined, err: unknown): ConfigError {
  const what = file ? `cannot load ${file}` : 'cannot load config';
  // The JSON parser colours its code frame when it believes the terminal can (CI=true and
  // FORCE_COLOR make it think so even into a pipe): read, and print, the text without escapes.
  const text = stripVTControlCharacters(errorMessage(err));
  if (/Cannot find (module|package) ['"]socksmith['"]/.test(text)) {
    return new ConfigError(
      '',
      `${what}: it imports 'socksmith', which is not installed in this folder or above it: install socksmith here (npm install socksmith) or use a .json/.yaml config`,
      'SOCKSMITH_ERR_CONFIG_NOT_FOUND',
      { cause: err },
    );
  }
  const lines = text.split('\n');
  const start = lines.findIndex((l) => FRAME_LINE.test(l));
  if (start < 0) return new ConfigError('', `${what}: ${firstLine(text)}`, 'SOCKSMITH_ERR_CONFIG_NOT_FOUND', { cause: err });
  let end = start;
  while (end < lines.length && FRAME_LINE.test(lines[end]!)) end++;
  const frameLines = lines.slice(start, end);
  // The reason: the text that is neither the "JSON/YAML Error in FILE:" header nor a frame.
  const reason = lines
    .filter((l) => !FRAME_LINE.test(l) && !/^(JSON|YAML) Error in /.test(l) && l.trim() !== '')
    .map((l) => l.trim().replace(/ while parsing '.*$/, ''))
    .filter((l, i, all) => all.indexOf(l) === i)
    .join(' ');
  const header = /^(JSON|YAML) Error in /.exec(lines[0] ?? '')?.[1];
  let position = '';
  const yaml = /\((\d+):(\d+)\)\s*$/.exec(reason);
  const marked = frameLines.findIndex((l) => /^\s*>\s*\d+ \|/.test(l));
  if (!yaml && marked >= 0) {
    const lineNo = /^\s*>\s*(\d+) \|/.exec(frameLines[marked]!)![1];
    const caret = frameLines[marked + 1] ?? '';
    const bar = caret.indexOf('|');
    const col = caret.indexOf('^');
    position = ` (line ${lineNo}${bar >= 0 && col > bar ? `, column ${col - bar - 1}` : ''})`;
  } else if (yaml) {
    position = ` (line ${yaml[1]}, column ${yaml[2]})`;
  }
  const message = `${what}: ${header ? `${header} syntax error: ` : ''}${yaml ? reason.replace(/\s*\(\d+:\d+\)\s*$/, '') : reason}${position}`;
  return new ConfigError('', message, 'SOCKSMITH_ERR_CONFIG_NOT_FOUND', { cause: err, frame: frameLines.join('\n') });
}

/** The message on one line: line breaks folded, blank lines dropped (errors must fit one line). */
function firstLine(s: string): string {
  return s
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .join(' ');
}
