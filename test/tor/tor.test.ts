/**
 * socksmith in front of real Tor: a private Tor network on loopback (test/tor/fixture.ts), one
 * per test run, and socksmith with `upstream: socks5` at the client's SocksPort.
 *
 * Needs `tor`, `tor-gencert`, `tor-resolve` (Debian package tor) and the runner's private network
 * namespace (SOCKSMITH_TEST_NETNS=1): skipped without them outside CI, FAILS in CI.
 *
 * What Tor does is read from Tor itself: its replies on its own SocksPort (the conformance cases
 * send the same bytes to both), its control port (STREAM events: circuit id per stream, SOCKS
 * credentials), its info log (optimistic data sent before CONNECTED) and the loopback DNS and
 * HTTP servers the exit and the onion service reach.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { ConfigInput } from '../../src/config/schema.js';
import { startCli, portOf } from '../helpers/cli.js';
import { toHex } from '../helpers/hex.js';
import { RawClient, startEchoServer, type TestServer } from '../helpers/net.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';
import { which } from '../helpers/tools.js';
import { execTool } from '../e2e/helpers/run.js';
import { readReply5, req4, req5, userpass } from '../plugins/helpers/socks.js';
import { TorControl, type StreamEvent } from './control.js';
import { randomOnion, startTorNetwork, torUnavailable, type TorNetwork } from './fixture.js';

const IP = '127.0.0.1';
const why = torUnavailable();
// In CI nothing is skipped: the fixture then throws in `before` with the reason and every test fails.
const skip = why !== undefined && !process.env.CI ? `${why}; the Tor tests need it` : false;

/** The built-in plugins at their defaults (the test helper turns them all off otherwise). */
const DEFAULTS = { isolation: true, resolve: true, 'resolve-ptr': true, 'http-detect': true, 'optimistic-data': true, 'extended-errors': false } as const;

let tor: TorNetwork;
let ctl: TorControl;
let ctl1: TorControl;

/**
 * socksmith in front of c0 (or c1) with the README's "In front of Tor" config (extended errors on,
 * `pipelining` off) and `extra` over it.
 */
async function front(extra: ConfigInput = {}, opts: { client?: 'c0' | 'c1'; extendedErrors?: boolean; pipelining?: boolean } = {}): Promise<TestProxy> {
  const port = opts.client === 'c1' ? tor.socksPortNoConflux : tor.socksPort;
  return startProxy({
    upstream: { type: 'socks5', host: IP, port, ...(opts.pipelining ? { pipelining: true } : {}) } as ConfigInput['upstream'],
    log: { level: 'warn' },
    ...extra,
    plugins: { ...DEFAULTS, 'extended-errors': opts.extendedErrors ?? true, ...extra.plugins },
  });
}

/** A unique name the exit's DNS answers with 127.0.0.1. */
function uniqueName(tag: string): string {
  const name = `${tag}-${crypto.randomBytes(4).toString('hex')}.tornet.test`;
  tor.dns.setA(name, [IP]);
  return name;
}

/** SOCKS5 greeting (with or without credentials), step by step as curl does. */
async function hello5(c: RawClient, creds?: { user: string; pass: string }): Promise<void> {
  c.write(Buffer.from(creds ? [5, 1, 2] : [5, 1, 0]));
  const m = await c.read(2, 10_000);
  if (creds) {
    assert.equal(toHex(m), '05 02');
    c.write(userpass(creds.user, creds.pass));
    assert.equal(toHex(await c.read(2, 10_000)), '01 00');
  } else assert.equal(toHex(m), '05 00');
}

/** One SOCKS5 request; returns the full reply (any ATYP) and the open client. */
async function ask5(port: number, cmd: number, host: string, destPort: number, opts: { creds?: { user: string; pass: string }; localAddress?: string; timeoutMs?: number } = {}): Promise<{ reply: Buffer; c: RawClient }> {
  const socket = net.connect({ host: IP, port, localAddress: opts.localAddress, allowHalfOpen: true });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const c = new RawClient(socket);
  await hello5(c, opts.creds);
  c.write(req5(cmd, host, destPort, !net.isIP(host)));
  const reply = await readReply5(c, opts.timeoutMs ?? 30_000);
  return { reply, c };
}

