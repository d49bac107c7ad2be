/**
 * One UDP association (RFC 1928 §7): the client-facing UDP socket, who may use it, and the two
 * ways datagrams leave it (sent directly after a local lookup, or to an upstream's relay).
 * @packageDocumentation
 */
import dgram from 'node:dgram';
import { encodeUdpHeader, errorMessage, isIPv4, parseUdpHeader, type ConnectionContext, type SocksAddress } from 'socksmith';
import type { UdpAssociateOptions } from './schema.js';

/** Why datagrams were dropped, counted per association (logged when it ends). */
export interface DropCounts {
  /** A header that does not parse (short, bad ATYP, a name past the end), or port 0. */
  malformed: number;
  /** FRAG ≠ 0: fragments are not reassembled. */
  fragment: number;
  /** From a source that may not use the association (not the client, not a contacted destination). */
  stranger: number;
  /** A `.onion` name (never resolved). */
  onion: number;
  /** Refused by the destination check (the policy plugin). */
  refused: number;
  /** The name did not resolve (or not to an address of the socket's family). */
  unresolved: number;
  /** Over `maxPending` or `maxBufferedBytes`. */
  busy: number;
  /** The kernel refused the send (e.g. EMSGSIZE). */
  sendFailed: number;
  /** A destination's datagram before the client's port was known. */
  noClient: number;
}

/** Traffic counts of one association. */
export interface AssociationStats {
  /** Datagrams from the client, accepted as coming from it. */
  fromClient: number;
  /** Datagrams sent on for the client (to a destination or the upstream relay). */
  sent: number;
  /** Datagrams from destinations (or the upstream relay) delivered to the client. */
  delivered: number;
  readonly dropped: DropCounts;
}

/** `::ffff:a.b.c.d` → `a.b.c.d`; anything else unchanged. */
export function plainIp(address: string): string {
  if (address.startsWith('::ffff:')) {
    const v4 = address.slice(7);
    if (isIPv4(v4)) return v4;
  }
  return address;
}

/** The all-zeros address of RFC 1928 ("not known"). */
export function isZeroAddress(host: string): boolean {
  return host === '0.0.0.0' || host === '::';
}

/** Where client datagrams go: directly (direct upstream) or to an upstream relay. */
export interface Route {
  /** A datagram from the client: `msg` whole, header already parsed. */
  fromClient(a: Association, msg: Buffer, dest: SocksAddress, dataOffset: number): void;
  /** A datagram to the relay port that is not the client's. True if it was taken (delivered or dropped by the route). */
  fromOther?(a: Association, msg: Buffer, rinfo: dgram.RemoteInfo): boolean;
  /** The association ended. */
  close(): void;
}

/** Settings of one association. */
export interface AssociationInit {
  readonly conn: ConnectionContext;
  readonly options: UdpAssociateOptions;
  /** The address the client's control connection comes from (plain, no `::ffff:`). */
  readonly clientIp: string;
  /** The client's UDP port when its request named one, else learnt from its first datagram. */
  readonly clientPort: number | undefined;
  /** Called once when the association ends (socket closed). */
  readonly onEnd: (a: Association, reason: string) => void;
}

/**
 * The client-facing side of one association: a UDP socket bound where the client reached the
 * proxy. Only the client (its IP, and its port once named or learnt) may send through it.
 */
