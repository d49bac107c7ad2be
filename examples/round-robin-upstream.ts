/**
 * A custom upstream: spread streams over several SOCKS5 servers in turn (round-robin).
 *
 * Load it with `upstream: { type: 'module', module: './round-robin-upstream.ts', options }`
 * (see proxy.config.round-robin.ts). Each member is a built-in `Socks5Upstream`, so hostnames go
 * on as names (no local DNS) and every member's reply code reaches the client unchanged.
 */
import {
  type ConnectOptions,
  type ConnectionContext,
  type Reply,
  type SocksAddress,
  Socks5Upstream,
  Tokens,
  type Upstream,
  type UpstreamStream,
  inject,
  injectable,
} from 'socksmith';

/** One member of the rotation. */
export interface RoundRobinMember {
  readonly host: string;
  readonly port: number;
  readonly username?: string;
  readonly password?: string;
}

/** Options, checked against `meta.schema` before the constructor runs. */
export interface RoundRobinOptions {
  readonly upstreams: readonly RoundRobinMember[];
}

@injectable()
export default class RoundRobinUpstream implements Upstream {
  static readonly meta = {
    name: 'round-robin',
    schema: {
      type: 'object',
      additionalProperties: false,
      required: ['upstreams'],
      properties: {
        upstreams: {
          type: 'array',
          minItems: 1,
          description: 'SOCKS5 servers to use in turn, in this order.',
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['host', 'port'],
            properties: {
              host: { type: 'string', minLength: 1, description: 'Host of this SOCKS5 server.' },
              port: { type: 'integer', minimum: 1, maximum: 65535, description: 'Port of this SOCKS5 server.' },
              username: { type: 'string', maxLength: 255, description: 'RFC 1929 username for this server.' },
              password: { type: 'string', maxLength: 255, description: 'RFC 1929 password for this server.' },
            },
          },
        },
      },
    },
  };

  readonly name: string;
  private readonly members: readonly Socks5Upstream[];
  private turn = 0;

  constructor(@inject(Tokens.PluginOptions) options: RoundRobinOptions) {
    this.members = options.upstreams.map((u) => Socks5Upstream.create(u));
    this.name = `round-robin [${this.members.map((m) => m.name).join(', ')}]`;
  }

  /** The member whose turn it is; advances the rotation. */
  private pick(): Socks5Upstream {
    const member = this.members[this.turn]!;
    this.turn = (this.turn + 1) % this.members.length;
    return member;
  }

  connect(destination: SocksAddress, conn: ConnectionContext, options: ConnectOptions): Promise<UpstreamStream> {
    const member = this.pick();
    conn.log.debug({ upstream: member.name }, 'round-robin: connecting');
    return member.connect(destination, conn, options);
  }

  /** RESOLVE / RESOLVE_PTR go to a member too, so lookups never happen locally. */
  query(command: number, destination: SocksAddress, conn: ConnectionContext, options: Pick<ConnectOptions, 'signal'>): Promise<Reply> {
    return this.pick().query(command, destination, conn, options);
  }
}
