/**
 * What `resolve` and `resolve-ptr` share: where a lookup happens (at the upstream or locally) and
 * the deadline of one lookup.
 * @packageDocumentation
 */
import { Type } from '@sinclair/typebox';
import type { ConnectionContext, Kernel } from 'socksmith';

/** The `mode` option of both plugins. */
export const ModeSchema = Type.Union([Type.Literal('auto'), Type.Literal('upstream'), Type.Literal('local')], {
  default: 'auto',
  description:
    "Where lookups happen. 'auto': at the upstream when it can answer them (socks5: forwarded as F0/F1 requests, so no local DNS query leaks what the client looks up), else locally. 'upstream': always at the upstream (fails if it cannot). 'local': always through onResolve and the local resolver.",
});

/** A lookup mode. */
export type ResolveMode = 'auto' | 'upstream' | 'local';

/** True when lookups for this kernel go to the upstream. */
export function useUpstream(kernel: Kernel, mode: ResolveMode): boolean {
  if (mode === 'local') return false;
  return mode === 'upstream' || kernel.dispatch.canQuery;
}

/** A signal that aborts after `timeouts.connect` or when the connection goes away. */
export function lookupSignal(kernel: Kernel, conn: ConnectionContext): AbortSignal {
  return AbortSignal.any([conn.signal, AbortSignal.timeout(kernel.config.timeouts.connect)]);
}