/** CONNECT, `GET path`, the whole HTTP response. */
async function fetch5(port: number, host: string, destPort: number, p = '/', opts: { creds?: { user: string; pass: string }; localAddress?: string } = {}): Promise<string> {
  const { reply, c } = await ask5(port, 1, host, destPort, opts);
  assert.equal(reply[1], 0, `CONNECT ${host}:${destPort} through ${port}: ${toHex(reply)}`);
  c.write(`GET ${p} HTTP/1.0\r\nHost: ${host}\r\n\r\n`);
  const body = (await c.readToEnd(30_000)).toString('latin1');
  c.destroy();
  return body;
}

/** The REP of a CONNECT (the connection is closed afterwards). */
async function rep5(port: number, host: string, destPort: number, timeoutMs = 30_000): Promise<string> {
  const { reply, c } = await ask5(port, 1, host, destPort, { timeoutMs });
  c.destroy();
  return reply[1]!.toString(16).padStart(2, '0').toUpperCase();
}

/** The circuit Tor attached the next user stream to `target` to (SENTCONNECT), seen after `from`. */
async function circuitOf(control: TorControl, from: number, target: string): Promise<string> {
  const e = await control.waitStream((s: StreamEvent) => control.streams.indexOf(s) >= from && s.status === 'SENTCONNECT' && s.target === target, `SENTCONNECT to ${target}`);
  return e.circuit;
}

