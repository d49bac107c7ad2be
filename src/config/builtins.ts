/**
 * Names and defaults of the six built-in plugins (the Tor extensions).
 * @packageDocumentation
 */

/** The built-in plugins in the order they are applied. */
export const BUILTIN_PLUGINS = [
  { name: 'isolation', defaultEnabled: true },
  { name: 'resolve', defaultEnabled: true },
  { name: 'resolve-ptr', defaultEnabled: true },
  { name: 'http-detect', defaultEnabled: true },
  { name: 'optimistic-data', defaultEnabled: true },
  { name: 'extended-errors', defaultEnabled: false },
  { name: 'auth', defaultEnabled: false },
  { name: 'policy', defaultEnabled: false },
] as const;

/** Name of a built-in plugin. */
export type BuiltinPluginName = (typeof BUILTIN_PLUGINS)[number]['name'];

/** The built-in names. */
export const BUILTIN_PLUGIN_NAMES: readonly string[] = BUILTIN_PLUGINS.map((p) => p.name);

/** True if `name` is a built-in plugin. */
export function isBuiltinPlugin(name: string): name is BuiltinPluginName {
  return BUILTIN_PLUGIN_NAMES.includes(name);
}
