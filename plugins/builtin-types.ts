/**
 * The option types of the built-in plugins, type-only. `src/index.ts` re-exports them from
 * `'socksmith/builtin-types'`, so a program that imports `'socksmith'` also loads each built-in's
 * `PluginOptionsMap` augmentation and gets typed built-in options in `defineConfig`. No run-time import.
 * @packageDocumentation
 */
export type { IsolationOptions } from './isolation/index.js';
export type { ResolveOptions } from './resolve/index.js';
export type { ResolvePtrOptions } from './resolve-ptr/index.js';
export type { HttpDetectOptions } from './http-detect/index.js';
export type { OptimisticDataOptions } from './optimistic-data/index.js';
export type { ExtendedErrorsOptions } from './extended-errors/index.js';
export type { AuthOptions } from './auth/index.js';
export type { PolicyOptions } from './policy/index.js';
