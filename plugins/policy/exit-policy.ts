/**
 * Tor's address-policy syntax (`ExitPolicy`, `SocksPolicy`): a pure parser and a first-match
 * matcher. No sockets, no DNS.
 *
 * A rule is `accept|reject ADDR[/MASK][:PORT[-PORT]]` (tor.1 "ExitPolicy"; policies.c
 * `router_parse_addr_policy_item_from_string`):
 *
 * - ADDR: `*` (every address, both families), `*4`, `*6`, `private`, an IPv4 address, or an IPv6
 *   address in brackets (`[::1]`). MASK is a bit count (`/8`, `/64`) or, for IPv4, a netmask
 *   (`/255.255.0.0`). No mask means the single host.
 * - PORT: `*`, `N` or `N-M`. No port means `*`.
 * - `accept6` / `reject6` apply to IPv6 addresses only (Tor's IPv6-only forms).
 *
 * Matching (policies.c `compare_tor_addr_to_addr_policy`): rules are tried in order and the first
 * whose address and port both match decides; an address no rule matches is accepted. An
 * IPv4-mapped IPv6 address (`::ffff:10.0.0.5`) is matched as the IPv4 address it reaches, so it
 * cannot slip past an IPv4 rule. (Tor compares exactly, `CMP_EXACT`: there a mapped address meets
 * only IPv6 rules; its `private` list catches it through `[::]/8`, a plain `reject 10.0.0.0/8`
 * does not.)
 *
 * CIDR arithmetic is ipaddr.js's (`IPv4.match`, `parseCIDR`); this file only parses the syntax.
 * @packageDocumentation
 */
import ipaddr from 'ipaddr.js';
import { parseIPv6 } from 'socksmith';

/** What a rule does with what it matches. */
export type PolicyAction = 'accept' | 'reject';

/** One network: an address and a prefix length (ipaddr.js's CIDR tuple). */
export type Network = readonly [ipaddr.IPv4 | ipaddr.IPv6, number];

/** A parsed rule. */
export interface PolicyRule {
  readonly action: PolicyAction;
  /**
   * Address families the rule can match: 4, 6 or 0 for both. `*4` is 4, `*6` and `accept6` are 6,
   * a CIDR is its own family.
   */
  readonly family: 0 | 4 | 6;
  /** The networks it matches, or `undefined` for every address of {@link PolicyRule.family}. */
  readonly networks: readonly Network[] | undefined;
  /** Lowest matching port (0 when the rule says `*` or gives no port). */
  readonly portMin: number;
  /** Highest matching port (65535 when the rule says `*` or gives no port). */
  readonly portMax: number;
  /** The rule as written, for logs. */
  readonly text: string;
}

/** The result of parsing one rule: the rule, or a one-line reason. */
export type ParseResult = { readonly ok: true; readonly rule: PolicyRule } | { readonly ok: false; readonly reason: string };

/** The result of matching: the decision and the rule that made it (`undefined`: no rule matched). */
export interface PolicyVerdict {
  readonly action: PolicyAction;
  readonly rule: PolicyRule | undefined;
}

/**
 * Networks of Tor's `private` keyword (policies.c `private_nets`), plus 100.64.0.0/10.
 */
// Tor's list: 0/8, 169.254/16, 127/8, 192.168/16, 10/8, 172.16/12, [::]/8, [fc00::]/7,
// [fe80::]/10, [fec0::]/10, [ff00::]/8, [::]/127. socksmith adds 100.64.0.0/10 (carrier-grade
// NAT, RFC 6598), which Tor's own `tor_addr_is_internal` counts as internal but the keyword
// predates. [::]/8 covers ::, ::1 and the deprecated IPv4-compatible form; IPv4-mapped addresses
// are unmapped before matching, so they meet the IPv4 networks instead.
export const PRIVATE_NETWORKS: readonly string[] = Object.freeze([
  '0.0.0.0/8',
  '169.254.0.0/16',
  '127.0.0.0/8',
  '192.168.0.0/16',
  '10.0.0.0/8',
  '172.16.0.0/12',
  '100.64.0.0/10',
  '::/8',
  'fc00::/7',
  'fe80::/10',
  'fec0::/10',
  'ff00::/8',
  '::/127',
]);

const PRIVATE: readonly Network[] = Object.freeze(PRIVATE_NETWORKS.map((n) => Object.freeze(ipaddr.parseCIDR(n)) as Network));

const ALL_PORTS = { min: 0, max: 65535 } as const;

function fail(reason: string): ParseResult {
  return { ok: false, reason };
}

