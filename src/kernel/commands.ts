/**
 * Commands beyond CONNECT, owned by plugins (design of issue 12, §2.5): a plugin registers a
 * handler for a request's command byte (SOCKS5 BIND 02, UDP ASSOCIATE 03, a command of its own)
 * and drives the stream through {@link StreamControl}. The kernel still owns the socket, the
 * teardown and the access line.
 *
 * Where it runs: after `onRequest` (so auth, policy's request checks and isolation apply as they
 * do to CONNECT), before the kernel's default decision. A command nobody registered gets 07
 * (command not supported), byte for byte as before. CONNECT (01) is the kernel's and cannot be
 * registered; RESOLVE (F0) and RESOLVE_PTR (F1) are answered in `onRequest` by their plugins.
 * @packageDocumentation
 */
import type { Duplex } from 'node:stream';
import { SocksmithError } from '../errors.js';
import { Command } from '../protocol/constants.js';
import type { UpstreamStream } from '../upstream/types.js';
import type { ConnectionContext } from './context.js';
import type { Reply } from './hooks.js';
import type { StreamRequest } from './front/types.js';

/** The stream, handed to the owner of its command. */
export interface StreamControl {
  readonly conn: ConnectionContext;
  /** The request, destination normalised (as `conn.request`). */
  readonly request: StreamRequest;
  /** The address and port the client's connection reached (BIND's default listen address, UDP's bind address). */
  readonly local: { readonly address: string; readonly port: number; readonly family: string };
  /**
   * Write one reply and keep the connection: through `onReply`, the narrowing of codes outside
   * RFC 1928 (unless the stream allows wide codes), and the front end's encoder. May be called
   * more than once (BIND sends two). Resolves false when the client is gone (or the reply could
   * not be encoded, and a general failure was sent and the connection ends).
   */
  reply(reply: Reply): Promise<boolean>;
  /** Write a final reply (the same path as {@link reply}) and close. */
  fail(reply: Reply): Promise<void>;
  /**
   * After a success reply: relay the client with `up` (held early bytes first, `onData`, idle
   * timeout, the access line at the end). The kernel owns `up.stream` from here.
   */
  relay(up: UpstreamStream): void;
  /**
   * Keep the connection open without a relay (UDP ASSOCIATE's control connection): client bytes
   * are read and discarded; the client's EOF or close tears it down (`conn.signal` aborts).
   * {@link relay} may follow; bytes discarded while held are not replayed.
   */
  hold(): void;
  /** Close now (idempotent); an `err` is the access line's error when relaying. */
  end(err?: Error): void;
}

/**
 * Drives one stream of a registered command. Tie your own timers and sockets to `stream.conn.signal`.
 * A throw or rejection before any reply is answered with the error's `rep` (or 01) and logged
 * as the plugin's failure (hook `command`); after a reply, it closes the connection.
 */
export type CommandHandler = (stream: StreamControl) => void | Promise<void>;

/** @internal A registered handler. */
export interface CommandEntry {
  readonly owner: string;
  readonly handler: CommandHandler;
  readonly v4: boolean;
  readonly v5: boolean;
}

/** Where plugins register commands (`api.commands`), in `apply()`. */
export class CommandRegistry {
  private readonly map = new Map<number, CommandEntry>();
  private sealed = false;

  /**
   * Own `command` (a request's CMD byte) for the SOCKS versions in `options.versions` (default
   * `[5]`). One owner per command: a second registration throws, naming both plugins. Throws
   * `SOCKSMITH_ERR_PLUGIN_LATE` once the proxy started.
   */
  register(command: number, owner: string, handler: CommandHandler, options?: { readonly versions?: readonly (4 | 5)[] }): void {
    if (this.sealed) throw new SocksmithError('SOCKSMITH_ERR_PLUGIN_LATE', `plugin "${owner}": commands.register() after start`);
    if (!Number.isInteger(command) || command < 0 || command > 0xff) throw new TypeError(`plugin "${owner}": command must be a byte, got ${command}`);
    if (command === Command.CONNECT) throw new TypeError(`plugin "${owner}": CONNECT (0x01) is the kernel's; wrap it with an interceptor (api.dispatch.intercept)`);
    const had = this.map.get(command);
    if (had) throw new TypeError(`plugin "${owner}": command 0x${command.toString(16).padStart(2, '0')} is already registered by plugin "${had.owner}"`);
    const versions = options?.versions ?? [5];
    this.map.set(command, { owner, handler, v4: versions.includes(4), v5: versions.includes(5) });
  }

  /** Number of registered commands. */
  get size(): number {
    return this.map.size;
  }

  /** @internal The handler for `command` at `version`, if any. */
  lookup(command: number, version: number): CommandEntry | undefined {
    const e = this.map.get(command);
    if (e === undefined) return undefined;
    return (version === 4 ? e.v4 : e.v5) ? e : undefined;
  }

  /** @internal Freeze the registry (`kernel.seal()`). */
  seal(): void {
    this.sealed = true;
  }
}

/** @internal What the connection driver offers a {@link StreamControl}. */
export interface StreamHost {
  readonly ctx: ConnectionContext;
  readonly socket: Duplex;
  sendReply(reply: Reply, final: boolean): Promise<boolean>;
  relayWith(up: UpstreamStream): void;
  hold(): void;
  finish(err?: Error): void;
}

/** @internal The {@link StreamControl} of one stream of a registered command (one object per such stream; CONNECT never builds one). */
export class CommandStream implements StreamControl {
  /** True once a reply was written. */
  replied = false;
  constructor(
    private readonly host: StreamHost,
    readonly request: StreamRequest,
  ) {}
  get conn(): ConnectionContext {
    return this.host.ctx;
  }
  get local(): { address: string; port: number; family: string } {
    const s = this.host.socket as Duplex & { localAddress?: string; localPort?: number; localFamily?: string };
    return { address: s.localAddress ?? '', port: s.localPort ?? 0, family: s.localFamily ?? '' };
  }
  reply(reply: Reply): Promise<boolean> {
    this.replied = true;
    return this.host.sendReply(reply, false);
  }
  async fail(reply: Reply): Promise<void> {
    this.replied = true;
    await this.host.sendReply(reply, true);
  }
  relay(up: UpstreamStream): void {
    this.host.relayWith(up);
  }
  hold(): void {
    this.host.hold();
  }
  end(err?: Error): void {
    this.host.finish(err);
  }
}
