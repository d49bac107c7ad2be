/**
 * `defineConfig()`: an identity function that gives a TypeScript config file its types
 * (webpack `lib/config/defineConfig.js`).
 * @packageDocumentation
 */
import type { AuthOptions } from '../../plugins/auth/schema.js';
import type { ExtendedErrorsOptions } from '../../plugins/extended-errors/index.js';
import type { HttpDetectOptions } from '../../plugins/http-detect/index.js';
import type { IsolationOptions } from '../../plugins/isolation/schema.js';
import type { OptimisticDataOptions } from '../../plugins/optimistic-data/index.js';
import type { PolicyOptions } from '../../plugins/policy/schema.js';
import type { ResolvePtrOptions } from '../../plugins/resolve-ptr/index.js';
import type { ResolveOptions } from '../../plugins/resolve/schema.js';
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

/** The `plugins` section: the six built-ins with their option types, plus custom plugins by name. */
export interface PluginsConfig {
  readonly isolation?: PluginSetting<IsolationOptions>;
  readonly resolve?: PluginSetting<ResolveOptions>;
  readonly 'resolve-ptr'?: PluginSetting<ResolvePtrOptions>;
  readonly 'http-detect'?: PluginSetting<HttpDetectOptions>;
  readonly 'optimistic-data'?: PluginSetting<OptimisticDataOptions>;
  readonly 'extended-errors'?: PluginSetting<ExtendedErrorsOptions>;
  readonly auth?: PluginSetting<AuthOptions>;
  readonly policy?: PluginSetting<PolicyOptions>;
  readonly [custom: string]: PluginSetting<object> | CustomPluginSetting | undefined;
}

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
