/**
 * Pure checks on destination names. No DNS.
 * @packageDocumentation
 */
import { domainToASCII } from 'node:url';
import { domainToUnicode } from 'node:url';
import { type SocksAddress, canonicalIPv6, isIPv4, isIPv6, ipv6ToBytes } from './address.js';

/** Lowercase a name and drop one trailing dot (`Example.COM.` → `example.com`). */
export function normalizeName(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

/**
 * True for `.onion` names in any case, with or without one trailing dot (`x.onion`, `X.ONION.`,
 * `onion`). Such names must never be sent to DNS: the query itself would leak which onion
 * service the client wants (Tor's rule; tor-socks.md a.4 notes Tor itself misses the trailing-dot form).
 * It tests the string it is given: pass a name through {@link normalizeHost} first (the kernel
 * does for every destination), or `x.ｏｎｉｏｎ` is not seen as what a resolver would make of it.
 */
export function isOnionName(name: string): boolean {
  const n = normalizeName(name);
  return n === 'onion' || n.endsWith('.onion');
}

/**
 * ASCII a destination name may never contain before UTS-46 processing: C0 controls, space, DEL
 * and the WHATWG URL "forbidden domain code points" (`# % / : < > ? @ [ \ ] ^ |`).
 */
// Refused before domainToASCII because the WHATWG host parser behind it treats some of them as URL
// syntax instead of failing: it cuts a name at `/ ? # \` (`a.b\x.onion` → `a.b`) and deletes
// tab and newline (`a<TAB>b.onion` → `ab.onion`), so its answer would not be the name the client
// sent. `\` is also the escape character of glibc's resolver (`getaddrinfo("a.b\\x.onion")` queries
// `a.bx.onion`), and `%` starts an IPv6 zone id, which Node's connect takes as an address.
const FORBIDDEN_ASCII = /[\u0000-\u0020#%/:<>?@[\\\]^|\u007f]/;

/** Longest normalised name: what a SOCKS5 name field (ATYP 03) can carry to an upstream. */
export const MAX_NAME_LENGTH = 255;

/**
 * The one form of a destination host that every check sees: `undefined` when it is refused.
 *
 * - An IP literal as Node's `net.connect` takes it (dotted quad; IPv6 with or without brackets)
 *   comes back canonical: dotted quad, RFC 5952 IPv6 without brackets.
 * - An IPv6 literal with a zone id (`::1%lo`, `[fe80::1%eth0]`) is refused: Node would connect to
 *   it as an address, and a remote client has no business naming this host's interfaces.
 * - Anything else goes through UTS-46 processing, non-transitional, as WHATWG URL's host parser
 *   does it (`url.domainToASCII`): Node's own `dns.lookup` and `dns.Resolver` apply the same
 *   UTS-46 mapping (ada's `to_ascii`) to every name before getaddrinfo or c-ares sees it, so a
 *   name that reaches a resolver as `x.onion` is `x.onion` here (fullwidth letters and dots,
 *   `。` `｡`, soft hyphen, zero-width and variation selectors, `º`, `ⓞ`, upper case all fold).
 *   The host parser also turns the numeric IPv4 spellings getaddrinfo's inet_aton accepts
 *   (`0x7f.1`, `127.1`, `2130706433`, `0177.0.0.1`, fullwidth digits) into a dotted quad, so those
 *   are IP literals too. It fails (refused here) on forbidden code points after mapping, bad
 *   punycode, and names whose last label is a number but not a valid IPv4 address (`1.2.3.999`).
 * - Refused as well: the ASCII characters of {@link FORBIDDEN_ASCII} anywhere in the raw name, an
 *   empty label (`a..b`, `.a`; one trailing dot is kept: `x.onion.`), and a result longer than
 *   {@link MAX_NAME_LENGTH}; and an `xn--` label that decodes to ASCII only (`xn--onion-`, which
 *   reads `onion`: an error in UTS-46 since Unicode 15.1 that `domainToASCII` lets through).
 *
 * Names come back as lower-case ASCII (`xn--` labels for IDNs). The function is idempotent.
 */
export function normalizeHost(host: string): string | undefined {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (isIPv4(bare)) return bare;
  if (bare.includes(':')) {
    // Only an IPv6 literal may contain a colon; a zone id (`%`) is refused.
    if (bare.includes('%') || !isIPv6(bare)) return undefined;
    return canonicalIPv6(bare);
  }
  if (FORBIDDEN_ASCII.test(host)) return undefined;
  const ascii = domainToASCII(host);
  if (ascii === '' || ascii.length > MAX_NAME_LENGTH) return undefined;
  if (isIPv4(ascii)) return ascii;
  if (ascii.startsWith('[')) return undefined; // cannot happen after the checks above; never a name
  const body = ascii.endsWith('.') ? ascii.slice(0, -1) : ascii;
  const labels = body.split('.');
  if (labels.includes('')) return undefined;
  if (labels.some(asciiPunycode)) return undefined;
  return ascii;
}

/**
 * True for an `xn--` label whose Punycode decodes to ASCII only (`xn--onion-` is `onion`). UTS-46
 * (since Unicode 15.1, §4.1 step 4) makes such a label an error, but Node's `domainToASCII` (ada)
 * passes it through, and so do Node's resolvers: `x.xn--onion-` would be queried as it is, and a
 * client that decodes IDNs reads it as `x.onion`. Refused like any name that does not normalise.
 */
function asciiPunycode(label: string): boolean {
  // eslint-disable-next-line no-control-regex
  return label.startsWith('xn--') && /^[\x00-\x7f]*$/.test(domainToUnicode(label));
}

/**
 * {@link normalizeHost} applied to a destination: IP addresses (ATYP 01/04, SOCKS4) pass as they
 * are; a name keeps `kind: 'domain'` (the kind says how the client sent it, which SafeSocks needs)
 * with its normalised host, which may now be an IP literal. `undefined`: refuse the request
 * (SOCKS5 REP 04, SOCKS4 5B, HTTP 404).
 */
export function normalizeDestination(addr: SocksAddress): SocksAddress | undefined {
  if (addr.kind !== 'domain') return addr;
  const host = normalizeHost(addr.host);
  if (host === undefined) return undefined;
  return host === addr.host ? addr : { kind: 'domain', host, port: addr.port };
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
