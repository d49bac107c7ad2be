/**
 * `defineConfig()`: an identity function that gives a TypeScript config file its types
 * (webpack `lib/config/defineConfig.js`).
 * @packageDocumentation
 */
import type { ConfigInput, UpstreamConfig } from './schema.js';

/** A plugin entry: on, off, or on with options (defaults fill what is left out). */
export type PluginSetting<O> = boolean | Partial<O>;

/** A custom plugin entry. */
export interface CustomPluginSetting {
  /** Path (relative to the config file) or package name; its default export is the plugin class. */
  readonly module: string;
  /** Options, validated by the class's `static meta.schema`. */
  readonly options?: unknown;
  /** `false` keeps the entry but does not load it. */
  readonly enabled?: boolean;
}

/**
 * Option types of the plugins, by name. Empty here: each plugin adds its own entry by augmentation,
 * `declare module 'socksmith' { interface PluginOptionsMap { name: Options } }`, as the ten
 * built-ins do (`src/index.ts` loads their augmentations through `'socksmith/builtin-types'`).
 */
// eslint-disable-next-line @typescript-eslint/no-empty-interface
export interface PluginOptionsMap {}

/** The `plugins` section: every plugin in {@link PluginOptionsMap} with its option types (the ten built-ins), plus custom plugins by name. */
export type PluginsConfig = { readonly [K in keyof PluginOptionsMap]?: PluginSetting<PluginOptionsMap[K]> } & {
  readonly [custom: string]: PluginSetting<object> | CustomPluginSetting | undefined;
};

/** The shape of a socksmith config file, for `export default defineConfig({...})`. */
export type SocksmithConfig = Omit<ConfigInput, 'upstream' | 'plugins'> & {
  /** How streams leave the proxy: `direct`, `socks5` or a custom `module`. */
  readonly upstream?: UpstreamConfig;
  /** Plugins by name. */
  readonly plugins?: PluginsConfig;
};

/**
 * Return `config` unchanged; exists so that editors and tsc check a `proxy.config.ts`.
 * @example
 * ```ts
 * import { defineConfig } from 'socksmith';
 * export default defineConfig({
 *   upstream: { type: 'socks5', host: '127.0.0.1', port: 9050 },
 *   plugins: { 'extended-errors': true, isolation: { IsolateDestPort: true } },
 * });
 * ```
 */
export function defineConfig(config: SocksmithConfig): SocksmithConfig {
  return config;
}
