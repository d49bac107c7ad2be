/**
 * The kernel: the six hooks, the services, and the connection pipeline. One per proxy instance,
 * constructed by the DI container; plugins receive it in `apply(kernel)`.
 * @packageDocumentation
 */
import type { Socket } from 'node:net';
import { inject, injectable } from 'tsyringe';
import type { Clock } from '../clock.js';
import type { ResolvedConfig } from '../config/types.js';
import { Tokens } from '../di/tokens.js';
import type { Logger } from '../logger.js';
import { errorMessage, hasCode } from '../errors.js';
import type { ResolvedAddress } from './hooks.js';
import type { NameResolution } from '../resolver/name-resolution.js';
import type { Resolver } from '../resolver/types.js';
import type { DispatchInterceptor, Upstream } from '../upstream/types.js';
import { UpstreamDispatch } from './dispatch.js';
import { FrontEndRegistry } from './detect.js';
import { CommandRegistry } from './commands.js';
import type { PluginApi, ServiceReader } from './api.js';
import { Connection } from './connection.js';
import type { ConnectionContext, ListenerInfo } from './context.js';
import { type Hooks, isTapped } from './hooks.js';
import { logConnectionRefused } from './access-log.js';
import { channels } from './diagnostics.js';
import { clientKey } from './client-key.js';
import { discard } from './socket-owner.js';
import { DeadlineQueue } from './deadlines.js';
import type { ConnectAbort } from './connect-abort.js';
import { UpstreamError } from '../errors.js';
import { Rep } from '../protocol/constants.js';

/** timeouts.handshake ran out for `c` (it ends the connection only while it is still in its handshake). */
function onHandshakeDeadline(c: Connection): void {
  c.handshakeTimeout();
}

/** timeouts.connect ran out: the connect is aborted with REP 06. */
function onConnectDeadline(a: ConnectAbort): void {
  a.abort(new UpstreamError(Rep.TTL_EXPIRED, `connect timeout after ${a.timeoutMs} ms`, { code: 'SOCKSMITH_ERR_UPSTREAM_TIMEOUT' }));
}

/** True for a loopback client address (127.0.0.0/8, ::1; IPv4-mapped already unmapped). */
function isLoopbackClient(address: string): boolean {
  return address === '::1' || address.startsWith('127.');
}

/**
 * What `limits.maxConnections` and `limits.maxConnectionsPerClient` count, and the handshakes that
 * may be shed. One per proxy, handed from each generation's kernel to the next on a reload
 * ({@link Kernel.shareBudget}): the connections an old configuration still serves count against
 * the limits of the new one, so a reload does not give every client a fresh allowance.
 */
class ConnectionBudget {
  /** Open connections, every generation together. */
  total = 0;
  /** Open connections by client key ({@link clientKey}: an IPv6 client counts by its /64). */
  readonly perClient = new Map<string, number>();
  /** Connections still in their handshake (no request yet), oldest first: shed first under pressure. */
  readonly handshakes = new Set<Connection>();
  /** The same, by client key. */
  readonly handshakesByClient = new Map<string, Set<Connection>>();
}

/** The kernel every plugin taps into. */
@injectable()
export class Kernel {
  /** This generation's connections (drained and closed with it). */
  private readonly live = new Set<Connection>();
  /** Counts and handshakes shared by every generation of the proxy. */
  private budget = new ConnectionBudget();
  private nextId = 1;
  /** Refusals since the last log line, by message. */
  private readonly refusals = new Map<string, { fields: Record<string, unknown>; count: number }>();
  private refusalLogTimer: NodeJS.Timeout | undefined;

  constructor(
    /** The frozen configuration. */
    @inject(Tokens.Config) readonly config: ResolvedConfig,
    /** Root logger (stderr). */
    @inject(Tokens.Logger) readonly logger: Logger,
    /** The six hooks. Tap them in `apply()`; only the kernel calls them. */
    @inject(Tokens.Hooks) readonly hooks: Hooks,
    /** The resolver service (DNS + partitioned cache). */
    @inject(Tokens.Resolver) readonly resolver: Resolver,
    /** Name resolution through `onResolve` and the resolver. */
    @inject(Tokens.NameResolution) readonly names: NameResolution,
    /** The upstream streams leave through. */
    @inject(Tokens.Upstream) readonly upstream: Upstream,
    /** Clock. */
    @inject(Tokens.Clock) readonly clock: Clock,
    /** The config's `upstream.interceptors`, constructed. */
    @inject(Tokens.UpstreamInterceptors) interceptors: readonly DispatchInterceptor[],
  ) {
    this.dispatch = new UpstreamDispatch(upstream, interceptors);
    this.resolution = names;
    this.handshakeDeadlines = new DeadlineQueue<Connection>(config.timeouts.handshake, onHandshakeDeadline);
    this.connectDeadlines = new DeadlineQueue<ConnectAbort>(config.timeouts.connect, onConnectDeadline);
  }

