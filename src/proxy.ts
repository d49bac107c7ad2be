/**
 * A socksmith proxy instance: container, kernel, plugins and listeners, with start and graceful
 * stop. `npx socksmith` is a thin CLI around this; tests and embedders use it directly.
 * @packageDocumentation
 */
import 'reflect-metadata';
import fs from 'node:fs';
import net from 'node:net';
import { readProxyHeader } from './kernel/proxy-protocol.js';
import { discard, release } from './kernel/socket-owner.js';
import { Metrics } from './metrics/metrics.js';
import { type MetricsServer, startMetricsServer } from './metrics/server.js';
import type { DependencyContainer } from 'tsyringe';
import { resolveConfig } from './config/normalize.js';
import type { ConfigInput } from './config/schema.js';
import type { SocksmithConfig } from './config/define-config.js';
import type { ResolvedConfig } from './config/types.js';
import { createContainer } from './di/container.js';
import { Tokens, resolveToken } from './di/tokens.js';
import { ConfigError, SocksmithError, errorMessage } from './errors.js';
import { type AppliedPlugin, applyPlugins, closePlugins, startPlugins } from './kernel/apply-plugins.js';
import type { ListenerInfo } from './kernel/context.js';
import type { Kernel } from './kernel/kernel.js';
import { loadPlugins } from './kernel/plugin-loader.js';
import { canScrub, createLogger, setSafeLogging, type Logger } from './logger.js';
import { formatHostPort } from './protocol/address.js';
import { primeAllocator } from './kernel/allocator.js';
import { DnsResolver } from './resolver/dns-resolver.js';

/** A BlockList of CIDRs and single addresses (IPv4-mapped IPv6 peers match IPv4 entries). */
function blockListOf(entries: readonly string[]): net.BlockList {
  const list = new net.BlockList();
  for (const e of entries) {
    const [addr, bits] = e.split('/');
    const type = net.isIPv6(addr!) ? 'ipv6' : 'ipv4';
    if (bits !== undefined) list.addSubnet(addr!, Number(bits), type);
    else list.addAddress(addr!, type);
  }
  return list;
}

/** Remove a unix socket file left by a process that died, never one a live process listens on. */
async function removeStaleSocket(file: string): Promise<void> {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(file);
  } catch {
    return;
  }
  if (!st.isSocket()) return; // not ours to remove: listen() will fail with a clear error
  const alive = await new Promise<boolean>((resolve) => {
    const probe = net.connect({ path: file });
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.on('error', () => resolve(false));
  });
  if (!alive) fs.unlinkSync(file);
}

/** What {@link SocksmithProxy.check} found for one listener entry. */
export interface ListenerProbe {
  /** Index in `config.listen`. */
  readonly index: number;
  /** `HOST:PORT` or `unix:/path`, as the `listening on` line would name it. */
  readonly address: string;
  /** Why binding would fail right now (`EADDRINUSE`, …), or undefined when it would not. */
  readonly problem: string | undefined;
}

/**
 * Would binding this listener fail right now? A TCP address is bound and closed at once (port 0
 * is always free); a unix socket path is taken when a live process accepts on it, or when the
 * path exists and is not a socket.
 */
async function probeListener(l: ResolvedConfig['listen'][number]): Promise<string | undefined> {
  if (l.path !== undefined) {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(l.path);
    } catch {
      return undefined;
    }
    if (!st.isSocket()) return 'EEXIST (the path exists and is not a socket)';
    return new Promise((resolve) => {
      const s = net.connect({ path: l.path! });
      s.once('connect', () => {
        s.destroy();
        resolve('EADDRINUSE (a process accepts on this socket)');
      });
      s.once('error', () => resolve(undefined));
    });
  }
  if (l.port === 0) return undefined;
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? errorMessage(err)));
    server.listen({ host: l.host!, port: l.port!, ipv6Only: l.host!.includes(':'), exclusive: true }, () => server.close(() => resolve(undefined)));
  });
}

/** True for 127.0.0.0/8, ::1, ::ffff:127.x and `localhost`. */
export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost' || host === '::1' || host === '[::1]') return true;
  const v4 = host.startsWith('::ffff:') ? host.slice(7) : host;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4);
}

/** Options for {@link createProxy}. */
export interface CreateProxyOptions {
  /** Logger to use instead of the default stderr logger. */
  readonly logger?: Logger;
  /** Folder relative module paths in a raw config are resolved against (default: cwd). */
  readonly cwd?: string;
}

