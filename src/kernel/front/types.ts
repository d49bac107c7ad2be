/**
 * Front ends: the protocols a client may speak on a listener (design of issue 12, §2.1).
 *
 * The detect stage (`src/kernel/detect.ts`) peeks at the first bytes, consuming nothing, and hands
 * the connection to a front end. A front end turns bytes into a protocol-neutral
 * {@link StreamRequest}, runs it through the kernel's one stream pipeline
 * ({@link ClientSession.openStream}), and encodes the answer ({@link ReplyEncoder}). SOCKS4/4a and
 * SOCKS5 are the kernel's own front end (the catch-all); plugins add others in `apply()`
 * (`api.frontEnds.add(…)`), e.g. http-detect's HTTP front end.
 * @packageDocumentation
 */
import type { Duplex } from 'node:stream';
import type { SocksAddress } from '../../protocol/address.js';
import type { ConnectionContext, Credentials } from '../context.js';
import type { HandshakeOutcome, Reply } from '../hooks.js';

/** A protocol a client may speak on a listener. Registered once per kernel, in `apply()`; never per connection. */
export interface FrontEnd {
  /** Name, for logs and errors (e.g. `'http'`). */
  readonly name: string;
  /**
   * Does this connection speak my protocol? A pure function of the bytes read so far (`buf` from
   * `off`, at least one byte); it must consume and keep nothing. `true`: mine; `false`: not mine;
   * `undefined`: need more bytes (the kernel waits; `timeouts.handshake` bounds the wait).
   */
  match(buf: Buffer, off: number): boolean | undefined;
  /**
   * Serve the connection. Called once, with the client socket paused. Must end in
   * {@link ClientSession.openStream} or {@link ClientSession.end}. A throw or a rejection is
   * logged (`internal error in connection`, or the plugin's hook error) and closes the connection.
   */
  serve(client: ClientSession): void | Promise<void>;
}

/**
 * What a front end gets: the connection, minus teardown (the kernel keeps that). The kernel's
 * connection driver implements it itself: serving a connection allocates no session object.
 */
export interface ClientSession {
  /** The connection's context (id, client address, log, stream keys). */
  readonly conn: ConnectionContext;
  /** Bytes read and not consumed, from the connection's first byte. */
  readonly buffered: Buffer;
  /**
   * The client socket, paused: attach your 'data' listener, then `resume()` it. Pause it again
   * and remove your listeners before {@link openStream}. Never destroy it: call {@link end}.
   */
  readonly socket: Duplex;
  /** Record credentials the front end carried on `conn` and run `onAuth` on them, as SOCKS does. Resolves true when accepted. */
  authenticate(credentials: Credentials): Promise<boolean>;
  /**
   * Run one stream through the kernel's pipeline: `onRequest`, the command handler or CONNECT
   * (the dispatch chain), `onReply`, the reply (`encoder`), relay. `leftover` is client data
   * already read after the request (relayed, never dropped). Resolves once the final reply is
   * written: the relay has started, or the connection is ending; not when the stream ends.
   * Rejects if called twice or after the connection closed.
   */
  openStream(request: StreamRequest, encoder: ReplyEncoder, leftover: Buffer): Promise<void>;
  /**
   * Send `bytes` (if any), end gracefully and tear down. Idempotent. `outcome` names what happened
   * for the `handshake ended without a request` line and metric (default `takeover`).
   */
  end(bytes?: Buffer, outcome?: HandshakeOutcome): void;
}

/**
 * A protocol-neutral stream request. The SOCKS codec's `SocksRequest` is one; a front end that
 * is not SOCKS says `version: 5` (its replies are SOCKS5 REP codes, mapped by its encoder), as
 * HTTP CONNECT always has.
 */
export interface StreamRequest {
  /** `Command.*`: 01 CONNECT, 02 BIND, 03 UDP ASSOCIATE, F0 RESOLVE, F1 RESOLVE_PTR, or a plugin's. */
  readonly command: number;
  readonly destination: SocksAddress;
  /** 4 for SOCKS4/4a, 5 for SOCKS5 and the front ends that use SOCKS5 reply codes. */
  readonly version: 4 | 5;
  /** SOCKS4 USERID. */
  readonly userId?: Buffer | undefined;
  /** SOCKS4a (a name in the request). */
  readonly socks4a?: boolean;
}

/**
 * Turns a reply (`rep` is a SOCKS5 REP code for every front end) into the front end's bytes. Take
 * the request as an argument, so one module-level function serves every stream (no closure per
 * request). A throw is logged and answered with a general failure.
 */
export type ReplyEncoder = (reply: Reply, request: StreamRequest) => Buffer;
