import { ipv6ToBytes } from '../../../src/protocol/address.js';
/**
 * A recording SOCKS5 server used as socksmith's `socks5` upstream in plugin tests.
 *
 * For every connection it records the greeting's methods, the RFC 1929 credentials, the request
 * (raw bytes and parsed), every byte it received (with arrival times), and the bytes that arrived
 * after the request but before it sent its reply (optimistic data). It can delay the method
 * reply, the RFC 1929 reply and the request reply, answer chosen requests with chosen REP codes
 * or chosen RESOLVE/RESOLVE_PTR answers, and otherwise really connects CONNECTs, but only to
 * loopback destinations (127.0.0.0/8, ::1, `localhost`); anything else gets REP 04.
 */
import { once } from 'node:events';
import net from 'node:net';

/** A parsed upstream request. */
export interface RecordedRequest {
  readonly command: number;
  readonly atyp: number;
  /** Dotted IPv4, IPv6 text, or the name as sent. */
  readonly host: string;
  readonly port: number;
  /** The request's exact bytes. */
  readonly raw: Buffer;
}

/** What a test may answer a request with instead of the default behaviour. */
export interface ChosenAnswer {
  readonly rep: number;
  /** Bound address: an IPv4/IPv6 literal (ATYP 01/04) or a name (ATYP 03). Default 0.0.0.0. */
  readonly bound?: string;
  readonly boundPort?: number;
  /** Exact reply bytes to send instead (e.g. Tor's malformed RESOLVE failure `05 04 00 00 0*6`). */
  readonly raw?: Buffer;
}

/** One recorded connection to the upstream. */
export interface UpstreamSession {
  readonly id: number;
  /** Methods offered in the greeting. */
  methods: number[];
  /** Method chosen. */
  method: number | undefined;
  /** RFC 1929 credentials, when sent. */
  credentials: { username: Buffer; password: Buffer } | undefined;
  /** Everything that had arrived after the method reply when the RFC 1929 message was processed (after `authReplyDelayMs`). */
  bufferedAtAuth: Buffer | undefined;
  request: RecordedRequest | undefined;
  /** Bytes after the request that had arrived before the reply was written. */
  earlyBeforeReply: Buffer;
  /** When the request was complete / the reply was written (ms, Date.now()). */
  requestAt: number | undefined;
  replyAt: number | undefined;
  /** Reply bytes written. */
  reply: Buffer | undefined;
  /** Every byte received from socksmith, in order (handshake and data). */
  raw: Buffer;
  /** Arrival log of received chunks. */
  chunks: Array<{ at: number; bytes: Buffer }>;
  /** Bytes relayed to the real destination (CONNECT), in order. */
  toDestination: Buffer;
  /** True when a destination connection was opened. */
  connectedToDestination: boolean;
  /** Resolves when the client side of this session closed. */
  readonly closed: Promise<void>;
}

/** Options of {@link startRecordingUpstream}. */
export interface RecordingUpstreamOptions {
  /** Delay before the request reply (ms), or a function of the request. */
  replyDelayMs?: number | ((req: RecordedRequest) => number);
  /** Delay before answering the RFC 1929 message (ms): everything pipelined after it is then buffered. */
  authReplyDelayMs?: number;
  /** Method choice: 'tor' (02 if offered, else 00; Tor's IsolateSOCKSAuth default), 'noauth' (00 if offered). */
  methodPolicy?: 'tor' | 'noauth';
  /** Answer a request with a chosen reply (no destination contact); `undefined` for the default. */
  answer?: (req: RecordedRequest) => ChosenAnswer | undefined;
}

