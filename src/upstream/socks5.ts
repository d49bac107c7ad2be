/**
 * The `socks5` upstream: chain every stream to another SOCKS5 server, such as Tor's SocksPort.
 *
 * - Hostnames go on as names (ATYP 03) and are never resolved here: fronting Tor must not leak DNS.
 * - Credentials: the stream's `UpstreamAuth` key (set per stream by plugins such as isolation), else the
 *   configured username/password. With credentials the greeting offers `00 02` and the server
 *   chooses (Tor with IsolateSOCKSAuth chooses 02).
 * - The upstream's reply code is carried back to the client (`UpstreamError.rep`).
 * - Every step waits for the server's reply before the next message goes out: greeting, then the
 *   RFC 1929 message, then the request. Sending credentials and request together saves nothing
 *   worth having and costs ~40 ms in front of Tor: Tor answers them with two small writes
 *   without TCP_NODELAY, and Nagle holds the second (the CONNECT reply) until this side's delayed
 *   ACK (`npm run bench:tor`, docs/performance.md).
 * - Optimistic data (`options.early`) with `pipelining: true`: the early bytes go out in the same
 *   write as the request, before the reply (C Tor keeps them; Tor 0.4.9 with conflux forwards them
 *   to the exit only after CONNECTED, with `ConfluxEnabled 0` at once). Without
 *   `pipelining` (the default) they follow the success reply: microsocks drops bytes that share
 *   a read with the request, and Arti refuses them (TROVE-2024-010).
 * @packageDocumentation
 */
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { inject, injectable } from 'tsyringe';
import { Tokens } from '../di/tokens.js';
import type { ResolvedConfig } from '../config/types.js';
import type { Socks5UpstreamConfig } from '../config/schema.js';
import { ProtocolError, UpstreamError, errorMessage } from '../errors.js';
import type { ConnectionContext, UpstreamCredentials } from '../kernel/context.js';
import type { EarlyData } from '../kernel/early-data.js';
import type { Reply } from '../kernel/hooks.js';
import { type SocksAddress, formatHostPort } from '../protocol/address.js';
import {
  type ParseResult,
  encodeSocks5Greeting,
  encodeSocks5Request,
  encodeUserPass,
  parseMethodSelection,
  parseSocks5Reply,
  parseUserPassReply,
} from '../protocol/codec.js';
import { AuthStatus, Command, Method, Rep } from '../protocol/constants.js';
import { repForError } from './errors.js';
import { UpstreamAuth } from './credentials.js';
import { type SocketOwner, adopt, discard, release } from '../kernel/socket-owner.js';
import type { ConnectOptions, OpenOptions, SessionReply, Upstream, UpstreamSession, UpstreamStream } from './types.js';

/** Options of a SOCKS5 upstream (the `upstream` config entry without `type`). */
export type Socks5UpstreamOptions = Omit<Socks5UpstreamConfig, 'type'>;

/** Bytes a {@link MessageReader} buffers before it pauses the socket (a reply is at most 262). */
const MAX_UNREAD = 4096;

/**
 * Reads whole messages from a socket during a client handshake, keeping any bytes after them.
 * It owns the socket's errors while it reads (docs/architecture.md, "Socket ownership").
 */
class MessageReader implements SocketOwner {
  private buf: Buffer = Buffer.alloc(0);
  private waiter: (() => void) | undefined;
  private failure: Error | undefined;
  private readonly onData = (chunk: Buffer) => {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    // No reply is this long: whatever follows one (a destination's first data) waits in the
    // socket, not here, until the reader is released.
    if (this.buf.length > MAX_UNREAD) this.socket.pause();
    this.waiter?.();
  };
  private readonly onEnd = () => {
    this.failure ??= new UpstreamError(Rep.GENERAL_FAILURE, 'upstream closed during the SOCKS handshake');
    this.waiter?.();
  };

  constructor(private readonly socket: Duplex) {
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    adopt(socket, this);
  }

