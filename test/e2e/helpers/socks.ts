/**
 * SOCKS pieces the e2e tests build on: a raw SOCKS5/SOCKS4 tunnel opener, a recording SOCKS5
 * server (the upstream that logs every byte socksmith sends it), a DNS spy, and log polling.
 */
import dgram from 'node:dgram';
import { once } from 'node:events';
import net from 'node:net';
import type { TestProxy } from '../../helpers/proxy.js';

/** Reads exact byte counts from a socket (server or client side). */
export class ByteReader {
  private buf: Buffer<ArrayBufferLike> = Buffer.alloc(0);
  private waiter: (() => void) | undefined;
  private eof = false;
  private readonly onData = (c: Buffer) => {
    this.buf = this.buf.length === 0 ? c : Buffer.concat([this.buf, c]);
    this.waiter?.();
  };
  private readonly onEnd = () => {
    this.eof = true;
    this.waiter?.();
  };

  constructor(readonly socket: net.Socket) {
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('close', this.onEnd);
    socket.on('error', this.onEnd);
  }

  async read(n: number, timeoutMs = 5000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.buf.length < n) {
      if (this.eof) throw new Error(`EOF after ${this.buf.length} of ${n} bytes: ${this.buf.toString('hex')}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timeout after ${this.buf.length} of ${n} bytes: ${this.buf.toString('hex')}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.waiter = undefined;
    }
    const out = Buffer.from(this.buf.subarray(0, n));
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** Stop reading and hand unread bytes back to the socket (paused). */
  release(): net.Socket {
    const s = this.socket;
    s.removeListener('data', this.onData);
    s.removeListener('end', this.onEnd);
    s.removeListener('close', this.onEnd);
    s.removeListener('error', this.onEnd);
    s.pause();
    if (this.buf.length > 0) s.unshift(this.buf);
    this.buf = Buffer.alloc(0);
    return s;
  }
}

/** Port as two big-endian bytes. */
export function port16(port: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(port);
  return b;
}

/** SOCKS5 DST.ADDR bytes for an IPv4, IPv6 or name host (ATYP included). */
export function socks5Address(host: string): Buffer {
  if (net.isIPv4(host)) return Buffer.from([0x01, ...host.split('.').map(Number)]);
  if (net.isIPv6(host)) {
    // Expand the '::' run; the tests only pass canonical literals such as ::1.
    const [a, b] = host.includes('::') ? host.split('::') : [host, undefined];
    const head = a ? a.split(':') : [];
    const tail = b ? b.split(':') : [];
    const groups = [...head, ...Array(8 - head.length - tail.length).fill('0'), ...tail];
    const out = Buffer.alloc(17);
    out[0] = 0x04;
    groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), 1 + i * 2));
    return out;
  }
  const name = Buffer.from(host, 'latin1');
  return Buffer.concat([Buffer.from([0x03, name.length]), name]);
}

/**
 * Open a SOCKS5 (no-auth) CONNECT tunnel through `proxyPort`; resolves with the socket once the
 * success reply was read (rejects with the reply bytes otherwise). Half-open allowed.
 */
export async function socks5Tunnel(proxyPort: number, host: string, port: number, timeoutMs = 5000): Promise<net.Socket> {
  const s = net.connect({ port: proxyPort, host: '127.0.0.1', allowHalfOpen: true });
  s.on('error', () => {});
  await once(s, 'connect');
  const r = new ByteReader(s);
  s.write(Buffer.concat([Buffer.from([0x05, 0x01, 0x00, 0x05, 0x01, 0x00]), socks5Address(host), port16(port)]));
  const method = await r.read(2, timeoutMs);
  if (method[0] !== 0x05 || method[1] !== 0x00) throw new Error(`method reply ${method.toString('hex')}`);
  const head = await r.read(5, timeoutMs);
  if (head[1] !== 0x00) throw new Error(`CONNECT failed: ${head.toString('hex')}`);
  const rest = head[3] === 0x01 ? 5 : head[3] === 0x04 ? 17 : head[4]! + 2;
  await r.read(rest, timeoutMs);
  return r.release();
}

/** One session the recording server saw. */
export interface RecordedSession {
  /** Greeting `05 NMETHODS METHODS`. */
  greeting: Buffer;
  /** RFC 1929 message `01 ULEN UNAME PLEN PASSWD`, if the method was 02. */
  auth?: Buffer;
  /** Request `05 CMD 00 ATYP DST.ADDR DST.PORT`. */
  request: Buffer;
}

/** A recording SOCKS5 upstream. */
export interface RecordingSocks5 {
  readonly port: number;
  readonly sessions: RecordedSession[];
  close(): Promise<void>;
}

/**
 * A SOCKS5 server that records the exact bytes of each handshake. It chooses `method` (00 or 02;
 * 02 is accepted whatever the credentials), then answers the request with `reply(request)`:
 * a Buffer is sent as is and the connection ended; `undefined` means success, in which case it
 * connects to `route(request)` (default: 127.0.0.1 and the requested port, whatever the name, so
 * a name needs no DNS anywhere) and relays.
 */
export async function startRecordingSocks5(
  opts: {
    method?: number;
    reply?: (request: Buffer) => Buffer | undefined;
    route?: (request: Buffer) => { host: string; port: number };
    /** Success reply to send instead of `05 00 00 01 7f000001 <local port>`. */
    successReply?: Buffer;
    /** Bytes of the destination's stream to read first and send in the same write as the success reply. */
    coalesce?: number;
  } = {},
): Promise<RecordingSocks5> {
  const sessions: RecordedSession[] = [];
  const sockets = new Set<net.Socket>();
  const method = opts.method ?? 0x00;
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    void (async () => {
      const r = new ByteReader(s);
      const g = await r.read(2);
      const greeting = Buffer.concat([g, await r.read(g[1]!)]);
      s.write(Buffer.from([0x05, method]));
      let auth: Buffer | undefined;
      if (method === 0x02) {
        const h = await r.read(2);
        const user = await r.read(h[1]!);
        const plen = await r.read(1);
        const pass = await r.read(plen[0]!);
        auth = Buffer.concat([h, user, plen, pass]);
        s.write(Buffer.from([0x01, 0x00]));
      }
      const head = await r.read(4);
      let lenPrefix: Buffer = Buffer.alloc(0);
      let addrLen = 4;
      if (head[3] === 0x04) addrLen = 16;
      else if (head[3] === 0x03) {
        lenPrefix = await r.read(1);
        addrLen = lenPrefix[0]!;
      }
      const addr = await r.read(addrLen);
      const portBytes = await r.read(2);
      const request = Buffer.concat([head, lenPrefix, addr, portBytes]);
      const session: RecordedSession = { greeting, request, ...(auth ? { auth } : {}) };
      sessions.push(session);
      const answer = opts.reply?.(request);
      if (answer) {
        s.end(answer);
        return;
      }
      const dest = opts.route?.(request) ?? { host: '127.0.0.1', port: portBytes.readUInt16BE(0) };
      const up = net.connect({ host: dest.host, port: dest.port, allowHalfOpen: true });
      sockets.add(up);
      up.on('close', () => sockets.delete(up));
      up.on('error', () => {
        if (!s.destroyed) s.end(Buffer.from('05050001000000000000', 'hex'));
      });
      up.once('connect', async () => {
        const success = opts.successReply ?? Buffer.concat([Buffer.from([0x05, 0x00, 0x00, 0x01, 127, 0, 0, 1]), port16(up.localPort ?? 0)]);
        let first: Buffer = Buffer.alloc(0);
        if (opts.coalesce) {
          const ur = new ByteReader(up);
          first = await ur.read(opts.coalesce).catch(() => Buffer.alloc(0));
          ur.release();
        }
        s.write(Buffer.concat([success, first]));
        const client = r.release();
        client.pipe(up);
        up.pipe(client);
        client.resume();
        client.on('close', () => up.destroy());
        up.on('close', () => client.destroy());
      });
    })().catch(() => s.destroy());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    sessions,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A UDP "DNS server" on 127.0.0.1 that records every datagram and never answers. */
export interface DnsSpy {
  readonly address: string;
  readonly queries: Buffer[];
  close(): Promise<void>;
}

/** Start a {@link DnsSpy}; point `resolver.servers` at `spy.address` to catch any local lookup. */
export async function startDnsSpy(): Promise<DnsSpy> {
  const queries: Buffer[] = [];
  const sock = dgram.createSocket('udp4');
  sock.on('message', (m) => queries.push(m));
  sock.bind(0, '127.0.0.1');
  await once(sock, 'listening');
  return {
    address: `127.0.0.1:${sock.address().port}`,
    queries,
    close: () => new Promise<void>((r) => sock.close(() => r())),
  };
}

/** A socksmith access-log line (`stream closed`). */
export interface AccessLine {
  version?: number;
  command?: string;
  destination?: string;
  reply?: string;
  bytesUp?: number;
  bytesDown?: number;
}

/**
 * Wait until the proxy logged a `stream closed` line matching `pred` (the line is written when
 * the connection is torn down, which can be a moment after the client finished). `since`: only
 * look at log lines from this index on (`px.logs.length` taken before the client ran), so a line
 * left by an earlier test cannot satisfy the check.
 */
export async function waitForAccessLine(px: TestProxy, pred: (l: AccessLine) => boolean, opts: { since?: number; timeoutMs?: number } = {}): Promise<AccessLine> {
  const timeoutMs = opts.timeoutMs ?? 3000;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const hit = px.logs.slice(opts.since ?? 0).find((l) => l.msg === 'stream closed' && pred(l as AccessLine));
    if (hit) return hit as AccessLine;
    if (Date.now() > deadline) {
      const lines = px.logs.filter((l) => l.msg === 'stream closed');
      throw new Error(`no matching 'stream closed' line within ${timeoutMs} ms; have: ${JSON.stringify(lines)}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}
