/**
 * The direct route: names resolved through the kernel's resolution chain, each datagram checked
 * by the destination check, payloads sent from the association's own socket; replies delivered
 * to the client only from destinations it sent to (unless `replies: 'any'`).
 * @packageDocumentation
 */
import type dgram from 'node:dgram';
import { isOnionName, type DestinationCheck, type PluginApi, type SocksAddress } from 'socksmith';
import { PeerSet, peerKey, plainIp, type Association, type Route } from './association.js';

/** Relays an association's datagrams itself (the `direct` upstream). */
export class DirectRoute implements Route {
  private readonly peers: PeerSet;

  constructor(
    private readonly api: PluginApi,
    private readonly check: DestinationCheck,
    private readonly family: 4 | 6,
    maxPeers: number,
  ) {
    this.peers = new PeerSet(maxPeers);
  }

  fromClient(a: Association, msg: Buffer, dest: SocksAddress, dataOffset: number): void {
    const conn = a.init.conn;
    const data = msg.subarray(dataOffset);
    if (dest.kind === 'domain' && isOnionName(dest.host.toLowerCase().replace(/\.$/, ''))) {
      a.drop('onion');
      return;
    }
    if (this.check(conn, dest) !== undefined) {
      a.drop('refused');
      return;
    }
    if (!a.reserve(data.length)) return;
    if (dest.kind !== 'domain') {
      this.sendTo(a, dest.host, dest.kind === 'ipv4' ? 4 : 6, dest.port, data);
      return;
    }
    // Bounded like the kernel's lookups (timeouts.connect); a timer cleared on the answer, no signal per datagram.
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('lookup timed out')), this.api.config.timeouts.connect);
    });
    timedOut.catch(() => {});
    Promise.race([this.api.resolution.lookup(dest.host, this.family, conn), timedOut])
      .finally(() => clearTimeout(timer))
      .then(
      (addrs) => {
        const hit = addrs.find((x) => x.family === this.family);
        if (hit === undefined || a.closed) {
          if (hit === undefined) a.drop('unresolved');
          a.release(data.length);
          return;
        }
        // The resolved address is checked too (the policy's destination rules are by IP).
        const resolved: SocksAddress = { kind: hit.family === 6 ? 'ipv6' : 'ipv4', host: hit.address, port: dest.port };
        if (this.check(conn, resolved) !== undefined) {
          a.drop('refused');
          a.release(data.length);
          return;
        }
        this.sendTo(a, hit.address, hit.family, dest.port, data);
      },
      () => {
        a.drop('unresolved');
        a.release(data.length);
      },
    );
  }

  /** Send `data` (reserved by the caller) to `host`:`port`, remembering the peer. */
  private sendTo(a: Association, host: string, family: number, port: number, data: Buffer): void {
    if (family !== this.family) {
      // An IPv6 destination from an IPv4 socket (or the reverse) cannot be sent.
      a.drop('unresolved');
      a.release(data.length);
      return;
    }
    this.peers.add(peerKey(plainIp(host), port));
    a.send(data, port, host, data.length, () => a.stats.sent++);
  }

  fromOther(a: Association, msg: Buffer, rinfo: dgram.RemoteInfo): boolean {
    const ip = plainIp(rinfo.address);
    if (a.init.options.replies === 'contacted' && !this.peers.has(peerKey(ip, rinfo.port))) return false;
    a.deliver({ kind: ip.includes(':') ? 'ipv6' : 'ipv4', host: ip, port: rinfo.port }, msg);
    return true;
  }

  close(): void {}
}
