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
import type { ConnectOptions, Upstream, UpstreamStream } from './types.js';

/** Options of a SOCKS5 upstream (the `upstream` config entry without `type`). */
export type Socks5UpstreamOptions = Omit<Socks5UpstreamConfig, 'type'>;

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
  ): Promise<{ socket: net.Socket; reply: { rep: number; bound: SocksAddress } }> {
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
      reader.release();
      return { socket, reply };
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
    const { socket, reply } = await this.handshake(Command.CONNECT, destination, conn, options.signal, options.early);
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
    const { socket, reply } = await this.handshake(command, destination, conn, options.signal, undefined);
    discard(socket);
    return reply;
  }
}