/** Parse `PORT`: `*`, `N` or `N-M` (0–65535, N ≤ M). */
function parsePorts(text: string): { min: number; max: number } | string {
  if (text === '*') return ALL_PORTS;
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(text);
  if (!m) return `bad port "${text}": expected *, N or N-M`;
  const min = Number(m[1]);
  const max = m[2] === undefined ? min : Number(m[2]);
  if (min > 65535 || max > 65535) return `bad port "${text}": ports go up to 65535`;
  if (min > max) return `bad port range "${text}": ${min} is above ${max}`;
  return { min, max };
}

/** Parse `ADDR[/MASK]` (brackets already removed from an IPv6 address; `v6` says they were there). */
function parseAddress(addr: string, mask: string | undefined, v6: boolean): { family: 0 | 4 | 6; networks: readonly Network[] | undefined } | string {
  if (!v6) {
    if (mask === undefined) {
      if (addr === '*') return { family: 0, networks: undefined };
      if (addr === '*4') return { family: 4, networks: undefined };
      if (addr === '*6') return { family: 6, networks: undefined };
      if (addr.toLowerCase() === 'private') return { family: 0, networks: PRIVATE };
    } else if (addr === '*' || addr === '*4' || addr === '*6' || addr.toLowerCase() === 'private') {
      return `"${addr}" takes no mask`;
    }
    if (!ipaddr.IPv4.isValidFourPartDecimal(addr)) {
      if (addr.includes(':')) return `"${addr}": IPv6 addresses go in brackets, e.g. [${addr}]`;
      return `bad address "${addr}": expected *, *4, *6, private, an IPv4 address or a bracketed IPv6 address`;
    }
    const ip = ipaddr.IPv4.parse(addr);
    let bits = 32;
    if (mask !== undefined) {
      if (/^\d{1,2}$/.test(mask)) bits = Number(mask);
      else if (ipaddr.IPv4.isValidFourPartDecimal(mask)) {
        const fromNetmask = ipaddr.IPv4.parse(mask).prefixLengthFromSubnetMask();
        if (fromNetmask === null) return `netmask /${mask} is not a prefix (its one bits must be contiguous)`;
        bits = fromNetmask;
      } else return `bad mask "/${mask}": expected a bit count or a netmask`;
      if (bits > 32) return `mask /${mask} is out of range for IPv4 (0-32)`;
    }
    return { family: 4, networks: [Object.freeze([ip, bits]) as Network] };
  }
  if (addr.includes('%') || !ipaddr.IPv6.isValid(addr)) return `bad IPv6 address "[${addr}]"`;
  const ip = parseIPv6(addr);
  let bits = 128;
  if (mask !== undefined) {
    if (!/^\d{1,3}$/.test(mask)) return `bad mask "/${mask}": an IPv6 mask is a bit count`;
    bits = Number(mask);
    if (bits > 128) return `mask /${mask} is out of range for IPv6 (0-128)`;
  }
  return { family: 6, networks: [Object.freeze([ip, bits]) as Network] };
}

/**
 * Parse one rule. Keywords (`accept`, `reject`, `accept6`, `reject6`, `private`) are
 * case-insensitive; surrounding whitespace is ignored.
 */
