/**
 * Pure checks on destination names. No DNS.
 * @packageDocumentation
 */

/** Lowercase a name and drop one trailing dot (`Example.COM.` → `example.com`). */
export function normalizeName(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

/**
 * True for `.onion` names in any case, with or without one trailing dot (`x.onion`, `X.ONION.`,
 * `onion`). Such names must never be sent to DNS: the query itself would leak which onion
 * service the client wants (Tor's rule; tor-socks.md a.4 notes Tor itself misses the trailing-dot form).
 */
export function isOnionName(name: string): boolean {
  const n = normalizeName(name);
  return n === 'onion' || n.endsWith('.onion');
}