  /**
   * @internal `timeouts.handshake` of every connection still in its handshake (or with a front
   * end that has not opened a stream yet): one timer for all of them (deadlines.ts).
   */
  readonly handshakeDeadlines: DeadlineQueue<Connection>;

  /** @internal `timeouts.connect` of every CONNECT under way (pipeline.ts `connect`). */
  readonly connectDeadlines: DeadlineQueue<ConnectAbort>;

  /**
   * Name resolution as a chain: plugins add interceptors in `apply()`
   * (`kernel.resolution.intercept({ name, stage }, next => query => …)`), which see and may filter
   * whatever answered (an `onResolve` tap or the resolver). The same object as {@link names}.
   */
  readonly resolution: NameResolution;

  /**
   * How streams reach the upstream: CONNECT, and RESOLVE/RESOLVE_PTR when the upstream answers
   * them. Plugins wrap it in `apply()` (`kernel.dispatch.intercept({ name, stage }, next => …)`);
   * the kernel and the resolve plugins call `run()`.
   */
  readonly dispatch: UpstreamDispatch;

  /** Front ends plugins add in `apply()` (`frontEnds.add(…)`), asked by the detect stage for a first byte other than 05 (docs/architecture.md). */
  readonly frontEnds = new FrontEndRegistry();

  /** Commands plugins own (`commands.register(…)`): BIND, UDP ASSOCIATE, a plugin's own; others get 07. */
  readonly commands = new CommandRegistry();

  private serviceReader: ServiceReader | undefined;
  private apiView: PluginApi | undefined;

  /** @internal The proxy's services, for plugins (set when the generation is built). */
  attachServices(reader: ServiceReader): void {
    this.serviceReader = reader;
  }

  /** The proxy's services by token (`kernel.services.get(Tokens.X)`). */
  get services(): ServiceReader {
    if (!this.serviceReader) throw new Error('the kernel has no services yet (it was not built by a proxy)');
    return this.serviceReader;
  }

  /** A signal that aborts after `timeouts.connect` or when `conn` goes away: the deadline of one lookup made for a connection. */
  lookupSignal(conn: ConnectionContext): AbortSignal {
    return AbortSignal.any([conn.signal, AbortSignal.timeout(this.config.timeouts.connect)]);
  }

  /**
   * The narrow view plugins get in `apply()`: hooks, config, logger, clock, services, dispatch,
   * resolution, lookupSignal. It also carries, untyped and deprecated, the members plugins were
   * documented to use on the kernel before (`resolver`, `names`, `upstream`, `lookup()`,
   * `reverse()`), so a plugin written as `apply(kernel: Kernel)` keeps working; nothing else of
   * the kernel (connections, limits, teardown).
   */
  get api(): PluginApi {
    return (this.apiView ??= Object.freeze({
      hooks: this.hooks,
      config: this.config,
      logger: this.logger,
      clock: this.clock,
      services: this.services,
      dispatch: this.dispatch,
      resolution: this.resolution,
      frontEnds: this.frontEnds,
      commands: this.commands,
      lookupSignal: (conn: ConnectionContext) => this.lookupSignal(conn),
      resolver: this.resolver,
      names: this.names,
      upstream: this.upstream,
      lookup: (name: string, family: 0 | 4 | 6, conn: ConnectionContext | undefined) => this.names.lookup(name, family, conn),
      reverse: (address: string, conn: ConnectionContext | undefined) => this.names.reverse(address, conn),
    }));
  }

  /** Compose the interceptor chains and freeze them (`proxy.listen()` calls it before any bind; the first dispatch does too). */
  seal(): void {
    this.dispatch.seal();
    this.names.seal();
    this.frontEnds.seal();
    this.commands.seal();
  }

