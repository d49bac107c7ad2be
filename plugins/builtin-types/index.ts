/**
 * The option types of the built-in plugins, type-only. `src/index.ts` re-exports them from
 * `'socksmith/builtin-types'`, so a program that imports `'socksmith'` also loads each built-in's
 * `PluginOptionsMap` augmentation and gets typed built-in options in `defineConfig`. No run-time import.
 * @packageDocumentation
 */
export type { IsolationOptions } from 'socksmith/plugins/isolation';
export type { ResolveOptions } from 'socksmith/plugins/resolve';
export type { ResolvePtrOptions } from 'socksmith/plugins/resolve-ptr';
export type { HttpDetectOptions } from 'socksmith/plugins/http-detect';
export type { OptimisticDataOptions } from 'socksmith/plugins/optimistic-data';
export type { ExtendedErrorsOptions } from 'socksmith/plugins/extended-errors';
export type { AuthOptions } from 'socksmith/plugins/auth';
export type { PolicyOptions } from 'socksmith/plugins/policy';
export type { BindOptions } from 'socksmith/plugins/bind';
export type { UdpAssociateOptions } from 'socksmith/plugins/udp-associate';