function isResolved(c: ResolvedConfig | SocksmithConfig | ConfigInput): c is ResolvedConfig {
  return typeof (c as ResolvedConfig).source === 'object' && Array.isArray((c as ResolvedConfig).plugins);
}

/**
 * One configuration's worth of running parts: container, kernel, plugins. A reload builds a new
 * generation; the old one keeps serving the connections it accepted until they end.
 */
interface Generation {
  readonly container: DependencyContainer;
  readonly kernel: Kernel;
  readonly config: ResolvedConfig;
  readonly plugins: readonly AppliedPlugin[];
}

/** A bound listener and the config entry it came from. */
interface BoundListener {
  /** Identity of its config entry. */
  readonly key: string;
  /** Identity with the port it really bound (port 0 in the config resolves to a real port). */
  readonly boundKey: string;
  readonly server: net.Server;
  readonly info: ListenerInfo;
}

/** Identity of a listener entry: same key across a reload means "keep this socket". */
function listenerKey(l: ResolvedConfig['listen'][number]): string {
  return l.path !== undefined ? `unix:${l.path}:${l.mode ?? ''}` : `tcp:${l.host}:${l.port}:${JSON.stringify(l.proxyProtocol ?? null)}`;
}

/** Build a generation (container, kernel, applied plugins) without starting anything. */
async function buildGeneration(config: ResolvedConfig, logger: Logger, metrics: Metrics | undefined): Promise<Generation> {
  // safeLogging is enforced by the logger itself (src/logger.ts): a logger socksmith did not make
  // cannot scrub, so it is refused rather than leaking destinations.
  if (config.log.safeLogging && !canScrub(logger)) {
    throw new ConfigError('log.safeLogging', 'needs a logger made by createLogger() (the scrub lives in it); this one is not');
  }
  // The plugins' and the upstream module's problems are reported together.
  const [pluginsResult, containerResult] = await Promise.allSettled([loadPlugins(config), createContainer(config, logger, undefined, metrics)]);
  const failed = [pluginsResult, containerResult].filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason as unknown);
  if (failed.length > 0) {
    if (failed.every((e) => e instanceof ConfigError)) throw ConfigError.all(failed as ConfigError[]);
    throw failed.find((e) => !(e instanceof ConfigError));
  }
  const loaded = (pluginsResult as PromiseFulfilledResult<Awaited<ReturnType<typeof loadPlugins>>>).value;
  const container = (containerResult as PromiseFulfilledResult<DependencyContainer>).value;
  const { kernel, plugins } = applyPlugins(container, loaded);
  return { container, kernel, config, plugins };
}

const closedGenerations = new WeakSet<Generation>();

/** Close a generation's plugins, upstream and resolver (after its connections are gone). Once per generation. */
async function closeGeneration(g: Generation, logger: Logger): Promise<void> {
  if (closedGenerations.has(g)) return;
  closedGenerations.add(g);
  await closePlugins(g.plugins, (m) => logger.warn(m));
  try {
    await g.kernel.upstream.close?.();
  } catch (err) {
    logger.warn({ err: errorMessage(err) }, 'upstream close failed');
  }
  try {
    await g.kernel.resolver.close?.(); // pending lookups end now, not at their DNS timeout
  } catch (err) {
    logger.warn({ err: errorMessage(err) }, 'resolver close failed');
  }
}

/** One running (or ready-to-run) proxy. */
export class SocksmithProxy {
  private listeners: BoundListener[] = [];
  private closing: Promise<void> | undefined;
  private current: Generation;
  /** Generations replaced by a reload that still have open connections. */
  private readonly retired = new Set<Generation>();
  private metricsServer: MetricsServer | undefined;
  /** Prometheus metrics of this proxy when `config.metrics` is set (served by the metrics listener). */
  readonly metrics: Metrics | undefined;

  private constructor(
    generation: Generation,
    private readonly logger: Logger,
    metrics: Metrics | undefined,
  ) {
    this.current = generation;
    this.metrics = metrics;
  }

  /** The DI container of the current configuration. */
  get container(): DependencyContainer {
    return this.current.container;
  }

  /** The kernel of the current configuration (hooks, services). New connections go here. */
  get kernel(): Kernel {
    return this.current.kernel;
  }

  /** The current (frozen) configuration. */
  get config(): ResolvedConfig {
    return this.current.config;
  }

