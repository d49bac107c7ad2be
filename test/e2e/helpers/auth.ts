/**
 * A test-side stand-in for an authentication plugin: taps a running proxy's kernel hooks so that
 * SOCKS5 clients offering 02 are asked for RFC 1929 credentials, records every credential the
 * kernel sees (RFC 1929 and SOCKS4 USERID), and accepts only the expected username/password.
 */
import { Stage } from '../../../src/kernel/stages.js';
import type { TestProxy } from '../../helpers/proxy.js';

/** One credential as the kernel saw it. */
export interface SeenCredential {
  readonly source: string;
  readonly username: string;
  readonly password: string | undefined;
}

/** Tap `px` (see module doc). Returns the live list of credentials seen. */
export function demandUserPass(px: TestProxy, expected: { username: string; password: string }): SeenCredential[] {
  const seen: SeenCredential[] = [];
  const hooks = px.proxy.kernel.hooks;
  hooks.onGreeting.tapPromise({ name: 'e2e-userpass', stage: Stage.AUTH }, async ({ firstByte, methods }) =>
    firstByte === 0x05 && methods.includes(0x02) ? { method: 0x02 } : undefined,
  );
  hooks.onAuth.tapPromise({ name: 'e2e-userpass', stage: Stage.AUTH }, async ({ credentials }) => {
    const c: SeenCredential = {
      source: credentials.source,
      username: credentials.username.toString('latin1'),
      password: credentials.password?.toString('latin1'),
    };
    seen.push(c);
    if (c.source !== 'rfc1929') return undefined;
    return { accept: c.username === expected.username && c.password === expected.password };
  });
  return seen;
}
