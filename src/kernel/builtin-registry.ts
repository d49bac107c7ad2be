/**
 * The built-in plugin classes, by name. Switched on in `apply-plugins.ts` as a flat list
 * (webpack `lib/WebpackOptionsApply.js`).
 * @packageDocumentation
 */
import type { BuiltinPluginName } from '../config/builtins.js';
import type { PluginClass } from './plugin.js';

/** Built-in plugin classes. */
export const BUILTIN_CLASSES: Readonly<Partial<Record<BuiltinPluginName, PluginClass>>> = Object.freeze({});
