/**
 * A private Tor network on loopback for the Tor tests and `npm run bench:tor`.
 *
 * Shape (as Tor's own `make test-network` with chutney, whose torrc knobs it copies):
 * three directory authorities (also non-exit relays), one exit, one middle relay, two clients and
 * one v3 onion service. Every listener is on 127.0.0.1, every tor has `TestingTorNetwork 1` and
 * only this network's `DirAuthority` lines (no default authorities, fallbacks or bridges), and
 * every outbound connection is bound to 127.0.0.1 (`OutboundBindAddress`, and
 * `OutboundBindAddressExit` on the exit: a connect to anything outside loopback fails with EINVAL
 * before a packet leaves). The test runner puts the whole suite in a network namespace with only
 * loopback on top of that.
 *
 * - client `c0`: SocksPort with `ExtendedErrors`, ControlPort; Tor 0.4.9's defaults otherwise
 *   (conflux on). This is the Tor socksmith is measured and checked against.
 *   `SocksTimeout 15` (120 s by default): a CONNECT to an onion service that just went away can
 *   hang that long before Tor answers 06.
 * - client `c1`: the same with `ConfluxEnabled 0`, so that optimistic data is sent to the exit
 *   before CONNECTED (with conflux, 0.4.9 holds it until CONNECTED).
 * - onion service `h0`: port 80 → the loopback HTTP server; its ControlPort can add and remove
 *   ephemeral services (`ADD_ONION`/`DEL_ONION`).
 * - the exit resolves through a loopback DNS server in this process (dns2): `*.tornet.test` →
 *   127.0.0.1, PTR 192.0.2.1 → ptr.tornet.test (exits refuse reverse lookups of private
 *   addresses), everything else NXDOMAIN.
 * - the destination: a loopback HTTP/1.0 server in this process that answers in one write with
 *   TCP_NODELAY (timings measure the proxies, not the test server), and records each request.
 *
 * Ports come from a block of consecutive free ports below the ephemeral range; state lives in a
 * temp dir removed by {@link TorNetwork.stop}. Every tor runs in the foreground as a child of
 * this process with `__OwningControllerProcess` set to this PID (tor exits by itself when this
 * process is gone, whatever killed it); {@link TorNetwork.stop} and a `process.on('exit')` hook
 * kill the children by PID. Every wait is bounded and its failure names what did not happen.
 *
 * Launch in two phases (from the hand-run recipe): authorities and relays first, then, once the
 * consensus lists all five relays, the clients and the onion service; otherwise they poll for a
 * consensus, get 404 and back off 10–30 s.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { which } from '../helpers/tools.js';
import { startDnsServer, type TestDnsServer } from '../plugins/helpers/dns-server.js';

const execFileP = promisify(execFile);
const IP = '127.0.0.1';
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/** A timer that does not keep the process alive (for races against exits). */
const grace = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

/** Why the Tor tests cannot run here, or undefined when they can. */
export function torUnavailable(): string | undefined {
  for (const [bin, pkg] of [
    ['tor', 'tor'],
    ['tor-gencert', 'tor'],
    ['tor-resolve', 'tor'],
  ] as const) {
    if (!which(bin)) return `${bin} is not installed (Debian package ${pkg})`;
  }
  if (process.env.SOCKSMITH_TEST_NETNS !== '1') return 'not inside the private network namespace (run through scripts/run-tests.mjs as root: unshare -n)';
  return undefined;
}

/** One request as the HTTP destination saw it. */
export interface HttpRequestSeen {
  readonly head: string;
  /** Bytes of the request that arrived in the first read of the connection. */
  readonly firstRead: number;
  readonly at: number;
}

/** The loopback HTTP destination. */
export interface TornetHttp {
  readonly port: number;
  readonly requests: HttpRequestSeen[];
  close(): Promise<void>;
}

