/**
 * Run code when a stream closes: count the bytes of every stream per client address and log the
 * running totals. The kernel aborts `conn.signal` when it tears a connection down, after the
 * relay has ended, so `conn.bytesUp`, `conn.bytesDown` and `conn.reply` are final by then.
 *
 * Load it with `plugins: { 'byte-counter': { module: './byte-counter-plugin.ts' } }`.
 */
import { type ConnectionContext, type Kernel, type Logger, type SocksmithPlugin, Stage, Tokens, inject, injectable } from 'socksmith';

const PLUGIN_NAME = 'byte-counter';

/** Bytes and streams of one client address, over the streams that closed. */
export interface ClientTotals {
  up: number;
  down: number;
  streams: number;
}

@injectable()
export default class ByteCounterPlugin implements SocksmithPlugin {
  static readonly meta = { name: PLUGIN_NAME, description: 'Counts bytes per client address when streams close.' };

  /** Totals per client address (kept for the proxy's life; a real plugin would bound this). */
  readonly totals = new Map<string, ClientTotals>();

  constructor(
    @inject(Tokens.PluginOptions) _options: unknown,
    @inject(Tokens.Logger) private readonly logger: Logger,
  ) {}

  apply(kernel: Kernel): void {
    // OBSERVE: after every plugin that could answer the request; returning undefined lets it go on.
    kernel.hooks.onRequest.tap({ name: PLUGIN_NAME, stage: Stage.OBSERVE }, (conn) => {
      conn.signal.addEventListener('abort', () => this.closed(conn), { once: true });
      return undefined;
    });
  }

  /** The stream is over: its counts are final. */
  private closed(conn: ConnectionContext): void {
    const t = this.totals.get(conn.clientAddress) ?? { up: 0, down: 0, streams: 0 };
    t.up += conn.bytesUp;
    t.down += conn.bytesDown;
    t.streams += 1;
    this.totals.set(conn.clientAddress, t);
    this.logger.info({ client: conn.clientAddress, ...t }, 'byte-counter: totals');
  }
}
