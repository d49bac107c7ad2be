/**
 * Mapping failures to SOCKS5 reply codes (RFC 1928 §6), following Tor's errno table
 * (reasons.c `errno_to_stream_end_reason`) except where RFC 1928 has the more precise code.
 * The table is in docs/errors.md.
 * @packageDocumentation
 */
import { isDeliberate } from '../kernel/hooks.js';
import { Rep } from '../protocol/constants.js';

/** errno → REP. */
export const ERRNO_TO_REP: Readonly<Record<string, number>> = Object.freeze({
  ECONNREFUSED: Rep.CONNECTION_REFUSED,
  ECONNRESET: Rep.CONNECTION_REFUSED,
  EPIPE: Rep.CONNECTION_REFUSED,
  ETIMEDOUT: Rep.TTL_EXPIRED,
  ETIMEOUT: Rep.TTL_EXPIRED,
  ENETUNREACH: Rep.NETWORK_UNREACHABLE,
  ENETDOWN: Rep.NETWORK_UNREACHABLE,
  EHOSTUNREACH: Rep.HOST_UNREACHABLE,
  EHOSTDOWN: Rep.HOST_UNREACHABLE,
  EADDRNOTAVAIL: Rep.HOST_UNREACHABLE,
  ENOTFOUND: Rep.HOST_UNREACHABLE,
  ENODATA: Rep.HOST_UNREACHABLE,
  EAI_AGAIN: Rep.HOST_UNREACHABLE,
  EAI_FAIL: Rep.HOST_UNREACHABLE,
  EAI_NONAME: Rep.HOST_UNREACHABLE,
  EACCES: Rep.NOT_ALLOWED,
  EPERM: Rep.NOT_ALLOWED,
});

/**
 * The reply code for any error from an upstream or resolver: the error's own `rep` if it has one
 * (UpstreamError, ResolveError, custom upstreams), else the errno table, else 01.
 */
export function repForError(err: unknown): number {
  if (isDeliberate(err)) return err.rep;
  const e = err as { code?: unknown; errors?: unknown[] } | null;
  if (e && typeof e.code === 'string' && e.code in ERRNO_TO_REP) return ERRNO_TO_REP[e.code]!;
  // Happy Eyeballs failures arrive as an AggregateError of the attempts.
  if (e && Array.isArray(e.errors) && e.errors.length > 0) {
    const reps = e.errors.map(repForError);
    return reps.find((r) => r !== Rep.GENERAL_FAILURE) ?? Rep.GENERAL_FAILURE;
  }
  return Rep.GENERAL_FAILURE;
}
