/**
 * The HTTP front end: a connection whose first byte is `G`, `H`, `P` or `C` (Tor's set) is HTTP.
 * Page mode answers at once with the 501 page; tunnel mode serves HTTP CONNECT through the
 * kernel's stream pipeline (`client.openStream`), like any front end. Registered in `apply()`
 * with `api.frontEnds.add(…)`.
 * @packageDocumentation
 */
import { classifyHost, Command, type ClientSession, type FrontEnd, type Reply, type StreamRequest } from 'socksmith';
import { encodeTunnelReply, httpResponse, notAnHttpProxyHtml } from './page.js';
import { parseAuthority, parseRequestHead } from './request.js';

/** First bytes that mean HTTP: GET/HEAD, POST/PUT/PATCH, CONNECT (Tor's set). */
export const HTTP_FIRST_BYTES: ReadonlySet<number> = new Set([0x47, 0x48, 0x50, 0x43]);

/** HTTP CONNECT's reply: the SOCKS5 REP code as an HTTP status line (module-level: no closure per request). */
function encodeTunnel(reply: Reply, _request: StreamRequest): Buffer {
  return encodeTunnelReply(reply.rep);
}

/** HTTP on the SOCKS port: the 501 page (`tunnel: false`) or HTTP CONNECT (`tunnel: true`). */
export class HttpFrontEnd implements FrontEnd {
  readonly name = 'http';

  constructor(
    private readonly tunnel: boolean,
    /** The 501 page (page mode) or the explanation sent on a non-CONNECT method (tunnel mode). */
    private readonly page: Buffer,
  ) {}

  /** One byte decides (Tor's `G H P C`). */
  match(buf: Buffer, off: number): boolean {
    return HTTP_FIRST_BYTES.has(buf[off]!);
  }

  serve(client: ClientSession): void | Promise<void> {
    if (!this.tunnel) {
      // The 501 page for an HTTP client that took the SOCKS port for an HTTP proxy (a debug line; metrics count it).
      client.conn.log.debug({ client: client.conn.clientAddress }, 'http-detect: HTTP request on the SOCKS port, served the 501 page');
      client.end(this.page, 'http_page');
      return;
    }
    return serveTunnel(client);
  }
}

/** Read the request head (bounded; the kernel's handshake timeout still applies), then tunnel. */
function serveTunnel(t: ClientSession): Promise<void> {
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
      t.end();
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
        t.end(httpResponse(r.code, r.code === 431 ? 'Request Header Fields Too Large' : 'Bad Request', `${r.message}\n`, 'text/plain; charset=utf-8'));
        return resolve();
      }
      const head = r.head;
      if (head.method !== 'CONNECT') {
        t.end(httpResponse(405, 'Method Not Allowed', notAnHttpProxyHtml(true), undefined, ['Allow: CONNECT']));
        return resolve();
      }
      const authority = parseAuthority(head.target);
      if (!authority) {
        t.end(httpResponse(400, 'Bad Request', 'CONNECT needs host:port\n', 'text/plain; charset=utf-8'));
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
        const ok = await t.authenticate({
          source: 'http',
          username: Buffer.from(auth ?? '', 'latin1'),
          password: Buffer.from(iso ?? '', 'latin1'),
        });
        if (!ok) {
          t.end(httpResponse(407, 'Proxy Authentication Required', 'proxy authentication failed\n', 'text/plain; charset=utf-8', ['Proxy-Authenticate: Basic realm="socksmith"']));
          return;
        }
        // Replies are SOCKS5 REP codes (version 5), mapped to HTTP statuses by encodeTunnel.
        await t.openStream(
          { version: 5, command: Command.CONNECT, destination: classifyHost(authority.host, authority.port), userId: undefined, socks4a: false },
          encodeTunnel,
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
