/**
 * The `direct` upstream: connect from this host with node:net. Names are resolved through the
 * kernel (`onResolve`, then the resolver service, cache partitioned by isolation key) and the
 * addresses are raced with Node's Happy Eyeballs (`autoSelectFamily`).
 * @packageDocumentation
 */
import net from 'node:net';
import { inject, injectable } from 'tsyringe';
import { Tokens } from '../di/tokens.js';
import type { ResolvedConfig } from '../config/types.js';
import type { DirectUpstreamConfig } from '../config/schema.js';
import { UpstreamError, errorMessage } from '../errors.js';
import type { ConnectionContext } from '../kernel/context.js';
import type { NameResolution } from '../resolver/name-resolution.js';
import { type SocksAddress, classifyHost } from '../protocol/address.js';
import { isOnionName } from '../protocol/names.js';
import { Rep } from '../protocol/constants.js';
import { repForError } from './errors.js';
import { type SocketOwner, adopt, discard, release } from '../kernel/socket-owner.js';
import { RELAY_ONREAD } from '../kernel/relay.js';
import { type ConnectAbort, connectAbortOf } from '../kernel/connect-abort.js';
import type { ConnectOptions, Upstream, UpstreamStream } from './types.js';

/** Connects directly from this host. */
@injectable()
export class DirectUpstream implements Upstream {
  readonly name = 'direct';
  private readonly options: DirectUpstreamConfig;

  constructor(
    @inject(Tokens.Config) config: ResolvedConfig,
    @inject(Tokens.NameResolution) private readonly names: NameResolution,
  ) {
    this.options = config.upstream.type === 'direct' ? config.upstream : { type: 'direct' };
  }

  /** node:net's `lookup` option for a name: resolved the kernel's way, partitioned by `conn`. */
  private lookupFor(conn: ConnectionContext): net.LookupFunction {
    const names = this.names;
    return (hostname, opts, cb) => {
      const family = opts.family === 4 || opts.family === 6 ? opts.family : 0;
      names.lookup(hostname, family, conn).then(
        (addrs) => {
          if (opts.all) (cb as unknown as (e: null, a: { address: string; family: number }[]) => void)(null, addrs.map((a) => ({ address: a.address, family: a.family })));
          else cb(null, addrs[0]!.address, addrs[0]!.family);
        },
        (err: unknown) => cb(err as NodeJS.ErrnoException, '', 0),
      );
    };
  }

  /** Open a TCP connection to `destination`. */
  connect(destination: SocksAddress, conn: ConnectionContext, options: ConnectOptions): Promise<UpstreamStream> {
    if (destination.kind === 'domain' && isOnionName(destination.host)) {
      // A .onion name can never be reached without Tor, and must never reach DNS.
      return Promise.reject(new UpstreamError(Rep.HOST_UNREACHABLE, `${destination.host}: .onion needs an onion-capable upstream`));
    }
    const early = options.early;
    // The kernel's connects are aborted through their ConnectAbort, without building an
    // AbortSignal (src/kernel/connect-abort.ts); other callers' through `options.signal`.
    const fast = connectAbortOf(options);
    const signal = fast === undefined ? options.signal : undefined;
    if (fast !== undefined ? fast.aborted : signal!.aborted) return Promise.reject(fast !== undefined ? fast.reason : signal!.reason);
    return new Promise<UpstreamStream>((resolve, reject) => {
      const local = this.options.localAddress;
      // An IP literal needs neither a lookup nor Happy Eyeballs: the plain connect is cheaper
      // (no lookup closure, no family racing state). `onread`: the socket reads into reusable
      // buffers instead of a new one per read (src/kernel/relay.ts, RELAY_ONREAD); what it reads
      // before the relay starts arrives through 'data' as usual.
      const socket =
        destination.kind === 'domain'
          ? net.connect({
              host: destination.host,
              port: destination.port,
              allowHalfOpen: true,
              noDelay: true,
              autoSelectFamily: true,
              autoSelectFamilyAttemptTimeout: this.options.attemptTimeout ?? 250,
              ...(local ? { localAddress: local } : {}),
              lookup: this.lookupFor(conn),
              onread: RELAY_ONREAD,
            })
          : net.connect({ host: destination.host, port: destination.port, allowHalfOpen: true, noDelay: true, ...(local ? { localAddress: local } : {}), onread: RELAY_ONREAD });
      // One object per attempt, no closures: it is the socket's owner until the connect settles
      // (its one 'error' listener goes on before anything else can touch the socket; see
      // docs/architecture.md, "Socket ownership") and the abort signal's listener (`handleEvent`).
      const attempt = new ConnectAttempt(socket, destination, fast, signal, resolve, reject);
      adopt(socket, attempt);
      // Writes before 'connect' are queued by node and go out the moment TCP connects: for a direct
      // stream that *is* optimistic data. A write that fails (EPIPE, ECONNRESET) is an 'error'
      // like any other: before 'connect' it fails this attempt, after it the kernel gets it.
      if (early) early.attach(socket);
      if (fast !== undefined) fast.listen(attempt);
      else signal!.addEventListener('abort', attempt, { once: true });
      (socket as AttemptSocket)[kAttempt] = attempt;
      socket.once('connect', onAttemptConnect);
    });
  }
}

