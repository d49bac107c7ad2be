/**
 * Pure checks on destination names. No DNS.
 * @packageDocumentation
 */
import { ipv6ToBytes } from './address.js';

/** Lowercase a name and drop one trailing dot (`Example.COM.` → `example.com`). */
export function normalizeName(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

/**
 * True for `.onion` names in any case, with or without one trailing dot (`x.onion`, `X.ONION.`,
 * `onion`). Such names must never be sent to DNS: the query itself would leak which onion
 * service the client wants (Tor's rule; tor-socks.md a.4 notes Tor itself misses the trailing-dot form).
 */
export function isOnionName(name: string): boolean {
  const n = normalizeName(name);
  return n === 'onion' || n.endsWith('.onion');
}

/**
 * The DNS name of an address's PTR record: `1.0.0.127.in-addr.arpa` for `127.0.0.1`,
 * nibbles under `ip6.arpa` for IPv6 (RFC 1035 §3.5, RFC 3596 §2.5).
 */
export function reverseName(address: string): string {
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(address);
  if (v4) return `${v4[4]}.${v4[3]}.${v4[2]}.${v4[1]}.in-addr.arpa`;
  const bytes = ipv6ToBytes(address);
  const nibbles: string[] = [];
  for (let i = bytes.length - 1; i >= 0; i--) nibbles.push((bytes[i]! & 0xf).toString(16), (bytes[i]! >> 4).toString(16));
  return `${nibbles.join('.')}.ip6.arpa`;
}