  /** @internal An error on the socket while the handshake runs. */
  socketError(_socket: Duplex, err: Error): void {
    this.failure ??= err;
    this.waiter?.();
  }

  async read<T>(parse: (buf: Buffer) => ParseResult<T>): Promise<T> {
    for (;;) {
      const r = parse(this.buf);
      if (r.status !== 'need-more') {
        if (r.status === 'error') throw r.error;
        this.buf = this.buf.subarray(r.length);
        return r.value;
      }
      if (this.failure) throw this.failure;
      await new Promise<void>((resolve) => (this.waiter = resolve));
      this.waiter = undefined;
    }
  }

  /**
   * Stop reading; bytes already read after the last message go back into the stream. The socket
   * is released (its error listener stays; an error is held for the next owner).
   */
  release(): void {
    this.socket.removeListener('data', this.onData);
    this.socket.removeListener('end', this.onEnd);
    release(this.socket);
    this.socket.pause();
    if (this.buf.length > 0) this.socket.unshift(this.buf);
    this.buf = Buffer.alloc(0);
  }
}

/** Chains streams to an upstream SOCKS5 server. */
@injectable()
export class Socks5Upstream implements Upstream {
  readonly name: string;
  private readonly options: Socks5UpstreamOptions;

  constructor(@inject(Tokens.Config) config: ResolvedConfig) {
    if (config.upstream.type !== 'socks5') throw new Error('Socks5Upstream needs upstream.type = socks5');
    const { type: _type, ...options } = config.upstream;
    this.options = options;
    this.name = `socks5 ${formatHostPort(options.host, options.port)}`;
  }

  /** Build one for other options (e.g. inside a custom upstream that picks among several servers). */
  static create(options: Socks5UpstreamOptions): Socks5Upstream {
    const config = { upstream: { type: 'socks5', ...options } } as unknown as ResolvedConfig;
    return new Socks5Upstream(config);
  }

  private credentials(conn: ConnectionContext): UpstreamCredentials | undefined {
    const auth = conn.get(UpstreamAuth);
    if (auth) return auth;
    if (this.options.username !== undefined || this.options.password !== undefined) {
      return { username: this.options.username ?? '', password: this.options.password ?? '' };
    }
    return undefined;
  }

