/**
 * `defineConfig()`: an identity function that gives a TypeScript config file its types
 * (webpack `lib/config/defineConfig.js`).
 * @packageDocumentation
 */
import type { ConfigInput } from './schema.js';

/** The shape of a socksmith config file, for `export default defineConfig({...})`. */
export type SocksmithConfig = ConfigInput;

/**
 * Return `config` unchanged; exists so that editors and tsc check a `proxy.config.ts`.
 * @example
 * ```ts
 * import { defineConfig } from 'socksmith';
 * export default defineConfig({ listen: [{ host: '127.0.0.1', port: 1080 }], plugins: { 'extended-errors': true } });
 * ```
 */
export function defineConfig(config: SocksmithConfig): SocksmithConfig {
  return config;
}
