/**
 * The configuration after validation, normalization and defaults: what the kernel and plugins see.
 * Deep-frozen.
 * @packageDocumentation
 */
import type { LogLevel } from '../logger.js';
import type { ListenConfig, UpstreamConfig } from './schema.js';

/** One plugin as the config enables it (before its options are checked against its schema). */
export interface PluginEntry {
  /** Config key, also the tap name. */
  readonly name: string;
  /** True for the ten built-ins. */
  readonly builtin: boolean;
  /** For custom plugins: an absolute path or a package name. */
  readonly module: string | undefined;
  /** Options as written (`{}` for `true`); defaults are filled in when the plugin's schema is applied. */
  readonly options: unknown;
}

/** Resolver settings with defaults applied. */
export interface ResolvedResolverConfig {
  readonly servers: readonly string[] | undefined;
  readonly timeout: number;
  readonly tries: number;
  readonly maxPending: number;
  /** Most of `maxPending` one client address may hold (default: a quarter of `maxPending`, at least 1). */
  readonly maxPendingPerClient: number;
  readonly cache: {
    readonly maxEntries: number;
    readonly maxTtl: number;
    readonly systemTtl: number;
    readonly negativeTtl: number;
  };
}

/** The whole configuration, normalized. */
export interface ResolvedConfig {
  readonly listen: readonly ListenConfig[];
  /** Start even when a non-loopback listener has no client restriction (see `SocksmithPlugin.restrictsClients`). */
  readonly allowOpenProxy: boolean;
  readonly resolver: ResolvedResolverConfig;
  /** For `type: 'module'`, `module` is already resolved against the config file's folder. */
  readonly upstream: UpstreamConfig;
  /** Enabled plugins, built-ins first (in their fixed order), then custom ones in config order. */
  readonly plugins: readonly PluginEntry[];
  readonly timeouts: {
    readonly handshake: number;
    readonly connect: number;
    readonly idle: number;
    readonly drain: number;
    readonly pluginStart: number;
  };
  readonly limits: {
    readonly maxConnections: number;
    readonly maxConnectionsPerClient: number;
    /**
     * Whether `maxConnectionsPerClient` counts loopback clients (127.0.0.0/8, ::1) too: true when
     * the config sets `limits.maxConnectionsPerClient`, false with the default (every local
     * program is one loopback client).
     */
    readonly perClientCountsLoopback: boolean;
    readonly handshakeBuffer: number;
    readonly earlyData: number;
  };
  readonly log: { readonly level: LogLevel; readonly safeLogging: boolean };
  /** The metrics listener, when enabled. */
  readonly metrics: { readonly host: string; readonly port: number } | undefined;
  /**
   * Worker processes (`workers`, `'auto'` resolved to `os.availableParallelism()`). 1: the CLI
   * serves in its own process; above 1 it becomes a node:cluster primary (src/cluster). Only the
   * CLI reads it; a `SocksmithProxy` created in-process is always one process.
   */
  readonly workers: number;
  /** Where the config came from. */
  readonly source: { readonly file: string | undefined; readonly dir: string };
}