describe('socksmith in front of a private Tor network', { skip }, () => {
  before(
    async () => {
      tor = await startTorNetwork();
      ctl = await TorControl.connect(tor.controlPort, tor.cookie('c0'));
      await ctl.command('SETEVENTS STREAM');
      ctl1 = await TorControl.connect(tor.controlPortNoConflux, tor.cookie('c1'));
      await ctl1.command('SETEVENTS STREAM');
      console.log(`# tor network ready in ${tor.readySeconds.toFixed(1)} s`);
    },
    { timeout: 180_000 },
  );
  after(async () => {
    ctl?.close();
    ctl1?.close();
    await tor?.stop();
  });

  describe('CONNECT', () => {
    let px: TestProxy;
    before(async () => (px = await front()));
    after(async () => px?.close());

    test('by IPv4 (ATYP 01): the exit reaches the loopback HTTP server', async () => {
      assert.match(await fetch5(px.port, IP, tor.http.port), /^HTTP\/1\.0 200 OK[\s\S]*tornet-ok\n$/);
    });

    test('by name (SOCKS5 ATYP 03): sent to Tor as a name, resolved by the exit through its DNS server, not by socksmith', async () => {
      const name = uniqueName('conf');
      assert.match(await fetch5(px.port, name, tor.http.port), /tornet-ok/);
      assert.ok(tor.dns.queriesFor(name).length >= 1, "the exit's DNS server was asked");
      const ev = ctl.streams.find((s) => s.target === `${name}:${tor.http.port}`);
      assert.ok(ev, 'Tor saw the name itself as the stream target');
    });

    test('by name (SOCKS4a): 00 5A, then the page', async () => {
      const name = uniqueName('s4a');
      const c = await RawClient.connect(px.port);
      c.write(req4(1, name, tor.http.port, 'u'));
      const reply = await c.read(8, 30_000);
      assert.equal(toHex(reply.subarray(0, 2)), '00 5a');
      c.write(`GET / HTTP/1.0\r\nHost: ${name}\r\n\r\n`);
      assert.match((await c.readToEnd(30_000)).toString(), /tornet-ok/);
      c.destroy();
    });

    test('to the v3 onion service', async () => {
      assert.match(await fetch5(px.port, tor.onion, 80), /tornet-ok/);
    });
  });

  describe('RESOLVE and RESOLVE_PTR with tor-resolve, through socksmith', () => {
    let px: TestProxy;
    before(async () => (px = await front()));
    after(async () => px?.close());
    const torResolve = () => which('tor-resolve')!;

    for (const v of ['-4', '-5'] as const) {
      test(`tor-resolve ${v} NAME: Tor's exit resolves it (RESOLVE forwarded, not answered locally)`, async () => {
        const name = uniqueName(`res${v.slice(1)}`);
        const from = ctl.streams.length;
        const r = await execTool(torResolve(), [v, name, `${IP}:${px.port}`], { timeoutMs: 30_000 });
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout.toString().trim(), IP);
        assert.ok(tor.dns.queriesFor(name, 'A').length >= 1, "the exit's DNS server was asked");
        await ctl.waitStream((s) => ctl.streams.indexOf(s) >= from && s.target.startsWith(`${name}:`), `Tor's stream for RESOLVE ${name}`);
      });
    }

    test('tor-resolve -x 192.0.2.1: RESOLVE_PTR forwarded; the exit answers ptr.tornet.test', async () => {
      const r = await execTool(torResolve(), ['-x', '192.0.2.1', `${IP}:${px.port}`], { timeoutMs: 30_000 });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.toString().trim(), 'ptr.tornet.test');
      assert.ok(tor.dns.queriesFor('1.2.0.192.in-addr.arpa', 'PTR').length >= 1);
    });

    test('tor-resolve -5 of an unknown name: a clean error through socksmith (REP 04, ATYP 01); straight to Tor it cannot parse the reply (ATYP 00)', async () => {
      const name = `nx-${crypto.randomBytes(4).toString('hex')}.tornet.test`;
      const via = await execTool(torResolve(), ['-5', name, `${IP}:${px.port}`], { timeoutMs: 60_000 });
      assert.notEqual(via.code, 0);
      assert.doesNotMatch(via.stderr, /Failed parsing/, via.stderr);
      const direct = await execTool(torResolve(), ['-5', `${name}x`, `${IP}:${tor.socksPort}`], { timeoutMs: 60_000 });
      assert.notEqual(direct.code, 0);
      assert.match(direct.stderr, /Failed parsing SOCKS5 response/, direct.stderr);
    });
  });

  describe('onion errors', () => {
    test('an unknown valid v3 onion: F0 with extended errors on, 04 with them off', async () => {
      const on = await front();
      const off = await front({}, { extendedErrors: false });
      try {
        assert.equal(await rep5(on.port, randomOnion(), 80), 'F0');
        assert.equal(await rep5(off.port, randomOnion(), 80), '04');
      } finally {
        await on.close();
        await off.close();
      }
    });

    test('a bad checksum: F6 answered by socksmith, Tor never contacted (no STREAM event)', async () => {
      const px = await front();
      try {
        const bad = randomOnion(true);
        const from = ctl.streams.length;
        assert.equal(await rep5(px.port, bad, 80), 'F6');
        // A marker stream after it: once Tor reports that one, it would have reported the other.
        const marker = uniqueName('marker');
        await fetch5(px.port, marker, tor.http.port);
        await ctl.waitStream((s) => s.target.startsWith(`${marker}:`), 'the marker stream');
        assert.equal(ctl.streams.slice(from).filter((s) => s.target.includes(bad.slice(0, 20))).length, 0, 'Tor saw no stream for the bad address');
      } finally {
        await px.close();
      }
    });

    test('a stopped onion service (removed with DEL_ONION after one visit): 01, 05, 06 or F2, never success; through socksmith as straight to Tor', { timeout: 120_000 }, async () => {
      // What Tor 0.4.9 does (recorded, see docs/tor.md): a CONNECT after the service went away
      // gets 01 or 05 (the old rendezvous circuit is torn down under it), or hangs until
      // SocksTimeout (15 s in the fixture, 120 s by default) and gets 06, or gets F2
      // (introduction failed); which, and in what order, varies from run to run (seen: 01 F2,
      // 05 01 F2, 05 01 06 06). Both sides run at once, each on its own ephemeral service, at
      // most 3 tries each, stopping at F2.
      const px = await front();
      const hs = await TorControl.connect(tor.hsControlPort, tor.cookie('h0'));
      try {
        const sequence = async (port: number): Promise<string[]> => {
          const r = await hs.command(`ADD_ONION NEW:ED25519-V3 Flags=DiscardPK Port=80,${IP}:${tor.http.port}`);
          const id = /ServiceID=(\S+)/.exec(r.join('\n'))?.[1];
          assert.ok(id, r.join(' | '));
          const onion = `${id}.onion`;
          // Published and reachable (bounded: 20 tries; F0 until the descriptor is up).
          let up = '';
          for (let i = 0; i < 20 && up !== '00'; i++) {
            up = await rep5(port, onion, 80);
            if (up !== '00') await new Promise((res) => setTimeout(res, 500));
          }
          assert.equal(up, '00', `the new onion service never answered through ${port}`);
          assert.equal((await hs.command(`DEL_ONION ${id}`))[0], '250 OK');
          const reps: string[] = [];
          for (let i = 0; i < 3 && reps[reps.length - 1] !== 'F2'; i++) reps.push(await rep5(port, onion, 80, 40_000));
          return reps;
        };
        const [viaSocksmith, direct] = await Promise.all([sequence(px.port), sequence(tor.socksPort)]);
        console.log(`# stopped onion service, replies in order: socksmith ${viaSocksmith.join(' ')}; tor ${direct.join(' ')}`);
        for (const reps of [viaSocksmith, direct]) {
          assert.ok(reps.every((r) => ['01', '05', '06', 'F2'].includes(r)), `only 01, 05, 06 or F2: ${reps.join(' ')}`);
        }
      } finally {
        hs.close();
        await px.close();
      }
    });
  });

  describe('isolation, read from Tor (STREAM events: the circuit of each stream)', () => {
    // Client c1 (ConfluxEnabled 0): with conflux a stream may be reported on either leg of a linked
    // pair, so "the same circuit" would be ambiguous; isolation itself is the same either way.
    const iso = (extra: ConfigInput = {}) => front(extra, { client: 'c1' });
    let other: TestServer;
    before(async () => (other = await startEchoServer()));
    after(async () => other?.close());

    /** Circuit ids of streams opened one after the other with the given parameters. */
    async function circuits(px: { port: number }, streams: Array<{ host?: string; port?: number; creds?: { user: string; pass: string }; localAddress?: string; socks4?: boolean; listenerPort?: number }>): Promise<string[]> {
      const out: string[] = [];
      for (const s of streams) {
        const host = s.host ?? 'iso.tornet.test';
        const port = s.port ?? tor.http.port;
        const from = ctl1.streams.length;
        const through = s.listenerPort ?? px.port;
        if (s.socks4) {
          const c = await RawClient.connect(through);
          c.write(req4(1, host, port, s.creds?.user ?? ''));
          assert.equal(toHex((await c.read(8, 30_000)).subarray(0, 2)), '00 5a');
          c.destroy();
        } else {
          const { reply, c } = await ask5(through, 1, host, port, s);
          assert.equal(reply[1], 0, toHex(reply));
          c.destroy();
        }
        out.push(await circuitOf(ctl1, from, `${host}:${port}`));
      }
      return out;
    }

    test('default flags: same credentials → same circuit; different credentials → different circuits', async () => {
      const px = await iso();
      try {
        const [a1, a2, b1, b2] = await circuits(px, [{ creds: { user: 'a', pass: 'x' } }, { creds: { user: 'a', pass: 'x' } }, { creds: { user: 'b', pass: 'x' } }, { creds: { user: 'b', pass: 'x' } }]);
        assert.equal(a1, a2, 'a, a share a circuit');
        assert.equal(b1, b2, 'b, b share a circuit');
        assert.notEqual(a1, b1, 'a and b do not');
      } finally {
        await px.close();
      }
    });

    test('IsolateClientAddr (default on): 127.0.0.1 and 127.0.0.2 on different circuits; off: the same', async () => {
      for (const on of [true, false]) {
        const px = await iso({ plugins: { isolation: { IsolateClientAddr: on } } });
        try {
          const [x, y, z] = await circuits(px, [{ localAddress: '127.0.0.1' }, { localAddress: '127.0.0.2' }, { localAddress: '127.0.0.1' }]);
          assert.equal(x, z);
          if (on) assert.notEqual(x, y);
          else assert.equal(x, y);
        } finally {
          await px.close();
        }
      }
    });

    test('IsolateSOCKSAuth off: different credentials share a circuit', async () => {
      const px = await iso({ plugins: { isolation: { IsolateSOCKSAuth: false } } });
      try {
        const [a, b] = await circuits(px, [{ creds: { user: 'a', pass: 'x' } }, { creds: { user: 'b', pass: 'x' } }]);
        assert.equal(a, b);
      } finally {
        await px.close();
      }
    });

    test('IsolateClientProtocol: SOCKS4a and SOCKS5 on different circuits (off: the same)', async () => {
      for (const on of [true, false]) {
        const px = await iso({ plugins: { isolation: { IsolateClientProtocol: on } } });
        try {
          const [s5, s4, s5b] = await circuits(px, [{}, { socks4: true }, {}]);
          assert.equal(s5, s5b);
          if (on) assert.notEqual(s5, s4);
          else assert.equal(s5, s4);
        } finally {
          await px.close();
        }
      }
    });

    test('IsolateDestPort: two ports on different circuits (off: the same)', async () => {
      for (const on of [true, false]) {
        const px = await iso({ plugins: { isolation: { IsolateDestPort: on } } });
        try {
          const [p1, p2, p1b] = await circuits(px, [{}, { port: other.port }, {}]);
          assert.equal(p1, p1b);
          if (on) assert.notEqual(p1, p2);
          else assert.equal(p1, p2);
        } finally {
          await px.close();
        }
      }
    });

    test('IsolateDestAddr: two names on different circuits (off: the same)', async () => {
      for (const on of [true, false]) {
        const px = await iso({ plugins: { isolation: { IsolateDestAddr: on } } });
        try {
          const [n1, n2, n1b] = await circuits(px, [{ host: 'iso.tornet.test' }, { host: 'web.tornet.test' }, { host: 'iso.tornet.test' }]);
          assert.equal(n1, n1b);
          if (on) assert.notEqual(n1, n2);
          else assert.equal(n1, n2);
        } finally {
          await px.close();
        }
      }
    });

    test('SessionGroup: two listeners on different circuits by default; with one SessionGroup, the same', async () => {
      for (const grouped of [false, true]) {
        const px = await iso({ listen: [{ host: IP, port: 0 }, { host: IP, port: 0 }], plugins: { isolation: grouped ? { SessionGroup: 7 } : true } });
        try {
          const ports = px.proxy.addresses.map((a) => a.port);
          assert.equal(ports.length, 2);
          const [l1, l2, l1b] = await circuits(px, [{ listenerPort: ports[0] }, { listenerPort: ports[1] }, { listenerPort: ports[0] }]);
          assert.equal(l1, l1b);
          if (grouped) assert.equal(l1, l2);
          else assert.notEqual(l1, l2);
        } finally {
          await px.close();
        }
      }
    });
  });

  describe('optimistic data', () => {
    /** Request + a long GET /echo in one write right behind the CONNECT; the echoed head must be byte-identical. */
    async function optimistic(port: number, host: string, destPort: number): Promise<{ sent: string; got: string }> {
      const c = await RawClient.connect(port);
      await hello5(c);
      const pad = crypto.randomBytes(3000).toString('hex'); // 6,000 bytes: more than one cell
      const head = `GET /echo HTTP/1.0\r\nHost: ${host}\r\nX-Pad: ${pad}`;
      c.write(Buffer.concat([req5(1, host, destPort, true), Buffer.from(`${head}\r\n\r\n`)]));
      const reply = await readReply5(c, 30_000);
      assert.equal(reply[1], 0, toHex(reply));
      const all = (await c.readToEnd(30_000)).toString('latin1');
      c.destroy();
      return { sent: head, got: all.slice(all.indexOf('\r\n\r\n') + 4).replace(/\n$/, '') };
    }

    test('pipelining, ConfluxEnabled 0 (client c1): the early bytes go to the exit before CONNECTED (Tor logs it) and arrive intact', async () => {
      const px = await front({}, { client: 'c1', pipelining: true });
      try {
        const before = (tor.infoLog('c1').match(/queued-up data/g) ?? []).length;
        const name = uniqueName('opt');
        const { sent, got } = await optimistic(px.port, name, tor.http.port);
        assert.equal(got, sent, 'the destination got every early byte, in order');
        const lines = tor.infoLog('c1').match(/Sending up to \d+ \+ \d+ bytes of queued-up data/g) ?? [];
        assert.ok(lines.length > before, `c1 logged queued-up data sent before CONNECTED (${lines.length} lines, ${before} before)`);
      } finally {
        await px.close();
      }
    });

    for (const pipelining of [true, false]) {
      test(`${pipelining ? 'pipelining' : 'the README config (no pipelining)'}, conflux on (client c0, 0.4.9 default): never lost, to the exit and to the onion service`, async () => {
        const px = await front({}, { pipelining });
        try {
          for (const [host, port] of [
            [uniqueName('opt'), tor.http.port],
            [tor.onion, 80],
          ] as const) {
            const { sent, got } = await optimistic(px.port, host, port);
            assert.equal(got, sent, `every early byte reached ${host}, in order`);
          }
        } finally {
          await px.close();
        }
      });
    }
  });

  describe("conformance: the same request to Tor's SocksPort and to socksmith in front of it", () => {
    /** Reply bytes for `request` sent after a no-auth greeting (SOCKS5) or alone (SOCKS4). */
    async function replyTo(port: number, request: Buffer): Promise<string> {
      const c = await RawClient.connect(port);
      try {
        if (request[0] === 5) {
          c.write(Buffer.from([5, 1, 0]));
          assert.equal(toHex(await c.read(2, 10_000)), '05 00');
        }
        c.write(request);
        if (request[0] === 4) return toHex(await c.read(8, 40_000));
        return toHex(await readReply5(c, 40_000));
      } catch (err) {
        return `closed (${(err as Error).message.slice(0, 40)})`;
      } finally {
        c.destroy();
      }
    }

    test('same REP for every case; every byte difference is one docs/tor.md lists', { timeout: 150_000 }, async () => {
      const px = await front();
      const refused = (await import('../helpers/net.js')).freePort;
      const closedPort = await refused();
      const name = uniqueName('conf');
      const h = tor.http.port;
      const cases: Array<[string, Buffer]> = [
        ['CONNECT IPv4', req5(1, IP, h)],
        ['CONNECT name', req5(1, name, h, true)],
        ['CONNECT onion service', req5(1, tor.onion, 80, true)],
        ['SOCKS4 CONNECT IPv4', req4(1, IP, h, 'u')],
        ['SOCKS4a CONNECT name', req4(1, name, h, 'u')],
        ['CONNECT unknown name (NXDOMAIN at the exit)', req5(1, `nx-${crypto.randomBytes(3).toString('hex')}.tornet.test`, h, true)],
        ['CONNECT refused port', req5(1, IP, closedPort)],
        ['CONNECT unknown valid v3 onion', req5(1, randomOnion(), 80, true)],
        ['CONNECT bad-checksum onion', req5(1, randomOnion(true), 80, true)],
        ['RESOLVE name', req5(0xf0, name, 0, true)],
        ['RESOLVE unknown name', req5(0xf0, `nx-${crypto.randomBytes(3).toString('hex')}.tornet.test`, 0, true)],
        ['RESOLVE_PTR 192.0.2.1', req5(0xf1, '192.0.2.1', 0)],
        ['RESOLVE the onion service', req5(0xf0, tor.onion, 0, true)],
        ['SOCKS4a RESOLVE name', req4(0xf0, name, 0)],
        ['CONNECT port 0', req5(1, name, 0, true)],
        ['BIND', req5(2, IP, h)],
        ['UDP ASSOCIATE', req5(3, IP, h)],
      ];
      // Differences socksmith makes on purpose (docs/tor.md); anything else fails the test.
      // A failed RESOLVE: Tor's reply has ATYP 00, which RFC 1928 does not define and tor-resolve
      // cannot parse; socksmith answers ATYP 01.
      const failedResolve = (t: string, o: string) => t === '05 04 00 00 00 00 00 00 00 00' && o === '05 04 00 01 00 00 00 00 00 00';
      const deliberate: Record<string, (tor: string, ours: string) => boolean> = {
        'RESOLVE unknown name': failedResolve,
        'RESOLVE the onion service': failedResolve,
      };
      const rows: string[] = [];
      try {
        const results = await Promise.all(cases.map(async ([label, bytes]) => [label, ...(await Promise.all([replyTo(tor.socksPort, bytes), replyTo(px.port, bytes)]))] as const));
        for (const [label, t, o] of results) {
          rows.push(`| ${label} | \`${t}\` | \`${o}\` |`);
          const rep = (x: string) => x.split(' ')[1];
          if (t === o) continue;
          if (deliberate[label]?.(t, o)) continue;
          assert.equal(rep(o), rep(t), `${label}: REP differs (tor ${t}, socksmith ${o})`);
          assert.fail(`${label}: bytes differ beyond the REP (tor ${t}, socksmith ${o}); document it in docs/tor.md or fix it`);
        }
      } finally {
        console.log(`# conformance (tor | socksmith):\n${rows.map((r) => `# ${r}`).join('\n')}`);
        await px.close();
      }
    });
  });

  describe('the real CLI with streams open through Tor', () => {
    let dir: string;
    before(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'socksmith-tor-cli-'));
    });
    after(() => fs.rmSync(dir, { recursive: true, force: true }));

    function writeConfig(extra: Record<string, unknown> = {}): string {
      const file = path.join(dir, `c-${crypto.randomBytes(3).toString('hex')}.json`);
      fs.writeFileSync(file, JSON.stringify({ listen: [{ host: IP, port: 0 }], upstream: { type: 'socks5', host: IP, port: tor.socksPort }, plugins: { 'extended-errors': true }, ...extra }));
      return file;
    }

    /** Open a stream to `/slow/ms` (answered after `ms`); resolves with the whole response. */
    async function slowStream(port: number, ms: number): Promise<{ body: Promise<string> }> {
      const { reply, c } = await ask5(port, 1, uniqueName('hup'), tor.http.port);
      assert.equal(reply[1], 0);
      c.write(`GET /slow/${ms} HTTP/1.0\r\nHost: x\r\n\r\n`);
      return { body: c.readToEnd(30_000).then((b) => b.toString('latin1')) };
    }

    test('SIGHUP: the open stream through Tor completes; new streams work after the reload', async () => {
      const file = writeConfig();
      const cli = await startCli(['-c', file]);
      try {
        const port = portOf(cli.listening[0]!);
        const s = await slowStream(port, 2000);
        fs.writeFileSync(file, fs.readFileSync(file, 'utf8').replace('"extended-errors":true', '"extended-errors":false'));
        cli.child.kill('SIGHUP');
        const deadline = Date.now() + 10_000;
        while (!cli.stderr().includes('configuration reloaded') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
        assert.match(cli.stderr(), /configuration reloaded/);
        assert.match(await s.body, /tornet-slow/, 'the stream opened before the reload got its whole answer');
        assert.match(await fetch5(port, uniqueName('hup'), tor.http.port), /tornet-ok/);
        assert.equal(await rep5(port, randomOnion(), 80), '04', 'the new config (extended errors off) applies to new streams');
      } finally {
        await cli.stop('SIGKILL');
      }
    });

    test('SIGTERM: the open stream through Tor drains to its end, new connections are refused, exit 0', async () => {
      const cli = await startCli(['-c', writeConfig()]);
      const port = portOf(cli.listening[0]!);
      const s = await slowStream(port, 1500);
      cli.child.kill('SIGTERM');
      const deadline = Date.now() + 5_000;
      let refused = false;
      while (!refused && Date.now() < deadline) {
        refused = await new Promise<boolean>((resolve) => {
          const t = net.connect({ host: IP, port });
          t.once('connect', () => {
            t.destroy();
            resolve(false);
          });
          t.once('error', () => resolve(true));
        });
        if (!refused) await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(refused, 'the listener closed');
      assert.match(await s.body, /tornet-slow/, 'the open stream got its whole answer');
      assert.equal(await cli.exited, 0);
    });
  });
});

if (why && process.env.CI) {
  test('the Tor tests can run in CI', () => {
    assert.fail(`${why}; .ci/run installs tor and scripts/run-tests.mjs provides the namespace`);
  });
}
