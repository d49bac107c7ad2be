/**
 * A socksmith proxy instance: container, kernel, plugins and listeners, with start and graceful
 * stop. `npx socksmith` is a thin CLI around this; tests and embedders use it directly.
 * @packageDocumentation
 */
import 'reflect-metadata';
import fs from 'node:fs';
import net from 'node:net';
import { readProxyHeader } from './kernel/proxy-protocol.js';
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
import { createLogger, type Logger } from './logger.js';
import { formatHostPort } from './protocol/address.js';

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
    probe.once('error', () => resolve(false));
  });
  if (!alive) fs.unlinkSync(file);
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

/** One running (or ready-to-run) proxy. */
export class SocksmithProxy {
  private servers: net.Server[] = [];
  private bound: ListenerInfo[] = [];
  private closing: Promise<void> | undefined;

  private constructor(
    /** The DI container of this instance. */
    readonly container: DependencyContainer,
    /** The kernel (hooks, services). */
    readonly kernel: Kernel,
    /** The frozen configuration. */
    readonly config: ResolvedConfig,
    private readonly plugins: readonly AppliedPlugin[],
    private readonly logger: Logger,
  ) {}

  /** Build a proxy from a resolved config or a raw config object (validated here). Does not listen yet. */
  static async create(config: ResolvedConfig | SocksmithConfig | ConfigInput, options: CreateProxyOptions = {}): Promise<SocksmithProxy> {
    const cwd = options.cwd ?? process.cwd();
    const resolved = isResolved(config) ? config : resolveConfig(config, { file: undefined, dir: cwd });
    const logger = options.logger ?? createLogger(resolved.log.level);
    const loaded = await loadPlugins(resolved);
    const container = await createContainer(resolved, logger);
    const kernel = resolveToken(container, Tokens.Kernel);
    const plugins = applyPlugins(container, kernel, loaded);
    return new SocksmithProxy(container, kernel, resolved, plugins, logger);
  }

  /**
   * Refuse to become an open proxy by accident: a listener on a non-loopback address needs a
   * plugin that restricts clients (auth, a client ACL) or `allowOpenProxy: true`.
   */
  private checkOpenProxy(): void {
    if (this.config.allowOpenProxy) return;
    const guarded = this.plugins.some((p) => p.instance.restrictsClients?.() === true);
    if (guarded) return;
    for (const [i, l] of this.config.listen.entries()) {
      if (l.host !== undefined && !isLoopbackHost(l.host)) {
        throw new ConfigError(
          `listen.${i}.host`,
          `${l.host} is not a loopback address, and no plugin restricts who may connect: this would be an open proxy. Enable the auth plugin or a policy client ACL, or set allowOpenProxy: true if that is really intended`,
        );
      }
    }
  }

  /** Start plugins and bind every listener. Resolves with the bound addresses (real ports). */
  async listen(): Promise<ListenerInfo[]> {
    this.checkOpenProxy();
    try {
      await startPlugins(this.plugins, this.config.timeouts.pluginStart);
      for (const [index, l] of this.config.listen.entries()) {
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
          break;
        }
        const info: ListenerInfo =
          l.path !== undefined
            ? Object.freeze({ index, host: '', port: 0, path: l.path })
            : Object.freeze({ index, host: l.host!, port: (server.address() as net.AddressInfo).port, proxyProtocol: l.proxyProtocol !== undefined });
        const trusted = l.proxyProtocol ? blockListOf(l.proxyProtocol.trusted) : undefined;
        server.on('connection', (socket) => {
          if (!trusted) return this.kernel.accept(socket, info);
          this.acceptProxied(socket, info, trusted);
        });
        this.servers.push(server);
        this.bound.push(info);
      }
    } catch (err) {
      await this.close(0); // closes every plugin too, also after a failed start()
      throw err;
    }
    return [...this.bound];
  }

  /**
   * A connection on a PROXY-protocol listener: only from a trusted balancer, and only with a
   * valid header; otherwise closed without a byte. The header's client address replaces the
   * socket's for everything downstream (limits, onAccept, isolation, logs).
   */
  private acceptProxied(socket: net.Socket, info: ListenerInfo, trusted: net.BlockList): void {
    socket.on('error', () => {});
    const peer = socket.remoteAddress ?? '';
    const family = net.isIPv6(peer) ? 'ipv6' : 'ipv4';
    if (!trusted.check(peer, family)) {
      this.logger.warn({ peer }, 'PROXY protocol listener: connection from an untrusted address, closed');
      socket.destroy();
      return;
    }
    readProxyHeader(socket, this.config.timeouts.handshake).then(
      ({ client, rest }) => {
        if (socket.destroyed) return;
        this.kernel.accept(socket, info, client ? { address: client.address, port: client.port, family: client.family, initial: rest } : { initial: rest });
      },
      (err: unknown) => {
        this.logger.warn({ peer, err: errorMessage(err) }, 'PROXY protocol header missing or invalid, closed');
        socket.destroy();
      },
    );
  }

  /** The bound listeners (real ports). */
  get addresses(): readonly ListenerInfo[] {
    return this.bound;
  }

  /**
   * Stop accepting, give open tunnels up to `drainMs` (default `timeouts.drain`) to finish, then
   * close the rest, the plugins and the upstream. Idempotent.
   */
  close(drainMs: number = this.config.timeouts.drain): Promise<void> {
    if (this.closing) {
      // Already draining: a shorter deadline (e.g. a second signal, drainMs 0) cuts it short.
      if (drainMs === 0) this.kernel.closeAll();
      return this.closing;
    }
    this.closing = (async () => {
      await Promise.all(this.servers.map((s) => new Promise<void>((r) => s.close(() => r()))).concat(this.kernel.drain(drainMs)));
      await closePlugins(this.plugins, (m) => this.logger.warn(m));
      try {
        await this.kernel.upstream.close?.();
      } catch (err) {
        this.logger.warn({ err: errorMessage(err) }, 'upstream close failed');
      }
    })();
    return this.closing;
  }
}

/** Create a proxy (see {@link SocksmithProxy.create}). */
export function createProxy(config: ResolvedConfig | SocksmithConfig | ConfigInput, options?: CreateProxyOptions): Promise<SocksmithProxy> {
  return SocksmithProxy.create(config, options);
}
