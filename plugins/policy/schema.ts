/**
 * Options of the `policy` plugin. `clients` and `destinations` take Tor's policy syntax; the
 * other keys are Tor's SocksPort flags and client options, spelled as Tor spells them, so a torrc
 * line maps one to one (`SocksPort 9050 SafeSocks NoOnionTraffic` → `{ SafeSocks: true,
 * NoOnionTraffic: true }`). Rule strings are parsed in the plugin's constructor, so a bad one is a
 * config error naming `plugins.policy.destinations.N` (also under `--check`).
 * @packageDocumentation
 */
import { Type, type Static } from '@sinclair/typebox';

const Port = Type.Integer({ minimum: 1, maximum: 65535, description: 'A TCP port.' });

/** JSON schema of the policy options. */
export const PolicyOptionsSchema = Type.Object(
  {
    clients: Type.Array(Type.String({ minLength: 1, description: "One rule: 'accept|reject ADDR[/MASK]'." }), {
      default: [],
      description:
        "Client ACL, like Tor's SocksPolicy: 'accept|reject ADDR[/MASK]' rules (ADDR: *, *4, *6, private, IPv4, [IPv6]; port specifiers are ignored). First match wins; a client no rule matches is accepted. Refused clients are closed before any byte.",
    }),
    destinations: Type.Array(Type.String({ minLength: 1, description: "One rule: 'accept|reject ADDR[/MASK][:PORT[-PORT]]'." }), {
      default: [],
      description:
        "Destination policy in Tor's exit-policy syntax: 'accept|reject ADDR[/MASK][:PORT[-PORT]]' (ADDR: *, *4, *6, private, IPv4, [IPv6]). First match wins; unmatched destinations are accepted; no rules allows everything. Refusals get REP 02.",
    }),
    SafeSocks: Type.Boolean({
      default: false,
      description: 'Refuse requests that carry an IP address instead of a name (the client resolved it itself, which may leak DNS): SOCKS4 always (5B), SOCKS5 ATYP 01/04 with REP 02; RESOLVE_PTR is exempt.',
    }),
    TestSocks: Type.Boolean({ default: false, description: 'Log at info, for every request, whether it was safe (a name) or unsafe (an IP address).' }),
    NoDNSRequest: Type.Boolean({ default: false, description: 'Refuse requests for hostnames (REP 02); only IP addresses and .onion names are allowed.' }),
    NoOnionTraffic: Type.Boolean({ default: false, description: 'Refuse requests for .onion names (REP 02).' }),
    OnionTrafficOnly: Type.Boolean({ default: false, description: 'Refuse everything except .onion names (REP 02). Implies NoDNSRequest, NoIPv4Traffic and IPv6Traffic false.' }),
    NoIPv4Traffic: Type.Boolean({
      default: false,
      description: 'Refuse IPv4 address requests (REP 02); names resolved by the direct upstream use only their IPv6 addresses.',
    }),
    IPv6Traffic: Type.Boolean({
      default: true,
      description: 'Allow IPv6: false refuses IPv6 address requests (REP 02), and names resolved by the direct upstream use only their IPv4 addresses.',
    }),
    PreferIPv6: Type.Boolean({ default: false, description: 'For names resolved by the direct upstream, try IPv6 addresses before IPv4 ones.' }),
    RejectPlaintextPorts: Type.Array(Port, { default: [], description: 'Refuse CONNECT to these destination ports (REP 02).' }),
    WarnPlaintextPorts: Type.Array(Port, {
      default: [23, 109, 110, 143],
      description: 'Log a warning for CONNECT to these destination ports, commonly used for unencrypted protocols (telnet, POP2, POP3, IMAP).',
    }),
    AllowNonRFC953Hostnames: Type.Boolean({
      default: false,
      description: 'Allow hostnames with characters outside [A-Za-z0-9._-]. Default false: such names are refused with REP 01, as Tor does.',
    }),
    ClientDNSRejectInternalAddresses: Type.Boolean({
      default: false,
      description:
        'Drop resolved addresses in private networks (the `private` list); a name left with none fails with REP 04, and RESOLVE_PTR of a private address fails with 04. Tor defaults to true; socksmith to false.',
    }),
  },
  { additionalProperties: false, description: "Client ACL, destination policy, and Tor's SocksPort policy flags." },
);

/** Policy options after defaults. */
export type PolicyOptions = Static<typeof PolicyOptionsSchema>;
