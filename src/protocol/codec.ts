/**
 * Sans-IO parsers and encoders for every SOCKS4, SOCKS4A, SOCKS5 and RFC 1929 message.
 *
 * Parsers take bytes and an offset and return a value with the number of bytes it used,
 * {@link NEED_MORE} when the message is not complete yet, or an error. A truncated message is never
 * an error (Arti `tor-socksproto` TResult; Tor `proto_socks.c` TRUNCATED vs INVALID), so a message
 * may arrive split at any byte. Bytes after a message are never looked at: the caller keeps them.
 * @packageDocumentation
 */
import { ProtocolError } from '../errors.js';
import {
  type AddressKind,
  type SocksAddress,
  ipv4FromBytes,
  ipv4ToBytes,
  ipv6FromBytes,
  ipv6ToBytes,
} from './address.js';
import { AddressType, Limits, Rep, Version } from './constants.js';

/** The parser needs more bytes before it can decide. Frozen singleton: compare with `===`. */
export const NEED_MORE: { readonly status: 'need-more' } = Object.freeze({ status: 'need-more' });

/** A complete message: its value and how many bytes it used. */
export interface ParseOk<T> {
  readonly status: 'ok';
  readonly value: T;
  readonly length: number;
}

/** The bytes can never become a valid message. */
export interface ParseError {
  readonly status: 'error';
  readonly error: ProtocolError;
}

/** Outcome of every parser: a value, need-more, or an error. */
export type ParseResult<T> = ParseOk<T> | typeof NEED_MORE | ParseError;

/** SOCKS5 method-selection message (RFC 1928 §3): `05 NMETHODS METHODS…`. */
export interface Socks5Greeting {
  readonly methods: readonly number[];
}

/**
 * RFC 1929 username/password request: `01 ULEN UNAME PLEN PASSWD`.
 * Fields are raw bytes: RFC 1929 names no encoding, and isolation must compare bytes exactly.
 */
export interface UserPassRequest {
  readonly username: Buffer;
  readonly password: Buffer;
}

/** A parsed SOCKS4, SOCKS4A or SOCKS5 request. `command` may be any byte: unknown values reach policy code. */
export interface SocksRequest {
  /** 4 for SOCKS4 and SOCKS4A, 5 for SOCKS5. */
  readonly version: 4 | 5;
  /** CMD byte (see {@link Command}); not restricted to known values. */
  readonly command: number;
  /** DST.ADDR and DST.PORT. SOCKS4A names arrive as `kind: 'domain'`. */
  readonly destination: SocksAddress;
  /** SOCKS4 USERID bytes (possibly empty); `undefined` for SOCKS5. */
  readonly userId: Buffer | undefined;
  /** True when a SOCKS4 request used the 4A form (IP 0.0.0.x with a hostname). */
  readonly socks4a: boolean;
}

/** A SOCKS5 reply (RFC 1928 §6): REP and BND.ADDR/BND.PORT. */
export interface Socks5Reply {
  readonly rep: number;
  readonly bound: SocksAddress;
}

/** A SOCKS4 reply: `VN CD DSTPORT DSTIP`. */
export interface Socks4Reply {
  readonly code: number;
  readonly port: number;
  readonly ip: string;
}

// ignoreBOM: a leading U+FEFF is part of the name, never silently stripped (an empty name could otherwise pass).
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function ok<T>(value: T, length: number): ParseOk<T> {
  return { status: 'ok', value, length };
}

function fail(code: ProtocolError['code'], message: string, reply?: number): ParseError {
  return { status: 'error', error: new ProtocolError(code, message, reply) };
}

/** Decode a hostname: non-empty, no NUL, valid UTF-8. `null` when it is not acceptable. */
function decodeHostname(buf: Uint8Array, start: number, end: number): string | null {
  if (end <= start) return null;
  const bytes = buf.subarray(start, end);
  if (bytes.includes(0)) return null;
  try {
    return utf8.decode(bytes);
  } catch {
    return null;
  }
}

