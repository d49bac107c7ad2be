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
import type { Upstream } from '../upstream/types.js';
import { Connection } from './connection.js';
import type { ConnectionContext, ListenerInfo } from './context.js';
import { type Hooks, isTapped } from './hooks.js';
import { logConnectionRefused } from './access-log.js';
import { channels } from './diagnostics.js';

/** The kernel every plugin taps into. */
@injectable()
export class Kernel {
  private readonly live = new Set<Connection>();
  private readonly perClient = new Map<string, number>();
  private nextId = 1;
  private refusedSinceLog = 0;
  private lastRefusalLimit = '';
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
  ) {}

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
    const limits = this.config.limits;
    const fromClient = this.perClient.get(address) ?? 0;
    // Unix-socket clients have no address to count by; only the global limit applies to them.
    const perClientLimited = limits.maxConnectionsPerClient > 0 && address !== '' && fromClient >= limits.maxConnectionsPerClient;
    if (this.live.size >= limits.maxConnections || perClientLimited) {
      // Over a limit: close at once, without a byte, and say so in the log (at most once a second).
      socket.on('error', () => {});
      socket.destroy();
      const reason = this.live.size >= limits.maxConnections ? 'limits.maxConnections' : 'limits.maxConnectionsPerClient';
      this.noteRefusal(reason);
      if (channels.refused.hasSubscribers) channels.refused.publish({ reason, clientAddress: address });
      return;
    }
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
    });
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
        socket.on('error', () => {});
        socket.destroy();
        return;
      }
    }
    this.live.add(conn);
    this.perClient.set(address, fromClient + 1);
    if (channels.accepted.hasSubscribers) channels.accepted.publish({ conn: conn.ctx });
    conn.start(peer?.initial);
  }

  /** Count a refusal by a limit; logged as one warn line per second at most under a flood. */
  private noteRefusal(limit: string): void {
    this.refusedSinceLog++;
    this.lastRefusalLimit = limit;
    if (!this.refusalLogTimer) this.flushRefusals();
  }

  private flushRefusals(): void {
    if (this.refusedSinceLog === 0) {
      this.refusalLogTimer = undefined;
      return;
    }
    this.logger.warn({ limit: this.lastRefusalLimit, refused: this.refusedSinceLog }, `connections refused: ${this.lastRefusalLimit} reached`);
    this.refusedSinceLog = 0;
    this.refusalLogTimer = setTimeout(() => this.flushRefusals(), 1000);
    this.refusalLogTimer.unref?.();
  }

  /** @internal Called by a connection's teardown. */
  forget(conn: Connection): void {
    if (!this.live.delete(conn)) return;
    const a = conn.ctx.clientAddress;
    const n = (this.perClient.get(a) ?? 1) - 1;
    if (n <= 0) this.perClient.delete(a);
    else this.perClient.set(a, n);
  }

  /** Tear down every open connection now. */
  closeAll(): void {
    for (const c of [...this.live]) c.finish();
  }

  /**
   * Wait up to `ms` for open connections to finish on their own, then tear down the rest.
   * Connections still in their handshake are closed at once (they have no accepted data yet)
   * unless `keepHandshakes` (a reload lets them finish on the configuration that accepted them).
   */
  async drain(ms: number, options: { keepHandshakes?: boolean } = {}): Promise<void> {
    if (!options.keepHandshakes) for (const c of [...this.live]) if (c.handshaking) c.finish();
    if (this.live.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const all = Promise.all([...this.live].map((c) => c.closed()));
    await (Number.isFinite(ms) ? Promise.race([all, new Promise<void>((r) => (timer = setTimeout(r, ms)))]) : all);
    if (timer) clearTimeout(timer);
    for (const c of [...this.live]) c.finish();
  }
}
