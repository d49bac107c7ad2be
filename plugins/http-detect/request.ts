/**
 * A small, strict, bounded parser for the head of an HTTP/1.x request, enough for CONNECT.
 * @packageDocumentation
 */

/** Longest request head accepted (request line + headers). */
export const MAX_HEAD_BYTES = 8192;

/** A parsed request head. */
export interface HttpRequestHead {
  readonly method: string;
  readonly target: string;
  readonly version: string;
  /** Header names lowercased; repeated headers joined with ", ". */
  readonly headers: ReadonlyMap<string, string>;
  /** Bytes of the head, including the blank line. */
  readonly length: number;
}

/** Outcome: a head, need-more, or an error with the HTTP status to answer. */
export type HeadResult = { readonly status: 'ok'; readonly head: HttpRequestHead } | { readonly status: 'need-more' } | { readonly status: 'error'; readonly code: 400 | 431; readonly message: string };

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** Parse the head at the start of `buf`. */
export function parseRequestHead(buf: Buffer): HeadResult {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) {
    if (buf.length >= MAX_HEAD_BYTES) return { status: 'error', code: 431, message: 'request head too large' };
    return { status: 'need-more' };
  }
  if (end + 4 > MAX_HEAD_BYTES) return { status: 'error', code: 431, message: 'request head too large' };
  const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
  const m = /^(\S+) (\S+) (HTTP\/1\.[01])$/.exec(lines[0] ?? '');
  if (!m || !TOKEN.test(m[1]!)) return { status: 'error', code: 400, message: 'malformed request line' };
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const i = line.indexOf(':');
    if (i <= 0) return { status: 'error', code: 400, message: 'malformed header line' };
    const name = line.slice(0, i).toLowerCase();
    if (!TOKEN.test(name)) return { status: 'error', code: 400, message: 'malformed header name' };
    const value = line.slice(i + 1).trim();
    headers.set(name, headers.has(name) ? `${headers.get(name)}, ${value}` : value);
  }
  return { status: 'ok', head: { method: m[1]!, target: m[2]!, version: m[3]!, headers, length: end + 4 } };
}

/** Split a CONNECT target `host:port` / `[v6]:port`; undefined when malformed. */
export function parseAuthority(target: string): { host: string; port: number } | undefined {
  const m = /^\[([0-9A-Fa-f:.]+)\]:(\d{1,5})$/.exec(target) ?? /^([^:\s[\]/]+):(\d{1,5})$/.exec(target);
  if (!m) return undefined;
  const port = Number(m[2]);
  if (port < 1 || port > 65535 || m[1]!.length > 255) return undefined;
  return { host: m[1]!, port };
}