/** Index of the first NUL in `buf[from, from+max]`, -1 if there is none yet, -2 if none within the limit. */
function findNul(buf: Uint8Array, from: number, max: number): number {
  const limit = Math.min(buf.length, from + max + 1);
  for (let i = from; i < limit; i++) if (buf[i] === 0) return i;
  return buf.length >= from + max + 1 ? -2 : -1;
}

/**
 * Parse a SOCKS5 greeting (RFC 1928 §3). `buf[offset]` must be 05; NMETHODS = 0 is an error
 * (Tor closes without a reply).
 */
export function parseSocks5Greeting(buf: Uint8Array, offset = 0): ParseResult<Socks5Greeting> {
  const avail = buf.length - offset;
  if (avail < 1) return NEED_MORE;
  if (buf[offset] !== Version.SOCKS5) return fail('SOCKSMITH_ERR_PROTOCOL_BAD_VERSION', `expected SOCKS5 greeting, got version ${buf[offset]}`);
  if (avail < 2) return NEED_MORE;
  const n = buf[offset + 1]!;
  if (n === 0) return fail('SOCKSMITH_ERR_PROTOCOL_NO_METHODS', 'SOCKS5 greeting offers no methods');
  if (avail < 2 + n) return NEED_MORE;
  // A plain loop: no subarray view and no iterator per greeting.
  const methods = new Array<number>(n);
  for (let i = 0; i < n; i++) methods[i] = buf[offset + 2 + i]!;
  return ok({ methods }, 2 + n);
}

/**
 * Parse an RFC 1929 username/password request. Empty fields are accepted (Tor, tor#29175).
 * A sub-negotiation version other than 01 is an error answered with SOCKS5 REP 01 (Tor's behaviour).
 */
export function parseUserPass(buf: Uint8Array, offset = 0): ParseResult<UserPassRequest> {
  const avail = buf.length - offset;
  if (avail < 1) return NEED_MORE;
  if (buf[offset] !== Version.USERPASS) {
    return fail('SOCKSMITH_ERR_PROTOCOL_BAD_AUTH_VERSION', `RFC 1929 version must be 01, got ${buf[offset]}`, Rep.GENERAL_FAILURE);
  }
  if (avail < 2) return NEED_MORE;
  const ulen = buf[offset + 1]!;
  if (avail < 3 + ulen) return NEED_MORE;
  const plen = buf[offset + 2 + ulen]!;
  const total = 3 + ulen + plen;
  if (avail < total) return NEED_MORE;
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  return ok(
    {
      username: Buffer.from(b.subarray(offset + 2, offset + 2 + ulen)),
      password: Buffer.from(b.subarray(offset + 3 + ulen, offset + total)),
    },
    total,
  );
}

/** Parse ATYP + address + port at `pos`; shared by requests and replies. */
function parseSocks5Address(
  buf: Uint8Array,
  pos: number,
  allowZeroAtyp: boolean,
): ParseResult<SocksAddress> {
  const avail = buf.length - pos;
  if (avail < 1) return NEED_MORE;
  const atyp = buf[pos]!;
  let kind: AddressKind;
  let host: string;
  let len: number;
  if (atyp === AddressType.IPV4 || (allowZeroAtyp && atyp === 0)) {
    len = 1 + 4 + 2;
    if (avail < len) return NEED_MORE;
    kind = 'ipv4';
    host = ipv4FromBytes(buf, pos + 1);
  } else if (atyp === AddressType.IPV6) {
    len = 1 + 16 + 2;
    if (avail < len) return NEED_MORE;
    kind = 'ipv6';
    host = ipv6FromBytes(buf, pos + 1);
  } else if (atyp === AddressType.DOMAIN) {
    if (avail < 2) return NEED_MORE;
    const n = buf[pos + 1]!;
    len = 2 + n + 2;
    if (avail < len) return NEED_MORE;
    const name = decodeHostname(buf, pos + 2, pos + 2 + n);
    if (name === null) {
      return fail('SOCKSMITH_ERR_PROTOCOL_BAD_HOSTNAME', 'hostname is empty, contains NUL or is not UTF-8', Rep.GENERAL_FAILURE);
    }
    kind = 'domain';
    host = name;
  } else {
    return fail('SOCKSMITH_ERR_PROTOCOL_BAD_ADDRESS_TYPE', `unknown address type ${atyp}`, Rep.ADDRESS_TYPE_NOT_SUPPORTED);
  }
  const port = (buf[pos + len - 2]! << 8) | buf[pos + len - 1]!;
  return ok({ kind, host, port }, len);
}