export function parseRule(text: string): ParseResult {
  const m = /^\s*(\S+)\s+(\S+)\s*$/.exec(text);
  if (!m) {
    if (text.includes(',')) return fail('one rule per entry: split "a,b" into separate strings');
    return fail('expected "accept|reject ADDR[/MASK][:PORT]"');
  }
  const keyword = m[1]!.toLowerCase();
  if (keyword !== 'accept' && keyword !== 'reject' && keyword !== 'accept6' && keyword !== 'reject6') {
    return fail(`"${m[1]}" is not accept, reject, accept6 or reject6`);
  }
  const target = m[2]!;
  if (target.includes(',')) return fail('one rule per entry: split "a,b" into separate strings');

  // ADDR[/MASK][:PORT], with ADDR an IPv6 address only inside brackets.
  let addr: string;
  let mask: string | undefined;
  let portText: string | undefined;
  let v6 = false;
  if (target.startsWith('[')) {
    const close = target.indexOf(']');
    if (close < 0) return fail(`"${target}": missing "]"`);
    addr = target.slice(1, close);
    v6 = true;
    const rest = /^(?:\/([^:]*))?(?::(.*))?$/.exec(target.slice(close + 1));
    if (!rest) return fail(`"${target}": expected [IPv6][/MASK][:PORT]`);
    mask = rest[1];
    portText = rest[2];
  } else {
    const colons = target.split(':').length - 1;
    if (colons > 1) return fail(`"${target}": IPv6 addresses go in brackets, e.g. [::1]:80`);
    const [a, p] = colons === 1 ? [target.slice(0, target.indexOf(':')), target.slice(target.indexOf(':') + 1)] : [target, undefined];
    const slash = a.indexOf('/');
    addr = slash < 0 ? a : a.slice(0, slash);
    mask = slash < 0 ? undefined : a.slice(slash + 1);
    portText = p;
  }
  if (mask === '') return fail(`"${target}": empty mask`);

  const address = parseAddress(addr, mask, v6);
  if (typeof address === 'string') return fail(address);
  const ports = portText === undefined ? ALL_PORTS : parsePorts(portText);
  if (typeof ports === 'string') return fail(ports);

  let family = address.family;
  let networks = address.networks;
  if (keyword.endsWith('6')) {
    // accept6/reject6: IPv6 only. Tor ignores such a rule with an IPv4 address (with a warning);
    // here it is a config error, so a typo cannot silently drop a rule.
    if (family === 4) return fail(`${keyword} takes IPv6 addresses; use ${keyword.slice(0, -1)} for "${addr}"`);
    family = 6;
    if (networks) networks = networks.filter(([ip]) => ip.kind() === 'ipv6');
  }
  return {
    ok: true,
    rule: Object.freeze({
      action: keyword.startsWith('accept') ? 'accept' : 'reject',
      family,
      networks: networks ? Object.freeze(networks) : undefined,
      portMin: ports.min,
      portMax: ports.max,
      text: text.trim(),
    }),
  };
}

/**
 * Parse a list of rules. Throws nothing: returns the rules, or the index and reason of the first
 * bad one (the caller turns it into a config error naming the key).
 */
export function parsePolicy(lines: readonly string[]): { ok: true; rules: readonly PolicyRule[] } | { ok: false; index: number; reason: string } {
  const rules: PolicyRule[] = [];
  for (const [index, line] of lines.entries()) {
    const r = parseRule(line);
    if (!r.ok) return { ok: false, index, reason: r.reason };
    rules.push(r.rule);
  }
  return { ok: true, rules: Object.freeze(rules) };
}

/**
 * Parse an IP literal for matching, unmapping IPv4-mapped IPv6 (`::ffff:a.b.c.d` → `a.b.c.d`).
 * Brackets are allowed around IPv6. Returns `undefined` for anything that is not an IP literal.
 */
export function parseIp(address: string): ipaddr.IPv4 | ipaddr.IPv6 | undefined {
  const bare = address.startsWith('[') && address.endsWith(']') ? address.slice(1, -1) : address;
  if (ipaddr.IPv4.isValidFourPartDecimal(bare)) return ipaddr.IPv4.parse(bare);
  if (!bare.includes(':') || bare.includes('%') || !ipaddr.IPv6.isValid(bare)) return undefined;
  const v6 = parseIPv6(bare);
  return v6.isIPv4MappedAddress() ? v6.toIPv4Address() : v6;
}

/** RFC 6052 well-known NAT64 prefix: the IPv4 address is the last 32 bits. */
const NAT64_WKP: Network = Object.freeze(ipaddr.parseCIDR('64:ff9b::/96')) as Network;
/** RFC 8215 local-use NAT64 prefix: where the IPv4 address sits is a local choice (RFC 6052 §2.2). */
const NAT64_LOCAL: Network = Object.freeze(ipaddr.parseCIDR('64:ff9b:1::/48')) as Network;

/**
 * A client address as the client ACL matches it: {@link parseIp} (IPv4-mapped IPv6 unmapped), and
 * an address in the NAT64 well-known prefix `64:ff9b::/96` (RFC 6052) read as the IPv4 address
 * in its last 32 bits, the client a NAT64/SIIT translator stands for. Without it a public IPv4
 * client would arrive inside Tor's `private` (`[::]/8`). Destinations are not translated
 * ({@link checkPolicy}): `[::]/8` keeps every NAT64 destination inside `private`.
 */
export function parseClientIp(address: string): ipaddr.IPv4 | ipaddr.IPv6 | undefined {
  const ip = parseIp(address);
  if (ip?.kind() === 'ipv6' && (ip as ipaddr.IPv6).match(NAT64_WKP[0] as ipaddr.IPv6, NAT64_WKP[1])) {
    const b = ip.toByteArray();
    return new ipaddr.IPv4(b.slice(12));
  }
  return ip;
}

