/**
 * `http-detect`: a connection whose first byte is `G`, `H`, `P` or `C` is HTTP, not SOCKS.
 *
 * - `mode: 'page'` (default): answer at once, on that first byte, with an HTTP/1.0 501 page that
 *   says this is a SOCKS proxy and how to configure a browser; then close (Tor's behaviour, with
 *   Content-Type and Content-Length set and no stray NUL).
 * - `mode: 'tunnel'`: the same port also serves HTTP CONNECT (like Tor's HTTPTunnelPort):
 *   `CONNECT host:port HTTP/1.1` → `HTTP/1.0 200 OK` and a tunnel through the same pipeline
 *   (onAuth, onRequest, upstream, onReply, relay), as a front end (`front-end.ts`, added with
 *   `api.frontEnds.add`), not a hook tap. Isolation credentials come from
 *   `Proxy-Authorization` (username) and `X-Tor-Stream-Isolation` (password), as in Tor. Other
 *   methods get 405 with the explanation page.
 * - Off: those bytes are an unknown SOCKS version, and the kernel closes without a reply.
 * @packageDocumentation
 */
import { Type, type Static } from '@sinclair/typebox';
import { inject, injectable, Tokens, type PluginApi, type SocksmithPlugin } from 'socksmith';
import { HttpFrontEnd, HTTP_FIRST_BYTES } from './front-end.js';
import { notAnHttpProxyResponse } from './page.js';

const PLUGIN_NAME = 'http-detect';

export { HTTP_FIRST_BYTES, HttpFrontEnd };

/** JSON schema of the http-detect options. */
export const HttpDetectOptionsSchema = Type.Object(
  {
    mode: Type.Union([Type.Literal('page'), Type.Literal('tunnel')], {
      default: 'page',
      description: "'page': answer HTTP with a 501 page explaining this is a SOCKS proxy. 'tunnel': also serve HTTP CONNECT on the same port (like Tor's HTTPTunnelPort).",
    }),
  },
  { additionalProperties: false, description: 'Detect HTTP clients on the SOCKS port.' },
);

/** Options after defaults. */
export type HttpDetectOptions = Static<typeof HttpDetectOptionsSchema>;

/** Detects (and in tunnel mode serves) HTTP on the SOCKS port. */
@injectable()
export class HttpDetectPlugin implements SocksmithPlugin {
  static readonly meta = {
    name: PLUGIN_NAME,
    schema: HttpDetectOptionsSchema,
    description: 'Answer browsers that use the SOCKS port as an HTTP proxy; optionally serve HTTP CONNECT.',
  };

  private readonly page: Buffer;

  constructor(@inject(Tokens.PluginOptions) private readonly options: HttpDetectOptions) {
    this.page = notAnHttpProxyResponse(options.mode === 'tunnel');
  }

  apply(api: PluginApi): void {
    // A front end, asked by the kernel's detect stage after onGreeting passed on a first byte other than 05.
    api.frontEnds.add(new HttpFrontEnd(this.options.mode === 'tunnel', this.page));
  }
}

declare module 'socksmith' {
  /** This plugin's options, for `defineConfig({ plugins: { 'http-detect': … } })`. */
  interface PluginOptionsMap {
    'http-detect': HttpDetectOptions;
  }
}

export default HttpDetectPlugin;
