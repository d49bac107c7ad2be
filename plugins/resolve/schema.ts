/**
 * Options of the `resolve` plugin (Tor's RESOLVE, command F0).
 * @packageDocumentation
 */
import { Type, type Static } from '@sinclair/typebox';
import { ModeSchema } from './shared.js';

/** JSON schema of the resolve options. */
export const ResolveOptionsSchema = Type.Object(
  {
    mode: ModeSchema,
    PreferIPv6: Type.Boolean({ default: false, description: 'Answer with the first IPv6 address when there is one (SOCKS5 only; SOCKS4 can only carry IPv4). Tor flag PreferIPv6.' }),
    IPv4Traffic: Type.Boolean({ default: true, description: 'Allow IPv4 answers (Tor: NoIPv4Traffic turns this off).' }),
    IPv6Traffic: Type.Boolean({ default: true, description: 'Allow IPv6 answers (Tor flag IPv6Traffic, on by default since 2017).' }),
  },
  { additionalProperties: false, description: "Tor's RESOLVE (F0) command." },
);

/** Options after defaults. */
export type ResolveOptions = Static<typeof ResolveOptionsSchema>;
