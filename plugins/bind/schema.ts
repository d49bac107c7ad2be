/**
 * Options of the `bind` plugin (SOCKS4 and SOCKS5 BIND).
 * @packageDocumentation
 */
import { Type, type Static } from '@sinclair/typebox';

/** JSON schema of the bind options. */
export const BindOptionsSchema = Type.Object(
  {
    address: Type.Optional(
      Type.String({
        minLength: 1,
        description:
          "IP address the BIND listener binds to (port 0: the system picks one). Default: the address the client's control connection reached, so a proxy listening on loopback opens BIND ports on loopback only. A wildcard ('0.0.0.0', '::') listens on every address and replies with the address the client reached.",
      }),
    ),
    checkPeer: Type.Union([Type.Literal('address'), Type.Literal('none')], {
      default: 'address',
      description:
        "'address' (RFC 1928 §4, the SOCKS4 document): the incoming connection must come from the request's DST.ADDR (its port is not checked); DST.ADDR 0.0.0.0 or :: admits any address, a name admits the addresses it resolves to. A connection from another address is closed and the listener keeps waiting. 'none': the first connection is taken, whatever its address.",
    }),
    acceptTimeout: Type.Integer({
      minimum: 1,
      maximum: 3_600_000,
      default: 60_000,
      description: 'Milliseconds to wait for the incoming connection (direct) or for the upstream\'s second reply (forwarded) after the first reply; then the second reply is 06 (TTL expired; SOCKS4: 5B) and the listener closes.',
    }),
    upstream: Type.Union([Type.Literal('forward'), Type.Literal('refuse')], {
      default: 'forward',
      description:
        "With an upstream other than 'direct': 'forward' sends the BIND to the upstream (its two replies reach the client; never a local listener); 'refuse' answers 07 (SOCKS4: 5B).",
    }),
  },
  { additionalProperties: false, description: 'SOCKS4 and SOCKS5 BIND (RFC 1928 §4): one incoming connection relayed to the client.' },
);

/** Options after defaults. */
export type BindOptions = Static<typeof BindOptionsSchema>;
