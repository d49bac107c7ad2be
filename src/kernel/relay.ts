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
 *   destroys both (a TCP reset is passed on as a reset by the teardown). `onData` (when a plugin
 *   taps it) sees and may transform every chunk.
 *
 * Shape: one {@link Relay} object per tunnel, and event listeners that are module-level
 * functions shared by every tunnel (they find their relay through a symbol on the socket).
 * Closures per tunnel would cost about a kilobyte of heap for each idle tunnel and an
 * allocation each on the way in; docs/performance.md has the measurements.
 * @packageDocumentation
 */
import type { Duplex } from 'node:stream';
import type { SyncWaterfallHook } from 'tapable';
import type { ConnectionContext } from './context.js';
import type { DataInfo } from './hooks.js';
import { noteRelayed } from './allocator.js';
import { type SocketOwner, adopt } from './socket-owner.js';

/** How long a side that finished reading may take to flush its writes before it is destroyed. */
const FLUSH_LINGER_MS = 30_000;

/** Options of {@link relay}. */
export interface RelayOptions {
  readonly ctx: ConnectionContext;
  /** The onData hook when tapped; `undefined` keeps the hot path free of per-chunk calls. */
  readonly onData: SyncWaterfallHook<[Buffer, DataInfo]> | undefined;
  /** `onData`'s second argument for client → upstream chunks (read only when `onData` is set). */
  readonly upInfo: DataInfo | undefined;
  /** `onData`'s second argument for upstream → client chunks. */
  readonly downInfo: DataInfo | undefined;
  /** Called once when the relay is over (error or both sides closed). */
  readonly done: (err?: Error) => void;
}

const kRelay = Symbol('socksmith.relay');

/** A stream taking part in a relay. */
type RelayStream = Duplex & { [kRelay]?: Relay };

/** One tunnel's relay state; it owns both sockets' errors while it runs. */
class Relay implements SocketOwner {
  private finished = false;
  private clientClosed = false;
  private upstreamClosed = false;
  /** The client is paused until the upstream drains. */
  private upWaiting = false;
  /** The upstream is paused until the client drains. */
  private downWaiting = false;
  private linger: NodeJS.Timeout | undefined;

  constructor(
    readonly client: RelayStream,
    readonly upstream: RelayStream,
    private readonly opts: RelayOptions,
  ) {}

  /** @internal An error on either socket ends the relay. */
  socketError(_socket: Duplex, err: Error): void {
    this.done(err);
  }

  done(err?: Error): void {
    if (this.finished) return;
    this.finished = true;
    if (this.linger) clearTimeout(this.linger);
    this.opts.done(err);
  }

  data(src: RelayStream, chunk: Buffer): void {
    const up = src === this.client;
    const o = this.opts;
    if (o.onData) {
      try {
        chunk = o.onData.call(chunk, (up ? o.upInfo : o.downInfo)!);
      } catch (err) {
        this.done(err as Error);
        return;
      }
      if (chunk.length === 0) return;
    }
    const dst = up ? this.upstream : this.client;
    if (up) o.ctx.bytesUp += chunk.length;
    else o.ctx.bytesDown += chunk.length;
    noteRelayed(chunk.length);
    if (!dst.write(chunk)) {
      if (up) {
        if (this.upWaiting) return;
        this.upWaiting = true;
      } else {
        if (this.downWaiting) return;
        this.downWaiting = true;
      }
      src.pause();
    }
  }

  drained(dst: RelayStream): void {
    if (dst === this.upstream) {
      if (!this.upWaiting) return;
      this.upWaiting = false;
      this.client.resume();
    } else {
      if (!this.downWaiting) return;
      this.downWaiting = false;
      this.upstream.resume();
    }
  }

  ended(src: RelayStream): void {
    const dst = src === this.client ? this.upstream : this.client;
    if (!dst.destroyed && !dst.writableEnded) dst.end();
  }

  closed(side: RelayStream, hadError: boolean): void {
    if (side === this.client) this.clientClosed = true;
    else this.upstreamClosed = true;
    if (this.clientClosed && this.upstreamClosed) return this.done();
    const other = side === this.client ? this.upstream : this.client;
    // Abortive close (error, RST, or closed without ever sending EOF): nothing more can be
    // delivered in either direction.
    if (hadError || !side.readableEnded) {
      other.destroy();
      return this.done();
    }
    // Graceful: `other` has been ended by us; let it flush, bounded.
    if (other.writableFinished) {
      other.destroy();
      return this.done();
    }
    other.once('finish', onFlushed);
    this.linger = setTimeout(onLingerTimeout, FLUSH_LINGER_MS, this, other);
    this.linger.unref?.();
  }
}

// The shared listeners. `this` is the socket the event came from.
function onData(this: RelayStream, chunk: Buffer): void {
  this[kRelay]!.data(this, chunk);
}
function onDrain(this: RelayStream): void {
  this[kRelay]!.drained(this);
}
function onEnd(this: RelayStream): void {
  this[kRelay]!.ended(this);
}
function onClose(this: RelayStream, hadError: boolean): void {
  this[kRelay]!.closed(this, hadError);
}
function onFlushed(this: RelayStream): void {
  this.destroy();
  this[kRelay]!.done();
}
function onLingerTimeout(r: Relay, other: RelayStream): void {
  other.destroy();
  r.done();
}

function attach(s: RelayStream, r: Relay): void {
  s[kRelay] = r;
  // Errors end the relay (the relay becomes the socket's owner: the socket's one permanent
  // listener routes them here); the connection's teardown passes a reset on as a reset.
  adopt(s, r);
  s.on('close', onClose);
  s.on('drain', onDrain);
  s.on('data', onData);
  if (s.readableEnded) r.ended(s);
  else s.once('end', onEnd);
}

/** Relay `client` ⇄ `upstream` until both are closed. */
export function relay(client: Duplex, upstream: Duplex, opts: RelayOptions): void {
  const r = new Relay(client, upstream, opts);
  attach(client, r);
  attach(upstream, r);
  upstream.resume();
}
