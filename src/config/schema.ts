/**
 * The configuration schema, one source for validation (ajv) and types (TypeBox `Static`).
 *
 * Every object uses `additionalProperties: false` and every key has a `description`, which the
 * error messages and docs/config.md quote. Plugin options are validated in a second step against
 * each plugin's own schema, and the upstream against the schema of its `type`, so that an error
 * always names one key instead of listing every branch of a union.
 * @packageDocumentation
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { LOG_LEVELS } from '../logger.js';

/** Most worker processes `workers` accepts. */
export const MAX_WORKERS = 1024;

const obj = <T extends Record<string, TSchema>>(props: T, description: string) =>
  Type.Object(props, { additionalProperties: false, description });

/** One listener: TCP (`host` + `port`) or a unix socket (`path`). */
export const ListenSchema = obj(
  {
    host: Type.Optional(
      Type.String({
        minLength: 1,
        description: 'Address to bind: an IPv4 or IPv6 literal (no brackets) or a name. Use 127.0.0.1 or ::1 to stay loopback-only. With port; not with path.',
      }),
    ),
    port: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535, description: 'TCP port; 0 picks a free port, printed in the "listening on" line. With host.' })),
    path: Type.Optional(Type.String({ minLength: 1, maxLength: 107, description: 'Unix socket path to listen on, instead of host and port. A stale socket file left by a dead process is replaced.' })),
    mode: Type.Optional(
      Type.String({ pattern: '^0?[0-7]{3}$', description: "Permissions of the unix socket file, octal (e.g. '660' for a group, like Tor's GroupWritable; '666' like WorldWritable). Default: as the umask leaves it." }),
    ),
    proxyProtocol: Type.Optional(
      obj(
        {
          trusted: Type.Array(Type.String({ minLength: 1, description: 'A CIDR (10.0.0.0/8, ::1/128) or an address.' }), {
            minItems: 1,
            description: 'Load balancers allowed to send PROXY headers. A connection from elsewhere, or without a valid header, is closed without a byte.',
          }),
        },
        'Expect a PROXY protocol v1 or v2 header first on every connection (HAProxy send-proxy / send-proxy-v2, nginx proxy_protocol); the client address it carries replaces the socket\'s.',
      ),
    ),
  },
  'One listener: { host, port } or { path }.',
);

/** DNS resolution settings. */
export const ResolverSchema = obj(
  {
    servers: Type.Optional(
      Type.Array(Type.String({ minLength: 1, description: 'A DNS server as IP, IP:PORT or [IPv6]:PORT.' }), {
        minItems: 1,
        description: "DNS servers to query (UDP, then TCP on truncation). Default: the system's resolver (getaddrinfo, so /etc/hosts and localhost work).",
      }),
    ),
    timeout: Type.Optional(Type.Integer({ minimum: 100, maximum: 60000, description: 'Milliseconds before one DNS query attempt times out (servers only). Default 5000.' })),
    tries: Type.Optional(Type.Integer({ minimum: 1, maximum: 10, description: 'Attempts per query against each server (servers only). Default 2.' })),
    maxPending: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 100000, description: 'Most lookups in flight at once (distinct names; identical ones share one query). More fail at once with REP 01. Default 256.' }),
    ),
    maxPendingPerClient: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 100000,
        description:
          "Most of those lookups one client address may have in flight at once; more of its lookups fail at once with REP 01 (RESOLVE: 04), while other clients' still run. Default: a quarter of maxPending (64), at least 1.",
      }),
    ),
    cache: Type.Optional(
      obj(
        {
          maxEntries: Type.Optional(Type.Integer({ minimum: 0, maximum: 10_000_000, description: 'Most answers kept, over all isolation partitions (LRU). 0 disables the cache. Default 10000.' })),
          maxTtl: Type.Optional(Type.Integer({ minimum: 0, description: 'Longest time in seconds an answer is kept, whatever its DNS TTL. Default 3600.' })),
          systemTtl: Type.Optional(Type.Integer({ minimum: 0, description: "Seconds to keep answers of the system resolver, which reports no TTL. Default 30." })),
          negativeTtl: Type.Optional(Type.Integer({ minimum: 0, description: 'Seconds to remember that a name does not resolve. Default 5.' })),
        },
        'Answer cache, partitioned by isolation key.',
      ),
    ),
  },
  'Name resolution for the direct upstream and the resolve plugins.',
);

/** One entry of `upstream.interceptors`. */
export const InterceptorEntrySchema = obj(
  {
    module: Type.String({ minLength: 1, description: 'Path (relative to the config file) or package name of a module whose default export is a class with intercept(next: Dispatch): Dispatch.' }),
    options: Type.Optional(Type.Unknown({ description: "Options for the interceptor, validated by the class's own schema (static meta.schema)." })),
  },
  'An interceptor that wraps the upstream dispatch (CONNECT, and RESOLVE/RESOLVE_PTR sent to the upstream).',
);