  /** Number of open client connections. */
  get connectionCount(): number {
    return this.live.size;
  }

  /** Resolve a name the way the kernel does (`onResolve`, then the resolver; partitioned by `conn`'s isolation key). */
  lookup(name: string, family: 0 | 4 | 6, conn: ConnectionContext | undefined): Promise<readonly ResolvedAddress[]> {
    return this.names.lookup(name, family, conn);
  }

  /** Reverse-resolve an IP literal the way the kernel does. */
  reverse(address: string, conn: ConnectionContext | undefined): Promise<readonly string[]> {
    return this.names.reverse(address, conn);
  }

  /** Take ownership of an accepted client socket. Called by the listeners. */
  accept(
    socket: Socket,
    listener: ListenerInfo,
    peer?: { address?: string; port?: number; family?: 'IPv4' | 'IPv6'; initial?: Buffer },
  ): void {
    let address = peer?.address ?? socket.remoteAddress ?? '';
    if (address.startsWith('::ffff:') && address.includes('.')) address = address.slice(7);
    // Every per-client count is by client key: an IPv6 client by its /64 (see clientKey).
    const key = clientKey(address);
    const limits = this.config.limits;
    // Unix-socket clients have no address to count by; only the global limit applies to them.
    // Loopback clients are every local program at once: counted only when the config sets the
    // limit (limits.perClientCountsLoopback), as Tor's SocksPort has no such cap at all.
    const perClientMax =
      limits.maxConnectionsPerClient > 0 && address !== '' && (limits.perClientCountsLoopback || !isLoopbackClient(address)) ? limits.maxConnectionsPerClient : 0;
    // Over a limit: the oldest connection still in its handshake (of this client, then of
    // anyone) is closed to make room, as Envoy's overload manager shortens timeouts under
    // pressure; with none to shed, the new one is closed at once, without a byte. Either way the
    // log says so, at most once a second.
    let reason: 'limits.maxConnectionsPerClient' | 'limits.maxConnections' | undefined;
    if (perClientMax > 0 && (this.budget.perClient.get(key) ?? 0) >= perClientMax && !this.shedHandshake(key, 'limits.maxConnectionsPerClient')) reason = 'limits.maxConnectionsPerClient';
    else if (this.budget.total >= limits.maxConnections && !this.shedHandshake(undefined, 'limits.maxConnections')) reason = 'limits.maxConnections';
    if (reason) {
      discard(socket);
      this.noteRefusal(`connections refused: ${reason} reached`, { limit: reason });
      if (channels.refused.hasSubscribers) channels.refused.publish({ reason, clientAddress: address });
      return;
    }
    const fromClient = this.budget.perClient.get(key) ?? 0;
    const id = this.nextId++;
    const family =
      peer?.family ?? (listener.path !== undefined || socket.remoteFamily === undefined ? 'unix' : socket.remoteFamily === 'IPv6' && !address.includes('.') ? 'IPv6' : 'IPv4');
    const conn = new Connection(this, socket, {
      id,
      listener,
      clientAddress: address,
      clientPort: peer?.port ?? socket.remotePort ?? 0,
      clientFamily: family,
      acceptedAt: this.clock.now(),
      log: this.logger,
      signal: undefined,
    });
    conn.clientKey = key;
    const onAccept = this.hooks.onAccept;
    if (isTapped(onAccept)) {
      let verdict: false | undefined;
      try {
        verdict = onAccept.call(conn.ctx);
      } catch (err) {
        conn.ctx.log.warn({ err: errorMessage(err) }, errorMessage(err));
        if (hasCode(err, 'SOCKSMITH_ERR_PLUGIN_HOOK') && channels.pluginError.hasSubscribers) {
          const e = err as { plugin: string; hook: string };
          channels.pluginError.publish({ plugin: e.plugin, hook: e.hook, conn: conn.ctx });
        }
        verdict = false;
      }
      if (verdict === false) {
        if (this.logger.isLevelEnabled('info')) logConnectionRefused(this, conn.ctx);
        if (channels.refused.hasSubscribers) channels.refused.publish({ reason: 'onAccept', clientAddress: address });
        discard(socket);
        return;
      }
    }
    this.live.add(conn);
    this.budget.total++;
    this.budget.perClient.set(key, fromClient + 1);
    this.budget.handshakes.add(conn);
    const mine = this.budget.handshakesByClient.get(key);
    if (mine) mine.add(conn);
    else this.budget.handshakesByClient.set(key, new Set([conn]));
    if (channels.accepted.hasSubscribers) channels.accepted.publish({ conn: conn.ctx });
    conn.start(peer?.initial);
  }

