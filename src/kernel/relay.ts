/**
 * Relaying bytes between the client and the upstream, both ways, with backpressure and TCP
 * half-close, until both directions are done.
 *
 * - `write()` returned false → pause the source; `'drain'` → resume. Nothing is buffered beyond
 *   the sockets' own high-water marks.
 * - EOF on one side ends the other side's writable and keeps the opposite direction open
 *   (`allowHalfOpen`), so request/response protocols that half-close (`nc -N`, HTTP/1.0 clients)
 *   get their whole answer.
 * - The relay is over when both sockets have closed; an error or abortive close of either side
 *   destroys both (a TCP reset is passed on as a reset by the teardown). `onData` (when a plugin taps it) sees and may transform every chunk.
 * @packageDocumentation
 */
import type { Duplex } from 'node:stream';
import type { SyncWaterfallHook } from 'tapable';
import type { ConnectionContext } from './context.js';
import type { DataInfo } from './hooks.js';

/** How long a side that finished reading may take to flush its writes before it is destroyed. */
const FLUSH_LINGER_MS = 30_000;

/** Options of {@link relay}. */
export interface RelayOptions {
  readonly ctx: ConnectionContext;
  /** The onData hook when tapped; `undefined` keeps the hot path free of per-chunk calls. */
  readonly onData: SyncWaterfallHook<[Buffer, DataInfo]> | undefined;
  readonly upInfo: DataInfo;
  readonly downInfo: DataInfo;
  /** Called once when the relay is over (error or both sides closed). */
  readonly done: (err?: Error) => void;
}

/** Relay `client` ⇄ `upstream` until both are closed. */
export function relay(client: Duplex, upstream: Duplex, opts: RelayOptions): void {
  const { ctx, onData, upInfo, downInfo } = opts;
  let finished = false;
  let clientClosed = false;
  let upstreamClosed = false;
  let linger: NodeJS.Timeout | undefined;

  const done = (err?: Error) => {
    if (finished) return;
    finished = true;
    if (linger) clearTimeout(linger);
    opts.done(err);
  };

  const pipe = (src: Duplex, dst: Duplex, info: DataInfo, up: boolean) => {
    let waiting = false;
    const resume = () => {
      waiting = false;
      src.resume();
    };
    src.on('data', (chunk: Buffer) => {
      if (onData) {
        try {
          chunk = onData.call(chunk, info);
        } catch (err) {
          done(err as Error);
          return;
        }
        if (chunk.length === 0) return;
      }
      if (up) ctx.bytesUp += chunk.length;
      else ctx.bytesDown += chunk.length;
      if (!dst.write(chunk) && !waiting) {
        waiting = true;
        src.pause();
        dst.once('drain', resume);
      }
    });
    const onEnd = () => {
      if (!dst.destroyed && !dst.writableEnded) dst.end();
    };
    if (src.readableEnded) onEnd();
    else src.once('end', onEnd);
  };

  const onClose = (side: 'client' | 'upstream', hadError: boolean) => {
    if (side === 'client') clientClosed = true;
    else upstreamClosed = true;
    if (clientClosed && upstreamClosed) return done();
    const closed = side === 'client' ? client : upstream;
    const other = side === 'client' ? upstream : client;
    // Abortive close (error, RST, or closed without ever sending EOF): nothing more can be
    // delivered in either direction.
    if (hadError || !closed.readableEnded) {
      other.destroy();
      return done();
    }
    // Graceful: `other` has been ended by us; let it flush, bounded.
    if (other.writableFinished) {
      other.destroy();
      return done();
    }
    other.once('finish', () => {
      other.destroy();
      done();
    });
    linger = setTimeout(() => {
      other.destroy();
      done();
    }, FLUSH_LINGER_MS);
    linger.unref?.();
  };

  // Errors end the relay; the connection's teardown passes a reset on as a reset.
  client.on('error', (err) => done(err));
  upstream.on('error', (err) => done(err));
  client.on('close', (hadError: boolean) => onClose('client', hadError));
  upstream.on('close', (hadError: boolean) => onClose('upstream', hadError));
  pipe(client, upstream, upInfo, true);
  pipe(upstream, client, downInfo, false);
  upstream.resume();
}