export class Association {
  readonly socket: dgram.Socket;
  readonly stats: AssociationStats = {
    fromClient: 0,
    sent: 0,
    delivered: 0,
    dropped: { malformed: 0, fragment: 0, stranger: 0, onion: 0, refused: 0, unresolved: 0, busy: 0, sendFailed: 0, noClient: 0 },
  };
  clientPort: number | undefined;
  /** Datagrams waiting (a lookup, a check, a send callback) and their bytes. */
  pending = 0;
  pendingBytes = 0;
  closed = false;
  route: Route | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    readonly init: AssociationInit,
    readonly family: 4 | 6,
  ) {
    this.clientPort = init.clientPort;
    this.socket = dgram.createSocket({ type: family === 6 ? 'udp6' : 'udp4' });
    // From creation to destruction: an error ends the association, never the process.
    this.socket.on('error', (err) => this.close(`socket error: ${errorMessage(err)}`));
    this.socket.on('message', (msg, rinfo) => this.onMessage(msg, rinfo));
  }

  /** Bind to `address`, port 0. Rejects if the bind fails (the socket is closed). */
  async bind(address: string): Promise<{ address: string; port: number }> {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.socket.once('error', onError);
      this.socket.bind({ address, port: 0, exclusive: true }, () => {
        this.socket.off('error', onError);
        resolve();
      });
    });
    const a = this.socket.address();
    return { address: plainIp(a.address), port: a.port };
  }

  /** Start the idle timer and the end on `conn.signal`. */
  start(route: Route): void {
    this.route = route;
    if (this.closed) return;
    this.timer = setTimeout(() => this.close('idle timeout'), this.init.options.idleTimeout);
    this.timer.unref();
    const signal = this.init.conn.signal;
    if (signal.aborted) this.close('control connection closed');
    else signal.addEventListener('abort', () => this.close('control connection closed'), { once: true });
  }

  /** A datagram was relayed (either way): the association is not idle. */
  touch(): void {
    this.timer?.refresh();
  }

  /** Room for one more waiting datagram of `bytes`? Counts it when there is. */
  reserve(bytes: number): boolean {
    const o = this.init.options;
    if (this.pending >= o.maxPending || this.pendingBytes + bytes > o.maxBufferedBytes) {
      this.drop('busy');
      return false;
    }
    this.pending++;
    this.pendingBytes += bytes;
    return true;
  }

  /** Count a dropped datagram; the first of each reason is logged at debug (never one line per datagram). */
  drop(reason: keyof DropCounts, from?: string): void {
    if (this.stats.dropped[reason]++ === 0) this.init.conn.log.debug({ plugin: 'udp-associate', reason, ...(from ? { from } : {}) }, 'udp-associate: datagram dropped (first of its kind)');
  }

  /** Release what {@link reserve} counted. */
  release(bytes: number): void {
    this.pending--;
    this.pendingBytes -= bytes;
  }

  /**
   * Send `chunks` to `port`/`host` (`undefined`: the peer `socket` is connected to) from `socket`
   * (default: the relay socket), the waiting datagram of `bytes` reserved until the kernel took it.
   */
  send(chunks: Buffer | Buffer[], port: number | undefined, host: string | undefined, bytes: number, onSent: () => void, socket: dgram.Socket = this.socket): void {
    if (this.closed) return this.release(bytes);
    const done = (err: Error | null) => {
      this.release(bytes);
      if (err) this.drop('sendFailed');
      else onSent();
    };
    try {
      if (port === undefined) socket.send(chunks, done);
      else socket.send(chunks, port, host, done);
    } catch {
      // A closed socket or a bad argument throws synchronously.
      this.release(bytes);
      this.drop('sendFailed');
    }
  }

  /** Deliver `data` to the client under a header naming `source`. */
  deliver(source: SocksAddress, data: Buffer): void {
    this.sendToClient([encodeUdpHeader(source), data], data.length);
  }

  /** Deliver a whole datagram (header included) to the client. */
  sendToClient(chunks: Buffer | Buffer[], bytes: number): void {
    const port = this.clientPort;
    if (port === undefined) {
      this.drop('noClient');
      return;
    }
    if (!this.reserve(bytes)) return;
    this.touch();
    this.send(chunks, port, this.init.clientIp, bytes, () => this.stats.delivered++);
  }

  private onMessage(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (this.closed) return;
    const from = plainIp(rinfo.address);
    const fromClientIp = from === this.init.clientIp;
    if (fromClientIp && (this.clientPort === undefined || rinfo.port === this.clientPort)) {
      this.fromClient(msg, rinfo.port);
      return;
    }
    if (this.route?.fromOther?.(this, msg, rinfo)) return;
    this.drop('stranger', `${from}:${rinfo.port}`);
  }

  private fromClient(msg: Buffer, port: number): void {
    const h = parseUdpHeader(msg);
    if (h.status !== 'ok' || h.value.address.port === 0) {
      this.drop('malformed');
      return;
    }
    // The first well-formed datagram from the client's IP fixes its port (when its request named none).
    if (this.clientPort === undefined) this.clientPort = port;
    this.stats.fromClient++;
    if (h.value.frag !== 0) {
      this.drop('fragment');
      return;
    }
    this.touch();
    this.route?.fromClient(this, msg, h.value.address, h.length);
  }

  /** End the association (idempotent): the socket closes, the timer stops, `onEnd` runs once. */
  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    try {
      this.socket.close();
    } catch {
      // already closed (a bind that failed)
    }
    this.route?.close();
    this.init.onEnd(this, reason);
  }
}

/** A bounded most-recently-used set of `address|port` keys. */
export class PeerSet {
  private readonly map = new Map<string, true>();
  constructor(private readonly max: number) {}
  /** Remember `key` (most recent). */
  add(key: string): void {
    this.map.delete(key);
    this.map.set(key, true);
    if (this.map.size > this.max) this.map.delete(this.map.keys().next().value as string);
  }
  has(key: string): boolean {
    return this.map.has(key);
  }
  get size(): number {
    return this.map.size;
  }
}

/** The key of a peer in a {@link PeerSet}. */
export function peerKey(ip: string, port: number): string {
  return `${ip}|${port}`;
}
