/**
 * A loopback DNS server for plugin tests (dns2 2.4, UDP and TCP on the same 127.0.0.1 port), with
 * a query log and programmable answers.
 *
 * Answers are keyed by (type, lowercase name). A value is either fixed data or a function of the
 * query number for that (type, name), so an answer can change between queries (cache tests).
 * Unknown names get NXDOMAIN (header rcode 3); a name with an entry of another type gets NOERROR
 * with no answers (NODATA).
 *
 * The answers are data only: nothing in the tests ever connects to an address served here.
 */
import dns2 from 'dns2';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { isIPv6 } from 'node:net';

const { Packet } = dns2;

/** What one record answers. */
export type Answer =
  | { readonly addresses: readonly string[]; readonly ttl?: number }
  | { readonly names: readonly string[]; readonly ttl?: number }
  | { readonly nxdomain: true };

/** One query as the server saw it. */
export interface LoggedQuery {
  readonly name: string;
  readonly type: 'A' | 'AAAA' | 'PTR' | string;
  readonly transport: 'udp' | 'tcp';
  readonly at: number;
}

type AnswerSource = Answer | ((n: number) => Answer);

/** A running test DNS server. */
export interface TestDnsServer {
  readonly port: number;
  /** `127.0.0.1:PORT`, for `resolver.servers`. */
  readonly address: string;
  /** Every query received, in order. */
  readonly queries: LoggedQuery[];
  /** Queries for `name` (case-insensitive), optionally only of `type`. */
  queriesFor(name: string, type?: string): LoggedQuery[];
  /** Answer A queries for `name` (a function gets the 1-based query number for this name and type). */
  setA(name: string, answer: readonly string[] | ((n: number) => readonly string[]), ttl?: number): void;
  /** Answer AAAA queries for `name`. */
  setAAAA(name: string, answer: readonly string[] | ((n: number) => readonly string[]), ttl?: number): void;
  /** Answer PTR queries for the IP literal `ip` with `names`. */
  setPTR(ip: string, names: readonly string[], ttl?: number): void;
  /** Answer every query type for `name` with NXDOMAIN (also the default for unknown names). */
  setNxdomain(name: string): void;
  /** Set any answer for (type, name). */
  set(type: 'A' | 'AAAA' | 'PTR', name: string, source: AnswerSource): void;
  /** Forget the query log. */
  clearLog(): void;
  close(): Promise<void>;
}

/** The reverse-lookup name of an IP literal: `4.3.2.1.in-addr.arpa` / nibbles `.ip6.arpa`. */
export function ptrName(ip: string): string {
  if (!isIPv6(ip)) return `${ip.split('.').reverse().join('.')}.in-addr.arpa`;
  // Expand :: and every group to 4 hex digits.
  const [head, tail] = ip.includes('::') ? ip.split('::') : [ip, undefined];
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  const nibbles = groups.map((g) => g.padStart(4, '0')).join('');
  return `${[...nibbles].reverse().join('.')}.ip6.arpa`;
}

const TYPE_NAMES: Record<number, string> = { [Packet.TYPE.A]: 'A', [Packet.TYPE.AAAA]: 'AAAA', [Packet.TYPE.PTR]: 'PTR' };

/**
 * Start a DNS server on 127.0.0.1 (UDP and TCP, same port): a random high port, or `opts.port`
 * (e.g. 53, for a resolv.conf that names 127.0.0.1; one attempt, no retry on another port).
 */
