/**
 * The built-in plugin classes, by name. Switched on in order by `loadPlugins`/`applyPlugins`
 * as a flat list (webpack `lib/WebpackOptionsApply.js`).
 * @packageDocumentation
 */
import AuthPlugin from '../../plugins/auth/index.js';
import ExtendedErrorsPlugin from '../../plugins/extended-errors/index.js';
import HttpDetectPlugin from '../../plugins/http-detect/index.js';
import IsolationPlugin from '../../plugins/isolation/index.js';
import OptimisticDataPlugin from '../../plugins/optimistic-data/index.js';
import PolicyPlugin from '../../plugins/policy/index.js';
import ResolvePtrPlugin from '../../plugins/resolve-ptr/index.js';
import ResolvePlugin from '../../plugins/resolve/index.js';
import type { BuiltinPluginName } from '../config/builtins.js';
import type { PluginClass } from './plugin.js';

/** Built-in plugin classes. */
export const BUILTIN_CLASSES: Readonly<Record<BuiltinPluginName, PluginClass>> = Object.freeze({
  isolation: IsolationPlugin,
  resolve: ResolvePlugin,
  'resolve-ptr': ResolvePtrPlugin,
  'http-detect': HttpDetectPlugin,
  'optimistic-data': OptimisticDataPlugin,
  'extended-errors': ExtendedErrorsPlugin,
  auth: AuthPlugin,
  policy: PolicyPlugin,
});