/**
 * Parse a SOCKS5 request (RFC 1928 §4): `05 CMD RSV ATYP DST.ADDR DST.PORT`.
 * Any CMD value is returned (policy decides). RSV is ignored, as Arti does. An unknown ATYP is an
 * error answered with REP 08 (RFC 1928 §6).
 */
export function parseSocks5Request(buf: Uint8Array, offset = 0): ParseResult<SocksRequest> {
  const avail = buf.length - offset;
  if (avail < 1) return NEED_MORE;
  if (buf[offset] !== Version.SOCKS5) return fail('SOCKSMITH_ERR_PROTOCOL_BAD_VERSION', `expected SOCKS5 request, got version ${buf[offset]}`);
  if (avail < 4) return NEED_MORE;
  const command = buf[offset + 1]!;
  const addr = parseSocks5Address(buf, offset + 3, false);
  if (addr.status !== 'ok') return addr;
  return ok({ version: 5, command, destination: addr.value, userId: undefined, socks4a: false }, 3 + addr.length);
}

/**
 * Parse a SOCKS4 or SOCKS4A request: `04 CMD DSTPORT DSTIP USERID 00 [HOSTNAME 00]`.
 * DSTIP 0.0.0.x with x ≠ 0 marks SOCKS4A (a hostname follows the USERID). The USERID and the
 * hostname must each end with a NUL within 255 bytes ({@link Limits}); otherwise it is an error,
 * so a client can never make the parser wait for an unbounded field.
 */
export function parseSocks4Request(buf: Uint8Array, offset = 0): ParseResult<SocksRequest> {
  const avail = buf.length - offset;
  if (avail < 1) return NEED_MORE;
  if (buf[offset] !== Version.SOCKS4) return fail('SOCKSMITH_ERR_PROTOCOL_BAD_VERSION', `expected SOCKS4 request, got version ${buf[offset]}`);
  if (avail < 8) return NEED_MORE;
  const command = buf[offset + 1]!;
  const port = (buf[offset + 2]! << 8) | buf[offset + 3]!;
  const socks4a = buf[offset + 4] === 0 && buf[offset + 5] === 0 && buf[offset + 6] === 0 && buf[offset + 7] !== 0;
  const uidEnd = findNul(buf, offset + 8, Limits.SOCKS4_USERID_MAX);
  if (uidEnd === -1) return NEED_MORE;
  if (uidEnd === -2) return fail('SOCKSMITH_ERR_PROTOCOL_TOO_LONG', `SOCKS4 USERID longer than ${Limits.SOCKS4_USERID_MAX} bytes`, Rep.GENERAL_FAILURE);
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const userId = Buffer.from(b.subarray(offset + 8, uidEnd));
  if (!socks4a) {
    const destination: SocksAddress = { kind: 'ipv4', host: ipv4FromBytes(buf, offset + 4), port };
    return ok({ version: 4, command, destination, userId, socks4a: false }, uidEnd + 1 - offset);
  }
  const hostEnd = findNul(buf, uidEnd + 1, Limits.SOCKS4A_HOSTNAME_MAX);
  if (hostEnd === -1) return NEED_MORE;
  if (hostEnd === -2) return fail('SOCKSMITH_ERR_PROTOCOL_TOO_LONG', `SOCKS4A hostname longer than ${Limits.SOCKS4A_HOSTNAME_MAX} bytes`, Rep.GENERAL_FAILURE);
  const host = decodeHostname(buf, uidEnd + 1, hostEnd);
  if (host === null) return fail('SOCKSMITH_ERR_PROTOCOL_BAD_HOSTNAME', 'SOCKS4A hostname is empty or not UTF-8', Rep.GENERAL_FAILURE);
  return ok({ version: 4, command, destination: { kind: 'domain', host, port }, userId, socks4a: true }, hostEnd + 1 - offset);
}