  /** Connect to the upstream server and run the handshake for `command`; returns the socket and the reply. */
  private async handshake(
    command: number,
    destination: SocksAddress,
    conn: ConnectionContext,
    signal: AbortSignal,
    early: EarlyData | undefined,
  ): Promise<{ socket: net.Socket; reader: MessageReader; reply: { rep: number; bound: SocksAddress } }> {
    if (signal.aborted) throw signal.reason;
    const socket = net.connect({ host: this.options.host, port: this.options.port, allowHalfOpen: true, noDelay: true });
    const reader = new MessageReader(socket);
    const onAbort = () => socket.destroy(signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason)));
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      const creds = this.credentials(conn);
      socket.write(encodeSocks5Greeting(creds ? [Method.NO_AUTH, Method.USERPASS] : [Method.NO_AUTH]));
      const method = await reader.read(parseMethodSelection);
      if (method === Method.USERPASS) {
        if (!creds) throw new UpstreamError(Rep.GENERAL_FAILURE, 'upstream chose username/password but none are configured');
        // The credentials go alone and their reply is awaited, never the request with them: Tor
        // does not set TCP_NODELAY on its SocksPort and answers credentials and request with two
        // small writes, so with nothing from us in between, Nagle holds its CONNECT reply until
        // our delayed ACK (~40 ms on Linux). Sending the request after `01 00` acknowledges it.
        socket.write(encodeUserPass(creds.username, creds.password));
        const status = await reader.read(parseUserPassReply);
        if (status !== AuthStatus.SUCCESS) throw new UpstreamError(Rep.GENERAL_FAILURE, 'upstream rejected the credentials');
      } else if (method !== Method.NO_AUTH) {
        throw new UpstreamError(Rep.GENERAL_FAILURE, `upstream chose unsupported method 0x${method.toString(16)}`);
      }
      // Early bytes ride behind the request only to upstreams known to keep them (pipelining: true,
      // e.g. C Tor): microsocks silently drops what follows a request in the same read, and Arti
      // refuses it. Corked: request and held bytes leave in one write.
      socket.cork();
      socket.write(encodeSocks5Request(command, destination));
      if (early !== undefined && this.options.pipelining === true) early.attach(socket);
      socket.uncork();
      const reply = await reader.read(parseSocks5Reply);
      return { socket, reader, reply };
    } catch (err) {
      reader.release();
      discard(socket);
      if (signal.aborted) throw signal.reason;
      if (err instanceof UpstreamError) throw err;
      if (err instanceof ProtocolError) throw new UpstreamError(Rep.GENERAL_FAILURE, `upstream ${this.name}: ${err.message}`, { cause: err });
      // Failing to reach the upstream proxy itself is a general failure of this server, except
      // for timeouts; the destination's reachability is unknown.
      const rep = repForError(err) === Rep.TTL_EXPIRED ? Rep.TTL_EXPIRED : Rep.GENERAL_FAILURE;
      throw new UpstreamError(rep, `upstream ${this.name}: ${errorMessage(err)}`, { cause: err });
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  /** CONNECT through the upstream; its reply code reaches the client unchanged (via `UpstreamError.rep`). */
  async connect(destination: SocksAddress, conn: ConnectionContext, options: ConnectOptions): Promise<UpstreamStream> {
    const { socket, reader, reply } = await this.handshake(Command.CONNECT, destination, conn, options.signal, options.early);
    reader.release();
    if (reply.rep !== Rep.SUCCEEDED) {
      discard(socket);
      throw new UpstreamError(reply.rep, `upstream ${this.name} answered REP 0x${reply.rep.toString(16).padStart(2, '0')}`, {
        code: 'SOCKSMITH_ERR_UPSTREAM_REPLY',
      });
    }
    return { stream: socket, bound: reply.bound };
  }

  /** Send a one-reply command (RESOLVE F0, RESOLVE_PTR F1) and return the upstream's reply as is. */
  async query(command: number, destination: SocksAddress, conn: ConnectionContext, options: Pick<ConnectOptions, 'signal'>): Promise<Reply> {
    const { socket, reader, reply } = await this.handshake(command, destination, conn, options.signal, undefined);
    reader.release();
    discard(socket);
    return reply;
  }

  /**
   * Run a two-phase command (BIND, UDP ASSOCIATE) at the upstream: the same greeting and
   * credentials as CONNECT, the request with `command`, and its first reply. A failure REP rejects
   * with an `UpstreamError` carrying it; on success the control connection is the session's.
   */
  async open(command: number, destination: SocksAddress, conn: ConnectionContext, options: OpenOptions): Promise<UpstreamSession> {
    const { socket, reader, reply } = await this.handshake(command, destination, conn, options.signal, undefined);
    if (reply.rep !== Rep.SUCCEEDED) {
      reader.release();
      discard(socket);
      throw new UpstreamError(reply.rep, `upstream ${this.name} answered REP 0x${reply.rep.toString(16).padStart(2, '0')}`, {
        code: 'SOCKSMITH_ERR_UPSTREAM_REPLY',
      });
    }
    reader.release();
    return new Socks5Session(socket, reply.bound, command, this.name);
  }
}

/** Bytes a SOCKS5 reply needs in all, judged from its first bytes (`VER REP RSV ATYP` and, for a name, its length). */
function socks5ReplyLength(buf: Buffer): number {
  if (buf.length < 5) return 5;
  switch (buf[3]) {
    case 0x01:
      return 10;
    case 0x04:
      return 22;
    case 0x03:
      return 7 + buf[4]!;
    default:
      return buf.length; // parseSocks5Reply rejects the ATYP
  }
}

