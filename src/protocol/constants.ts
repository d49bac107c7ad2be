/**
 * Wire constants for SOCKS4, SOCKS4A, SOCKS5 (RFC 1928), RFC 1929 and Tor's extensions.
 *
 * Every value cites where it is defined. These are plain `as const` objects, not TypeScript
 * enums: unknown values that arrive on the wire are ordinary numbers that reach policy code.
 * @packageDocumentation
 */

/** Protocol version bytes (the first byte of every client message). */
export const Version = {
  /** SOCKS4 and SOCKS4A requests start with 0x04 (SOCKS4 protocol document). */
  SOCKS4: 0x04,
  /** SOCKS5 greetings and requests start with 0x05 (RFC 1928 §3, §4). */
  SOCKS5: 0x05,
  /** RFC 1929 username/password sub-negotiation version (RFC 1929 §2). */
  USERPASS: 0x01,
  /** SOCKS4 replies carry version byte 0x00 (SOCKS4 protocol document, "VN is the version of the reply code"). */
  SOCKS4_REPLY: 0x00,
} as const;

/** Request commands (CMD field). */
export const Command = {
  /** CONNECT (RFC 1928 §4; SOCKS4 CD = 1). */
  CONNECT: 0x01,
  /** BIND (RFC 1928 §4; SOCKS4 CD = 2). Answered 07 / 5B unless the `bind` plugin is on. */
  BIND: 0x02,
  /** UDP ASSOCIATE (RFC 1928 §4). Answered 07 unless the `udp-associate` plugin (off by default) owns it. */
  UDP_ASSOCIATE: 0x03,
  /** Tor RESOLVE: forward name lookup (tor-socks-extensions "Name lookup"). */
  RESOLVE: 0xf0,
  /** Tor RESOLVE_PTR: reverse lookup, SOCKS5 only (tor-socks-extensions "Name lookup"). */
  RESOLVE_PTR: 0xf1,
  /** Tor CONNECT_DIR, retired in Tor (tor-socks-extensions "Other command extensions"). Answered as unsupported. */
  CONNECT_DIR: 0xf2,
} as const;

/** SOCKS5 address types (ATYP field, RFC 1928 §5). */
export const AddressType = {
  /** IPv4 address, 4 bytes (RFC 1928 §5 X'01'). */
  IPV4: 0x01,
  /** Fully qualified domain name: 1 length byte, then the name (RFC 1928 §5 X'03'). */
  DOMAIN: 0x03,
  /** IPv6 address, 16 bytes (RFC 1928 §5 X'04'). */
  IPV6: 0x04,
} as const;

/** SOCKS5 authentication methods (RFC 1928 §3). */
export const Method = {
  /** NO AUTHENTICATION REQUIRED (RFC 1928 §3 X'00'). */
  NO_AUTH: 0x00,
  /** GSSAPI (RFC 1928 §3 X'01'; RFC 1961). Offered by curl, never chosen by socksmith. */
  GSSAPI: 0x01,
  /** USERNAME/PASSWORD (RFC 1928 §3 X'02'; RFC 1929). */
  USERPASS: 0x02,
  /** NO ACCEPTABLE METHODS (RFC 1928 §3 X'FF'); the client must close. */
  NO_ACCEPTABLE: 0xff,
} as const;

/** SOCKS5 reply codes (REP field, RFC 1928 §6) and Tor's extended codes (tor-socks-extensions "Extended error codes"). */
export const Rep = {
  /** succeeded (RFC 1928 §6 X'00'). */
  SUCCEEDED: 0x00,
  /** general SOCKS server failure (RFC 1928 §6 X'01'). */
  GENERAL_FAILURE: 0x01,
  /** connection not allowed by ruleset (RFC 1928 §6 X'02'). */
  NOT_ALLOWED: 0x02,
  /** Network unreachable (RFC 1928 §6 X'03'). */
  NETWORK_UNREACHABLE: 0x03,
  /** Host unreachable (RFC 1928 §6 X'04'). Also a failed name lookup. */
  HOST_UNREACHABLE: 0x04,
  /** Connection refused (RFC 1928 §6 X'05'). */
  CONNECTION_REFUSED: 0x05,
  /** TTL expired (RFC 1928 §6 X'06'); used for timeouts, as Tor does. */
  TTL_EXPIRED: 0x06,
  /** Command not supported (RFC 1928 §6 X'07'). */
  COMMAND_NOT_SUPPORTED: 0x07,
  /** Address type not supported (RFC 1928 §6 X'08'). */
  ADDRESS_TYPE_NOT_SUPPORTED: 0x08,
  /** Onion Service Descriptor Can Not be Found (Tor extended error X'F0'). */
  ONION_DESC_NOT_FOUND: 0xf0,
  /** Onion Service Descriptor Is Invalid (Tor extended error X'F1'). */
  ONION_DESC_INVALID: 0xf1,
  /** Onion Service Introduction Failed (Tor extended error X'F2'). */
  ONION_INTRO_FAILED: 0xf2,
  /** Onion Service Rendezvous Failed (Tor extended error X'F3'). */
  ONION_REND_FAILED: 0xf3,
  /** Onion Service Missing Client Authorization (Tor extended error X'F4'). */
  ONION_MISSING_CLIENT_AUTH: 0xf4,
  /** Onion Service Wrong Client Authorization (Tor extended error X'F5'). */
  ONION_BAD_CLIENT_AUTH: 0xf5,
  /** Onion Service Invalid Address (Tor extended error X'F6'). */
  ONION_BAD_ADDRESS: 0xf6,
  /** Onion Service Introduction Timed Out (Tor extended error X'F7'). */
  ONION_INTRO_TIMEDOUT: 0xf7,
} as const;