/**
 * Parse a SOCKS5 reply (RFC 1928 §6), as an upstream server sends it. ATYP 00 is accepted as a
 * 4-byte zero address because Tor sends `05 04 00 00 0*6` for failed RESOLVEs (tor-socks.md a.5).
 */
export function parseSocks5Reply(buf: Uint8Array, offset = 0): ParseResult<Socks5Reply> {
  const avail = buf.length - offset;
  if (avail < 1) return NEED_MORE;
  if (buf[offset] !== Version.SOCKS5) return fail('SOCKSMITH_ERR_PROTOCOL_BAD_REPLY', `expected SOCKS5 reply, got version ${buf[offset]}`);
  if (avail < 4) return NEED_MORE;
  const rep = buf[offset + 1]!;
  const addr = parseSocks5Address(buf, offset + 3, true);
  if (addr.status === 'error') return fail('SOCKSMITH_ERR_PROTOCOL_BAD_REPLY', addr.error.message);
  if (addr.status !== 'ok') return addr;
  return ok({ rep, bound: addr.value }, 3 + addr.length);
}

/** The header of a SOCKS5 UDP datagram (RFC 1928 §7): `RSV RSV FRAG ATYP DST.ADDR DST.PORT`, then DATA. */
export interface UdpHeader {
  /** FRAG: 0 for a whole datagram; 1–127 a fragment's position, the high bit its end (RFC 1928 §7). */
  readonly frag: number;
  /** DST.ADDR and DST.PORT (from a client: where to send DATA; to a client: where DATA came from). */
  readonly address: SocksAddress;
  /** Bytes of header: DATA starts at `offset + length`. */
  readonly length: number;
}

/**
 * Parse the header of one SOCKS5 UDP datagram (RFC 1928 §7). A datagram arrives whole, so there
 * is no need-more: a datagram shorter than its header is an error
 * (`SOCKSMITH_ERR_PROTOCOL_SHORT_DATAGRAM`), as are an unknown ATYP and a name that is empty, has a
 * NUL or is not UTF-8. RSV is ignored (as in requests). An empty DATA is allowed. Never throws.
 */
export function parseUdpHeader(buf: Uint8Array, offset = 0): ParseOk<UdpHeader> | ParseError {
  if (buf.length - offset < 4) return fail('SOCKSMITH_ERR_PROTOCOL_SHORT_DATAGRAM', `UDP datagram of ${Math.max(0, buf.length - offset)} bytes is shorter than its header`);
  const frag = buf[offset + 2]!;
  const addr = parseSocks5Address(buf, offset + 3, false);
  if (addr.status === 'error') return addr;
  if (addr.status !== 'ok') return fail('SOCKSMITH_ERR_PROTOCOL_SHORT_DATAGRAM', 'UDP datagram ends inside its address');
  const length = 3 + addr.length;
  return ok({ frag, address: addr.value, length }, length);
}

/** Parse a SOCKS5 method-selection reply `05 METHOD` (RFC 1928 §3). */
export function parseMethodSelection(buf: Uint8Array, offset = 0): ParseResult<number> {
  if (buf.length - offset < 2) return NEED_MORE;
  if (buf[offset] !== Version.SOCKS5) return fail('SOCKSMITH_ERR_PROTOCOL_BAD_REPLY', `expected 05 in method selection, got ${buf[offset]}`);
  return ok(buf[offset + 1]!, 2);
}

/** Parse an RFC 1929 status reply `01 STATUS` (RFC 1929 §2). Some servers answer `05 STATUS`; accepted. */
export function parseUserPassReply(buf: Uint8Array, offset = 0): ParseResult<number> {
  if (buf.length - offset < 2) return NEED_MORE;
  const v = buf[offset];
  if (v !== Version.USERPASS && v !== Version.SOCKS5) return fail('SOCKSMITH_ERR_PROTOCOL_BAD_REPLY', `expected 01 in RFC 1929 reply, got ${v}`);
  return ok(buf[offset + 1]!, 2);
}

