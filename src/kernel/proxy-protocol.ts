/**
 * PROXY protocol v1 and v2 (HAProxy's proxy-protocol.txt) on a listener, so the real client
 * address behind a load balancer feeds isolation, ACLs, per-address limits and logs.
 *
 * Framing (how many bytes the header has) is done here on the buffered bytes, with hard bounds
 * (v1 ≤ 107 bytes, v2 ≤ 16 + 536); the header itself is parsed by proxy-protocol-js. Bytes after
 * the header are returned untouched (the SOCKS handshake, maybe more).
 * @packageDocumentation
 */
import type { Socket } from 'node:net';
import net from 'node:net';
import { Command, V1ProxyProtocol, V2ProxyProtocol, IPv4ProxyAddress, IPv6ProxyAddress } from 'proxy-protocol-js';
import { ipv6FromBytes } from '../protocol/address.js';

/** v2 signature: `\r\n\r\n\0\r\nQUIT\n` (proxy-protocol.txt §2.2). */
const V2_SIG = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_MAX = 107;
/** v2 headers are 16 bytes plus at most 216 address bytes in practice; TLVs may add more. Bounded at 16 + 1024. */
const V2_MAX_BODY = 1024;

/** The client as the PROXY header names it (or the socket's own peer for LOCAL / UNKNOWN). */
export interface ProxiedClient {
  readonly address: string;
  readonly port: number;
  readonly family: 'IPv4' | 'IPv6';
}

/** Outcome of framing: a complete header, need-more, or an error. */
export type ProxyHeaderResult =
  | { readonly status: 'ok'; readonly client: ProxiedClient | undefined; readonly length: number }
  | { readonly status: 'need-more' }
  | { readonly status: 'error'; readonly message: string };

function v4(bytes: readonly number[]): string {
  return bytes.join('.');
}

/**
 * Parse a PROXY header at the start of `buf`. `client` is undefined for v2 LOCAL and v1 UNKNOWN
 * (health checks from the balancer itself: use the socket's address).
 */
export function parseProxyHeader(buf: Buffer): ProxyHeaderResult {
  if (buf.length === 0) return { status: 'need-more' };
  if (buf[0] === 0x50) {
    // v1: "PROXY ..." + CRLF within 107 bytes.
    const prefix = Buffer.from('PROXY ');
    if (!buf.subarray(0, Math.min(buf.length, 6)).equals(prefix.subarray(0, Math.min(buf.length, 6)))) return { status: 'error', message: 'not a PROXY header' };
    const end = buf.indexOf('\r\n');
    if (end < 0) return buf.length >= V1_MAX ? { status: 'error', message: 'PROXY v1 header longer than 107 bytes' } : { status: 'need-more' };
    if (end + 2 > V1_MAX) return { status: 'error', message: 'PROXY v1 header longer than 107 bytes' };
    const line = buf.subarray(0, end + 2).toString('latin1');
    if (line.startsWith('PROXY UNKNOWN')) return { status: 'ok', client: undefined, length: end + 2 };
    try {
      const p = V1ProxyProtocol.parse(line);
      const address = p.source.ipAddress;
      const family = net.isIPv6(address) ? 'IPv6' : 'IPv4';
      if (!net.isIP(address)) return { status: 'error', message: 'PROXY v1 source is not an IP address' };
      return { status: 'ok', client: { address, port: p.source.port, family }, length: end + 2 };
    } catch (err) {
      return { status: 'error', message: `bad PROXY v1 header: ${(err as Error).message}` };
    }
  }
  if (buf[0] === 0x0d) {
    const n = Math.min(buf.length, V2_SIG.length);
    if (!buf.subarray(0, n).equals(V2_SIG.subarray(0, n))) return { status: 'error', message: 'not a PROXY header' };
    if (buf.length < 16) return { status: 'need-more' };
    const bodyLen = buf.readUInt16BE(14);
    if (bodyLen > V2_MAX_BODY) return { status: 'error', message: 'PROXY v2 header too long' };
    if (buf.length < 16 + bodyLen) return { status: 'need-more' };
    const length = 16 + bodyLen;
    try {
      const p = V2ProxyProtocol.parse(new Uint8Array(buf.subarray(0, length)));
      if (p.command === Command.LOCAL) return { status: 'ok', client: undefined, length };
      const a = p.proxyAddress;
      if (a instanceof IPv4ProxyAddress) return { status: 'ok', client: { address: v4(a.sourceAddress.address), port: a.sourcePort, family: 'IPv4' }, length };
      if (a instanceof IPv6ProxyAddress) {
        let address = ipv6FromBytes(Uint8Array.from(a.sourceAddress.address), 0);
        if (address.startsWith('::ffff:') && address.includes('.')) address = address.slice(7);
        return { status: 'ok', client: { address, port: a.sourcePort, family: address.includes(':') ? 'IPv6' : 'IPv4' }, length };
      }
      return { status: 'ok', client: undefined, length }; // UNSPEC / unix: keep the socket's address
    } catch (err) {
      return { status: 'error', message: `bad PROXY v2 header: ${(err as Error).message}` };
    }
  }
  return { status: 'error', message: 'connection did not start with a PROXY header' };
}

/**
 * Read a PROXY header from `socket` (paused afterwards). Resolves with the client and the bytes
 * after the header; rejects on a bad header, EOF or `timeoutMs`.
 */
export function readProxyHeader(socket: Socket, timeoutMs: number): Promise<{ client: ProxiedClient | undefined; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => done(new Error('no PROXY header within the handshake timeout')), timeoutMs);
    const onData = (chunk: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      const r = parseProxyHeader(buf);
      if (r.status === 'need-more') return;
      if (r.status === 'error') return done(new Error(r.message));
      done(undefined, r.client, buf.subarray(r.length));
    };
    const onEnd = () => done(new Error('connection closed before the PROXY header'));
    const done = (err: Error | undefined, client?: ProxiedClient, rest?: Buffer) => {
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('end', onEnd);
      socket.removeListener('error', onEnd);
      socket.pause();
      if (err) reject(err);
      else resolve({ client, rest: Buffer.from(rest!) });
    };
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('error', onEnd);
  });
}
