/**
 * Prometheus metrics for one proxy, fed by the kernel's diagnostics channels.
 *
 * The kernel never calls into this module: it publishes on `node:diagnostics_channel`
 * ({@link Channels}) and {@link Metrics} subscribes. With metrics off nobody subscribes and the
 * kernel's `hasSubscribers` checks skip even building the messages.
 * @packageDocumentation
 */
import diagnostics from 'node:diagnostics_channel';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ConnectionContext, ListenerInfo } from '../kernel/context.js';
import {
  Channels,
  type ConnectionAcceptedMessage,
  type ConnectionClosedMessage,
  type ConnectionRefusedMessage,
  type DnsLookupMessage,
  type HandshakeEndedMessage,
  type PluginErrorMessage,
  type RequestMessage,
  type UpstreamConnectedMessage,
} from '../kernel/diagnostics.js';
import { commandName, repName } from '../protocol/constants.js';

/** Prefix of every metric name. */
export const METRICS_PREFIX = 'socksmith_';

/**
 * Latency buckets in seconds, 0.5 ms to 30 s: loopback handshakes land in the first buckets,
 * connects across the internet in the middle, and 30 s is above the default connect timeout.
 */
export const LATENCY_BUCKETS: readonly number[] = Object.freeze([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]);

/** The refusal reasons the kernel publishes; anything else is counted as `other`. */
const REFUSAL_REASONS: ReadonlySet<string> = new Set(['limits.maxConnections', 'limits.maxConnectionsPerClient', 'onAccept']);

/** The outcomes of a handshake that ended without a request (`HandshakeOutcome`). */
const HANDSHAKE_OUTCOMES: ReadonlySet<string> = new Set(['client_closed', 'timeout', 'protocol_error', 'refused', 'plugin_error', 'http_page', 'takeover', 'shed', 'shutdown']);

/** Options for {@link Metrics}. */
export interface MetricsOptions {
  /**
   * Registry to register the metrics in. Default: a new one. Never pass prom-client's global
   * `register`: two proxies in one process would then try to register the same names.
   */
  readonly registry?: Registry;
  /**
   * The listeners of the proxy these metrics describe, read on every connection event (a live
   * view, so listeners bound after construction count too; e.g. `() => proxy.addresses`).
   * Connections accepted on other listeners (another proxy in the same process) are ignored.
   * Default: count every connection in the process.
   */
  readonly listeners?: () => readonly ListenerInfo[];
  /** Also expose Node's process metrics (`socksmith_process_*`, `socksmith_nodejs_*`). Default true. */
  readonly defaultMetrics?: boolean;
}

// prom-client's default metrics start a GC PerformanceObserver and an event-loop delay monitor
// per collectDefaultMetrics() call and offer no way to stop them. They describe the process, not
// a proxy, so they are collected once per process into this registry and the same metric objects
// are registered in every Metrics registry. Calling collectDefaultMetrics per instance would
// leak one observer and one 10 ms sampling timer for every proxy ever created.
let processRegistry: Registry | undefined;

function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry, prefix: METRICS_PREFIX });
  }
  return processRegistry;
}

/** The `version` label of a connection: `4`, `5`, `http` (HTTP CONNECT front end) or `none`. */
export function versionLabel(conn: ConnectionContext): '4' | '5' | 'http' | 'none' {
  if (conn.version === 4) return '4';
  if (conn.version === 5) return '5';
  if (conn.protocol === 'http-connect') return 'http';
  return 'none';
}

/**
 * socksmith's Prometheus metrics, maintained from the kernel's diagnostics channels.
 *
 * Construct it, scrape {@link Metrics.registry} (or serve it with `startMetricsServer`), and
 * {@link Metrics.close} it when the proxy stops.
 */
// Why diagnostics channels and not hook taps or interceptors: the channels already carry what the
// hooks do not (accept-time refusals, DNS cache hits, handshake timing), they cost nothing when
// metrics are off, and a subscriber can never change what a connection does.
//
// Channels are process-wide. Connection events are filtered by listener (`options.listeners`);
// refusals and DNS lookups carry no connection and are counted for the whole process.
export class Metrics {
  /** The registry holding every metric of this instance. */
  readonly registry: Registry;

  private readonly listeners: (() => readonly ListenerInfo[]) | undefined;
  /** Connections counted in the active gauge (accepted while subscribed, not closed yet). */
  private readonly open = new WeakSet<ConnectionContext>();
  /**
   * Connections past a successful upstream connect, not closed yet, with the bytes of each
   * already added to `socksmith_bytes_total` (up, down): a scrape adds what the open tunnels
   * relayed since, so long tunnels show in the counter while they run.
   */
  private readonly tunnels = new Map<ConnectionContext, [number, number]>();
  private readonly subscriptions: Array<[string, (message: unknown, name: string | symbol) => void]> = [];
  private closed = false;

