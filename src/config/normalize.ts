/**
 * Normalization: validated config input → {@link ResolvedConfig} with every default applied.
 * Order (webpack `lib/webpack.js`, fastify `initial-config-validation.js`): validate the raw file →
 * validate the upstream against its type → normalize plugins (`true|false|{}` → entries) →
 * defaults → deep-freeze. Plugin options are checked against each plugin's schema later, when
 * the plugin class is known (kernel/plugin-loader.ts).
 * @packageDocumentation
 */
import os from 'node:os';
import path from 'node:path';
import { ConfigError } from '../errors.js';
import { BUILTIN_PLUGINS, BUILTIN_PLUGIN_NAMES, isBuiltinPlugin } from './builtins.js';
import ipaddr from 'ipaddr.js';
import { ConfigSchema, CustomPluginEntrySchema, UPSTREAM_SCHEMAS, type ConfigInput, type ListenConfig, type UpstreamConfig } from './schema.js';
import type { PluginEntry, ResolvedConfig } from './types.js';
import { deepFreeze, suggest, validate, validateAll } from './validate.js';

/** The defaults, as documented in docs/config.md. */
export const DEFAULTS = Object.freeze({
  listen: [{ host: '127.0.0.1', port: 1080 }],
  resolver: { timeout: 5000, tries: 2, maxPending: 256, cache: { maxEntries: 10000, maxTtl: 3600, systemTtl: 30, negativeTtl: 5 } },
  timeouts: { handshake: 30000, connect: 30000, idle: 0, drain: 10000, pluginStart: 10000 },
  limits: { maxConnections: 10000, maxConnectionsPerClient: 1024, handshakeBuffer: 1024, earlyData: 65536 },
  log: { level: 'info' as const },
  workers: 1,
});

/** Resolve a module specifier from the config: relative paths against the config's folder. */
export function resolveModuleSpecifier(spec: string, dir: string): string {
  if (spec.startsWith('./') || spec.startsWith('../') || spec === '.' || spec === '..') return path.resolve(dir, spec);
  if (path.isAbsolute(spec)) return spec;
  return spec; // a package name
}

function normalizePlugins(input: ConfigInput['plugins'], dir: string, errors: ConfigError[]): PluginEntry[] {
  const raw = input ?? {};
  const out: PluginEntry[] = [];
  for (const [name, v] of Object.entries(raw)) collect(errors, undefined, () => normalizeCustomPlugin(name, v, dir, out));
  // Built-ins first, in their fixed order; custom plugins after them, in config order.
  const custom = out.splice(0);
  for (const b of BUILTIN_PLUGINS) {
    const v = raw[b.name];
    const enabled = v === undefined ? b.defaultEnabled : v !== false;
    if (enabled) out.push({ name: b.name, builtin: true, module: undefined, options: typeof v === 'object' ? v : {} });
  }
  out.push(...custom);
  return out;
}

/** Check one custom plugin entry and add it to `out` when enabled (built-in names are skipped). */
function normalizeCustomPlugin(name: string, v: unknown, dir: string, out: PluginEntry[]): void {
  if (isBuiltinPlugin(name)) return;
  const key = `plugins.${name}`;
  if (typeof v !== 'object' || v === null) {
    const hint = suggest(name, BUILTIN_PLUGIN_NAMES);
    throw new ConfigError(
      key,
      `unknown plugin${hint ? ` (did you mean "${hint}"?)` : ''}; built-ins are ${BUILTIN_PLUGIN_NAMES.join(', ')}, and a custom plugin is { module, options }`,
    );
  }
  // A key that looks like `module` (`modul`) marks a custom entry with a typo, whatever its name
  // (`mine` is two edits from the built-in `bind`): the schema below names the typo.
  if (!('module' in v) && suggest('module', Object.keys(v)) === undefined) {
    const hint = suggest(name, BUILTIN_PLUGIN_NAMES);
    if (hint) throw new ConfigError(key, `unknown plugin (did you mean "${hint}"?); a custom plugin is { module, options }`);
  }
  const entry = validate<{ module: string; options?: unknown; enabled?: boolean }>(CustomPluginEntrySchema, v, key);
  if (entry.enabled === false) return;
  out.push({ name, builtin: false, module: resolveModuleSpecifier(entry.module, dir), options: entry.options ?? {} });
}

function normalizeUpstream(input: ConfigInput['upstream'], dir: string): UpstreamConfig {
  if (input === undefined) return { type: 'direct' };
  const schema = UPSTREAM_SCHEMAS[input.type];
  let up = validate<UpstreamConfig>(schema, input, 'upstream');
  if (up.interceptors) up = { ...up, interceptors: up.interceptors.map((i) => ({ ...i, module: resolveModuleSpecifier(i.module, dir) })) };
  if (up.type === 'module') return { ...up, module: resolveModuleSpecifier(up.module, dir) };
  return up;
}

/** Run `step`; a ConfigError it throws is added to `errors` (every one it stands for) and `fallback` returned. */
function collect<T>(errors: ConfigError[], fallback: T, step: () => T): T {
  try {
    return step();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    errors.push(...(err.errors as ConfigError[]));
    return fallback;
  }
}

/**
 * Validate a raw config object and return the frozen {@link ResolvedConfig}.
 * Throws a {@link ConfigError} naming the bad key; with several mistakes, every one is reported
 * at once (`err.errors`, one line each in `err.message`): the keys the schema refused are left
 * out, and the rest is still normalized and checked (upstream, plugins, listeners).
 */
