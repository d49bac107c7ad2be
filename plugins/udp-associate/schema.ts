/**
 * Options of the `udp-associate` plugin (SOCKS5 UDP ASSOCIATE, RFC 1928 §7).
 * @packageDocumentation
 */
import { Type, type Static } from '@sinclair/typebox';

/** JSON schema of the udp-associate options. */
export const UdpAssociateOptionsSchema = Type.Object(
  {
    upstream: Type.Union([Type.Literal('forward'), Type.Literal('refuse')], {
      default: 'forward',
      description:
        'With an upstream other than direct: "forward" relays through the upstream\'s own UDP ASSOCIATE (names travel to the upstream, never resolved here); "refuse" answers 07. Never sends a datagram directly when the upstream is not direct.',
    }),
    idleTimeout: Type.Integer({ minimum: 1, default: 120_000, description: 'Milliseconds without a relayed datagram (either way) after which the association ends (its control connection is closed).' }),
    maxAssociationsPerClient: Type.Integer({ minimum: 1, default: 16, description: 'Open associations per client (an IPv4 address, an IPv6 /64: the kernel\'s client key). Past it: REP 01.' }),
    maxPending: Type.Integer({ minimum: 1, default: 64, description: 'Datagrams per association waiting for a name lookup, a check or the kernel to take them. Past it a datagram is dropped (counted as busy).' }),
    maxBufferedBytes: Type.Integer({ minimum: 1, default: 1_048_576, description: 'Bytes of those waiting datagrams per association. Past it a datagram is dropped (counted as busy).' }),
    replies: Type.Union([Type.Literal('contacted'), Type.Literal('any')], {
      default: 'contacted',
      description:
        '"contacted": a datagram reaches the client only from an address and port this association sent to (a port-restricted cone). "any": from any source (full cone: lets anyone who learns the relay port send to the client).',
    }),
    maxPeers: Type.Integer({ minimum: 1, default: 256, description: 'Destinations (address and port) one association remembers for "contacted"; past it the one used longest ago is forgotten.' }),
  },
  { additionalProperties: false, description: 'SOCKS5 UDP ASSOCIATE (RFC 1928 §7), off by default.' },
);

/** Options after defaults. */
export type UdpAssociateOptions = Static<typeof UdpAssociateOptionsSchema>;
