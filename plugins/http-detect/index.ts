/**
 * `http-detect`: a connection whose first byte is `G`, `H`, `P` or `C` is HTTP, not SOCKS.
 *
 * - `mode: 'page'` (default): answer at once, on that first byte, with an HTTP/1.0 501 page that
 *   says this is a SOCKS proxy and how to configure a browser; then close (Tor's behaviour, with
 *   Content-Type and Content-Length set and no stray NUL).
 * - `mode: 'tunnel'`: the same port also serves HTTP CONNECT (like Tor's HTTPTunnelPort):
 *   `CONNECT host:port HTTP/1.1` → `HTTP/1.0 200 OK` and a tunnel through the same pipeline
 *   (onAuth, onRequest, upstream, onReply, relay). Isolation credentials come from
 *   `Proxy-Authorization` (username) and `X-Tor-Stream-Isolation` (password), as in Tor. Other
 *   methods get 405 with the explanation page.
 * - Off: those bytes are an unknown SOCKS version, and the kernel closes without a reply.
 * @packageDocumentation
 */
import { Type, type Static } from '@sinclair/typebox';
import {
  classifyHost,
  Command,
  inject,
  injectable,
  Stage,
  Tokens,
  type PluginApi,
  type SocksmithPlugin,
  type Takeover,
} from 'socksmith';
import { encodeTunnelReply, httpResponse, notAnHttpProxyHtml, notAnHttpProxyResponse } from './page.js';
import { parseAuthority, parseRequestHead } from './request.js';

const PLUGIN_NAME = 'http-detect';

/** First bytes that mean HTTP: GET/HEAD, POST/PUT/PATCH, CONNECT (Tor's set). */
export const HTTP_FIRST_BYTES: ReadonlySet<number> = new Set([0x47, 0x48, 0x50, 0x43]);

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
    const tunnel = this.options.mode === 'tunnel';
    // Synchronous decision: a sync tap costs no promise per connection.
    api.hooks.onGreeting.tap({ name: PLUGIN_NAME, stage: Stage.DEFAULT }, ({ firstByte }) => {
      if (!HTTP_FIRST_BYTES.has(firstByte)) return undefined;
      if (!tunnel) return { takeover: (t: Takeover) => this.servePage(t) };
      return { takeover: (t: Takeover) => this.serveTunnel(t) };
    });
  }

  /** The 501 page for an HTTP client that took the SOCKS port for an HTTP proxy (a debug line; metrics count it). */
  private servePage(t: Takeover): void {
    t.conn.log.debug({ client: t.conn.clientAddress }, 'http-detect: HTTP request on the SOCKS port, served the 501 page');
    t.finish(this.page, 'http_page');
  }

  /** Read the request head (bounded; the kernel's handshake timeout still applies), then tunnel. */
  private serveTunnel(t: Takeover): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let buf = t.buffered;
      const onData = (chunk: Buffer) => {
        buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
        step();
      };
      // The client ended (FIN) before its head was complete: no request can come any more. The
      // client socket is half-open (allowHalfOpen), so without this the connection, and its file
      // descriptor, stayed until timeouts.handshake.
      const onEnd = () => {
        t.socket.removeListener('data', onData);
        t.finish();
        resolve();
      };
      const step = () => {
        const r = parseRequestHead(buf);
        if (r.status === 'need-more') return;
        // Pause before letting go of the socket: bytes after the head belong to the tunnel and
        // must not be emitted to nobody while authentication runs.
        t.socket.pause();
        t.socket.removeListener('data', onData);
        t.socket.removeListener('end', onEnd);
        if (r.status === 'error') {
          t.finish(httpResponse(r.code, r.code === 431 ? 'Request Header Fields Too Large' : 'Bad Request', `${r.message}\n`, 'text/plain; charset=utf-8'));
          return resolve();
        }
        const head = r.head;
        if (head.method !== 'CONNECT') {
          t.finish(httpResponse(405, 'Method Not Allowed', notAnHttpProxyHtml(true), undefined, ['Allow: CONNECT']));
          return resolve();
        }
        const authority = parseAuthority(head.target);
        if (!authority) {
          t.finish(httpResponse(400, 'Bad Request', 'CONNECT needs host:port\n', 'text/plain; charset=utf-8'));
          return resolve();
        }
        t.conn.protocol = 'http-connect';
        t.conn.version = 0;
        const leftover = buf.subarray(head.length);
        const auth = head.headers.get('proxy-authorization');
        const iso = head.headers.get('x-tor-stream-isolation');
        const run = async () => {
          // Always through onAuth, headers or not, so an auth plugin can ask for credentials
          // (407) instead of the request failing later; without auth taps this accepts.
          {
            const ok = await t.authenticate({
              source: 'http',
              username: Buffer.from(auth ?? '', 'latin1'),
              password: Buffer.from(iso ?? '', 'latin1'),
            });
            if (!ok) {
              t.finish(httpResponse(407, 'Proxy Authentication Required', 'proxy authentication failed\n', 'text/plain; charset=utf-8', ['Proxy-Authenticate: Basic realm="socksmith"']));
              return;
            }
          }
          await t.runRequest(
            { version: 5, command: Command.CONNECT, destination: classifyHost(authority.host, authority.port), userId: undefined, socks4a: false },
            (reply) => encodeTunnelReply(reply.rep),
            Buffer.from(leftover),
          );
        };
        run().then(resolve, reject);
      };
      t.socket.on('data', onData);
      t.socket.once('end', onEnd);
      t.socket.resume(); // the kernel hands the socket over paused
      step();
    });
  }
}

declare module 'socksmith' {
  /** This plugin's options, for `defineConfig({ plugins: { 'http-detect': … } })`. */
  interface PluginOptionsMap {
    'http-detect': HttpDetectOptions;
  }
}

export default HttpDetectPlugin;