export function resolveConfig(raw: unknown, source: { file: string | undefined; dir: string }): ResolvedConfig {
  const root = validateAll<ConfigInput>(ConfigSchema, raw ?? {}, '');
  const errors: ConfigError[] = [...root.errors];
  let input = root.value;
  if (errors.length > 0) {
    if (input === null || typeof input !== 'object' || Array.isArray(input)) throw ConfigError.all(errors);
    // Leave out every top-level key with a mistake; check the others as far as they go.
    const bad = new Set(errors.map((e) => e.key.split('.')[0]!));
    input = Object.fromEntries(Object.entries(input).filter(([k]) => !bad.has(k))) as ConfigInput;
  }
  const resolver = input.resolver ?? {};
  const cfg: ResolvedConfig = {
    listen: (input.listen ?? DEFAULTS.listen).map((l) => ({ ...l })),
    allowOpenProxy: input.allowOpenProxy ?? false,
    resolver: {
      servers: resolver.servers,
      timeout: resolver.timeout ?? DEFAULTS.resolver.timeout,
      tries: resolver.tries ?? DEFAULTS.resolver.tries,
      maxPending: resolver.maxPending ?? DEFAULTS.resolver.maxPending,
      maxPendingPerClient: resolver.maxPendingPerClient ?? defaultPendingPerClient(resolver.maxPending ?? DEFAULTS.resolver.maxPending),
      cache: { ...DEFAULTS.resolver.cache, ...resolver.cache },
    },
    upstream: collect(errors, { type: 'direct' } as UpstreamConfig, () => normalizeUpstream(input.upstream, source.dir)),
    plugins: normalizePlugins(input.plugins, source.dir, errors),
    timeouts: { ...DEFAULTS.timeouts, ...input.timeouts },
    limits: { ...DEFAULTS.limits, ...input.limits, perClientCountsLoopback: input.limits?.maxConnectionsPerClient !== undefined },
    log: { level: input.log?.level ?? DEFAULTS.log.level, safeLogging: input.log?.safeLogging ?? false },
    metrics: input.metrics,
    workers: resolveWorkers(input.workers),
    source,
  };
  if (cfg.resolver.servers) cfg.resolver.servers.forEach((s, i) => collect(errors, undefined, () => checkDnsServer(s, `resolver.servers.${i}`)));
  cfg.listen.forEach((l, i) => collect(errors, undefined, () => checkListener(l, `listen.${i}`, source.dir)));
  if (errors.length > 0) {
    // What was left after the bad keys, for a caller that wants to check the plugins' options
    // in the same run (partialConfigOf).
    const err = ConfigError.all(errors);
    Object.defineProperty(err, PARTIAL, { value: deepFreeze(cfg), enumerable: false });
    throw err;
  }
  return deepFreeze(cfg);
}

/**
 * The default share of `resolver.maxPending` one client address may hold: a quarter (64 of the
 * default 256), at least 1. So a single client can never take more than a quarter of the
 * lookups in flight, and at least four addresses are needed to exhaust the budget.
 */
export function defaultPendingPerClient(maxPending: number): number {
  return Math.max(1, Math.floor(maxPending / 4));
}

const PARTIAL = Symbol('socksmith.partialConfig');

/**
 * The configuration {@link resolveConfig} built from the keys that passed, attached to the
 * ConfigError it threw (defaults stand in for the bad keys); undefined for other errors. Used to
 * report the plugins' option errors in the same run as the file's.
 */
export function partialConfigOf(err: unknown): ResolvedConfig | undefined {
  return (err as { [PARTIAL]?: ResolvedConfig } | undefined)?.[PARTIAL];
}

/** `workers` as a number: `'auto'` is one per CPU the process may use. */
export function resolveWorkers(workers: number | 'auto' | undefined): number {
  if (workers === 'auto') return Math.max(1, os.availableParallelism());
  return workers ?? DEFAULTS.workers;
}

/** A listener is `{ host, port }` or `{ path }`; relative paths are resolved against the config's folder. */
function checkListener(l: ListenConfig, key: string, dir: string): void {
  const tcp = l.host !== undefined || l.port !== undefined;
  if (l.path !== undefined) {
    if (tcp) throw new ConfigError(key, 'give either host and port, or path (a unix socket), not both');
    if (l.proxyProtocol) throw new ConfigError(`${key}.proxyProtocol`, 'is for TCP listeners (a unix socket has no client address to trust)');
    (l as { path: string }).path = path.resolve(dir, l.path);
    return;
  }
  if (l.mode !== undefined) throw new ConfigError(`${key}.mode`, 'is for unix socket listeners (path)');
  if (l.host === undefined) throw new ConfigError(`${key}.host`, 'required key is missing (a TCP listener needs host and port; a unix one needs path)');
  if (l.port === undefined) throw new ConfigError(`${key}.port`, 'required key is missing (a TCP listener needs host and port; a unix one needs path)');
  for (const [i, cidr] of (l.proxyProtocol?.trusted ?? []).entries()) {
    if (!ipaddr.isValidCIDR(cidr) && !ipaddr.isValid(cidr)) throw new ConfigError(`${key}.proxyProtocol.trusted.${i}`, `must be a CIDR or an IP address, got ${JSON.stringify(cidr)}`);
  }
}

/** Check `IP`, `IP:PORT` or `[IPv6]:PORT`. */
function checkDnsServer(s: string, key: string): void {
  const m = /^\[([0-9a-fA-F:.]+)\](?::(\d{1,5}))?$/.exec(s) ?? /^(\d{1,3}(?:\.\d{1,3}){3})(?::(\d{1,5}))?$/.exec(s) ?? /^([0-9a-fA-F:]*:[0-9a-fA-F:.]*)()$/.exec(s);
  if (!m || (m[2] && Number(m[2]) > 65535)) throw new ConfigError(key, `must be IP, IP:PORT or [IPv6]:PORT, got ${JSON.stringify(s)}`);
}
