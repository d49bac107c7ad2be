/**
 * The key every per-client budget counts by (connections, handshake shedding, DNS lookups
 * pending, scrypt turns): one function, so that every budget sees the same clients.
 * @packageDocumentation
 */
import ipaddr from 'ipaddr.js';

/**
 * The budget key of a client address: an IPv4 address as it is; an IPv6 address as its /64
 * (`2001:db8:1:2::/64`), since a host is usually given a whole /64 and can pick a new address in
 * it for every connection; an IPv4-mapped IPv6 address (`::ffff:203.0.113.7`) and a client in the
 * NAT64 well-known prefix (`64:ff9b::cb00:7107`, RFC 6052: an IPv4 host behind a NAT64
 * translator) as the IPv4 address it carries, so the IPv4 clients of one translator are not one
 * client. A zone id (link-local) stays part of the key. `''` (a unix-socket client) and anything that is
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
  if (p[0] === 0x64 && p[1] === 0xff9b && p[2] === 0 && p[3] === 0 && p[4] === 0 && p[5] === 0) {
    return `${p[6]! >> 8}.${p[6]! & 0xff}.${p[7]! >> 8}.${p[7]! & 0xff}`;
  }
  const prefix = new ipaddr.IPv6([p[0]!, p[1]!, p[2]!, p[3]!, 0, 0, 0, 0]).toString();
  return ip.zoneId ? `${prefix}/64%${ip.zoneId}` : `${prefix}/64`;
}