/**
 * An {@link UpstreamSession} on a SOCKS5 control connection. It never reads past a reply: the
 * next reply is pulled with exact-length `read(n)` calls, so bytes behind it (a BIND peer's first
 * data) and the EOF stay in the socket for whoever relays it after {@link detach}. Between replies
 * only `'close'` and `'end'` are watched; a UDP ASSOCIATE control connection (which carries no
 * data) is drained and its bytes dropped, so its EOF is seen at once.
 */
class Socks5Session implements UpstreamSession, SocketOwner {
  readonly ended: Promise<void>;
  private done = false;
  private settle!: () => void;
  private failure: Error | undefined;
  private wake: (() => void) | undefined;
  private drained = 0;
  private readonly onReadable = () => {
    if (this.command === Command.UDP_ASSOCIATE) {
      for (let chunk = this.stream.read() as Buffer | null; chunk !== null; chunk = this.stream.read() as Buffer | null) {
        this.drained += chunk.length;
        if (this.drained > MAX_UNREAD) {
          this.failure ??= new UpstreamError(Rep.GENERAL_FAILURE, `upstream ${this.upstreamName} sent ${this.drained} bytes on a UDP ASSOCIATE control connection`);
          this.close();
          return;
        }
      }
    }
    this.wake?.();
  };
  private readonly onEnd = () => {
    this.failure ??= new UpstreamError(Rep.GENERAL_FAILURE, `upstream ${this.upstreamName} closed the control connection`);
    this.wake?.();
    this.settle();
  };

  constructor(
    readonly stream: net.Socket,
    readonly bound: SocksAddress,
    private readonly command: number,
    private readonly upstreamName: string,
  ) {
    this.ended = new Promise<void>((resolve) => (this.settle = resolve));
    adopt(stream, this);
    stream.on('readable', this.onReadable);
    stream.on('end', this.onEnd);
    stream.on('close', this.onEnd);
  }

  /** @internal An error on the control connection while the session owns it. */
  socketError(_socket: Duplex, err: Error): void {
    this.failure ??= err;
    this.wake?.();
    this.settle();
  }

  async nextReply(signal: AbortSignal): Promise<SessionReply> {
    if (this.done) throw new UpstreamError(Rep.GENERAL_FAILURE, `upstream ${this.upstreamName}: the session is closed`);
    if (signal.aborted) {
      this.close();
      throw signal.reason;
    }
    const onAbort = () => {
      this.failure ??= signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason));
      this.wake?.();
    };
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      let buf: Buffer = Buffer.alloc(0);
      for (;;) {
        const want = socks5ReplyLength(buf) - buf.length;
        const chunk = want > 0 ? (this.stream.read(want) as Buffer | null) : null;
        if (chunk !== null) buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
        const r = parseSocks5Reply(buf);
        if (r.status === 'error') throw r.error;
        if (r.status === 'ok') {
          if (r.value.rep !== Rep.SUCCEEDED) {
            throw new UpstreamError(r.value.rep, `upstream ${this.upstreamName} answered REP 0x${r.value.rep.toString(16).padStart(2, '0')}`, {
              code: 'SOCKSMITH_ERR_UPSTREAM_REPLY',
            });
          }
          return r.value;
        }
        if (chunk !== null) continue;
        if (this.failure) throw this.failure;
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = undefined;
      }
    } catch (err) {
      this.close();
      if (signal.aborted) throw signal.reason;
      if (err instanceof UpstreamError) throw err;
      throw new UpstreamError(Rep.GENERAL_FAILURE, `upstream ${this.upstreamName}: ${errorMessage(err)}`, { cause: err });
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  detach(): UpstreamStream {
    if (this.done) throw new Error(`upstream ${this.upstreamName}: the session is closed`);
    this.done = true;
    this.unwatch();
    release(this.stream);
    return { stream: this.stream, bound: this.bound };
  }

  close(): void {
    if (this.done) return;
    this.done = true;
    this.unwatch();
    discard(this.stream);
    this.settle();
  }

  private unwatch(): void {
    this.stream.removeListener('readable', this.onReadable);
    this.stream.removeListener('end', this.onEnd);
    this.stream.removeListener('close', this.onEnd);
  }
}