/** `upstream.interceptors`: valid for every upstream type. */
const InterceptorsSchema = Type.Optional(
  Type.Array(InterceptorEntrySchema, {
    description:
      'Interceptors around the upstream, in order (the first is outermost). They sit inside the plugins\' interceptors, closest to the upstream: logging, retries, choosing among upstreams. Default: none.',
  }),
);

/** `upstream: { type: 'direct' }`. */
export const DirectUpstreamSchema = obj(
  {
    type: Type.Literal('direct', { description: 'Connect to destinations directly from this host.' }),
    localAddress: Type.Optional(Type.String({ minLength: 1, description: 'Source address for outgoing connections. Default: chosen by the OS.' })),
    attemptTimeout: Type.Optional(
      Type.Integer({ minimum: 10, maximum: 60000, description: 'Happy Eyeballs: milliseconds before trying the next address of a name. Default 250.' }),
    ),
    interceptors: InterceptorsSchema,
  },
  'Connect directly (node:net), resolving names through onResolve and the resolver, with Happy Eyeballs.',
);

/** `upstream: { type: 'socks5', host, port }`. */
export const Socks5UpstreamSchema = obj(
  {
    type: Type.Literal('socks5', { description: 'Chain to another SOCKS5 server, e.g. Tor\'s SocksPort.' }),
    host: Type.String({ minLength: 1, description: 'Host of the upstream SOCKS5 server.' }),
    port: Type.Integer({ minimum: 1, maximum: 65535, description: 'Port of the upstream SOCKS5 server (Tor: 9050).' }),
    username: Type.Optional(Type.String({ maxLength: 255, description: 'RFC 1929 username for the upstream. Plugins (isolation) may override it per stream.' })),
    password: Type.Optional(Type.String({ maxLength: 255, description: 'RFC 1929 password for the upstream. Never logged.' })),
    pipelining: Type.Optional(
      Type.Boolean({
        description:
          "The upstream keeps bytes that arrive right behind a request (C Tor does). Lets the optimistic-data plugin send early data in the same write as the request, before the reply. Default false: microsocks drops such bytes and Arti refuses them, so they wait for the success reply. In front of Tor 0.4.9 leave it off (docs/performance.md).",
      }),
    ),
    interceptors: InterceptorsSchema,
  },
  'Chain to an upstream SOCKS5 server. Hostnames are passed on as names (ATYP 03) and never resolved locally.',
);

/** `upstream: { type: 'module', module }`. */
export const ModuleUpstreamSchema = obj(
  {
    type: Type.Literal('module', { description: 'Load a custom upstream from a module.' }),
    module: Type.String({ minLength: 1, description: 'Path (relative to the config file) or package name of a module whose default export is an upstream class.' }),
    options: Type.Optional(Type.Unknown({ description: "Options for the upstream, validated by the class's own schema (static meta.schema)." })),
    interceptors: InterceptorsSchema,
  },
  'A custom upstream class, constructed through dependency injection.',
);

/** The upstream entry before its `type` is known: validated again against the matching schema. */
const UpstreamAnySchema = Type.Object(
  {
    type: Type.Union([Type.Literal('direct'), Type.Literal('socks5'), Type.Literal('module')], {
      description: "How streams leave the proxy: 'direct', 'socks5' or 'module'.",
    }),
  },
  { additionalProperties: true, description: 'How a stream leaves the proxy. Default { type: "direct" }.' },
);