/** Parse an 8-byte SOCKS4 reply `VN CD DSTPORT DSTIP`. */
export function parseSocks4Reply(buf: Uint8Array, offset = 0): ParseResult<Socks4Reply> {
  if (buf.length - offset < 8) return NEED_MORE;
  if (buf[offset] !== Version.SOCKS4_REPLY) return fail('SOCKSMITH_ERR_PROTOCOL_BAD_REPLY', `expected 00 in SOCKS4 reply, got ${buf[offset]}`);
  return ok(
    { code: buf[offset + 1]!, port: (buf[offset + 2]! << 8) | buf[offset + 3]!, ip: ipv4FromBytes(buf, offset + 4) },
    8,
  );
}

// ---------------------------------------------------------------------------------------------
// Encoders. They throw RangeError only for programming errors (a name over 255 bytes), never for
// anything a peer sent.

function encodeAddress(addr: SocksAddress): Buffer {
  let out: Buffer;
  if (addr.kind === 'ipv4') {
    out = Buffer.allocUnsafe(7);
    out[0] = AddressType.IPV4;
    out.set(ipv4ToBytes(addr.host), 1);
  } else if (addr.kind === 'ipv6') {
    out = Buffer.allocUnsafe(19);
    out[0] = AddressType.IPV6;
    out.set(ipv6ToBytes(addr.host), 1);
  } else {
    const name = Buffer.from(addr.host, 'utf8');
    if (name.length > 255) throw new RangeError(`hostname longer than 255 bytes: ${name.length}`);
    out = Buffer.allocUnsafe(2 + name.length + 2);
    out[0] = AddressType.DOMAIN;
    out[1] = name.length;
    name.copy(out, 2);
  }
  out.writeUInt16BE(addr.port & 0xffff, out.length - 2);
  return out;
}

/** `05 N METHODS…` (RFC 1928 §3). */
export function encodeSocks5Greeting(methods: readonly number[]): Buffer {
  if (methods.length < 1 || methods.length > 255) throw new RangeError('a greeting offers 1 to 255 methods');
  return Buffer.from([Version.SOCKS5, methods.length, ...methods]);
}

/** `05 METHOD` (RFC 1928 §3). */
export function encodeMethodSelection(method: number): Buffer {
  const out = Buffer.allocUnsafe(2);
  out[0] = Version.SOCKS5;
  out[1] = method;
  return out;
}

/** `01 ULEN UNAME PLEN PASSWD` (RFC 1929 §2). Strings are sent as UTF-8. */
export function encodeUserPass(username: Uint8Array | string, password: Uint8Array | string): Buffer {
  const u = typeof username === 'string' ? Buffer.from(username, 'utf8') : username;
  const p = typeof password === 'string' ? Buffer.from(password, 'utf8') : password;
  if (u.length > 255 || p.length > 255) throw new RangeError('RFC 1929 fields are at most 255 bytes');
  return Buffer.concat([Buffer.from([Version.USERPASS, u.length]), u, Buffer.from([p.length]), p]);
}

/** `01 STATUS` (RFC 1929 §2). */
export function encodeUserPassReply(status: number): Buffer {
  return Buffer.from([Version.USERPASS, status]);
}

/** `05 CMD 00 ATYP DST.ADDR DST.PORT` (RFC 1928 §4). */
export function encodeSocks5Request(command: number, destination: SocksAddress): Buffer {
  const addr = encodeAddress(destination);
  const out = Buffer.allocUnsafe(3 + addr.length);
  out[0] = Version.SOCKS5;
  out[1] = command;
  out[2] = 0;
  addr.copy(out, 3);
  return out;
}

/**
 * Write a strict dotted quad (four decimal parts 0–255, no leading zeros) into `out` at `at`;
 * false, with nothing trusted in `out`, for any other spelling (ipaddr.js then decides, as before).
 */