/** True when `ip` is in the RFC 8215 local-use NAT64 prefix `64:ff9b:1::/48`. */
function inNat64Local(ip: ipaddr.IPv4 | ipaddr.IPv6): boolean {
  return ip.kind() === 'ipv6' && (ip as ipaddr.IPv6).match(NAT64_LOCAL[0] as ipaddr.IPv6, NAT64_LOCAL[1]);
}

/**
 * The client ACL's first-match walk ({@link checkPolicy} with ports ignored) on
 * {@link parseClientIp}'s address, with one difference: `private` does not match a client in the
 * RFC 8215 local-use NAT64 prefix `64:ff9b:1::/48`. The IPv4 address such a client stands for
 * cannot be read (its position is a local choice), and it is as likely public as not, so it is
 * not counted as private; a rule naming that prefix (`accept [64:ff9b:1::]/48`) still matches it.
 */
export function checkClientPolicy(rules: readonly PolicyRule[], address: string): PolicyVerdict {
  const ip = parseClientIp(address);
  if (!ip) return { action: 'reject', rule: undefined };
  const local = inNat64Local(ip);
  for (const rule of rules) {
    if (local && rule.networks === PRIVATE) continue;
    if (ruleMatchesAddress(rule, ip)) return { action: rule.action, rule };
  }
  return { action: 'accept', rule: undefined };
}

/** True when `ip` is in one of `networks` (same family only). */
function inNetworks(ip: ipaddr.IPv4 | ipaddr.IPv6, networks: readonly Network[]): boolean {
  const kind = ip.kind();
  for (const [net, bits] of networks) {
    if (net.kind() === kind && (ip as ipaddr.IPv4).match(net as ipaddr.IPv4, bits)) return true;
  }
  return false;
}

/** True when `rule` matches `ip` (ports not considered). */
export function ruleMatchesAddress(rule: PolicyRule, ip: ipaddr.IPv4 | ipaddr.IPv6): boolean {
  if (rule.family !== 0 && (rule.family === 4) !== (ip.kind() === 'ipv4')) return false;
  return rule.networks === undefined || inNetworks(ip, rule.networks);
}

/**
 * The first rule matching `address` and `port` decides; no match is `accept` (Tor: "any address
 * not matched by some entry in the policy is accepted"). Pass `port` `undefined` to ignore ports
 * (a client ACL, like Tor's SocksPolicy). `address` must be an IP literal; anything else is
 * rejected (it cannot be checked).
 */
export function checkPolicy(rules: readonly PolicyRule[], address: string | ipaddr.IPv4 | ipaddr.IPv6, port: number | undefined): PolicyVerdict {
  const ip = typeof address === 'string' ? parseIp(address) : address;
  if (!ip) return { action: 'reject', rule: undefined };
  for (const rule of rules) {
    if (port !== undefined && (port < rule.portMin || port > rule.portMax)) continue;
    if (ruleMatchesAddress(rule, ip)) return { action: rule.action, rule };
  }
  return { action: 'accept', rule: undefined };
}

/** True for addresses in Tor's `private` networks ({@link PRIVATE_NETWORKS}); IPv4-mapped IPv6 unmapped first. */
export function isPrivateAddress(address: string | ipaddr.IPv4 | ipaddr.IPv6): boolean {
  const ip = typeof address === 'string' ? parseIp(address) : address;
  return ip !== undefined && inNetworks(ip, PRIVATE);
}

/** The families a rule can match. */
function familiesOf(rule: PolicyRule): Array<4 | 6> {
  if (rule.networks === undefined) return rule.family === 0 ? [4, 6] : [rule.family];
  return [...new Set(rule.networks.map(([ip]) => (ip.kind() === 'ipv4' ? 4 : 6) as 4 | 6))];
}

/** The families of which a rule matches every address (`*`, `*4`, `*6`, a `/0`). */
function wholeFamiliesOf(rule: PolicyRule): Array<4 | 6> {
  if (rule.networks === undefined) return familiesOf(rule);
  return rule.networks.filter(([, bits]) => bits === 0).map(([ip]) => (ip.kind() === 'ipv4' ? 4 : 6));
}

/**
 * True when `rules` can reject some address (ports aside): a `reject` rule of a family that no
 * earlier `accept` of the whole family shadows. `accept` rules alone reject nobody, because an
 * unmatched address is accepted.
 */
