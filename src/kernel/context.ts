/**
 * Per-connection state shared by the kernel, plugins and upstreams.
 *
 * Every field is declared in the constructor (one object shape for every connection, fastify's
 * rule for decorators); plugins never add properties. A plugin that needs its own per-stream
 * state declares a stream key (`declareKey`, src/kernel/stream-keys.ts) and uses
 * {@link ConnectionContext.get}/{@link ConnectionContext.set}/{@link ConnectionContext.setLazy}.
 * @packageDocumentation
 */
import type { SocksAddress } from '../protocol/address.js';
import type { SocksRequest } from '../protocol/codec.js';
import { type Logger, bindSensitive } from '../logger.js';
import { type StreamKey, streamKeyCount } from './stream-keys.js';

/** A listener as configured and bound. */
export interface ListenerInfo {
  /** Index in `config.listen` (stable within one config). */
  readonly index: number;
  /** Host as configured (`127.0.0.1`, `::1`); `''` for a unix socket. */
  readonly host: string;
  /** Port actually bound (the real one when 0 was asked); 0 for a unix socket. */
  readonly port: number;
  /** Unix socket path, for unix listeners. */
  readonly path?: string;
  /** True when the listener expects PROXY protocol headers. */
  readonly proxyProtocol?: boolean;
}

/** Where credentials came from. */
export type CredentialSource = 'rfc1929' | 'socks4-userid' | 'http';

/**
 * Client credentials as raw bytes (RFC 1929 names no encoding). Empty fields are kept as empty
 * buffers; whether "empty" means "none" is the consumer's decision (Tor's isolation treats it so).
 */
export interface Credentials {
  readonly source: CredentialSource;
  readonly username: Buffer;
  /** `undefined` for a SOCKS4 USERID, which has no password. */
  readonly password: Buffer | undefined;
}

/** Username/password a `socks5` upstream should present for this stream (the `UpstreamAuth` stream key). */
export interface UpstreamCredentials {
  readonly username: string | Uint8Array;
  readonly password: string | Uint8Array;
}

/** Creates a connection's teardown signal on first use (the connection driver implements it). */
export interface SignalSource {
  teardownSignal(): AbortSignal;
}

/** Which front-end protocol the connection speaks. */
export type FrontendProtocol = 'socks4' | 'socks5' | 'http-connect' | 'unknown';

/** One client connection, from accept to teardown. */
export class ConnectionContext {
  /** Per-process unique id, also in every log line of this connection. */
  readonly id: number;
  /** The listener that accepted it. */
  readonly listener: ListenerInfo;
  /** Client IP address as the socket reports it (IPv4-mapped IPv6 unmapped), or `''` for unix sockets. */
  readonly clientAddress: string;
  /** Client port, 0 for unix sockets. */
  readonly clientPort: number;
  /** `'IPv4'`, `'IPv6'` or `'unix'`: the family of the client's own socket. */
  readonly clientFamily: 'IPv4' | 'IPv6' | 'unix';
  /** Monotonic ms when accepted. */
  readonly acceptedAt: number;
  /** Logger bound to this connection (`conn` = id), created on first use. */
  get log(): Logger {
    // pino's child() costs a few microseconds: most connections never log below the configured
    // level, so the child is only built when something actually logs.
    if (this.logger === undefined) {
      this.logger = this.rootLogger.child({ conn: this.id });
      // With log.safeLogging, these strings are scrubbed wherever they appear in its lines.
      bindSensitive(this.logger, () => sensitiveStrings(this));
    }
    return this.logger;
  }
  private logger: Logger | undefined;
  private readonly rootLogger: Logger;
  /**
   * Aborted when the connection is torn down; pass it to anything you start for this connection.
   * Created on first use (most connections never need one).
   */
  get signal(): AbortSignal {
    const s = this.signalSource;
    if (typeof s === 'function') return s();
    if (s instanceof AbortSignal) return s;
    return s.teardownSignal();
  }
  private readonly signalSource: AbortSignal | (() => AbortSignal) | SignalSource;
  /** Per-plugin scratch space, keyed by a symbol the plugin owns (created on first use). Superseded by stream keys ({@link get}/{@link set}), which need no Map. */
  get plugins(): Map<symbol, unknown> {
    return (this.pluginData ??= new Map());
  }
  private pluginData: Map<symbol, unknown> | undefined;

  /** Front-end protocol, known after the first byte. */
  protocol: FrontendProtocol;
  /** SOCKS version (4 or 5), 0 before it is known or for non-SOCKS front ends. */
  version: 0 | 4 | 5;
  /** SOCKS5 method chosen, -1 before (or for SOCKS4). */
  method: number;
  /** Credentials the client presented, if any. */
  credentials: Credentials | undefined;
  /** The parsed request, once it arrived. */
  request: SocksRequest | undefined;
  /**
   * Where the stream goes. Starts as the request's destination; `onRequest` taps may replace it
   * (address maps). Upstreams connect here.
   */
  destination: SocksAddress | undefined;
  /** The SOCKS5 reply code that was sent (SOCKS4 replies are recorded as their SOCKS5 equivalent). */
  reply: number | undefined;
  /** Bytes relayed client → upstream (early data included). */
  bytesUp: number;
  /** Bytes relayed upstream → client. */
  bytesDown: number;
  /**
   * The authenticated user, for the access line: set by the plugin that checked the credentials
   * (the `auth` plugin sets the username it accepted). Undefined when no plugin authenticated
   * the client; the credentials a client merely presented are never logged.
   */
  user: string | undefined;
  /**
   * Why a plugin refused this stream or client, with the rule, for the access line (the `policy`
   * plugin: `ExitPolicy: reject private:*`, `clients: reject 10.0.0.0/8`). Set it when you refuse.
   */
  refusal: string | undefined;
  /**
   * The upstream this stream went to, for the access line: the kernel sets the upstream's `name`
   * before connecting; an upstream or interceptor that chooses among several may overwrite it
   * with the one it chose.
   */
  upstream: string | undefined;
  /**
   * Why the upstream connect failed (`getaddrinfo ENOTFOUND example.invalid`, `connect ECONNREFUSED …`),
   * for the access line; with `log.safeLogging` only the error code (`ECONNREFUSED`), which names no destination.
   */
  failure: string | undefined;