/**
 * `GET /` → `tornet-ok`; `GET /echo` → the request head back; `GET /bytes/N` → N bytes (≤ 16 MiB);
 * `GET /slow/N` → `tornet-slow` after N ms (≤ 30 s). HTTP/1.0, one write per response, then close.
 */
async function startHttp(): Promise<TornetHttp> {
  const requests: HttpRequestSeen[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ noDelay: true }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    let head = Buffer.alloc(0);
    let firstRead = -1;
    const onData = (c: Buffer) => {
      if (firstRead < 0) firstRead = c.length;
      head = Buffer.concat([head, c]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) {
        if (head.length > 65536) s.destroy();
        return;
      }
      s.removeListener('data', onData);
      const text = head.subarray(0, end).toString('latin1');
      requests.push({ head: text, firstRead, at: Date.now() });
      const target = text.split(' ')[1] ?? '/';
      const send = (status: string, body: Buffer) => {
        if (s.destroyed) return;
        const hdr = `HTTP/1.0 ${status}\r\nContent-Type: application/octet-stream\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`;
        s.end(Buffer.concat([Buffer.from(hdr, 'latin1'), body]));
      };
      let m: RegExpMatchArray | null;
      if (target === '/') send('200 OK', Buffer.from('tornet-ok\n'));
      else if (target === '/echo') send('200 OK', Buffer.from(`${text}\n`, 'latin1'));
      else if ((m = /^\/bytes\/(\d+)$/.exec(target))) send('200 OK', Buffer.alloc(Math.min(Number(m[1]), 16 << 20), 0x78));
      else if ((m = /^\/slow\/(\d+)$/.exec(target))) {
        const t = setTimeout(() => send('200 OK', Buffer.from('tornet-slow\n')), Math.min(Number(m[1]), 30_000));
        s.on('close', () => clearTimeout(t));
      } else send('404 Not Found', Buffer.from('not found\n'));
    };
    s.on('data', onData);
  });
  server.listen(0, IP);
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Ports of one network (consecutive block from `base`). */
interface Ports {
  base: number;
  or: Record<string, number>;
  dir: Record<string, number>;
  socks: Record<string, number>;
  control: Record<string, number>;
}

const AUTHS = ['a0', 'a1', 'a2'] as const;
const RELAYS = ['r0', 'r1'] as const;
const CLIENTS = ['c0', 'c1'] as const;
const BLOCK = 16;

async function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, IP, () => s.close(() => resolve(true)));
  });
}

/**
 * A block of {@link BLOCK} consecutive free ports in 10000–19999, below the ephemeral range (the
 * kernel hands out 32768–60999 for port 0, and the test DNS helper picks from 20000–59999), so
 * nothing else in the suite takes one of them after the check.
 */
async function freeBlock(): Promise<Ports> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 10000 + Math.floor(Math.random() * (10000 - BLOCK));
    let ok = true;
    for (let p = base; p < base + BLOCK && ok; p++) ok = await portFree(p);
    if (!ok) continue;
    const or: Record<string, number> = {};
    const dir: Record<string, number> = {};
    [...AUTHS, ...RELAYS].forEach((n, i) => (or[n] = base + i)); // 0-4
    AUTHS.forEach((n, i) => (dir[n] = base + 5 + i)); // 5-7
    const socks = { c0: base + 8, c1: base + 9 };
    const control = { c0: base + 10, c1: base + 11, h0: base + 12 };
    return { base, or, dir, socks, control };
  }
  throw new Error(`tor fixture: no block of ${BLOCK} free consecutive ports in 10000-19999 after 50 tries`);
}