/** Top-level config file schema. */
export const ConfigSchema = obj(
  {
    $schema: Type.Optional(Type.String({ description: 'JSON schema reference for editors; ignored.' })),
    listen: Type.Optional(Type.Array(ListenSchema, { minItems: 1, description: 'Listeners. Default [{ host: "127.0.0.1", port: 1080 }].' })),
    allowOpenProxy: Type.Optional(
      Type.Boolean({
        description:
          'Allow listening on a non-loopback address with no plugin that keeps unknown clients out (auth, or a policy client ACL admitting only loopback and private networks). Without it socksmith refuses to start an open proxy. Default false.',
      }),
    ),
    resolver: Type.Optional(ResolverSchema),
    upstream: Type.Optional(UpstreamAnySchema),
    plugins: Type.Optional(
      Type.Record(
        Type.String({ pattern: '^[a-z0-9][a-z0-9-]*$' }),
        Type.Union([Type.Boolean(), Type.Object({}, { additionalProperties: true })]),
        {
          description:
            'Plugins by name: true, false, or an options object. Built-ins: isolation, resolve, resolve-ptr, http-detect, optimistic-data, extended-errors, auth, policy, bind, udp-associate. A custom plugin is { module, options?, enabled? }.',
        },
      ),
    ),
    timeouts: Type.Optional(
      obj(
        {
          handshake: Type.Optional(Type.Integer({ minimum: 100, maximum: 3_600_000, description: 'Milliseconds a client has to complete the SOCKS handshake (like Dante\'s negotiate timeout). Default 30000.' })),
          connect: Type.Optional(Type.Integer({ minimum: 100, maximum: 3_600_000, description: 'Milliseconds for the upstream to open a stream, DNS included; then REP 06. Default 30000.' })),
          idle: Type.Optional(Type.Integer({ minimum: 0, description: 'Milliseconds without traffic in either direction before a tunnel is closed; 0 = never. Default 0.' })),
          drain: Type.Optional(Type.Integer({ minimum: 0, maximum: 3_600_000, description: 'Milliseconds open tunnels get to finish after SIGTERM/SIGINT. Default 10000.' })),
          pluginStart: Type.Optional(Type.Integer({ minimum: 100, maximum: 600000, description: 'Milliseconds a plugin\'s start() may take. Default 10000.' })),
        },
        'Timeouts in milliseconds.',
      ),
    ),
    limits: Type.Optional(
      obj(
        {
          maxConnections: Type.Optional(
            Type.Integer({ minimum: 1, maximum: 1_000_000, description: 'Most client connections open at once over all listeners; one more first closes the oldest connection still in its handshake, else it is closed at accept, without a byte. Default 10000 (each tunnel holds two file descriptors).' }),
          ),
          maxConnectionsPerClient: Type.Optional(
            Type.Integer({ minimum: 0, maximum: 1_000_000, description: "Most connections open at once from one client IP address; one more first closes that address's oldest connection still in its handshake, else it is closed at accept. 0 = no limit. Default 1024, not counting loopback clients (127.0.0.0/8, ::1) unless this key is set." }),
          ),
          handshakeBuffer: Type.Optional(
            Type.Integer({ minimum: 520, maximum: 65536, description: "Bytes buffered before the handshake completes; above it the client is paused until the handshake catches up (Tor's window is 512). Default 1024." }),
          ),
          earlyData: Type.Optional(
            Type.Integer({ minimum: 1024, maximum: 16 * 1024 * 1024, description: 'Bytes of client data held before the upstream connects; beyond it the client is paused (never dropped). Default 65536.' }),
          ),
        },
        'Buffer bounds.',
      ),
    ),
    metrics: Type.Optional(
      obj(
        {
          host: Type.String({ minLength: 1, description: 'Address of the metrics listener (Prometheus /metrics and /healthz). Keep it private: loopback or an internal address.' }),
          port: Type.Integer({ minimum: 0, maximum: 65535, description: 'Port of the metrics listener; 0 picks a free one (printed as "socksmith metrics on HOST:PORT").' }),
        },
        'Prometheus metrics and health check on a separate, opt-in HTTP listener.',
      ),
    ),
    log: Type.Optional(
      obj(
        {
          level: Type.Optional(
            Type.Union(
              LOG_LEVELS.map((l) => Type.Literal(l)),
              { description: `Log level: ${LOG_LEVELS.join(', ')}. Default info.` },
            ),
          ),
          safeLogging: Type.Optional(
            Type.Boolean({
              description:
                "Like Tor's SafeLogging: write [scrubbed] instead of destinations in the access log (and keep them out of info and above). Default false.",
            }),
          ),
        },
        'Structured logs (pino, JSON on stderr).',
      ),
    ),
    workers: Type.Optional(
      Type.Union([Type.Integer({ minimum: 1, maximum: MAX_WORKERS }), Type.Literal('auto')], {
        description: `Processes that serve the listeners: an integer 1-${MAX_WORKERS}, or 'auto' for one per CPU (os.availableParallelism()). Above 1 the CLI runs a node:cluster primary that forks the workers; every worker accepts on the same sockets. Default 1: one process, no cluster. Read at start only.`,
      }),
    ),
  },
  'socksmith configuration.',
);

/** The config file as written (every key optional). */
export type ConfigInput = Static<typeof ConfigSchema>;
/** One listener entry. */
export type ListenConfig = Static<typeof ListenSchema>;
/** `upstream: { type: 'direct' }` entry. */
export type DirectUpstreamConfig = Static<typeof DirectUpstreamSchema>;
/** `upstream: { type: 'socks5' }` entry. */
export type Socks5UpstreamConfig = Static<typeof Socks5UpstreamSchema>;
/** `upstream: { type: 'module' }` entry. */
export type ModuleUpstreamConfig = Static<typeof ModuleUpstreamSchema>;
/** Any upstream entry. */
export type UpstreamConfig = DirectUpstreamConfig | Socks5UpstreamConfig | ModuleUpstreamConfig;
/** The `resolver` section. */
export type ResolverConfig = Static<typeof ResolverSchema>;

/** Schema of a custom plugin entry (`plugins.<name>` that is not a built-in). */
export const CustomPluginEntrySchema = obj(
  {
    module: Type.String({ minLength: 1, description: 'Path (relative to the config file) or package name whose default export is the plugin class.' }),
    options: Type.Optional(Type.Unknown({ description: "The plugin's options, validated by its static meta.schema." })),
    enabled: Type.Optional(Type.Boolean({ description: 'Set false to keep the entry but not load it. Default true.' })),
  },
  'A custom plugin loaded from a module.',
);

/** Upstream schemas by `type`. */
export const UPSTREAM_SCHEMAS = {
  direct: DirectUpstreamSchema,
  socks5: Socks5UpstreamSchema,
  module: ModuleUpstreamSchema,
} as const;
