/**
 * The key every per-client budget counts by (connections, handshake shedding, DNS lookups
 * pending, scrypt turns): one function, so that every budget sees the same clients.
 * @packageDocumentation
 */
import ipaddr from 'ipaddr.js';

/**
 * The budget key of a client address: an IPv4 address as it is; an IPv6 address as its /64
 * (`2001:db8:1:2::/64`), since a host is usually given a whole /64 and can pick a new address in
 * it for every connection; an IPv4-mapped IPv6 address (`::ffff:203.0.113.7`) as the IPv4 address.
 * A zone id (link-local) stays part of the key. `''` (a unix-socket client) and anything that is
 * not an IP address come back unchanged.
 *
 * The connection's `clientAddress` is never replaced by the key: logs, ACLs and isolation still
 * see the exact address.
 */
export function clientKey(address: string): string {
  if (!address.includes(':')) return address; // IPv4, or '' (unix socket)
  let ip: ipaddr.IPv6;
  try {
    ip = ipaddr.IPv6.parse(address);
  } catch {
    return address;
  }
  if (ip.isIPv4MappedAddress()) return ip.toIPv4Address().toString();
  const p = ip.parts;
  const prefix = new ipaddr.IPv6([p[0]!, p[1]!, p[2]!, p[3]!, 0, 0, 0, 0]).toString();
  return ip.zoneId ? `${prefix}/64%${ip.zoneId}` : `${prefix}/64`;
}