/** The running network. */
export interface TorNetwork {
  readonly dir: string;
  readonly dns: TestDnsServer;
  readonly http: TornetHttp;
  /** c0: SocksPort with ExtendedErrors, conflux on (0.4.9's default). */
  readonly socksPort: number;
  readonly controlPort: number;
  /** c1: the same with `ConfluxEnabled 0`. */
  readonly socksPortNoConflux: number;
  readonly controlPortNoConflux: number;
  /** The onion service's control port (ADD_ONION / DEL_ONION). */
  readonly hsControlPort: number;
  /** `<56>.onion` of the onion service (port 80 → the HTTP server). */
  readonly onion: string;
  /** Seconds from start to ready. */
  readonly readySeconds: number;
  /** Control-port cookie file of a node (`c0`, `c1`, `h0`). */
  cookie(node: 'c0' | 'c1' | 'h0'): string;
  /** A node's notice log so far. */
  log(node: string): string;
  /** A client's info log (`c0` or `c1`) so far. */
  infoLog(node: 'c0' | 'c1'): string;
  stop(): Promise<void>;
}

class Node {
  child: ChildProcess | undefined;
  exited: Promise<void> = Promise.resolve();
  constructor(
    readonly name: string,
    readonly dir: string,
  ) {}
}

/** PIDs of tor processes to kill, and state dirs to remove, if this process exits before stop(). */
const live = new Set<number>();
const liveDirs = new Set<string>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  const killAll = () => {
    for (const pid of live) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    for (const d of liveDirs) fs.rmSync(d, { recursive: true, force: true });
  };
  process.on('exit', killAll);
  // A signal that would end this process skips 'exit': kill the tors, then let the signal do what
  // it would have done (re-raised with this handler removed). SIGKILL cannot be caught; then each
  // tor notices its owning process is gone (__OwningControllerProcess) and exits by itself.
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = () => {
      killAll();
      process.removeListener(sig, onSignal);
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.on(sig, onSignal);
  }
}

function common(net0: string, n: string, dirAuthLines: string): string {
  return `TestingTorNetwork 1
DataDirectory ${net0}/${n}
Nickname test${n}
Log notice file ${net0}/${n}/notice.log
SafeLogging 0
LogTimeGranularity 1
ShutdownWaitLength 0
Sandbox 0
RunAsDaemon 0
__OwningControllerProcess ${process.pid}
${dirAuthLines}
OutboundBindAddress ${IP}
ClientUseIPv6 0
ConnLimit 60
GeoIPFile /dev/null
GeoIPv6File /dev/null
PathsNeededToBuildCircuits 0.67
TestingDirAuthVoteExit *
TestingDirAuthVoteHSDir *
TestingDirAuthVoteGuard *
TestingMinExitFlagThreshold 0
V3AuthNIntervalsValid 2
`;
}

function relayCommon(n: string, orPort: number): string {
  return `SocksPort 0
ORPort ${IP}:${orPort}
Address ${IP}
AssumeReachable 1
ContactInfo tornet-${n}@test.invalid
`;
}

async function httpGet(port: number, p: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const req = http.get({ host: IP, port, path: p, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve(res.statusCode === 200 ? body : undefined));
      res.on('error', () => resolve(undefined));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
  });
}

/** One SOCKS5 no-auth CONNECT to host:port and `GET /`; true when the body says tornet-ok. */
export async function socksProbe(socksPort: number, host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: IP, port: socksPort, noDelay: true });
    let buf = Buffer.alloc(0);
    let stage = 0;
    const done = (ok: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    s.on('error', () => done(false));
    s.on('close', () => done(buf.includes('tornet-ok')));
    s.on('connect', () => s.write(Buffer.from([5, 1, 0])));
    s.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      if (stage === 0 && buf.length >= 2) {
        buf = buf.subarray(2);
        stage = 1;
        const h = Buffer.from(host);
        s.write(Buffer.concat([Buffer.from([5, 1, 0, 3, h.length]), h, Buffer.from([port >> 8, port & 255])]));
      }
      if (stage === 1 && buf.length >= 10) {
        if (buf[1] !== 0) return done(false);
        buf = buf.subarray(10);
        stage = 2;
        s.write(`GET / HTTP/1.0\r\nHost: ${host}\r\n\r\n`);
      }
    });
  });
}

