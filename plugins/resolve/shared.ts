/**
 * What `resolve` and `resolve-ptr` share: where a lookup happens (at the upstream or locally).
 * @packageDocumentation
 */
import { Type } from '@sinclair/typebox';
import type { PluginApi } from 'socksmith';

/** The `mode` option of both plugins. */
export const ModeSchema = Type.Union([Type.Literal('auto'), Type.Literal('upstream'), Type.Literal('local')], {
  default: 'auto',
  description:
    "Where lookups happen. 'auto': at the upstream when it can answer them (socks5: forwarded as F0/F1 requests, so no local DNS query leaks what the client looks up), else locally. 'upstream': always at the upstream (fails if it cannot). 'local': always through onResolve and the local resolver.",
});

/** A lookup mode. */
export type ResolveMode = 'auto' | 'upstream' | 'local';

/** True when lookups for this proxy go to the upstream. */
export function useUpstream(api: PluginApi, mode: ResolveMode): boolean {
  if (mode === 'local') return false;
  return mode === 'upstream' || api.dispatch.canQuery;
}