  private readonly connections: Counter<'version' | 'command' | 'reply'>;
  private readonly accepted: Counter;
  private readonly refused: Counter<'reason'>;
  private readonly activeConnections: Gauge;
  private readonly activeTunnels: Gauge;
  private readonly handshake: Histogram;
  private readonly connect: Histogram;
  private readonly bytes: Counter<'direction'>;
  private readonly dns: Counter<'type' | 'result'>;
  private readonly pluginErrors: Counter<'plugin' | 'hook'>;
  private readonly unfinished: Counter<'outcome'>;

  constructor(options: MetricsOptions = {}) {
    const registry = options.registry ?? new Registry();
    this.registry = registry;
    this.listeners = options.listeners;
    const registers = [registry];
    const p = METRICS_PREFIX;

    this.connections = new Counter({
      name: `${p}connections_total`,
      help: 'Client connections closed, by SOCKS version (4, 5, http, none), command and reply sent (none: no reply).',
      labelNames: ['version', 'command', 'reply'] as const,
      registers,
    });
    this.accepted = new Counter({ name: `${p}connections_accepted_total`, help: 'Client connections accepted (after limits and onAccept).', registers });
    this.refused = new Counter({
      name: `${p}connections_refused_total`,
      help: 'Client connections closed at accept, by reason (limits.maxConnections, limits.maxConnectionsPerClient, onAccept). Process-wide.',
      labelNames: ['reason'] as const,
      registers,
    });
    this.activeConnections = new Gauge({ name: `${p}active_connections`, help: 'Client connections open now.', registers });
    this.activeTunnels = new Gauge({ name: `${p}active_tunnels`, help: 'Connections open now whose upstream connect succeeded.', registers });
    this.handshake = new Histogram({
      name: `${p}handshake_duration_seconds`,
      help: 'Time from accept until the request arrived (greeting, authentication and request).',
      buckets: [...LATENCY_BUCKETS],
      registers,
    });
    this.connect = new Histogram({
      name: `${p}connect_duration_seconds`,
      help: 'Time the upstream took to open a stream (successful connects only; name resolution included).',
      buckets: [...LATENCY_BUCKETS],
      registers,
    });
    const tunnels = this.tunnels;
    this.bytes = new Counter({
      name: `${p}bytes_total`,
      help: 'Bytes relayed, up (client to upstream) and down (upstream to client); open tunnels count up to the moment of the scrape.',
      labelNames: ['direction'] as const,
      registers,
      // At scrape time: add what each open tunnel relayed since the last scrape. The relay only
      // counts (conn.bytesUp/bytesDown); nothing runs per chunk or on a timer per tunnel.
      collect() {
        let up = 0;
        let down = 0;
        for (const [conn, seen] of tunnels) {
          up += conn.bytesUp - seen[0];
          down += conn.bytesDown - seen[1];
          seen[0] = conn.bytesUp;
          seen[1] = conn.bytesDown;
        }
        if (up > 0) this.inc({ direction: 'up' }, up);
        if (down > 0) this.inc({ direction: 'down' }, down);
      },
    });
    this.unfinished = new Counter({
      name: `${p}handshakes_unfinished_total`,
      help: 'Connections closed before a request, by outcome: client_closed (the client closed or reset it), timeout, protocol_error (not SOCKS, or malformed), refused (greeting or credentials), plugin_error, http_page (an HTTP client served the 501 page), takeover, shed (closed to make room under a connection limit), shutdown.',
      labelNames: ['outcome'] as const,
      registers,
    });
    this.dns = new Counter({
      name: `${p}dns_lookups_total`,
      help: 'Resolver lookups by type (forward, reverse) and result (hit: from the cache; miss: asked DNS, answered; failure: no answer, fresh or negatively cached). Process-wide.',
      labelNames: ['type', 'result'] as const,
      registers,
    });
    this.pluginErrors = new Counter({
      name: `${p}plugin_errors_total`,
      help: 'Plugin hooks that threw or rejected, by plugin and hook.',
      labelNames: ['plugin', 'hook'] as const,
      registers,
    });

    // Zero the fixed series, so rate() and absent() work before the first event.
    for (const direction of ['up', 'down']) this.bytes.inc({ direction }, 0);
    for (const outcome of HANDSHAKE_OUTCOMES) this.unfinished.inc({ outcome }, 0);
    for (const reason of REFUSAL_REASONS) this.refused.inc({ reason }, 0);
    for (const type of ['forward', 'reverse']) for (const result of ['hit', 'miss', 'failure']) this.dns.inc({ type, result }, 0);

    if (options.defaultMetrics ?? true) {
      // getMetricsAsArray() returns the metric objects themselves (its typings say MetricObject).
      for (const m of processMetrics().getMetricsAsArray() as unknown as Array<Parameters<Registry['registerMetric']>[0]>) registry.registerMetric(m);
    }

    this.on<ConnectionAcceptedMessage>(Channels.CONNECTION_ACCEPTED, ({ conn }) => {
      if (!this.owns(conn)) return;
      this.accepted.inc();
      this.open.add(conn);
      this.activeConnections.inc();
    });
    this.on<ConnectionRefusedMessage>(Channels.CONNECTION_REFUSED, ({ reason }) => {
      this.refused.inc({ reason: REFUSAL_REASONS.has(reason) ? reason : 'other' });
    });
    this.on<RequestMessage>(Channels.REQUEST, ({ conn, handshakeMs }) => {
      if (this.owns(conn)) this.handshake.observe(handshakeMs / 1000);
    });
    this.on<UpstreamConnectedMessage>(Channels.UPSTREAM_CONNECTED, ({ conn, connectMs }) => {
      if (!this.owns(conn)) return;
      this.connect.observe(connectMs / 1000);
      if (!this.tunnels.has(conn)) {
        this.tunnels.set(conn, [0, 0]);
        this.activeTunnels.inc();
      }
    });
    this.on<ConnectionClosedMessage>(Channels.CONNECTION_CLOSED, ({ conn }) => {
      if (!this.owns(conn)) return;
      this.connections.inc({
        version: versionLabel(conn),
        command: conn.request ? commandName(conn.request.command) : 'none',
        reply: conn.reply === undefined ? 'none' : repName(conn.reply),
      });
      // What a scrape has not added yet (everything, for a connection that never tunnelled).
      const seen = this.tunnels.get(conn);
      const up = conn.bytesUp - (seen?.[0] ?? 0);
      const down = conn.bytesDown - (seen?.[1] ?? 0);
      if (up > 0) this.bytes.inc({ direction: 'up' }, up);
      if (down > 0) this.bytes.inc({ direction: 'down' }, down);
      // Only connections counted up are counted down: a connection accepted before these
      // metrics subscribed must not drive the gauges below zero.
      if (this.open.delete(conn)) this.activeConnections.dec();
      if (this.tunnels.delete(conn)) this.activeTunnels.dec();
    });
    this.on<PluginErrorMessage>(Channels.PLUGIN_ERROR, ({ plugin, hook, conn }) => {
      // Errors outside a connection cannot be attributed to a proxy and are counted everywhere.
      if (conn === undefined || this.owns(conn)) this.pluginErrors.inc({ plugin, hook });
    });
    this.on<HandshakeEndedMessage>(Channels.HANDSHAKE_ENDED, ({ conn, outcome }) => {
      if (this.owns(conn)) this.unfinished.inc({ outcome: HANDSHAKE_OUTCOMES.has(outcome) ? outcome : 'takeover' });
    });
    this.on<DnsLookupMessage>(Channels.DNS_LOOKUP, ({ type, cached, ok }) => {
      this.dns.inc({ type, result: !ok ? 'failure' : cached ? 'hit' : 'miss' });
    });
  }

  /** Content-Type of {@link Metrics.scrape}'s output (Prometheus text format 0.0.4). */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** The metrics in the Prometheus text format. */
  scrape(): Promise<string> {
    return this.registry.metrics();
  }

  /** Stop counting (unsubscribe from every channel). The registry keeps its last values. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const [name, fn] of this.subscriptions) diagnostics.unsubscribe(name, fn);
    this.subscriptions.length = 0;
    this.tunnels.clear();
  }

  private owns(conn: ConnectionContext): boolean {
    return this.listeners === undefined || this.listeners().includes(conn.listener);
  }

  /**
   * Subscribe `handler` to `name`. A subscriber that throws would surface as an uncaught
   * exception on the next tick (diagnostics_channel's rule), taking the proxy down for a metric:
   * every handler is guarded.
   */
  private on<M>(name: string, handler: (message: M) => void): void {
    const fn = (message: unknown) => {
      try {
        handler(message as M);
      } catch {
        // A metric is never worth a crash; prom-client only throws on programming errors.
      }
    };
    diagnostics.subscribe(name, fn);
    this.subscriptions.push([name, fn]);
  }
}
