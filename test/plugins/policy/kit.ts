/**
 * Helpers for the policy plugin's wire tests: one-shot SOCKS exchanges read to EOF, a round trip
 * through an open tunnel, and a spy on the `direct` upstream's sockets that records which
 * addresses node was handed to connect to and which it tried, so a test can prove that a refused
 * address was never tried (and withholds any non-loopback address from node, whatever happens).
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { toHex } from '../../helpers/hex.js';
import type { RawClient } from '../../helpers/net.js';
import { connectClient, readReply5, req4, req5, socks5Hello } from '../helpers/socks.js';

/** Send a SOCKS5 request after a no-auth greeting and return everything until the proxy closes. */
export async function once5(port: number, cmd: number, host: string, dport: number, opts: { asName?: boolean; localAddress?: string } = {}): Promise<string> {
  const c = await connectClient(port, { localAddress: opts.localAddress });
  try {
    await socks5Hello(c);
    c.write(req5(cmd, host, dport, opts.asName));
    return toHex(await c.readToEnd(5000));
  } finally {
    c.destroy();
  }
}

/** Send a SOCKS4/4a request and return everything until the proxy closes. */
export async function once4(port: number, cmd: number, host: string, dport: number): Promise<string> {
  const c = await connectClient(port);
  try {
    c.write(req4(cmd, host, dport));
    return toHex(await c.readToEnd(5000));
  } finally {
    c.destroy();
  }
}

/** Open a SOCKS5 CONNECT (name or literal) and return the client after a success reply. */
export async function open5(port: number, host: string, dport: number, asName = false): Promise<RawClient> {
  const c = await connectClient(port);
  await socks5Hello(c);
  c.write(req5(1, host, dport, asName));
  const reply = await readReply5(c);
  assert.equal(toHex(reply.subarray(0, 3)), '05 00 00', `CONNECT ${host}:${dport} succeeds (reply ${toHex(reply)})`);
  return c;
}

/** Write `text` through an open tunnel to an echo server and expect it back. */
export async function echoes(c: RawClient, text = 'ping'): Promise<void> {
  c.write(text);
  assert.equal((await c.read(Buffer.byteLength(text))).toString(), text);
}

/** What the direct upstream's sockets were given and tried. */
export interface ConnectSpy {
  /** One entry per lookup the direct upstream answered for node: the addresses, or the error. */
  readonly lookups: Array<{ host: string; addresses: string[]; err: string | undefined }>;
  /** Addresses node started a TCP connection to, by the host it was asked for (node reports them when it races several addresses). */
  readonly attempts: Array<{ host: string; address: string }>;
  /** Non-loopback addresses the guard kept from node (a test failure: the policy let them through). */
  readonly guarded: string[];
  /** Addresses handed to node for `host`, in order. */
  addressesFor(host: string): string[];
  restore(): void;
}

/** Every address any spy in this process withheld from node (a file's `after` asserts it is empty). */
export const GUARDED: string[] = [];

function isLoopback(address: string): boolean {
  const a = address.startsWith('::ffff:') ? address.slice(7) : address;
  return /^127\./.test(a) || a === '::1';
}

type LookupCallback = (err: Error | null, address?: unknown, family?: number) => void;
type LookupFn = (hostname: string, options: { all?: boolean }, cb: LookupCallback) => void;

/**
 * Wrap `net.connect` (the direct upstream calls it through the module object) and the `lookup`
 * function the upstream passes to it: record exactly which addresses the proxy's resolution hands
 * node for each name (node connects to no others), and which ones node tried. As a safety net,
 * any non-loopback address, resolved or literal, is withheld from node (recorded in `guarded`),
 * so even a broken policy can never make a test connect outside loopback.
 */
export function spyConnects(): ConnectSpy {
  const target = net as unknown as { connect: typeof net.connect };
  const original = target.connect;
  const lookups: ConnectSpy['lookups'] = [];
  const attempts: ConnectSpy['attempts'] = [];
  const guarded: string[] = [];
  target.connect = function (this: unknown, ...args: unknown[]) {
    const opts = args[0];
    const literal = typeof opts === 'object' && opts !== null ? String((opts as { host?: unknown }).host) : '';
    if (net.isIP(literal) !== 0 && !isLoopback(literal)) {
      // An address literal is connected to without a lookup: fail it through one instead.
      guarded.push(literal);
      GUARDED.push(literal);
      args[0] = { ...(opts as object), host: 'guarded.invalid', lookup: ((_h, _o, cb) => setImmediate(() => cb(new Error(`test guard: withheld non-loopback ${literal}`)))) as LookupFn };
    } else if (typeof opts === 'object' && opts !== null && typeof (opts as { lookup?: unknown }).lookup === 'function') {
      const o = opts as { host?: string; lookup: LookupFn };
      const inner = o.lookup;
      const host = String(o.host);
      args[0] = {
        ...o,
        lookup: ((hostname, lookupOptions, cb) => {
          inner(hostname, lookupOptions, (err, address, family) => {
            if (err) {
              lookups.push({ host, addresses: [], err: err.message });
              cb(err);
              return;
            }
            const list = Array.isArray(address) ? (address as Array<{ address: string }>).map((a) => a.address) : [String(address)];
            lookups.push({ host, addresses: list, err: undefined });
            const outside = list.filter((a) => !isLoopback(a));
            if (outside.length > 0) {
              guarded.push(...outside);
              GUARDED.push(...outside);
              cb(new Error(`test guard: withheld non-loopback ${outside.join(', ')}`));
              return;
            }
            cb(null, address, family);
          });
        }) as LookupFn,
      };
    }
    const socket = (original as (...a: unknown[]) => net.Socket).apply(net, args);
    const asked = typeof opts === 'object' && opts !== null ? String((opts as { host?: unknown }).host) : String(args[1]);
    socket.on('connectionAttempt', (ip: string) => attempts.push({ host: asked, address: ip }));
    return socket;
  } as typeof net.connect;
  return {
    lookups,
    attempts,
    guarded,
    addressesFor: (host) => lookups.filter((l) => l.host === host).flatMap((l) => l.addresses),
    restore: () => {
      target.connect = original;
    },
  };
}

/** Log lines whose `msg` starts with `prefix`. */
export function linesStarting(logs: ReadonlyArray<Record<string, unknown>>, prefix: string): Array<Record<string, unknown>> {
  return logs.filter((l) => typeof l.msg === 'string' && l.msg.startsWith(prefix));
}

/** The 10-byte SOCKS5 refusal `05 REP 00 01 00*6` as spaced hex. */
export function refusal5(rep: number): string {
  return toHex(Buffer.from([5, rep, 0, 1, 0, 0, 0, 0, 0, 0]));
}

/** The SOCKS4 rejection `00 5b 00*6`. */
export const REJECTED4 = '00 5b 00 00 00 00 00 00';
