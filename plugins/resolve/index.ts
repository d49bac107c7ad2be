/**
 * `resolve`: Tor's RESOLVE command (F0) over SOCKS4, SOCKS4A and SOCKS5.
 *
 * - IP literals (also `[v6]` and v6 without brackets in a name field) are answered locally, no DNS.
 * - `.onion` names fail at once (never DNS), as Tor does.
 * - Names are looked up at the upstream when it can (socks5: forwarded as F0, no local DNS leak;
 *   option `mode`), else through the kernel's `onResolve` and resolver (cache partitioned by
 *   isolation key).
 * - Replies: SOCKS5 `05 00 00 01 A B C D 00 00` or ATYP 04; SOCKS4 `00 5a 00 00 A B C D`. Failure:
 *   SOCKS5 `05 04 00 01 00*6` (well-formed, unlike Tor's ATYP 00), SOCKS4 `00 5b 00*6`. The kernel
 *   closes the connection after the reply (tor-resolve waits for the close).
 * @packageDocumentation
 */
import {
  classifyHost,
  Command,
  isStream,
  errorMessage,
  inject,
  injectable,
  isOnionName,
  Rep,
  repForError,
  Stage,
  Tokens,
  type ConnectionContext,
  type PluginApi,
  type Reply,
  type ResolvedAddress,
  type SocksAddress,
  type SocksmithPlugin,
  type SocksRequest,
} from 'socksmith';
import { ResolveOptionsSchema, type ResolveOptions } from './schema.js';

export type { ResolveOptions } from './schema.js';
import { useUpstream } from './shared.js';

const PLUGIN_NAME = 'resolve';

/** The failure reply: `05 04 00 01 00*6` / `00 5b 00*6`. */
const FAILED: Reply = Object.freeze({ rep: Rep.HOST_UNREACHABLE });

/** Pick the answer: SOCKS4 gets IPv4 only; otherwise by family options and PreferIPv6. */
export function chooseAddress(addrs: readonly ResolvedAddress[], version: 4 | 5, o: ResolveOptions): ResolvedAddress | undefined {
  const allowed = addrs.filter((a) => (a.family === 4 ? o.IPv4Traffic : o.IPv6Traffic && version === 5));
  if (o.PreferIPv6) return allowed.find((a) => a.family === 6) ?? allowed[0];
  return allowed.find((a) => a.family === 4) ?? allowed[0];
}

function answer(a: ResolvedAddress): Reply {
  return { rep: Rep.SUCCEEDED, bound: { kind: a.family === 6 ? 'ipv6' : 'ipv4', host: a.address, port: 0 } };
}

/** Tor's RESOLVE command. */
@injectable()
export class ResolvePlugin implements SocksmithPlugin {
  static readonly meta = {
    name: PLUGIN_NAME,
    schema: ResolveOptionsSchema,
    description: "Tor's RESOLVE (F0): forward name lookups over SOCKS4, SOCKS4A and SOCKS5.",
  };

  constructor(@inject(Tokens.PluginOptions) private readonly options: ResolveOptions) {}

  apply(api: PluginApi): void {
    // A callback tap: requests that are not RESOLVE (nearly all) pass on at once, with no promise.
    api.hooks.onRequest.tapAsync({ name: PLUGIN_NAME, stage: Stage.ANSWER }, (conn, request, done) => {
      if (request.command !== Command.RESOLVE) return done();
      this.resolve(api, conn, request).then((reply) => done(null, reply), done);
    });
  }

  private async resolve(api: PluginApi, conn: ConnectionContext, request: SocksRequest): Promise<Reply> {
    const dest = conn.destination ?? request.destination;
    const literal = classifyHost(dest.host, 0);
    if (literal.kind !== 'domain') {
      const a: ResolvedAddress = { address: literal.host, family: literal.kind === 'ipv6' ? 6 : 4 };
      return chooseAddress([a], request.version, this.options) ? answer(a) : FAILED;
    }
    if (isOnionName(dest.host)) {
      conn.log.debug('RESOLVE of a .onion name refused (never sent to DNS)');
      return FAILED;
    }
    try {
      if (useUpstream(api, this.options.mode)) return await this.viaUpstream(api, conn, request.version, dest);
      const family = this.options.IPv4Traffic && this.options.IPv6Traffic && request.version === 5 ? 0 : this.options.IPv6Traffic && request.version === 5 ? 6 : 4;
      const addrs = await api.resolution.lookup(dest.host, family, conn);
      const a = chooseAddress(addrs, request.version, this.options);
      return a ? answer(a) : FAILED;
    } catch (err) {
      conn.log.debug({ err: errorMessage(err) }, 'RESOLVE failed');
      const rep = repForError(err);
      return rep === Rep.GENERAL_FAILURE || rep === Rep.SUCCEEDED ? FAILED : { rep };
    }
  }

  private async viaUpstream(api: PluginApi, conn: ConnectionContext, version: 4 | 5, dest: SocksAddress): Promise<Reply> {
    if (!api.dispatch.canQuery) return { rep: Rep.COMMAND_NOT_SUPPORTED };
    // Through the upstream dispatch, so upstream interceptors see the F0 too.
    const result = await api.dispatch.run({ ...dest, port: 0 }, conn, { command: Command.RESOLVE, signal: api.lookupSignal(conn), early: undefined, held: undefined });
    if (isStream(result)) return FAILED;
    const reply = result;
    if (reply.rep !== Rep.SUCCEEDED) return { rep: reply.rep };
    const b = reply.bound;
    if (!b || b.kind === 'domain') return FAILED;
    const a: ResolvedAddress = { address: b.host, family: b.kind === 'ipv6' ? 6 : 4 };
    return chooseAddress([a], version, this.options) ? answer(a) : FAILED;
  }
}

declare module 'socksmith' {
  /** This plugin's options, for `defineConfig({ plugins: { resolve: … } })`. */
  interface PluginOptionsMap {
    resolve: ResolveOptions;
  }
}

export default ResolvePlugin;