  /**
   * Close the oldest connection still in its handshake, of client key `key` or of anyone; false
   * if there is none.
   */
  private shedHandshake(key: string | undefined, limit: string): boolean {
    const pool = key === undefined ? this.budget.handshakes : this.budget.handshakesByClient.get(key);
    const oldest = pool?.values().next().value as Connection | undefined;
    if (!oldest) return false;
    oldest.ctx.log.debug({ client: oldest.ctx.clientAddress, limit }, 'handshake closed to make room for a new connection (oldest first)');
    oldest.endHandshake('shed');
    this.noteRefusal(`handshakes closed to make room: ${limit} reached`, { limit });
    return true;
  }

  /** @internal A connection's handshake is over (its request arrived): it is no longer shed under pressure. */
  handshakeDone(conn: Connection): void {
    if (!this.budget.handshakes.delete(conn)) return;
    const a = conn.clientKey;
    const mine = this.budget.handshakesByClient.get(a);
    mine?.delete(conn);
    if (mine?.size === 0) this.budget.handshakesByClient.delete(a);
  }

  /**
   * @internal Count a connection closed without service; under a flood this is one warn line
   * per message per second at most, with `refused`: how many since the last line. `fields` of
   * the latest occurrence go with it.
   */
  noteRefusal(message: string, fields: Record<string, unknown>): void {
    const r = this.refusals.get(message);
    if (r) {
      r.count++;
      r.fields = fields;
    } else this.refusals.set(message, { fields, count: 1 });
    if (!this.refusalLogTimer) this.flushRefusals();
  }

  private flushRefusals(): void {
    if (this.refusals.size === 0) {
      this.refusalLogTimer = undefined;
      return;
    }
    for (const [message, r] of this.refusals) this.logger.warn({ ...r.fields, refused: r.count }, message);
    this.refusals.clear();
    this.refusalLogTimer = setTimeout(() => this.flushRefusals(), 1000);
    this.refusalLogTimer.unref?.();
  }

  /** @internal Called by a connection's teardown. */
  forget(conn: Connection): void {
    if (!this.live.delete(conn)) return;
    this.handshakeDone(conn);
    this.budget.total--;
    const a = conn.clientKey;
    const n = (this.budget.perClient.get(a) ?? 1) - 1;
    if (n <= 0) this.budget.perClient.delete(a);
    else this.budget.perClient.set(a, n);
  }

  /**
   * @internal On a reload, before this (new) kernel accepts anything: count against the limits
   * the connections `previous` (the replaced generation) still serves, and let its oldest
   * handshakes be shed like this kernel's own. A reload must not hand every client a fresh
   * `maxConnectionsPerClient` (nor the proxy a fresh `maxConnections`).
   */
  shareBudget(previous: Kernel): void {
    if (this.live.size > 0) throw new Error('shareBudget: this kernel has accepted connections already');
    this.budget = previous.budget;
  }

  /** Tear down every open connection now; tunnels are reset on both sides ({@link Connection.cut}). */
  closeAll(): void {
    for (const c of [...this.live]) c.cut();
  }

  /**
   * Wait up to `ms` for open connections to finish on their own, then tear down the rest
   * (tunnels with a reset on both sides).
   * Connections still in their handshake are closed at once (they have no accepted data yet)
   * unless `keepHandshakes` (a reload lets them finish on the configuration that accepted them).
   */
  async drain(ms: number, options: { keepHandshakes?: boolean } = {}): Promise<void> {
    if (!options.keepHandshakes) for (const c of [...this.live]) if (c.handshaking) c.endHandshake('shutdown');
    if (this.live.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const all = Promise.all([...this.live].map((c) => c.closed()));
    await (Number.isFinite(ms) ? Promise.race([all, new Promise<void>((r) => (timer = setTimeout(r, ms)))]) : all);
    if (timer) clearTimeout(timer);
    // Past the deadline: a tunnel still open is cut with a reset on both sides, so a client in
    // the middle of a download sees an error, not a clean end of a truncated file.
    for (const c of [...this.live]) c.cut();
  }
}
