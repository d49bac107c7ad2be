/**
 * `optimistic-data`: forward bytes a client sends after its request without waiting for the
 * upstream to confirm the connection (Tor's optimistic data, socks-extensions §"Optimistic data").
 *
 * The mechanism lives in the kernel and the upstreams (EarlyData; `ConnectOptions.early`): this
 * plugin switches it on per stream by setting `conn.optimisticData`. With the socks5 upstream the
 * early bytes go out right behind the upstream request (pipelined after the method reply, which
 * Tor handles), saving one upstream round trip; with the direct upstream they leave the moment TCP
 * connects. Off: held until the upstream confirms, then flushed. Never lost while the stream
 * lives; discarded only when the connect fails.
 * @packageDocumentation
 */
import { Type, type Static } from '@sinclair/typebox';
import { Command, inject, injectable, Stage, Tokens, type Kernel, type SocksmithPlugin } from 'socksmith';

const PLUGIN_NAME = 'optimistic-data';

/** Options of `optimistic-data` (none yet; the early-data bound is `limits.earlyData`). */
export const OptimisticDataOptionsSchema = Type.Object({}, { additionalProperties: false, description: 'No options; the bound on held bytes is limits.earlyData.' });

/** Options after defaults. */
export type OptimisticDataOptions = Static<typeof OptimisticDataOptionsSchema>;

/** Switches optimistic data on for CONNECT streams. */
@injectable()
export class OptimisticDataPlugin implements SocksmithPlugin {
  static readonly meta = {
    name: PLUGIN_NAME,
    schema: OptimisticDataOptionsSchema,
    description: 'Forward early client data before the upstream confirms the connection.',
  };

  constructor(@inject(Tokens.PluginOptions) readonly options: OptimisticDataOptions) {}

  apply(kernel: Kernel): void {
    // Synchronous: a sync tap costs no promise per request.
    kernel.hooks.onRequest.tap({ name: PLUGIN_NAME, stage: Stage.CLASSIFY }, (conn, request) => {
      if (request.command === Command.CONNECT) conn.optimisticData = true;
      return undefined;
    });
  }
}

declare module 'socksmith' {
  /** This plugin's options, for `defineConfig({ plugins: { 'optimistic-data': … } })`. */
  interface PluginOptionsMap {
    'optimistic-data': OptimisticDataOptions;
  }
}

export default OptimisticDataPlugin;