/**
 * How Tor's extended codes collapse to RFC 1928 codes when extended errors are off (as Tor does
 * without the ExtendedErrors flag): 04 where the honest meaning is "cannot reach it", else 01.
 */
export const EXTENDED_TO_RFC1928: Readonly<Record<number, number>> = Object.freeze({
  [Rep.ONION_DESC_NOT_FOUND]: Rep.HOST_UNREACHABLE,
  [Rep.ONION_DESC_INVALID]: Rep.GENERAL_FAILURE,
  [Rep.ONION_INTRO_FAILED]: Rep.HOST_UNREACHABLE,
  [Rep.ONION_REND_FAILED]: Rep.HOST_UNREACHABLE,
  [Rep.ONION_MISSING_CLIENT_AUTH]: Rep.GENERAL_FAILURE,
  [Rep.ONION_BAD_CLIENT_AUTH]: Rep.GENERAL_FAILURE,
  [Rep.ONION_BAD_ADDRESS]: Rep.GENERAL_FAILURE,
  [Rep.ONION_INTRO_TIMEDOUT]: Rep.HOST_UNREACHABLE,
});

/** An RFC 1928 reply code for any REP: F0–F7 collapsed per {@link EXTENDED_TO_RFC1928}, other unassigned values to 01. */
export function collapseRep(rep: number): number {
  if (rep <= Rep.ADDRESS_TYPE_NOT_SUPPORTED) return rep;
  return EXTENDED_TO_RFC1928[rep] ?? Rep.GENERAL_FAILURE;
}

/** SOCKS4 reply codes (CD field of the reply, SOCKS4 protocol document). */
export const Socks4Rep = {
  /** request granted (90). */
  GRANTED: 0x5a,
  /** request rejected or failed (91). */
  REJECTED: 0x5b,
  /** rejected because the SOCKS server cannot connect to identd on the client (92). Never sent by socksmith. */
  NO_IDENTD: 0x5c,
  /** rejected because identd reported a different user-id (93). Never sent by socksmith. */
  IDENTD_MISMATCH: 0x5d,
} as const;

/** RFC 1929 status byte: 0x00 is success, anything else is failure (RFC 1929 §2). */
export const AuthStatus = {
  /** success (RFC 1929 §2). */
  SUCCESS: 0x00,
  /** failure; the server must close the connection (RFC 1929 §2). */
  FAILURE: 0x01,
} as const;

/**
 * Limits the codec enforces. They are protocol bounds, so a hostile client can never make the
 * parser buffer more than a few hundred bytes.
 */
export const Limits = {
  /** Longest SOCKS4 USERID accepted, without its NUL (socksmith's limit; Tor's 512-byte window allows ~503). */
  SOCKS4_USERID_MAX: 255,
  /** Longest SOCKS4A hostname accepted, without its NUL (same as SOCKS5's one-byte length). */
  SOCKS4A_HOSTNAME_MAX: 255,
  /** Longest SOCKS5 greeting: 2 + 255 methods. */
  SOCKS5_GREETING_MAX: 257,
  /** Longest RFC 1929 message: 3 + 255 + 255. */
  USERPASS_MAX: 513,
  /** Longest SOCKS5 request: 4 + 1 + 255 + 2. */
  SOCKS5_REQUEST_MAX: 262,
  /** Longest SOCKS4A request: 8 + 256 + 256. */
  SOCKS4_REQUEST_MAX: 520,
} as const;

/** Names for all 256 byte values of a constants object (unknown ones as `0xNN`), built once. */
function nameTable(constants: Readonly<Record<string, number>>): readonly string[] {
  const table = Array.from({ length: 256 }, (_, i) => `0x${i.toString(16).padStart(2, '0')}`);
  for (const [name, value] of Object.entries(constants)) table[value] = name;
  return table;
}
const REP_NAMES = nameTable(Rep);
const COMMAND_NAMES = nameTable(Command);

/** Name of a reply code, for logs and docs (`0x05` → `CONNECTION_REFUSED`). Unknown codes give `0xNN`. */
export function repName(code: number): string {
  return REP_NAMES[code & 0xff]!;
}

/** Name of a command (`0xf0` → `RESOLVE`). Unknown commands give `0xNN`. */
export function commandName(code: number): string {
  return COMMAND_NAMES[code & 0xff]!;
}