function writeDottedQuad(host: string, out: Buffer, at: number): boolean {
  let part = 0;
  let digits = 0;
  let k = 0;
  for (let i = 0; i <= host.length; i++) {
    const ch = i < host.length ? host.charCodeAt(i) : 0x2e;
    if (ch === 0x2e) {
      if (digits === 0 || k > 3) return false;
      out[at + k++] = part;
      part = 0;
      digits = 0;
    } else if (ch >= 0x30 && ch <= 0x39) {
      if (digits > 0 && part === 0) return false; // a leading zero: octal for ipaddr.js
      part = part * 10 + (ch - 0x30);
      if (part > 255) return false;
      digits++;
    } else return false;
  }
  return k === 4;
}

/** `05 REP 00 ATYP BND.ADDR BND.PORT` (RFC 1928 §6). */
export function encodeSocks5Reply(rep: number, bound: SocksAddress): Buffer {
  if (bound.kind === 'ipv4') {
    // One buffer, no parse objects: the reply of every CONNECT (the bound address is a dotted quad).
    const out = Buffer.allocUnsafe(10);
    if (writeDottedQuad(bound.host, out, 4)) {
      out[0] = Version.SOCKS5;
      out[1] = rep;
      out[2] = 0;
      out[3] = AddressType.IPV4;
      out.writeUInt16BE(bound.port & 0xffff, 8);
      return out;
    }
  }
  const addr = encodeAddress(bound);
  const out = Buffer.allocUnsafe(3 + addr.length);
  out[0] = Version.SOCKS5;
  out[1] = rep;
  out[2] = 0;
  addr.copy(out, 3);
  return out;
}

/**
 * A SOCKS4 request; a `domain` destination is sent in the 4A form (IP 0.0.0.1 and the name after
 * the USERID). IPv6 cannot be expressed in SOCKS4 (RangeError).
 */
export function encodeSocks4Request(command: number, destination: SocksAddress, userId: Uint8Array | string = ''): Buffer {
  const uid = typeof userId === 'string' ? Buffer.from(userId, 'utf8') : Buffer.from(userId);
  if (destination.kind === 'ipv6') throw new RangeError('SOCKS4 cannot carry an IPv6 address');
  if (uid.length > Limits.SOCKS4_USERID_MAX || uid.includes(0)) throw new RangeError('SOCKS4 USERID must be at most 255 bytes without NUL');
  const head = Buffer.allocUnsafe(8);
  head[0] = Version.SOCKS4;
  head[1] = command;
  head.writeUInt16BE(destination.port & 0xffff, 2);
  if (destination.kind === 'ipv4') {
    head.set(ipv4ToBytes(destination.host), 4);
    return Buffer.concat([head, uid, Buffer.from([0])]);
  }
  head.set([0, 0, 0, 1], 4);
  const name = Buffer.from(destination.host, 'utf8');
  if (name.length === 0 || name.length > Limits.SOCKS4A_HOSTNAME_MAX || name.includes(0)) throw new RangeError('SOCKS4A hostname must be 1 to 255 bytes without NUL');
  return Buffer.concat([head, uid, Buffer.from([0]), name, Buffer.from([0])]);
}

/**
 * The header of a SOCKS5 UDP datagram: `00 00 FRAG ATYP ADDR PORT` (RFC 1928 §7); DATA follows it
 * (send both as a list: `socket.send([header, data], …)`). RangeError for a name over 255 bytes
 * or a FRAG that is not a byte.
 */
export function encodeUdpHeader(address: SocksAddress, frag = 0): Buffer {
  if (!Number.isInteger(frag) || frag < 0 || frag > 0xff) throw new RangeError(`FRAG must be a byte, got ${frag}`);
  const addr = encodeAddress(address);
  const out = Buffer.allocUnsafe(3 + addr.length);
  out[0] = 0;
  out[1] = 0;
  out[2] = frag;
  addr.copy(out, 3);
  return out;
}

/** `00 CD DSTPORT DSTIP` (SOCKS4 protocol document). `ip` must be IPv4. */
export function encodeSocks4Reply(code: number, port = 0, ip = '0.0.0.0'): Buffer {
  const out = Buffer.allocUnsafe(8);
  out[0] = Version.SOCKS4_REPLY;
  out[1] = code;
  out.writeUInt16BE(port & 0xffff, 2);
  out.set(ipv4ToBytes(ip), 4);
  return out;
}