  /**
   * Open client connections of every generation: the current configuration's and those a reload
   * replaced that are still finishing (the kernel's own `connectionCount` counts only its own).
   */
  get connectionCount(): number {
    let n = this.current.kernel.connectionCount;
    for (const g of this.retired) n += g.kernel.connectionCount;
    return n;
  }

  /** Build a proxy from a resolved config or a raw config object (validated here). Does not listen yet. */
  static async create(config: ResolvedConfig | SocksmithConfig | ConfigInput, options: CreateProxyOptions = {}): Promise<SocksmithProxy> {
    primeAllocator();
    const cwd = options.cwd ?? process.cwd();
    const resolved = isResolved(config) ? config : resolveConfig(config, { file: undefined, dir: cwd });
    const logger = options.logger ?? createLogger(resolved.log.level);
    // Created before the generation, so plugins can inject it (Tokens.Metrics). It counts only
    // connections on this proxy's own listeners (the channels are process-wide).
    let proxy: SocksmithProxy | undefined;
    const metrics = resolved.metrics ? new Metrics({ listeners: () => proxy?.addresses ?? [] }) : undefined;
    let g: Generation;
    try {
      g = await buildGeneration(resolved, logger, metrics);
    } catch (err) {
      metrics?.close();
      throw err;
    }
    setSafeLogging(logger, resolved.log.safeLogging);
    proxy = new SocksmithProxy(g, logger, metrics);
    return proxy;
  }

  /**
   * Refuse to become an open proxy by accident: a listener on a non-loopback address needs a
   * plugin that restricts clients (auth, a client ACL admitting only loopback and private
   * networks) or `allowOpenProxy: true`. A client ACL that lets the public in is named as the fault.
   */
  private static checkOpenProxy(g: Generation): void {
    if (g.config.allowOpenProxy) return;
    const guarded = g.plugins.some((p) => p.instance.restrictsClients?.() === true);
    if (guarded) return;
    for (const [i, l] of g.config.listen.entries()) {
      if (l.host !== undefined && !isLoopbackHost(l.host)) {
        for (const p of g.plugins) {
          const problem = p.instance.openProxyProblem?.();
          if (!problem) continue;
          throw new ConfigError(
            problem.key,
            `${problem.reason}, and listen.${i}.host ${l.host} is not a loopback address: this would be an open proxy. Admit only loopback and private networks (end the list with "reject *"), enable the auth plugin, or set allowOpenProxy: true if that is really intended`,
          );
        }
        throw new ConfigError(
          `listen.${i}.host`,
          `${l.host} is not a loopback address, and no plugin restricts who may connect: this would be an open proxy. Enable the auth plugin or a policy client ACL, or set allowOpenProxy: true if that is really intended`,
        );
      }
    }
  }

  /** @internal kept for tests written against the earlier name. */
  private checkOpenProxy(): void {
    SocksmithProxy.checkOpenProxy(this.current);
  }

  /**
   * Everything {@link listen} checks, without binding a listener: the open-proxy guard (the very
   * function `listen()` and `reload()` call), then every plugin's `start()` (bounded by
   * `timeouts.pluginStart`). Then each TCP listener's address is tried (bound and closed at once)
   * and each unix socket path probed, to report the ones that are taken right now: a start would
   * fail on them with exit 69 — unless the process holding them is the running socksmith that a
   * SIGHUP is about to reload. Throws what `listen()` would throw; does not close the proxy
   * (`socksmith --check` closes it afterwards).
   */
  async check(): Promise<ListenerProbe[]> {
    SocksmithProxy.checkOpenProxy(this.current);
    this.current.kernel.seal();
    await startPlugins(this.current.plugins, this.current.config.timeouts.pluginStart);
    const out: ListenerProbe[] = [];
    for (const [index, l] of this.current.config.listen.entries()) out.push({ index, address: l.path !== undefined ? `unix:${l.path}` : formatHostPort(l.host!, l.port!), problem: await probeListener(l) });
    return out;
  }

  /** Start plugins and bind every listener. Resolves with the bound addresses (real ports). */
  async listen(): Promise<ListenerInfo[]> {
    SocksmithProxy.checkOpenProxy(this.current);
    // The interceptor chains are composed now, before any plugin starts or any client connects.
    this.current.kernel.seal();
    try {
      await startPlugins(this.current.plugins, this.current.config.timeouts.pluginStart);
      for (const [index, l] of this.current.config.listen.entries()) {
        const bound = await this.bind(l, index);
        if (!bound) break;
        this.listeners.push(bound);
      }
      const mc = this.current.config.metrics;
      if (this.metrics && mc && !this.closing) {
        const server = await startMetricsServer({
          host: mc.host,
          port: mc.port,
          metrics: this.metrics,
          ready: () => this.ready,
          stopping: () => this.closing !== undefined,
          logger: this.logger,
        });
        if (this.closing) await server.close(); // close() ran while it was binding
        else this.metricsServer = server;
      }
    } catch (err) {
      await this.close(0); // closes every plugin too, also after a failed start()
      throw err;
    }
    return this.addresses.slice();
  }

