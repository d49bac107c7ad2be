/**
 * Names, defaults and module specifiers of the built-in plugins (the Tor extensions, auth, policy,
 * and the opt-in SOCKS commands). This is the
 * one list that names them, and it is data: nothing here imports a plugin. `loadPlugins` imports each
 * enabled built-in by its specifier, through the same loader as a third-party `{ module }` plugin
 * (`socksmith/plugins/<name>`, the package's own `exports` entry).
 * @packageDocumentation
 */

/** The built-in plugins in the order they are applied. */
export const BUILTIN_PLUGINS = [
  { name: 'isolation', defaultEnabled: true, module: 'socksmith/plugins/isolation' },
  { name: 'resolve', defaultEnabled: true, module: 'socksmith/plugins/resolve' },
  { name: 'resolve-ptr', defaultEnabled: true, module: 'socksmith/plugins/resolve-ptr' },
  { name: 'http-detect', defaultEnabled: true, module: 'socksmith/plugins/http-detect' },
  { name: 'optimistic-data', defaultEnabled: true, module: 'socksmith/plugins/optimistic-data' },
  { name: 'extended-errors', defaultEnabled: false, module: 'socksmith/plugins/extended-errors' },
  { name: 'auth', defaultEnabled: false, module: 'socksmith/plugins/auth' },
  { name: 'policy', defaultEnabled: false, module: 'socksmith/plugins/policy' },
  { name: 'bind', defaultEnabled: false, module: 'socksmith/plugins/bind' },
  { name: 'udp-associate', defaultEnabled: false, module: 'socksmith/plugins/udp-associate' },
] as const;

/** Name of a built-in plugin. */
export type BuiltinPluginName = (typeof BUILTIN_PLUGINS)[number]['name'];

/** The built-in names. */
export const BUILTIN_PLUGIN_NAMES: readonly string[] = BUILTIN_PLUGINS.map((p) => p.name);

/** True if `name` is a built-in plugin. */
export function isBuiltinPlugin(name: string): name is BuiltinPluginName {
  return BUILTIN_PLUGIN_NAMES.includes(name);
}
