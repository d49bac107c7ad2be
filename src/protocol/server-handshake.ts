/**
 * The server side of a SOCKS handshake as a sans-IO state machine.
 *
 * The driver feeds it the bytes buffered so far with {@link ServerHandshake.step}; each call returns
 * one event: a complete message (greeting, credentials, request), need-more, an unknown first
 * byte, or an error with the bytes to send before closing. Decisions (which method, whether the
 * credentials pass) come back in through {@link ServerHandshake.selectMethod} and
 * {@link ServerHandshake.authResult}, which return the reply bytes. The machine never touches a
 * socket and never drops bytes: each event says how many bytes it used, and everything after a
 * request is the caller's (optimistic data).
 *
 * Shape follows Arti's `tor-socksproto` handshake (`step()` with explicit states) and Tor's
 * leniencies (`proto_socks.c`), see docs/architecture.md.
 * @packageDocumentation
 */
import { ProtocolError } from '../errors.js';
import {
  type Socks5Greeting,
  type SocksRequest,
  type UserPassRequest,
  encodeMethodSelection,
  encodeSocks4Reply,
  encodeSocks5Reply,
  encodeUserPassReply,
  parseSocks4Request,
  parseSocks5Greeting,
  parseSocks5Request,
  parseUserPass,
} from './codec.js';
import { ZERO_ADDRESS } from './address.js';
import { AuthStatus, Method, Socks4Rep, Version } from './constants.js';

/** Which protocol the first byte of a connection announces (Arti `classify_protocol_from_first_byte`). */
export type ProtocolGuess = 'socks4' | 'socks5' | 'userpass' | 'unknown';

/** Classify a connection by its first byte. Pure; the byte stays in the caller's buffer. */
export function classifyFirstByte(byte: number): ProtocolGuess {
  if (byte === Version.SOCKS5) return 'socks5';
  if (byte === Version.SOCKS4) return 'socks4';
  if (byte === Version.USERPASS) return 'userpass';
  return 'unknown';
}

/** One step's outcome. `length` is the number of bytes the message used. */
export type HandshakeEvent =
  | { readonly type: 'need-more' }
  | { readonly type: 'greeting'; readonly greeting: Socks5Greeting; readonly length: number }
  | { readonly type: 'auth'; readonly auth: UserPassRequest; readonly length: number }
  | { readonly type: 'request'; readonly request: SocksRequest; readonly length: number }
  | { readonly type: 'unknown-protocol'; readonly firstByte: number }
  | { readonly type: 'error'; readonly error: ProtocolError; readonly reply: Buffer | undefined };

/** States of {@link ServerHandshake}. */
export type HandshakeState =
  | 'initial'
  | 'await-method-decision'
  | 'await-auth'
  | 'await-auth-decision'
  | 'await-request'
  | 'done'
  | 'failed';

const NEED_MORE_EVENT = Object.freeze({ type: 'need-more' as const });

/** SOCKS5 error reply in Tor's form: `05 REP 00 01 0*6`. */
export function socks5ErrorReply(rep: number): Buffer {
  return encodeSocks5Reply(rep, ZERO_ADDRESS);
}

/** SOCKS4 rejection: `00 5B 0*6`. */
export function socks4Rejection(): Buffer {
  return encodeSocks4Reply(Socks4Rep.REJECTED);
}

/** The server side of one connection's handshake. */
export class ServerHandshake {
  /** Current state; `done` after a request, `failed` after an error. */
  state: HandshakeState = 'initial';
  /** 4 or 5 once known, 0 before. */
  version: 0 | 4 | 5 = 0;
  /** The method chosen by {@link selectMethod}, or -1. */
  method = -1;
  /** Whether an RFC 1929 message was accepted (also the lenient one after method 00). */
  authenticated = false;