  /** Bind one listener entry; undefined if close() ran meanwhile. */
  private async bind(l: ResolvedConfig['listen'][number], index: number): Promise<BoundListener | undefined> {
    const server = net.createServer({ allowHalfOpen: true, noDelay: true });
    server.on('error', (err) => this.logger.error({ err: errorMessage(err) }, 'listener error'));
    const where = l.path !== undefined ? `unix:${l.path}` : formatHostPort(l.host!, l.port!);
    if (l.path !== undefined) await removeStaleSocket(l.path);
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(new SocksmithError('SOCKSMITH_ERR_LISTEN', `cannot listen on ${where}: ${errorMessage(err)}`, { cause: err }));
      server.once('error', onError);
      const options = l.path !== undefined ? { path: l.path } : { host: l.host!, port: l.port!, ipv6Only: l.host!.includes(':') };
      server.listen(options, () => {
        server.removeListener('error', onError);
        resolve();
      });
    });
    if (l.path !== undefined && l.mode !== undefined) fs.chmodSync(l.path, parseInt(l.mode, 8));
    if (this.closing) {
      // close() ran while we were binding (e.g. SIGTERM at startup): do not accept on it.
      server.close();
      return undefined;
    }
    const info: ListenerInfo =
      l.path !== undefined
        ? Object.freeze({ index, host: '', port: 0, path: l.path })
        : Object.freeze({ index, host: l.host!, port: (server.address() as net.AddressInfo).port, proxyProtocol: l.proxyProtocol !== undefined });
    const trusted = l.proxyProtocol ? blockListOf(l.proxyProtocol.trusted) : undefined;
    // `this.current` is read per connection: after a reload new connections meet the new kernel.
    server.on('connection', (socket) => {
      if (!trusted) return this.current.kernel.accept(socket, info);
      this.acceptProxied(socket, info, trusted);
    });
    const boundKey = l.path !== undefined ? listenerKey(l) : listenerKey({ ...l, port: info.port });
    return { key: listenerKey(l), boundKey, server, info };
  }

  /**
   * Switch to a new configuration (SIGHUP): new connections use it, open tunnels are untouched
   * and finish on the configuration that accepted them. Listeners present in both are kept (same
   * socket, no gap); new ones are bound, removed ones closed. If anything fails (the new config's
   * plugins, a bind), the old configuration stays in force and the error is thrown.
   */
  async reload(config: ResolvedConfig): Promise<ListenerInfo[]> {
    if (this.closing) throw new SocksmithError('SOCKSMITH_ERR_LISTEN', 'cannot reload: the proxy is closing');
    const next = await buildGeneration(config, this.logger, this.metrics);
    // The connections the old configuration still serves count against the new one's limits.
    next.kernel.shareBudget(this.current.kernel);
    // So do the lookups it still waits for (resolver.maxPending, maxPendingPerClient), when both
    // configurations use the built-in resolver (a plugin's own resolver keeps its own counts).
    if (next.kernel.resolver instanceof DnsResolver && this.current.kernel.resolver instanceof DnsResolver) next.kernel.resolver.shareBudget(this.current.kernel.resolver);
    try {
      SocksmithProxy.checkOpenProxy(next);
      next.kernel.seal();
      await startPlugins(next.plugins, config.timeouts.pluginStart);
    } catch (err) {
      await closeGeneration(next, this.logger);
      throw err;
    }
    setSafeLogging(this.logger, config.log.safeLogging);
    // A new entry keeps a socket whose entry is the same, or whose real port it names (an entry
    // that said port 0 and bound 41121 is kept by a new entry saying 41121).
    const keep = new Set(this.listeners);
    const added: BoundListener[] = [];
    const nextListeners: BoundListener[] = [];
    try {
      for (const [index, l] of config.listen.entries()) {
        const k = listenerKey(l);
        const existing = [...keep].find((b) => b.key === k || b.boundKey === k);
        if (existing) {
          keep.delete(existing);
          nextListeners.push(existing);
          continue;
        }
        const bound = await this.bind(l, index);
        if (!bound) throw new SocksmithError('SOCKSMITH_ERR_LISTEN', 'closing during reload');
        added.push(bound);
        nextListeners.push(bound);
      }
    } catch (err) {
      for (const b of added) b.server.close();
      await closeGeneration(next, this.logger);
      throw err;
    }
    const previous = this.current;
    this.current = next;
    this.listeners = nextListeners;
    for (const b of keep) b.server.close(); // removed listeners: stop accepting
    this.retire(previous);
    return this.addresses.slice();
  }

  /** Let a replaced generation finish its connections, then close its plugins. */
  private retire(g: Generation): void {
    this.retired.add(g);
    void g.kernel.drain(Number.POSITIVE_INFINITY, { keepHandshakes: true }).then(async () => {
      this.retired.delete(g);
      await closeGeneration(g, this.logger);
    });
  }

  /**
   * A connection on a PROXY-protocol listener: only from a trusted balancer, and only with a
   * valid header; otherwise closed without a byte. The header's client address replaces the
   * socket's for everything downstream (limits, onAccept, isolation, logs).
   */
  private acceptProxied(socket: net.Socket, info: ListenerInfo, trusted: net.BlockList): void {
    // Its one permanent error listener, at once: no owner while the header is read (readProxyHeader
    // fails on an error by itself); the connection adopts it, and a held error reaches it then.
    release(socket);
    const peer = socket.remoteAddress ?? '';
    const family = net.isIPv6(peer) ? 'ipv6' : 'ipv4';
    if (!trusted.check(peer, family)) {
      // Batched like the connection-limit refusals: a flood from an untrusted peer is one warn
      // line a second, with the count and the latest peer.
      this.current.kernel.noteRefusal('PROXY protocol listener: connections from an untrusted address closed', { peer });
      discard(socket);
      return;
    }
    readProxyHeader(socket, this.current.config.timeouts.handshake).then(
      ({ client, rest }) => {
        if (socket.destroyed) return;
        this.current.kernel.accept(socket, info, client ? { address: client.address, port: client.port, family: client.family, initial: rest } : { initial: rest });
      },
      (err: unknown) => {
        // Batched too: a trusted balancer (or a peer behind it sending garbage) can open
        // connections without a valid header as fast as an untrusted peer can.
        this.current.kernel.noteRefusal('PROXY protocol header missing or invalid, closed', { peer, err: errorMessage(err) });
        discard(socket);
      },
    );
  }

  /** The bound listeners (real ports). */
  get addresses(): readonly ListenerInfo[] {
    return this.listeners.map((b) => b.info);
  }

  /** The bound metrics listener (real port), once listen() started it. */
  get metricsAddress(): { readonly host: string; readonly port: number } | undefined {
    return this.metricsServer?.address;
  }

  /** True once every configured listener is bound and the proxy is not closing (for /healthz). */
  get ready(): boolean {
    return !this.closing && this.listeners.length === this.current.config.listen.length && this.listeners.length > 0;
  }

  /**
   * Stop accepting, give open tunnels up to `drainMs` (default `timeouts.drain`) to finish, then
   * close the rest, the plugins and the upstream — of the current configuration and of any that a
   * reload replaced. Idempotent; a second call with `drainMs` 0 cuts a running drain short.
   */
  close(drainMs: number = this.current.config.timeouts.drain): Promise<void> {
    const all = () => [this.current, ...this.retired];
    if (this.closing) {
      if (drainMs === 0) for (const g of all()) g.kernel.closeAll();
      return this.closing;
    }
    this.closing = (async () => {
      const gens = all();
      await Promise.all([
        ...this.listeners.map((b) => new Promise<void>((r) => b.server.close(() => r()))),
        ...gens.map((g) => g.kernel.drain(drainMs)),
      ]);
      for (const g of gens) {
        this.retired.delete(g);
        await closeGeneration(g, this.logger);
      }
      // Last, so that /healthz says "stopping" and /metrics shows the drain until the end.
      this.metrics?.close();
      await this.metricsServer?.close();
    })();
    return this.closing;
  }
}

/** Create a proxy (see {@link SocksmithProxy.create}). */
export function createProxy(config: ResolvedConfig | SocksmithConfig | ConfigInput, options?: CreateProxyOptions): Promise<SocksmithProxy> {
  return SocksmithProxy.create(config, options);
}