export function canReject(rules: readonly PolicyRule[]): boolean {
  const open = new Set<4 | 6>();
  for (const rule of rules) {
    if (rule.action === 'accept') {
      for (const f of wholeFamiliesOf(rule)) open.add(f);
      if (open.size === 2) return false;
    } else if (familiesOf(rule).some((f) => !open.has(f))) return true;
  }
  return false;
}

/** An inclusive range of addresses of one family, as integers. */
type Span = readonly [bigint, bigint];

/** The addresses of a network as an integer range. */
function spanOf([ip, bits]: Network): { family: 4 | 6; span: Span } {
  const bytes = ip.toByteArray();
  let v = 0n;
  for (const b of bytes) v = (v << 8n) | BigInt(b);
  const host = BigInt(bytes.length * 8 - bits);
  const start = (v >> host) << host;
  return { family: ip.kind() === 'ipv4' ? 4 : 6, span: [start, start + (1n << host) - 1n] };
}

/** The ranges a rule matches (ports aside), by family. */
function spansOf(rule: PolicyRule): Array<{ family: 4 | 6; span: Span }> {
  if (rule.networks) return rule.networks.map(spanOf);
  const whole = (f: 4 | 6) => ({ family: f, span: [0n, (1n << (f === 4 ? 32n : 128n)) - 1n] as Span });
  return rule.family === 0 ? [whole(4), whole(6)] : [whole(rule.family)];
}

/** `set` minus `r`. */
function subtract(set: readonly Span[], [a, b]: Span): Span[] {
  const out: Span[] = [];
  for (const [s, e] of set) {
    if (e < a || s > b) out.push([s, e]);
    else {
      if (s < a) out.push([s, a - 1n]);
      if (e > b) out.push([b + 1n, e]);
    }
  }
  return out;
}

/** The lowest address in both `set` and `r`, if any. */
function firstCommon(set: readonly Span[], [a, b]: Span): bigint | undefined {
  let best: bigint | undefined;
  for (const [s, e] of set) {
    if (e < a || s > b) continue;
    const lo = s > a ? s : a;
    if (best === undefined || lo < best) best = lo;
  }
  return best;
}

function formatAddressNumber(family: 4 | 6, v: bigint): string {
  const n = family === 4 ? 4 : 16;
  const bytes: number[] = [];
  for (let i = n - 1; i >= 0; i--) bytes.push(Number((v >> BigInt(i * 8)) & 0xffn));
  const ip = ipaddr.fromByteArray(bytes);
  return family === 4 ? ip.toString() : `[${ip.toString()}]`;
}

/**
 * Does a client ACL admit anyone outside loopback and the private networks
 * ({@link PRIVATE_NETWORKS})? Ports are ignored, as for clients. Rules are walked in order over
 * the set of public addresses not yet decided: an `accept` that meets it admits the public; a
 * `reject` removes what it matches; what is left at the end is accepted (no rule matched).
 * Returns the lowest public address admitted, as an example, or `undefined` when only loopback
 * and private clients can get in. Clients are seen as {@link checkClientPolicy} sees them: NAT64
 * `64:ff9b::/96` ones as IPv4, `64:ff9b:1::/48` ones as public IPv6 that `private` does not match.
 */
export function admittedPublicAddress(rules: readonly PolicyRule[]): string | undefined {
  let open: Record<4 | 6, Span[]> = { 4: [[0n, (1n << 32n) - 1n]], 6: [[0n, (1n << 128n) - 1n]] };
  for (const n of PRIVATE) {
    const { family, span } = spanOf(n);
    open[family] = subtract(open[family], span);
  }
  // As checkClientPolicy matches: 64:ff9b::/96 clients are IPv4 ones (already in open[4], and inside
  // [::]/8 so out of open[6]); 64:ff9b:1::/48 clients are public and `private` does not match them.
  const local = spanOf(NAT64_LOCAL).span;
  open[6] = [...subtract(open[6], local), local].sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
  for (const rule of rules) {
    const spans = spansOf(rule);
    const ruleSpans = rule.networks === PRIVATE ? spans.flatMap((x) => (x.family === 6 ? subtract([x.span], local).map((span) => ({ family: 6 as const, span })) : [x])) : spans;
    for (const { family, span } of ruleSpans) {
      if (rule.action === 'accept') {
        const hit = firstCommon(open[family], span);
        if (hit !== undefined) return formatAddressNumber(family, hit);
      } else open = { ...open, [family]: subtract(open[family], span) };
    }
  }
  for (const family of [4, 6] as const) if (open[family].length > 0) return formatAddressNumber(family, open[family][0]![0]);
  return undefined;
}
