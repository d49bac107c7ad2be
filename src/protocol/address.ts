/**
 * Addresses as they travel in SOCKS messages: IPv4, IPv6 or a domain name, plus a port.
 * Pure functions, no sockets and no DNS.
 * @packageDocumentation
 */
import { domainToASCII } from 'node:url';
import ipaddr from 'ipaddr.js';

/** Which kind of address a SOCKS message carried (SOCKS5 ATYP 01 / 04 / 03; SOCKS4 IP or SOCKS4A name). */
export type AddressKind = 'ipv4' | 'ipv6' | 'domain';

/**
 * A destination or bound address: `host` is a dotted IPv4, a canonical IPv6 (no brackets) or a name.
 *
 * The codec keeps names exactly as the client sent them (case included). The kernel then
 * normalises a request's name once, before any hook sees it (`normalizeHost` in names.ts: UTS-46,
 * IP literals canonical), so hooks, upstreams and logs only ever see that form.
 */
export interface SocksAddress {
  readonly kind: AddressKind;
  readonly host: string;
  readonly port: number;
}

/** `0.0.0.0:0`, the address Tor and most servers put in replies that carry none. */
export const ZERO_ADDRESS: SocksAddress = Object.freeze({ kind: 'ipv4', host: '0.0.0.0', port: 0 });

/** True for a dotted-quad IPv4 literal (`127.0.0.1`), strictly four decimal parts. */
export function isIPv4(host: string): boolean {
  return ipaddr.IPv4.isValidFourPartDecimal(host);
}

/** True for an IPv6 literal without brackets (`::1`, `2001:db8::1`). */
export function isIPv6(host: string): boolean {
  return host.includes(':') && ipaddr.IPv6.isValid(host);
}

/**
 * An IPv6 literal (no brackets, no zone id; check with {@link isIPv6} first) in canonical form:
 * RFC 5952 (lower case, the longest run of zero groups as `::`), never a dotted tail.
 *
 * The WHATWG URL host serialiser's, not ipaddr.js's: ipaddr.js reads the deprecated
 * IPv4-compatible spelling `::a.b.c.d` as the IPv4-mapped `::ffff:a.b.c.d`, so `::127.0.0.1`
 * (`::7f00:1`, which no host routes to 127.0.0.1) would become an address of 127.0.0.1.
 */
export function canonicalIPv6(host: string): string {
  return domainToASCII(`[${host}]`).slice(1, -1);
}

/** An IPv6 literal (see {@link isIPv6}) parsed by ipaddr.js, from its canonical form ({@link canonicalIPv6}). */
export function parseIPv6(host: string): ipaddr.IPv6 {
  return ipaddr.IPv6.parse(canonicalIPv6(host));
}

/**
 * Classify a host string: an IPv4 or IPv6 literal (brackets allowed around IPv6) or a name.
 * IPv6 literals come back in canonical form without brackets.
 */
export function classifyHost(host: string, port: number): SocksAddress {
  if (isIPv4(host)) return { kind: 'ipv4', host, port };
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (isIPv6(bare)) return { kind: 'ipv6', host: canonicalIPv6(bare), port };
  return { kind: 'domain', host, port };
}

/** The 4 bytes of an IPv4 literal. */
export function ipv4ToBytes(host: string): Uint8Array {
  return Uint8Array.from(ipaddr.IPv4.parse(host).octets);
}

/** The 16 bytes of an IPv6 literal. */
export function ipv6ToBytes(host: string): Uint8Array {
  return Uint8Array.from(parseIPv6(host).toByteArray());
}

/** Dotted-quad text of 4 bytes at `offset`. */
export function ipv4FromBytes(buf: Uint8Array, offset: number): string {
  return `${buf[offset]}.${buf[offset + 1]}.${buf[offset + 2]}.${buf[offset + 3]}`;
}

/** Canonical text (RFC 5952) of 16 bytes at `offset`. */
export function ipv6FromBytes(buf: Uint8Array, offset: number): string {
  return ipaddr.fromByteArray(Array.from(buf.subarray(offset, offset + 16))).toString();
}

/** `host:port`, with brackets around IPv6 (`[::1]:1080`). */
export function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** `host:port` of a {@link SocksAddress}. */
export function formatAddress(addr: SocksAddress): string {
  return formatHostPort(addr.host, addr.port);
}