const kAttempt = Symbol('socksmith.directAttempt');
type AttemptSocket = net.Socket & { [kAttempt]?: ConnectAttempt };

/** `'connect'` on an attempt's socket (module-level: no closure per connect). */
function onAttemptConnect(this: AttemptSocket): void {
  const a = this[kAttempt];
  this[kAttempt] = undefined;
  a?.connected();
}

/** One `net.connect` until it connects, fails or is aborted. */
class ConnectAttempt implements SocketOwner {
  private settled = false;

  constructor(
    private readonly socket: AttemptSocket,
    private readonly destination: SocksAddress,
    private readonly fast: ConnectAbort | undefined,
    private readonly signal: AbortSignal | undefined,
    private readonly resolve: (s: UpstreamStream) => void,
    private readonly reject: (err: unknown) => void,
  ) {}

  /** An error before the connect: the attempt fails. */
  socketError(_s: unknown, err: Error): void {
    if (this.settled) return;
    this.settle();
    discard(this.socket);
    const d = this.destination;
    this.reject(err instanceof UpstreamError ? err : new UpstreamError(repForError(err), `connect ${d.host}:${d.port}: ${errorMessage(err)}`, { cause: err }));
  }

  /** The connect was aborted (timeout, client gone). */
  handleEvent(): void {
    if (this.settled) return;
    this.settle();
    // An error already queued for this socket (ENETUNREACH) lands on DISCARD, not on nothing.
    discard(this.socket);
    this.reject(this.fast !== undefined ? this.fast.reason : this.signal!.reason);
  }

  connected(): void {
    if (this.settled) return;
    this.settle();
    const socket = this.socket;
    // Connected: let go of the socket until the kernel adopts it; an error in between
    // (a reset while early data is written) is held for the kernel, never unhandled.
    release(socket);
    // One getsockname (node caches it for the three getters).
    const host = socket.localAddress;
    const bound: SocksAddress = host
      ? socket.localFamily === 'IPv6'
        ? classifyHost(host, socket.localPort ?? 0)
        : { kind: 'ipv4', host, port: socket.localPort ?? 0 }
      : socket.localFamily === 'IPv6'
        ? { kind: 'ipv6', host: '::', port: 0 }
        : { kind: 'ipv4', host: '0.0.0.0', port: 0 };
    this.resolve({ stream: socket, bound });
  }

  private settle(): void {
    this.settled = true;
    if (this.fast !== undefined) this.fast.unlisten(this);
    else this.signal!.removeEventListener('abort', this);
    if (this.socket[kAttempt] === this) {
      this.socket[kAttempt] = undefined;
      this.socket.removeListener('connect', onAttemptConnect);
    }
  }
}
