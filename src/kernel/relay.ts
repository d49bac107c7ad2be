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
 *
 * **Reusable read buffers (download direction).** A socket socksmith creates itself (the
 * `direct` upstream's) can read into buffers the caller owns: node:net's `onread` option,
 * {@link RELAY_ONREAD}. Its reads then never allocate. Accepted sockets (the client side) cannot
 * in Node 20: `net.Server` builds them without `onread` (docs/architecture.md, "The relay's read
 * buffers"), so the upload direction reads into Node's own freshly allocated buffers, as before.
 * The rules that keep every byte in place are on {@link onRelayRead}.
 * @packageDocumentation
 */
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { SyncWaterfallHook } from 'tapable';
import type { ConnectionContext } from './context.js';
import type { DataInfo } from './hooks.js';
import { noteRelayed } from './allocator.js';
import { type SocketOwner, adopt } from './socket-owner.js';

/** How long a side that finished reading may take to flush its writes before it is destroyed. */
const FLUSH_LINGER_MS = 30_000;

/**
 * Size of a tunnel's own read buffers (see {@link onRelayRead}). Larger than libuv's 64 KiB on
 * purpose: one read and one write move up to 256 KiB, which on loopback roughly halved the
 * proxy's CPU per GB downloaded (kernel time included) against 64 KiB buffers (indicative runs
 * on a shared machine; docs/performance.md). A tunnel holds at most two, only while it carries
 * bulk data.
 */
export const RELAY_READ_BYTES = 256 * 1024;
/**
 * Size of the shared read buffer every `onread` socket starts with (libuv's usual read size).
 * Its bytes are always copied out before the read callback returns.
 */
const SHARED_READ_BYTES = 64 * 1024;
/**
 * A read at least this large moves (or keeps) the tunnel on its own read buffers; a smaller one
 * sends it back to the shared buffer and returns its own buffers to the pool, so a tunnel that
 * goes quiet after a transfer holds none.
 */
const OWN_BUFFER_MIN_READ = 16 * 1024;
/** Free read buffers kept for the next tunnel that needs them (the rest are left to the GC). */
const POOL_MAX = 16;

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
  /**
   * The download direction may write the upstream's read buffer itself to the client: no
   * `onData` tap could keep or change the chunk, and the client is a plain `net.Socket`, whose
   * `writableLength` tells exactly whether a write still holds its buffer (a subclass such as
   * `tls.TLSSocket`, or another Duplex, might keep the chunk after its write callback).
   */
  private readonly zeroCopy: boolean;
  /** The tunnel's own read buffers (download direction), taken from the pool on demand. */
  private bufA: Buffer | undefined;
  private bufB: Buffer | undefined;
  /** The one of `bufA`/`bufB` a write to the client still references (at most one at a time). */
  private pinned: Buffer | undefined;

  constructor(
    readonly client: RelayStream,
    readonly upstream: RelayStream,
    private readonly opts: RelayOptions,
  ) {
    this.zeroCopy = opts.onData === undefined && client.constructor === net.Socket;
  }

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

  /**
   * `n` bytes arrived in `buf` on `src` (an `onread` socket). Relays them, then sets the buffer
   * the socket reads into next ({@link nextReadBuffer}); never throws.
   */
  readInto(src: RelayStream, buf: Buffer, n: number): boolean {
    const client = this.client;
    // Every write to the client has completed: the pinned buffer is free again.
    if (this.pinned !== undefined && client.writableLength === 0) this.pinned = undefined;
    if (!this.zeroCopy || src !== this.upstream || buf === shared || client.writableLength > 0) {
      // A copy: the shared buffer is read into again by every socket; a write queued behind
      // another would hold `buf` past this call; a tap may keep or replace the chunk.
      const copy = copyOut(buf, n);
      noteRelayed(n);
      this.data(src, copy);
    } else {
      // The client's write queue is empty, so this write goes to the socket at once: either the
      // kernel takes all of it now (then `buf` is free when write() returns) or the rest waits
      // in libuv, referencing `buf` until it is sent.
      this.data(src, n === buf.length ? buf : buf.subarray(0, n));
      if (client.writableLength > 0) this.pinned = buf;
    }
    let next: Buffer;
    if (n >= OWN_BUFFER_MIN_READ && this.zeroCopy && src === this.upstream) {
      const a = (this.bufA ??= takeBuffer());
      next = a !== this.pinned ? a : (this.bufB ??= takeBuffer());
    } else {
      next = shared;
      this.giveBuffersBack();
    }
    // Last, with nothing called after it: node asks for the next buffer right after this returns.
    nextBuffer = next;
    return true;
  }

  /** Back to the shared buffer: free own buffers go to the pool, a pinned one to the GC. */
  private giveBuffersBack(): void {
    if (this.bufA !== undefined && this.bufA !== this.pinned) giveBuffer(this.bufA);
    if (this.bufB !== undefined && this.bufB !== this.pinned) giveBuffer(this.bufB);
    this.bufA = this.bufB = this.pinned = undefined;
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
    if (dst.destroyed || dst.writableEnded) return;
    // Both directions are over once `dst` is ended: it sent its EOF already and nothing it was
    // given waits in node. close() then sends the FIN after whatever the kernel still holds, as
    // shutdown() would, without shutdown's extra syscall and callback (its receive queue is empty
    // after EOF, so the close is graceful, never a reset). A plain net.Socket only: another Duplex
    // may hold written data where writableLength does not show it.
    const plainSocket = (dst.constructor as unknown) === net.Socket;
    if (plainSocket && dst.readableEnded && dst.writableLength === 0) dst.destroy();
    else dst.end();
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
  // Node allocated this chunk for the read: count it towards the next scavenge.
  noteRelayed(chunk.length);
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

// ---------------------------------------------------------------------------------------------
// Reading into reusable buffers (node:net `onread`)

/** The buffer every `onread` socket reads into until its tunnel moves it to its own. */
const shared: Buffer = Buffer.allocUnsafeSlow(SHARED_READ_BYTES);
/** Free own read buffers (LIFO). */
const pool: Buffer[] = [];
/** Set by the read callback, taken by {@link nextReadBuffer} right after it. */
let nextBuffer: Buffer | undefined;

function takeBuffer(): Buffer {
  return pool.pop() ?? Buffer.allocUnsafeSlow(RELAY_READ_BYTES);
}
function giveBuffer(b: Buffer): void {
  if (pool.length < POOL_MAX) pool.push(b);
}
function copyOut(buf: Buffer, n: number): Buffer {
  const c = Buffer.allocUnsafe(n);
  buf.copy(c, 0, 0, n);
  return c;
}

/**
 * `onread.buffer`: node calls it when it gives a socket a handle (at connect, and for each
 * Happy Eyeballs attempt) and right after every read callback, and reads into what it returns
 * next. Outside a read callback that is always the shared buffer.
 */
function nextReadBuffer(): Buffer {
  const b = nextBuffer ?? shared;
  nextBuffer = undefined;
  return b;
}

/**
 * `onread.callback`: `n` bytes arrived in `buf` on `this` (node calls it as a method of the
 * socket). The rules that keep every byte in place:
 *
 * 1. The shared buffer is read into by every `onread` socket, so its bytes are copied out before
 *    this returns (into a chunk of exactly `n` bytes).
 * 2. Before the relay (the destination spoke first) or while chunks pushed earlier are still
 *    queued in the stream, the copy is pushed into the socket's readable side, so `'data'`
 *    delivers it in order, and returning `push()`'s answer stops reading at the stream's
 *    high-water mark as node itself does.
 * 3. A tunnel's own buffer is written to the client as is only when the client's write queue
 *    is empty ({@link Relay.readInto}); if the write does not complete at once, that buffer is
 *    *pinned* until the client's `writableLength` is 0 again, and reads go to the tunnel's second
 *    buffer (a write behind a pending one is a copy, so at most one buffer is ever pinned).
 * 4. Backpressure is the relay's, unchanged: a write that returns false pauses the upstream
 *    (`pause()` stops the handle reading), `'drain'` resumes it.
 */
function onRelayRead(this: RelayStream, n: number, buf: Buffer): boolean {
  const r = this[kRelay];
  if (r !== undefined && this.readableLength === 0) return r.readInto(this, buf, n);
  return this.push(copyOut(buf, n));
}

/**
 * node:net's `onread` option for a socket socksmith creates and will relay (the `direct`
 * upstream passes it to `net.connect`): the socket reads into the shared buffer, and into its
 * tunnel's own reusable buffers while it carries a bulk download, instead of a freshly
 * allocated buffer per read. Everything else about the socket behaves as usual: its chunks
 * before the relay arrive through `'data'`, `'end'`, `'error'` and `'close'` as always.
 */
export const RELAY_ONREAD: net.OnReadOpts = Object.freeze({ buffer: nextReadBuffer, callback: onRelayRead as unknown as net.OnReadOpts['callback'] });

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
