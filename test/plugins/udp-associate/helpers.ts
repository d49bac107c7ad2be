/**
 * Shared pieces of the udp-associate tests: a raw UDP ASSOCIATE (greeting, `05 03 00 ATYP ADDR
 * PORT`, the reply), UDP sockets with a message queue, a loopback UDP echo server, datagram headers
 * written by hand (RFC 1928 §7), and the plugin's end-of-association log line.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { hex } from '../../helpers/hex.js';
import type { RawClient } from '../../helpers/net.js';
import { connectClient, readReply5, socks5Hello, u16, waitFor } from '../helpers/socks.js';

/** An open association: its control connection and the relay's address. */
export interface Assoc {
  readonly control: RawClient;
  readonly relayHost: string;
  readonly relayPort: number;
  readonly reply: Buffer;
}

/** `05 03 00 01 ADDR PORT` (IPv4 DST). */
export function udpRequest(host = '0.0.0.0', port = 0): Buffer {
  return Buffer.concat([hex('05 03 00 01'), Buffer.from(host.split('.').map(Number)), u16(port)]);
}

/** Greeting, UDP ASSOCIATE, reply. Asserts success unless `expectRep` says otherwise. */
export async function associate(proxyPort: number, opts: { host?: string; dst?: { host: string; port: number }; expectRep?: number } = {}): Promise<Assoc> {
  const control = await connectClient(proxyPort, { host: opts.host ?? '127.0.0.1' });
  await socks5Hello(control);
  control.write(udpRequest(opts.dst?.host, opts.dst?.port));
  const reply = await readReply5(control);
  assert.equal(reply[1], opts.expectRep ?? 0, `reply ${reply.toString('hex')}`);
  const relayHost = reply[3] === 1 ? [...reply.subarray(4, 8)].join('.') : '';
  return { control, relayHost, relayPort: reply.readUInt16BE(reply.length - 2), reply };
}

/** A UDP socket that queues what it receives. */
export class UdpPeer {
  readonly received: Array<{ msg: Buffer; from: dgram.RemoteInfo }> = [];
  readonly errors: Error[] = [];
  private waiters: Array<() => void> = [];
  constructor(readonly socket: dgram.Socket) {
    socket.on('error', (err) => this.errors.push(err));
    socket.on('message', (msg, from) => {
      this.received.push({ msg, from });
      for (const w of this.waiters.splice(0)) w();
    });
  }
  static async open(host = '127.0.0.1'): Promise<UdpPeer> {
    const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
    const p = new UdpPeer(s);
    s.bind(0, host);
    await once(s, 'listening');
    return p;
  }
  get port(): number {
    return this.socket.address().port;
  }
  send(msg: Buffer, port: number, host = '127.0.0.1'): void {
    this.socket.send(msg, port, host);
  }
  /** Wait until `n` datagrams arrived (bounded). */
  async waitCount(n: number, timeoutMs = 5000): Promise<void> {
    await waitFor(() => this.received.length >= n, `${n} datagrams (have ${this.received.length})`, timeoutMs);
  }
  /** Resolves on the next datagram or after `ms` (false). */
  next(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(false), ms);
      this.waiters.push(() => {
        clearTimeout(t);
        resolve(true);
      });
    });
  }
  close(): void {
    try {
      this.socket.close();
    } catch {
      /* closed */
    }
  }
}

/** A UDP echo server on 127.0.0.1: answers every datagram with the same bytes; counts them. */
export async function startUdpEcho(host = '127.0.0.1'): Promise<UdpPeer> {
  const p = await UdpPeer.open(host);
  p.socket.on('message', (msg, from) => p.socket.send(msg, from.port, from.address));
  return p;
}

/** A datagram header + DATA, written by hand: `00 00 FRAG 01 A.B.C.D PORT DATA`. */
export function frame4(host: string, port: number, data: Buffer | string, frag = 0): Buffer {
  return Buffer.concat([Buffer.from([0, 0, frag, 1]), Buffer.from(host.split('.').map(Number)), u16(port), Buffer.from(data)]);
}

/** `00 00 00 03 LEN NAME PORT DATA`. */
export function frameName(name: string, port: number, data: Buffer | string): Buffer {
  const n = Buffer.from(name);
  return Buffer.concat([hex('00 00 00 03'), Buffer.from([n.length]), n, u16(port), Buffer.from(data)]);
}

/** The plugin's "association ended" log lines (from a test proxy's log). */
export function endedLines(logs: Array<Record<string, unknown>>): Array<Record<string, unknown>> {
  return logs.filter((l) => l.msg === 'udp-associate: association ended');
}

/** The "dropped (first of its kind)" reasons logged so far. */
export function dropReasons(logs: Array<Record<string, unknown>>): string[] {
  return logs.filter((l) => l.msg === 'udp-associate: datagram dropped (first of its kind)').map((l) => String(l.reason));
}
