/**
 * `resolve-ptr`: Tor's RESOLVE_PTR command (F1), SOCKS5 only: reverse lookup of an IPv4 or IPv6
 * target (IPv6 too, as Tor accepts it). Reply `05 00 00 03 LEN NAME 00 00`; failure
 * `05 04 00 01 00*6`; a hostname target gets 08. The kernel closes after the reply. SOCKS4 F1 is
 * left to the kernel (5B), as in Tor.
 * @packageDocumentation
 */
import { Type, type Static } from '@sinclair/typebox';
import {
  classifyHost,
  Command,
  isStream,
  errorMessage,
  inject,
  injectable,
  Rep,
  Stage,
  Tokens,
  type ConnectionContext,
  type PluginApi,
  type Reply,
  type SocksAddress,
  type SocksmithPlugin,
} from 'socksmith';
import { ModeSchema, useUpstream } from './shared.js';

const PLUGIN_NAME = 'resolve-ptr';

/** JSON schema of the resolve-ptr options. */
export const ResolvePtrOptionsSchema = Type.Object({ mode: ModeSchema }, { additionalProperties: false, description: "Tor's RESOLVE_PTR (F1) command." });

/** Options after defaults. */
export type ResolvePtrOptions = Static<typeof ResolvePtrOptionsSchema>;

const FAILED: Reply = Object.freeze({ rep: Rep.HOST_UNREACHABLE });

function nameReply(name: string): Reply {
  // A DNS name is at most 253 characters; anything that cannot fit the one-byte length fails.
  if (Buffer.byteLength(name, 'utf8') > 255 || name.length === 0) return FAILED;
  return { rep: Rep.SUCCEEDED, bound: { kind: 'domain', host: name, port: 0 } };
}

/** Tor's RESOLVE_PTR command. */
@injectable()
export class ResolvePtrPlugin implements SocksmithPlugin {
  static readonly meta = {
    name: PLUGIN_NAME,
    schema: ResolvePtrOptionsSchema,
    description: "Tor's RESOLVE_PTR (F1): reverse lookups over SOCKS5.",
  };

  constructor(@inject(Tokens.PluginOptions) private readonly options: ResolvePtrOptions) {}

  apply(api: PluginApi): void {
    // A callback tap: requests that are not RESOLVE_PTR (nearly all) pass on at once, with no promise.
    api.hooks.onRequest.tapAsync({ name: PLUGIN_NAME, stage: Stage.ANSWER }, (conn, request, done) => {
      if (request.command !== Command.RESOLVE_PTR || request.version !== 5) return done();
      const dest = conn.destination ?? request.destination;
      const target = classifyHost(dest.host, 0);
      if (target.kind === 'domain') return done(null, { rep: Rep.ADDRESS_TYPE_NOT_SUPPORTED });
      this.reverse(api, conn, target).then((reply) => done(null, reply), done);
    });
  }

  private async reverse(api: PluginApi, conn: ConnectionContext, target: SocksAddress): Promise<Reply> {
    try {
      if (useUpstream(api, this.options.mode)) {
        if (!api.dispatch.canQuery) return { rep: Rep.COMMAND_NOT_SUPPORTED };
        // Through the upstream dispatch, so upstream interceptors see the F1 too.
        const result = await api.dispatch.run(target, conn, { command: Command.RESOLVE_PTR, signal: api.lookupSignal(conn), early: undefined, held: undefined });
        if (isStream(result)) return FAILED;
        const reply = result;
        if (reply.rep !== Rep.SUCCEEDED) return { rep: reply.rep };
        return reply.bound?.kind === 'domain' ? nameReply(reply.bound.host) : FAILED;
      }
      const names = await api.resolution.reverse(target.host, conn);
      return nameReply(names[0] ?? '');
    } catch (err) {
      conn.log.debug({ err: errorMessage(err) }, 'RESOLVE_PTR failed');
      return FAILED;
    }
  }
}

declare module 'socksmith' {
  /** This plugin's options, for `defineConfig({ plugins: { 'resolve-ptr': … } })`. */
  interface PluginOptionsMap {
    'resolve-ptr': ResolvePtrOptions;
  }
}

export default ResolvePtrPlugin;