/**
 * Bring the network up (about 20–35 s on 2 cores). `timeoutMs` bounds the whole start; on any
 * failure everything started so far is stopped and the error names the step that did not happen
 * (with the tail of the relevant tor log).
 */
export async function startTorNetwork(opts: { timeoutMs?: number } = {}): Promise<TorNetwork> {
  const why = torUnavailable();
  if (why) throw new Error(`tor fixture: ${why}`);
  installExitHook();
  const t0 = Date.now();
  const deadline = t0 + (opts.timeoutMs ?? 150_000);
  const tor = which('tor')!;
  const gencert = which('tor-gencert')!;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'socksmith-tornet-'));
  fs.chmodSync(dir, 0o700);
  liveDirs.add(dir);
  const nodes = new Map<string, Node>();
  let dns: TestDnsServer | undefined;
  let httpd: TornetHttp | undefined;
  let stopped = false;

  const stop = async () => {
    if (stopped) return;
    stopped = true;
    const all = [...nodes.values()].filter((n) => n.child?.pid !== undefined && n.child.exitCode === null && n.child.signalCode === null);
    for (const n of all) n.child!.kill('SIGTERM');
    const waitAll = Promise.all(all.map((n) => n.exited));
    const t = await Promise.race([waitAll.then(() => true), grace(10_000).then(() => false)]);
    if (!t) for (const n of all) if (n.child!.exitCode === null && n.child!.signalCode === null) n.child!.kill('SIGKILL');
    await Promise.race([waitAll, grace(5_000)]);
    for (const n of all) live.delete(n.child!.pid!);
    await dns?.close().catch(() => {});
    await httpd?.close().catch(() => {});
    fs.rmSync(dir, { recursive: true, force: true });
    liveDirs.delete(dir);
  };

  const readLog = (n: string, file = 'notice.log') => {
    try {
      return fs.readFileSync(path.join(dir, n, file), 'utf8');
    } catch {
      return '';
    }
  };
  const tail = (n: string) => readLog(n).split('\n').slice(-8).join('\n');

  const waitUntil = async (what: string, cond: () => Promise<boolean> | boolean, logNode?: string) => {
    for (let i = 0; ; i++) {
      if (await cond()) return;
      if (Date.now() > deadline) {
        throw new Error(`tor fixture: timed out after ${Math.round((Date.now() - t0) / 1000)} s waiting for ${what}${logNode ? `; last lines of ${logNode}'s notice.log:\n${tail(logNode)}` : ''}`);
      }
      for (const n of nodes.values()) {
        if (n.child && (n.child.exitCode !== null || n.child.signalCode !== null)) {
          throw new Error(`tor fixture: tor ${n.name} exited (${n.child.exitCode ?? n.child.signalCode}) while waiting for ${what}; its notice.log:\n${tail(n.name)}`);
        }
      }
      await sleep(Math.min(500, 50 * (i + 1)));
    }
  };

  const launch = (n: string) => {
    const node = nodes.get(n)!;
    const child = spawn(tor, ['-f', path.join(dir, n, 'torrc'), '--quiet'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
    child.on('error', () => {});
    node.child = child;
    node.exited = new Promise((r) => child.once('exit', () => r()));
    if (child.pid !== undefined) live.add(child.pid);
    child.once('exit', (code, sig) => {
      if (child.pid !== undefined) live.delete(child.pid);
      if (!stopped && code !== 0) fs.appendFileSync(path.join(dir, n, 'notice.log'), `\n[fixture] tor exited ${code ?? sig}: ${stderr}\n`);
    });
  };

  try {
    const ports = await freeBlock();
    dns = await startDnsServer();
    dns.setA('web.tornet.test', [IP]);
    for (const name of ['iso', 'opt', 'hup', 'term', 'conf', 'bench', 'res']) dns.set('A', `${name}.tornet.test`, { addresses: [IP] });
    dns.setPTR('192.0.2.1', ['ptr.tornet.test']);
    httpd = await startHttp();
    fs.writeFileSync(path.join(dir, 'resolv.conf'), `nameserver ${IP}:${dns.port}\n`);

    // Authority keys: RSA identity + signing key + certificate, then the relay fingerprint.
    const lines: string[] = [];
    await Promise.all(
      AUTHS.map(async (n) => {
        const d = path.join(dir, n);
        fs.mkdirSync(path.join(d, 'keys'), { recursive: true, mode: 0o700 });
        fs.chmodSync(d, 0o700);
        await new Promise<void>((resolve, reject) => {
          const c = execFile(
            gencert,
            ['--create-identity-key', '--passphrase-fd', '0', '-m', '12', '-a', `${IP}:${ports.dir[n]}`, '-i', `${d}/keys/authority_identity_key`, '-s', `${d}/keys/authority_signing_key`, '-c', `${d}/keys/authority_certificate`],
            { timeout: 60_000 },
            (err) => (err ? reject(new Error(`tor fixture: tor-gencert for ${n} failed: ${err.message}`)) : resolve()),
          );
          c.stdin!.end('\n');
        });
        const cert = fs.readFileSync(`${d}/keys/authority_certificate`, 'utf8');
        const v3 = /^fingerprint (\S+)/m.exec(cert)?.[1];
        const { stdout } = await execFileP(tor, ['--ignore-missing-torrc', '-f', '/dev/null', '--DataDirectory', d, '--ORPort', '1', '--list-fingerprint', '--quiet'], { timeout: 60_000 });
        const fp = stdout.trim().split('\n').pop()!.split(' ').slice(1).join('');
        if (!v3 || !/^[0-9A-F]{40}$/.test(fp)) throw new Error(`tor fixture: no fingerprints for ${n} (cert ${v3}, relay ${fp})`);
        lines[AUTHS.indexOf(n)] = `DirAuthority test${n} orport=${ports.or[n]} no-v2 v3ident=${v3} ${IP}:${ports.dir[n]} ${fp}`;
      }),
    );
    const dirAuth = lines.join('\n');

    for (const n of [...AUTHS, ...RELAYS, ...CLIENTS, 'h0']) {
      fs.mkdirSync(path.join(dir, n), { recursive: true, mode: 0o700 });
      fs.chmodSync(path.join(dir, n), 0o700);
      nodes.set(n, new Node(n, path.join(dir, n)));
    }
    const write = (n: string, text: string) => fs.writeFileSync(path.join(dir, n, 'torrc'), text);
    for (const n of AUTHS) {
      write(
        n,
        `${common(dir, n, dirAuth)}${relayCommon(n, ports.or[n]!)}ExitRelay 0
ExitPolicy reject *:*
DirPort ${IP}:${ports.dir[n]}
AuthoritativeDirectory 1
V3AuthoritativeDirectory 1
TestingV3AuthInitialVotingInterval 10
TestingV3AuthInitialVoteDelay 2
TestingV3AuthInitialDistDelay 2
V3AuthVotingInterval 10
V3AuthVoteDelay 2
V3AuthDistDelay 2
`,
      );
    }
    // The exit: accept *:* as chutney (a loopback-only policy summarises to "reject 1-65535" in
    // microdescriptors); OutboundBindAddressExit keeps every exit connection on loopback.
    write(
      'r0',
      `${common(dir, 'r0', dirAuth)}${relayCommon('r0', ports.or.r0!)}DirCache 0
ExitRelay 1
IPv6Exit 0
ExitPolicyRejectPrivate 0
ExitPolicyRejectLocalInterfaces 0
RefuseUnknownExits 0
ExitPolicy accept *:*
OutboundBindAddressExit ${IP}
ServerDNSResolvConfFile ${dir}/resolv.conf
ServerDNSDetectHijacking 0
ServerDNSTestAddresses
ServerDNSAllowBrokenConfig 1
ServerDNSAllowNonRFC953Hostnames 1
`,
    );
    write('r1', `${common(dir, 'r1', dirAuth)}${relayCommon('r1', ports.or.r1!)}DirCache 0\nExitRelay 0\nExitPolicy reject *:*\n`);
    for (const n of CLIENTS) {
      write(
        n,
        `${common(dir, n, dirAuth)}SocksPort ${IP}:${ports.socks[n]} ExtendedErrors
ControlPort ${IP}:${ports.control[n]}
CookieAuthentication 1
Log info file ${dir}/${n}/info.log
SocksTimeout 15
${n === 'c1' ? 'ConfluxEnabled 0\n' : ''}`,
      );
    }
    write(
      'h0',
      `${common(dir, 'h0', dirAuth)}SocksPort 0
ControlPort ${IP}:${ports.control.h0}
CookieAuthentication 1
HiddenServiceDir ${dir}/h0/hs
HiddenServicePort 80 ${IP}:${httpd.port}
`,
    );

    for (const n of [...AUTHS, ...RELAYS]) launch(n);
    await waitUntil(
      'the first consensus listing all 5 relays (authority a0)',
      async () => ((await httpGet(ports.dir.a0!, '/tor/status-vote/current/consensus'))?.match(/^r test/gm)?.length ?? 0) === 5,
      'a0',
    );
    for (const n of [...CLIENTS, 'h0']) launch(n);
    const hostname = path.join(dir, 'h0', 'hs', 'hostname');
    await waitUntil('the onion service hostname file', () => fs.existsSync(hostname) && fs.statSync(hostname).size > 0, 'h0');
    const onion = fs.readFileSync(hostname, 'utf8').trim();
    for (const c of CLIENTS) await waitUntil(`client ${c} "Bootstrapped 100%"`, () => readLog(c).includes('Bootstrapped 100%'), c);
    for (const c of CLIENTS) {
      await waitUntil(`a stream through client ${c}'s exit circuit to 127.0.0.1:${httpd.port}`, () => socksProbe(ports.socks[c]!, IP, httpd!.port, 15_000), c);
    }
    await waitUntil(`the onion service ${onion} through client c0`, () => socksProbe(ports.socks.c0!, onion, 80, 20_000), 'h0');
    const readySeconds = (Date.now() - t0) / 1000;
    const d = dns;
    const h = httpd;
    return {
      dir,
      dns: d,
      http: h,
      socksPort: ports.socks.c0!,
      controlPort: ports.control.c0!,
      socksPortNoConflux: ports.socks.c1!,
      controlPortNoConflux: ports.control.c1!,
      hsControlPort: ports.control.h0!,
      onion,
      readySeconds,
      cookie: (n) => path.join(dir, n, 'control_auth_cookie'),
      log: (n) => readLog(n),
      infoLog: (n) => readLog(n, 'info.log'),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** A fresh valid v3 onion address (`--bad-checksum`: with its checksum broken). */
export function randomOnion(badChecksum = false): string {
  const { publicKey } = crypto.generateKeyPairSync('ed25519');
  const pk = publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
  const ver = Buffer.from([3]);
  let sum = crypto.createHash('sha3-256').update(Buffer.concat([Buffer.from('.onion checksum'), pk, ver])).digest().subarray(0, 2);
  if (badChecksum) sum = Buffer.from([sum[0]! ^ 0xff, sum[1]!]);
  const raw = Buffer.concat([pk, sum, ver]);
  const A = 'abcdefghijklmnopqrstuvwxyz234567';
  let bits = 0;
  let val = 0;
  let out = '';
  for (const b of raw) {
    val = ((val << 8) | b) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      out += A[(val >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return `${out}.onion`;
}
