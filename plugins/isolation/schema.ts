/**
 * Options of the `isolation` plugin. Names are Tor's SocksPort isolation flags, so a torrc line
 * maps one to one (`SocksPort 9050 IsolateDestPort` → `{ IsolateDestPort: true }`).
 * @packageDocumentation
 */
import { Type, type Static } from '@sinclair/typebox';

/** JSON schema of the isolation options. */
export const IsolationOptionsSchema = Type.Object(
  {
    IsolateClientAddr: Type.Boolean({ default: true, description: "Streams from different client IP addresses never share an isolation key (Tor's default: on). Ignored for unix-socket clients." }),
    IsolateSOCKSAuth: Type.Boolean({
      default: true,
      description: 'Streams with different SOCKS credentials (SOCKS5 username/password, SOCKS4 user id) never share a key; empty fields count as none. Also makes the proxy ask for credentials (method 02) when a client offers them (Tor\'s default: on).',
    }),
    IsolateClientProtocol: Type.Boolean({ default: false, description: 'Separate SOCKS4/4a, SOCKS5 and HTTP CONNECT clients (default off).' }),
    IsolateDestPort: Type.Boolean({ default: false, description: 'Separate streams to different destination ports (default off).' }),
    IsolateDestAddr: Type.Boolean({ default: false, description: 'Separate streams to different destination addresses, compared in the form the kernel normalised them to (UTS-46: case and fullwidth forms folded) (default off).' }),
    SessionGroup: Type.Optional(
      Type.Integer({ minimum: 0, description: 'Streams from listeners with the same SessionGroup may share keys; by default every listener is its own group.' }),
    ),
    PreferSOCKSNoAuth: Type.Boolean({
      default: false,
      description: 'When a SOCKS5 client offers both 00 and 02, choose 00 (no credentials asked). Implied when IsolateSOCKSAuth is off (Tor).',
    }),
    upstreamCredentials: Type.Union([Type.Literal('auto'), Type.Boolean()], {
      default: 'auto',
      description:
        "Present a username/password derived from the key to a socks5 upstream, so an upstream Tor puts different keys on different circuits. 'auto': only when the upstream has no configured credentials; true: always; false: never.",
    }),
    secret: Type.Optional(
      Type.String({
        minLength: 16,
        description:
          'Key for the keyed hash that derives isolation keys and upstream credentials. Default: random per process (with workers: one for all workers, made by the primary). Set it (e.g. from an environment variable) to get the same keys across restarts and instances.',
      }),
    ),
  },
  { additionalProperties: false, description: "Tor's stream isolation (SocksPort isolation flags)." },
);

/** Isolation options after defaults. */
export type IsolationOptions = Static<typeof IsolationOptionsSchema>;