  /**
   * Look at `buf` from `offset` and return the next event. Call again after acting on it;
   * between `greeting` and {@link selectMethod}, or `auth` and {@link authResult}, `step` returns need-more.
   */
  step(buf: Uint8Array, offset = 0): HandshakeEvent {
    if (buf.length - offset < 1) return NEED_MORE_EVENT;
    switch (this.state) {
      case 'initial':
        return this.stepInitial(buf, offset);
      case 'await-auth':
        // After 02 was chosen the next message is RFC 1929 whatever its first byte (Tor).
        return this.stepAuth(buf, offset);
      case 'await-request':
        // Tor's leniency: RFC 1929 is accepted after 00 was chosen, once, before the request.
        if (buf[offset] === Version.USERPASS && !this.authenticated) return this.stepAuth(buf, offset);
        return this.stepRequest(buf, offset);
      default:
        return NEED_MORE_EVENT;
    }
  }

  private stepInitial(buf: Uint8Array, offset: number): HandshakeEvent {
    const guess = classifyFirstByte(buf[offset]!);
    if (guess === 'socks5') {
      const r = parseSocks5Greeting(buf, offset);
      if (r.status === 'need-more') return NEED_MORE_EVENT;
      if (r.status === 'error') return this.fail(r.error, undefined);
      this.version = 5;
      this.state = 'await-method-decision';
      return { type: 'greeting', greeting: r.value, length: r.length };
    }
    if (guess === 'socks4') {
      const r = parseSocks4Request(buf, offset);
      if (r.status === 'need-more') return NEED_MORE_EVENT;
      this.version = 4;
      if (r.status === 'error') return this.fail(r.error, socks4Rejection());
      this.state = 'done';
      return { type: 'request', request: r.value, length: r.length };
    }
    if (guess === 'userpass') {
      // RFC 1929 before any greeting: Tor closes without a reply.
      return this.fail(new ProtocolError('SOCKSMITH_ERR_PROTOCOL_UNEXPECTED', 'RFC 1929 message before SOCKS5 greeting'), undefined);
    }
    this.state = 'failed';
    return { type: 'unknown-protocol', firstByte: buf[offset]! };
  }

  private stepAuth(buf: Uint8Array, offset: number): HandshakeEvent {
    const r = parseUserPass(buf, offset);
    if (r.status === 'need-more') return NEED_MORE_EVENT;
    if (r.status === 'error') return this.fail(r.error, r.error.reply === undefined ? undefined : socks5ErrorReply(r.error.reply));
    this.state = 'await-auth-decision';
    return { type: 'auth', auth: r.value, length: r.length };
  }

  private stepRequest(buf: Uint8Array, offset: number): HandshakeEvent {
    const r = parseSocks5Request(buf, offset);
    if (r.status === 'need-more') return NEED_MORE_EVENT;
    if (r.status === 'error') return this.fail(r.error, r.error.reply === undefined ? undefined : socks5ErrorReply(r.error.reply));
    this.state = 'done';
    return { type: 'request', request: r.value, length: r.length };
  }

  private fail(error: ProtocolError, reply: Buffer | undefined): HandshakeEvent {
    this.state = 'failed';
    return { type: 'error', error, reply };
  }

  /**
   * Answer the greeting with `method` and return the bytes to send (`05 METHOD`).
   * 0xFF (no acceptable method) moves to `failed`: send the bytes, then close.
   */
  selectMethod(method: number): Buffer {
    if (this.state !== 'await-method-decision') throw new Error(`selectMethod in state ${this.state}`);
    this.method = method;
    if (method === Method.NO_ACCEPTABLE) this.state = 'failed';
    else if (method === Method.USERPASS) this.state = 'await-auth';
    else this.state = 'await-request';
    return encodeMethodSelection(method);
  }

  /** Answer the credentials and return the bytes to send (`01 00` or `01 01`). Failure moves to `failed`. */
  authResult(accepted: boolean): Buffer {
    if (this.state !== 'await-auth-decision') throw new Error(`authResult in state ${this.state}`);
    if (accepted) {
      this.authenticated = true;
      this.state = 'await-request';
      return encodeUserPassReply(AuthStatus.SUCCESS);
    }
    this.state = 'failed';
    return encodeUserPassReply(AuthStatus.FAILURE);
  }
}