export async function startDnsServer(opts: { port?: number } = {}): Promise<TestDnsServer> {
  const table = new Map<string, AnswerSource>(); // `${type} ${name}`
  const nx = new Set<string>();
  const counts = new Map<string, number>();
  const queries: LoggedQuery[] = [];

  const handle = (request: InstanceType<typeof Packet>, send: (r: InstanceType<typeof Packet>) => Promise<Buffer>, client: unknown) => {
    const response = Packet.createResponseFromRequest(request);
    const transport: 'udp' | 'tcp' = client && typeof (client as { remotePort?: unknown }).remotePort === 'number' && typeof (client as { write?: unknown }).write === 'function' ? 'tcp' : 'udp';
    for (const q of request.questions) {
      const name = String(q.name).toLowerCase().replace(/\.$/, '');
      const type = TYPE_NAMES[q.type] ?? String(q.type);
      queries.push({ name, type, transport, at: Date.now() });
      const key = `${type} ${name}`;
      const source = table.get(key);
      if (!source) {
        const known = [...table.keys()].some((k) => k.endsWith(` ${name}`));
        if (nx.has(name) || !known) response.header.rcode = 3; // NXDOMAIN
        continue; // NODATA for a known name of another type
      }
      const n = (counts.get(key) ?? 0) + 1;
      counts.set(key, n);
      const answer = typeof source === 'function' ? source(n) : source;
      if ('nxdomain' in answer) {
        response.header.rcode = 3;
        continue;
      }
      const ttl = answer.ttl ?? 300;
      if ('addresses' in answer) {
        for (const address of answer.addresses) response.answers.push({ name: q.name, type: q.type, class: Packet.CLASS.IN, ttl, address } as never);
      } else {
        for (const domain of answer.names) response.answers.push({ name: q.name, type: Packet.TYPE.PTR, class: Packet.CLASS.IN, ttl, domain } as never);
      }
    }
    void send(response).catch(() => {});
  };

  let server: { close(): Promise<void> } | undefined;
  let port = 0;
  // A random high port for both UDP and TCP (retried when either is taken): binding UDP to 0 and
  // then TCP to the same number raced with other test processes on the 2-core CI machine.
  for (let attempt = 0; ; attempt++) {
    port = opts.port ?? 20000 + Math.floor(Math.random() * 40000);
    const udpOnly = dns2.createServer({ udp: true, handle: handle as never });
    const tcpOnly = dns2.createServer({ tcp: true, handle: handle as never });
    const bind = (srv: typeof udpOnly, opts: object) =>
      new Promise<void>((resolve, reject) => {
        srv.once('error', reject);
        srv.listen(opts as never).then(() => {
          srv.removeListener('error', reject);
          resolve();
        }, reject);
      });
    try {
      await bind(udpOnly, { udp: { port, address: '127.0.0.1' } });
      try {
        await bind(tcpOnly, { tcp: { port, address: '127.0.0.1' } });
      } catch (err) {
        await udpOnly.close().catch(() => {});
        throw err;
      }
      server = combine(udpOnly, tcpOnly);
      break;
    } catch (err) {
      if (attempt >= 19 || opts.port !== undefined) throw err;
    }
  }

  const set = (type: 'A' | 'AAAA' | 'PTR', name: string, source: AnswerSource) => {
    const n = name.toLowerCase().replace(/\.$/, '');
    nx.delete(n);
    table.set(`${type} ${n}`, source);
    counts.delete(`${type} ${n}`);
  };
  const addrs = (type: 'A' | 'AAAA') => (name: string, answer: readonly string[] | ((n: number) => readonly string[]), ttl = 300) =>
    set(type, name, typeof answer === 'function' ? (n: number) => ({ addresses: answer(n), ttl }) : { addresses: answer, ttl });

  return {
    port,
    address: `127.0.0.1:${port}`,
    queries,
    queriesFor: (name, type) => queries.filter((q) => q.name === name.toLowerCase().replace(/\.$/, '') && (type === undefined || q.type === type)),
    setA: addrs('A'),
    setAAAA: addrs('AAAA'),
    setPTR: (ip, names, ttl = 300) => set('PTR', ptrName(ip), { names, ttl }),
    setNxdomain: (name) => {
      const n = name.toLowerCase().replace(/\.$/, '');
      for (const k of [...table.keys()]) if (k.endsWith(` ${n}`)) table.delete(k);
      nx.add(n);
    },
    set,
    clearLog: () => void queries.splice(0, queries.length),
    close: () => server!.close(),
  };
}

/** Close two dns2 servers as one. */
function combine(a: { close(): Promise<void> }, b: { close(): Promise<void> }): { close(): Promise<void> } {
  return { close: async () => void (await Promise.all([a.close(), b.close()])) };
}

/** The query name of a DNS message (the labels after the 12-byte header), lowercase. */
export function queryName(msg: Buffer): string {
  const labels: string[] = [];
  let i = 12;
  for (let n = 0; n < 128 && i < msg.length && msg[i]! > 0; n++) {
    labels.push(msg.subarray(i + 1, i + 1 + msg[i]!).toString('latin1'));
    i += 1 + msg[i]!;
  }
  return labels.join('.').toLowerCase();
}

/** A DNS server on 127.0.0.1 that never answers (lookups stay pending until they time out). */
export interface SilentDnsServer {
  readonly port: number;
  /** The name of every query received, in order. */
  readonly asked: string[];
  close(): void;
}

/** Start a {@link SilentDnsServer} (UDP only). */
export async function startSilentDnsServer(): Promise<SilentDnsServer> {
  const sock = dgram.createSocket('udp4');
  sock.on('error', () => {});
  sock.bind(0, '127.0.0.1');
  await once(sock, 'listening');
  const asked: string[] = [];
  sock.on('message', (msg: Buffer) => asked.push(queryName(msg)));
  return { port: sock.address().port, asked, close: () => sock.close() };
}

/** A DNS query for `name` (type A, recursion desired), id `id`: what a stub resolver sends. */
export function dnsQuery(name: string, id: number): Buffer {
  const p = new dns2.Packet();
  p.header.id = id;
  p.header.rd = 1;
  p.questions.push({ name, type: dns2.Packet.TYPE.A, class: dns2.Packet.CLASS.IN } as never);
  return p.toBuffer();
}