/** A running recording upstream. */
export interface RecordingUpstream {
  readonly port: number;
  readonly sessions: UpstreamSession[];
  /** Wait until at least `n` sessions exist and the n-th has a reply (or closed). */
  waitSessions(n: number, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

class Reader {
  private buf = Buffer.alloc(0);
  private waiter: (() => void) | undefined;
  ended = false;
  constructor(socket: net.Socket, onChunk: (c: Buffer) => void) {
    socket.on('data', (c: Buffer) => {
      onChunk(c);
      this.buf = Buffer.concat([this.buf, c]);
      this.waiter?.();
    });
    socket.on('end', () => {
      this.ended = true;
      this.waiter?.();
    });
    socket.on('close', () => {
      this.ended = true;
      this.waiter?.();
    });
  }
  get buffered(): Buffer {
    return Buffer.from(this.buf);
  }
  async need(n: number): Promise<void> {
    while (this.buf.length < n) {
      if (this.ended) throw new Error(`EOF: wanted ${n} bytes, have ${this.buf.length}`);
      await new Promise<void>((r) => (this.waiter = r));
      this.waiter = undefined;
    }
  }
  async take(n: number): Promise<Buffer> {
    await this.need(n);
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return Buffer.from(out);
  }
  async peek(n: number): Promise<Buffer> {
    await this.need(n);
    return Buffer.from(this.buf.subarray(0, n));
  }
  /** Take everything buffered. */
  drain(): Buffer {
    const out = this.buf;
    this.buf = Buffer.alloc(0);
    return Buffer.from(out);
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** `05 REP 00 ATYP ADDR PORT` for a chosen answer. */
export function encodeReply(rep: number, bound = '0.0.0.0', port = 0): Buffer {
  const p = Buffer.alloc(2);
  p.writeUInt16BE(port);
  if (net.isIPv4(bound)) return Buffer.concat([Buffer.from([5, rep, 0, 1]), Buffer.from(bound.split('.').map(Number)), p]);
  if (net.isIPv6(bound)) return Buffer.concat([Buffer.from([5, rep, 0, 4]), ipv6Bytes(bound), p]);
  const name = Buffer.from(bound, 'utf8');
  return Buffer.concat([Buffer.from([5, rep, 0, 3, name.length]), name, p]);
}

/** 16 bytes of an IPv6 literal. */
export function ipv6Bytes(ip: string): Buffer {
  // The codec's own encoder (ipaddr.js): handles every IPv6 text form, including embedded IPv4
  // (`::ffff:127.0.0.1`), which a hand-split here once got wrong.
  return Buffer.from(ipv6ToBytes(ip));
}

function ipv6Text(b: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  return groups.join(':');
}

function loopbackTarget(host: string): string | undefined {
  const h = host.toLowerCase().replace(/\.$/, '');
  if (h === 'localhost') return '127.0.0.1';
  if (net.isIPv4(h) && h.startsWith('127.')) return h;
  if (h === '::1' || h === '0:0:0:0:0:0:0:1') return '::1';
  return undefined;
}

/** Start a recording SOCKS5 upstream on 127.0.0.1. */
export async function startRecordingUpstream(options: RecordingUpstreamOptions = {}): Promise<RecordingUpstream> {
  const sessions: UpstreamSession[] = [];
  const sockets = new Set<net.Socket>();
  let nextId = 1;
  let changed: Array<() => void> = [];
  const notify = () => {
    const w = changed;
    changed = [];
    for (const f of w) f();
  };

  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.setNoDelay(true);
    let closedResolve!: () => void;
    const session: UpstreamSession = {
      id: nextId++,
      methods: [],
      method: undefined,
      credentials: undefined,
      bufferedAtAuth: undefined,
      request: undefined,
      earlyBeforeReply: Buffer.alloc(0),
      requestAt: undefined,
      replyAt: undefined,
      reply: undefined,
      raw: Buffer.alloc(0),
      chunks: [],
      toDestination: Buffer.alloc(0),
      connectedToDestination: false,
      closed: new Promise<void>((r) => (closedResolve = r)),
    };
    sessions.push(session);
    notify();
    socket.on('error', () => {});
    socket.on('close', () => {
      sockets.delete(socket);
      closedResolve();
      notify();
    });
    const reader = new Reader(socket, (c) => {
      session.raw = Buffer.concat([session.raw, c]);
      session.chunks.push({ at: Date.now(), bytes: Buffer.from(c) });
    });
    void serve(socket, reader, session).catch(() => socket.destroy()).finally(notify);
  });

  const writeReply = (socket: net.Socket, session: UpstreamSession, reader: Reader, bytes: Buffer) => {
    session.earlyBeforeReply = reader.buffered;
    session.replyAt = Date.now();
    session.reply = bytes;
    socket.write(bytes);
  };

  async function serve(socket: net.Socket, reader: Reader, session: UpstreamSession): Promise<void> {
    const head = await reader.take(2);
    if (head[0] !== 5) return void socket.destroy();
    session.methods = [...(await reader.take(head[1]!))];
    const policy = options.methodPolicy ?? 'tor';
    const m = session.methods;
    const method = policy === 'tor' ? (m.includes(2) ? 2 : m.includes(0) ? 0 : 0xff) : m.includes(0) ? 0 : m.includes(2) ? 2 : 0xff;
    session.method = method;
    socket.write(Buffer.from([5, method]));
    if (method === 0xff) return void socket.end();
    if (method === 2) {
      if (options.authReplyDelayMs) await sleep(options.authReplyDelayMs);
      await reader.need(2);
      session.bufferedAtAuth = reader.buffered;
      const [ver, ulen] = await reader.take(2);
      const username = await reader.take(ulen!);
      const [plen] = await reader.take(1);
      const password = await reader.take(plen!);
      session.credentials = { username, password };
      if (ver !== 1) return void socket.end(Buffer.from([1, 1]));
      socket.write(Buffer.from([1, 0]));
    }
    const rh = await reader.take(4);
    let addr: Buffer;
    let host: string;
    if (rh[3] === 1) {
      addr = await reader.take(4);
      host = [...addr].join('.');
    } else if (rh[3] === 4) {
      addr = await reader.take(16);
      host = ipv6Text(addr);
    } else if (rh[3] === 3) {
      const [n] = await reader.take(1);
      const name = await reader.take(n!);
      addr = Buffer.concat([Buffer.from([n!]), name]);
      host = name.toString('utf8');
    } else {
      socket.end(encodeReply(8));
      return;
    }
    const portBytes = await reader.take(2);
    const req: RecordedRequest = { command: rh[1]!, atyp: rh[3]!, host, port: portBytes.readUInt16BE(), raw: Buffer.concat([rh, addr, portBytes]) };
    session.request = req;
    session.requestAt = Date.now();
    notify();
    const delay = typeof options.replyDelayMs === 'function' ? options.replyDelayMs(req) : (options.replyDelayMs ?? 0);
    if (delay > 0) await sleep(delay);
    const chosen = options.answer?.(req);
    if (chosen) {
      writeReply(socket, session, reader, chosen.raw ?? encodeReply(chosen.rep, chosen.bound, chosen.boundPort));
      socket.end();
      return;
    }
    if (req.command !== 1) {
      // RESOLVE / RESOLVE_PTR / others without a chosen answer: fail like Tor would (well-formed).
      writeReply(socket, session, reader, encodeReply(req.command === 0xf0 || req.command === 0xf1 ? 4 : 7));
      socket.end();
      return;
    }
    const target = loopbackTarget(host);
    if (!target) {
      writeReply(socket, session, reader, encodeReply(4));
      socket.end();
      return;
    }
    const dest = net.connect({ host: target, port: req.port, allowHalfOpen: true });
    const ok = await new Promise<boolean>((resolve) => {
      dest.once('connect', () => resolve(true));
      dest.once('error', () => resolve(false));
    });
    if (!ok) {
      writeReply(socket, session, reader, encodeReply(5));
      socket.end();
      return;
    }
    session.connectedToDestination = true;
    dest.on('error', () => socket.destroy());
    socket.on('error', () => dest.destroy());
    writeReply(socket, session, reader, encodeReply(0));
    const pending = reader.drain();
    socket.removeAllListeners('data');
    socket.on('data', (c: Buffer) => {
      session.raw = Buffer.concat([session.raw, c]);
      session.chunks.push({ at: Date.now(), bytes: Buffer.from(c) });
      session.toDestination = Buffer.concat([session.toDestination, c]);
      if (!dest.write(c)) {
        socket.pause();
        dest.once('drain', () => socket.resume());
      }
    });
    if (pending.length) {
      session.toDestination = Buffer.concat([session.toDestination, pending]);
      dest.write(pending);
    }
    dest.pipe(socket);
    socket.on('end', () => dest.end());
    socket.on('close', () => dest.destroy());
    dest.on('close', () => socket.destroy());
  }

  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    sessions,
    async waitSessions(n, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      const done = () => sessions.length >= n && sessions[n - 1]!.reply !== undefined;
      while (!done()) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`recording upstream: ${sessions.length} sessions, wanted ${n} with replies`);
        await new Promise<void>((r) => {
          const t = setTimeout(r, Math.min(left, 50));
          changed.push(() => {
            clearTimeout(t);
            r();
          });
        });
      }
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