  /** Stream-key slots (created on the first write), and which of the first 31 hold a lazy function. */
  private slots: unknown[] | undefined;
  private lazyBits: number;

  /**
   * The value of a stream key on this stream: what was {@link set}, else what the
   * {@link setLazy} function returns (computed on this first read, then kept), else the key's default.
   */
  get<T>(key: StreamKey<T>): T | undefined {
    const i = key.index;
    const slots = this.slots;
    if (slots === undefined) return key.default;
    let v = slots[i];
    if (i < 31) {
      if ((this.lazyBits & (1 << i)) !== 0) {
        // Cleared before the call: a compute that throws leaves the key unset, and one that reads its own key gets the default.
        this.lazyBits &= ~(1 << i);
        slots[i] = undefined;
        v = slots[i] = (v as (conn: ConnectionContext) => T)(this);
      }
    } else if (v instanceof LazyCell) {
      slots[i] = undefined;
      v = slots[i] = (v as LazyCell<T>).compute(this);
    }
    return v === undefined ? key.default : (v as T);
  }

  /** Set a stream key on this stream (replacing a lazy value that was not read yet). */
  set<T>(key: StreamKey<T>, value: T): void {
    const i = key.index;
    if (i < 31) this.lazyBits &= ~(1 << i);
    (this.slots ??= new Array(streamKeyCount()))[i] = value;
  }

  /**
   * Set a stream key to what `compute(conn)` returns, computed on the first {@link get} instead of
   * now (at most once, never if nobody reads it). Pass a function bound once (per plugin
   * instance), not a closure per stream: the slot holds the function itself. A {@link set} before
   * the first read replaces it. `compute` must depend only on state that no longer changes by the
   * time it is read (the listener, the client, its credentials, the request).
   */
  setLazy<T>(key: StreamKey<T>, compute: (conn: ConnectionContext) => T): void {
    const i = key.index;
    const slots = (this.slots ??= new Array(streamKeyCount()));
    if (i < 31) {
      slots[i] = compute;
      this.lazyBits |= 1 << i;
    } else {
      slots[i] = new LazyCell(compute);
    }
  }

  /** True if the key was set (or set lazily) on this stream. */
  has(key: StreamKey<unknown>): boolean {
    const i = key.index;
    return this.slots !== undefined && (this.slots[i] !== undefined || (i < 31 && (this.lazyBits & (1 << i)) !== 0));
  }

  constructor(init: {
    id: number;
    listener: ListenerInfo;
    clientAddress: string;
    clientPort: number;
    clientFamily: 'IPv4' | 'IPv6' | 'unix';
    acceptedAt: number;
    /** The root logger; the connection's child logger is derived from it lazily. */
    log: Logger;
    /** The connection's teardown signal, or something that creates it on demand (the driver's way). */
    signal: AbortSignal | (() => AbortSignal) | SignalSource;
  }) {
    this.id = init.id;
    this.listener = init.listener;
    this.clientAddress = init.clientAddress;
    this.clientPort = init.clientPort;
    this.clientFamily = init.clientFamily;
    this.acceptedAt = init.acceptedAt;
    this.rootLogger = init.log;
    this.logger = undefined;
    this.signalSource = init.signal;
    this.pluginData = undefined;
    this.protocol = 'unknown';
    this.version = 0;
    this.method = -1;
    this.credentials = undefined;
    this.request = undefined;
    this.destination = undefined;
    this.reply = undefined;
    this.bytesUp = 0;
    this.bytesDown = 0;
    this.user = undefined;
    this.refusal = undefined;
    this.upstream = undefined;
    this.failure = undefined;
    this.slots = undefined;
    this.lazyBits = 0;
  }
}

/** A lazy value in a slot past the 31 that {@link ConnectionContext} tracks with a bit (not expected: a handful of keys exist). */
class LazyCell<T> {
  constructor(readonly compute: (conn: ConnectionContext) => T) {}
}

/** What identifies a connection's traffic in free text: its destination names, client address and user name. */
function sensitiveStrings(ctx: ConnectionContext): string[] {
  const out: string[] = [];
  if (ctx.request) out.push(ctx.request.destination.host);
  if (ctx.destination && ctx.destination.host !== ctx.request?.destination.host) out.push(ctx.destination.host);
  if (ctx.clientAddress) out.push(ctx.clientAddress);
  if (ctx.credentials && ctx.credentials.username.length > 0) out.push(ctx.credentials.username.toString('utf8'));
  return out;
}
