/**
 * `optimistic-data`: forward bytes a client sends after its request without waiting for the
 * upstream to confirm the connection (Tor's optimistic data, socks-extensions §"Optimistic data").
 *
 * The kernel always holds the bytes a client sends behind its request (`EarlyData`, bounded by
 * `limits.earlyData`) and hands them to the upstream dispatch as `options.held`. This plugin is an
 * interceptor on that dispatch: for CONNECT it passes them on as `options.early`, which lets the
 * upstream send them before it confirms (`early.attach(socket)`). With the socks5 upstream the
 * early bytes go out in the same write as the upstream request when it is configured with
 * `pipelining: true` (after the method and RFC 1929 replies), saving one upstream round trip;
 * with the direct upstream they leave the moment TCP connects. Off: held until the upstream confirms, then flushed. Never lost while the stream
 * lives; discarded only when the connect fails.
 * @packageDocumentation
 */
import { Type, type Static } from '@sinclair/typebox';
import { Command, deriveDispatchOptions, inject, injectable, Stage, Tokens, type Dispatch, type PluginApi, type SocksmithPlugin } from 'socksmith';

const PLUGIN_NAME = 'optimistic-data';

/** Options of `optimistic-data` (none yet; the early-data bound is `limits.earlyData`). */
export const OptimisticDataOptionsSchema = Type.Object({}, { additionalProperties: false, description: 'No options; the bound on held bytes is limits.earlyData.' });

/** Options after defaults. */
export type OptimisticDataOptions = Static<typeof OptimisticDataOptionsSchema>;

/** Grants early sending: for CONNECT, the held bytes become `early` (unless an outer interceptor already chose). */
export function optimisticData(next: Dispatch): Dispatch {
  return (destination, conn, o) =>
    o.command === Command.CONNECT && o.early === undefined && o.held !== undefined
      ? next(destination, conn, deriveDispatchOptions(o, { early: o.held }))
      : next(destination, conn, o);
}

/** Switches optimistic data on for CONNECT streams. */
@injectable()
export class OptimisticDataPlugin implements SocksmithPlugin {
  static readonly meta = {
    name: PLUGIN_NAME,
    schema: OptimisticDataOptionsSchema,
    description: 'Forward early client data before the upstream confirms the connection.',
  };

  constructor(@inject(Tokens.PluginOptions) readonly options: OptimisticDataOptions) {}

  apply(api: PluginApi): void {
    // Composed once when the proxy starts: one call and one options object per CONNECT, no tap per request.
    api.dispatch.intercept({ name: PLUGIN_NAME, stage: Stage.CLASSIFY }, optimisticData);
  }
}

declare module 'socksmith' {
  /** This plugin's options, for `defineConfig({ plugins: { 'optimistic-data': … } })`. */
  interface PluginOptionsMap {
    'optimistic-data': OptimisticDataOptions;
  }
}

export default OptimisticDataPlugin;
