/**
 * `extended-errors`: Tor's extended SOCKS5 reply codes F0–F7 (proposal 304, ExtendedErrors).
 *
 * On: codes F0–F7 an upstream returns (Tor with ExtendedErrors) reach the client unchanged; a
 * `.onion` name that is not a valid v3 address gets F6 at once, contacting nothing; a valid one
 * with the direct upstream (which can never reach it, and never sends it to DNS) gets F0.
 * How: for CONNECT it sets the stream key `WideReplyCodes` in `onRequest` (stage POLICY, where
 * it always ran); the kernel narrows reply codes above 08 after `onReply` unless that key is true.
 * Off (the default): nothing sets it, so the kernel narrows F0–F7 to RFC 1928 codes
 * (`collapseRep`, `EXTENDED_TO_RFC1928`), and a valid `.onion` with the direct upstream gets 04.
 * The v3 address check itself is the kernel's (issue #10): an invalid `.onion` CONNECT never
 * reaches any upstream, plugin on or off; this plugin only decides that the client sees F6
 * rather than 01.
 * Extended codes are never used in RESOLVE/RESOLVE_PTR replies (as in Tor).
 * @packageDocumentation
 */
import { Type, type Static } from '@sinclair/typebox';
import {
  Command,
  inject,
  injectable,
  isOnionName,
  onionProblem,
  Rep,
  Stage,
  Tokens,
  WideReplyCodes,
  type PluginApi,
  type SocksmithPlugin,
} from 'socksmith';

const PLUGIN_NAME = 'extended-errors';

/** JSON schema of the extended-errors options. */
export const ExtendedErrorsOptionsSchema = Type.Object(
  {
    validateOnion: Type.Boolean({ default: true, description: 'Answer F6 for a .onion name that is not a valid v3 address during onRequest, before later plugins see the request. false leaves the answer to the kernel, which refuses such names before any connect in any case (F6 with this plugin on).' }),
  },
  { additionalProperties: false, description: "Tor's extended SOCKS5 error codes F0–F7." },
);

/** Options after defaults. */
export type ExtendedErrorsOptions = Static<typeof ExtendedErrorsOptionsSchema>;

/** Lets F0–F7 through and answers bad onion addresses with F6. */
@injectable()
export class ExtendedErrorsPlugin implements SocksmithPlugin {
  static readonly meta = {
    name: PLUGIN_NAME,
    schema: ExtendedErrorsOptionsSchema,
    description: "Tor's extended reply codes F0–F7 and F6 for invalid .onion addresses.",
  };

  constructor(@inject(Tokens.PluginOptions) private readonly options: ExtendedErrorsOptions) {}

  apply(api: PluginApi): void {
    const direct = api.config.upstream.type === 'direct';
    // Synchronous decision: a sync tap costs no promise per request.
    api.hooks.onRequest.tap({ name: PLUGIN_NAME, stage: Stage.POLICY }, (conn, request) => {
      if (request.command !== Command.CONNECT) return undefined;
      conn.set(WideReplyCodes, true);
      const dest = conn.destination ?? request.destination;
      if (dest.kind !== 'domain' || !isOnionName(dest.host)) return undefined;
      if (this.options.validateOnion) {
        const problem = onionProblem(dest.host);
        if (problem) {
          conn.log.debug({ problem }, 'invalid .onion address');
          return { rep: Rep.ONION_BAD_ADDRESS };
        }
      }
      // The direct upstream can never reach an onion service: "descriptor cannot be found".
      if (direct) return { rep: Rep.ONION_DESC_NOT_FOUND };
      return undefined;
    });
  }
}

declare module 'socksmith' {
  /** This plugin's options, for `defineConfig({ plugins: { 'extended-errors': … } })`. */
  interface PluginOptionsMap {
    'extended-errors': ExtendedErrorsOptions;
  }
}

export default ExtendedErrorsPlugin;
