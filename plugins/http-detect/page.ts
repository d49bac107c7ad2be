/**
 * The HTTP answers of `http-detect`: the "this is a SOCKS proxy" page and the HTTP CONNECT
 * tunnel's status lines. Pure functions.
 * @packageDocumentation
 */
import { Rep, repName } from 'socksmith';

/** Body of the page a browser gets when it uses this port as an HTTP proxy. */
export function notAnHttpProxyHtml(tunnelMode: boolean): string {
  return `<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>This is a SOCKS Proxy, Not An HTTP Proxy</title>
</head>
<body>
<h1>This is a SOCKS proxy, not an HTTP proxy.</h1>
<p>It appears you have configured your web browser to use this port as an HTTP proxy.
This is not correct: this port speaks SOCKS (versions 4, 4a and 5).</p>
<p>To use it, configure your browser as a SOCKS client instead. In Firefox: Settings &rarr;
Network Settings &rarr; Manual proxy configuration &rarr; SOCKS Host (this host and port),
SOCKS v5, and tick "Proxy DNS when using SOCKS v5". From the command line:
<code>curl --socks5-hostname HOST:PORT https://example.com/</code>.</p>
${
  tunnelMode
    ? '<p>This port also accepts HTTP <code>CONNECT</code> requests (an HTTPS proxy), for example <code>curl --proxytunnel --proxy http://HOST:PORT https://example.com/</code>.</p>\n'
    : '<p>If you need an HTTP CONNECT proxy, the operator can enable <code>plugins: { \'http-detect\': { mode: \'tunnel\' } }</code>.</p>\n'
}</body>
</html>
`;
}

/** A complete HTTP/1.0 response with Content-Type and an exact Content-Length. */
export function httpResponse(status: number, reason: string, body: string, contentType = 'text/html; charset=utf-8', extraHeaders: string[] = []): Buffer {
  const bodyBytes = Buffer.from(body, 'utf8');
  const head = [
    `HTTP/1.0 ${status} ${reason}`,
    `Content-Type: ${contentType}`,
    `Content-Length: ${bodyBytes.length}`,
    'Connection: close',
    ...extraHeaders,
    '',
    '',
  ].join('\r\n');
  return Buffer.concat([Buffer.from(head, 'latin1'), bodyBytes]);
}

/** The 501 page for a browser that mistook this port for an HTTP proxy. */
export function notAnHttpProxyResponse(tunnelMode: boolean): Buffer {
  return httpResponse(501, 'Not an HTTP Proxy', notAnHttpProxyHtml(tunnelMode));
}

/** HTTP status for a SOCKS reply code in tunnel mode. */
export function statusForRep(rep: number): [number, string] {
  switch (rep) {
    case Rep.SUCCEEDED:
      return [200, 'OK'];
    case Rep.NOT_ALLOWED:
      return [403, 'Forbidden'];
    case Rep.HOST_UNREACHABLE:
      return [404, 'Not Found'];
    case Rep.TTL_EXPIRED:
      return [504, 'Gateway Timeout'];
    default:
      return [502, 'Bad Gateway'];
  }
}

/** The tunnel's answer to CONNECT: `HTTP/1.0 200 OK` + blank line, or an error status with a short body. */
export function encodeTunnelReply(rep: number): Buffer {
  const [status, reason] = statusForRep(rep);
  if (status === 200) return Buffer.from('HTTP/1.0 200 OK\r\n\r\n', 'latin1');
  return httpResponse(status, reason, `socksmith: ${repName(rep)} (SOCKS reply 0x${rep.toString(16).padStart(2, '0')})\n`, 'text/plain; charset=utf-8');
}
