/**
 * The `udp-associate` plugin (SOCKS5 UDP ASSOCIATE, RFC 1928 §7) with the direct upstream, over
 * real loopback sockets: a real client library (the npm `socks` package's associate command and
 * UDP frame helpers) asking the loopback DNS server, a 10,000-datagram echo, hostile datagrams,
 * the limits, the idle timeout, and a control connection that dies mid-flow under the real CLI
 * (descriptors counted in /proc/PID/fd).
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import dns2 from 'dns2';
import { SocksClient } from 'socks';
import { createLogger } from '../../../src/logger.js';
import { SocksmithProxy } from '../../../src/proxy.js';
import { startCli, portOf } from '../../helpers/cli.js';
import { fdCount, fdList, settleFds } from '../../helpers/faults.js';
import { hex } from '../../helpers/hex.js';
import { startProxy, type TestProxy } from '../../helpers/proxy.js';
import { startDnsServer, startSilentDnsServer, type TestDnsServer, dnsQuery } from '../helpers/dns-server.js';
import { connectClient, readReply5, run, sleep, socks5Hello, waitFor, zeroReply } from '../helpers/socks.js';
import { toHex } from '../../helpers/hex.js';
import { associate, dropReasons, endedLines, frame4, frameName, startUdpEcho, udpRequest, UdpPeer } from './helpers.js';

const { Packet } = dns2;

let dns: TestDnsServer;
let echo: UdpPeer;
before(async () => {
  dns = await startDnsServer();
  dns.setA('echo.test', ['127.0.0.1']);
  dns.setA('www.example.test', ['127.0.0.1']);
  echo = await startUdpEcho();
});
after(async () => {
  echo.close();
  await dns.close();
});


async function udpProxy(options: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): Promise<TestProxy> {
  return startProxy({ resolver: { servers: [dns.address] }, ...extra, plugins: { 'udp-associate': options, ...(extra.plugins as object) } });
}

describe('udp-associate: off by default', () => {
  test('a default proxy answers UDP ASSOCIATE with 07, byte for byte, and closes', async () => {
    // The built-ins at their defaults: no plugins key at all.
    const proxy = await SocksmithProxy.create({ listen: [{ host: '127.0.0.1', port: 0 }] }, { logger: createLogger('silent') });
    const [l] = await proxy.listen();
    try {
      const c = await connectClient(l!.port);
      await socks5Hello(c);
      c.write(udpRequest());
      assert.equal(toHex(await c.read(10)), zeroReply(7));
      await c.waitEnd();
    } finally {
      await proxy.close(500);
    }
  });
});

describe('udp-associate: direct upstream', () => {
  test('npm socks (associate + createUDPFrame/parseUDPFrame): DNS over UDP to the loopback DNS server, by IP and by a name socksmith resolves', async () => {
    const px = await udpProxy();
    const udp = await UdpPeer.open();
    try {
      // The package's documented way for associate: new SocksClient(...).connect(), 'established'.
      const client = new SocksClient({ proxy: { host: '127.0.0.1', port: px.port, type: 5 }, command: 'associate', destination: { host: '0.0.0.0', port: 0 }, timeout: 5000 });
      const info = await new Promise<{ socket: import('node:net').Socket; remoteHost?: { host: string; port: number } }>((resolve, reject) => {
        client.once('established', resolve);
        client.once('error', reject);
        client.connect();
      });
      info.socket.on('error', () => {});
      const relay = info.remoteHost!;
      assert.equal(relay.host, '127.0.0.1');
      assert.ok(relay.port > 0 && relay.port !== px.port);
      // 1. DST = the DNS server's IP.
      udp.send(SocksClient.createUDPFrame({ remoteHost: { host: '127.0.0.1', port: dns.port }, data: dnsQuery('www.example.test', 0x1234) }), relay.port, relay.host);
      await udp.waitCount(1);
      const first = SocksClient.parseUDPFrame(udp.received[0]!.msg);
      assert.deepEqual(first.remoteHost, { host: '127.0.0.1', port: dns.port });
      assert.deepEqual({ from: udp.received[0]!.from.address, port: udp.received[0]!.from.port }, { from: '127.0.0.1', port: relay.port });
      const answer = Packet.parse(first.data);
      assert.equal(answer.header.id, 0x1234);
      assert.deepEqual(answer.answers.map((a: { address?: string }) => a.address), ['127.0.0.1']);
      // 2. DST = a name: socksmith resolves `echo.test` (through its resolver, the same DNS server), then sends there.
      dns.clearLog();
      udp.send(SocksClient.createUDPFrame({ remoteHost: { host: 'echo.test', port: dns.port }, data: dnsQuery('www.example.test', 0x4321) }), relay.port, relay.host);
      await udp.waitCount(2);
      const second = SocksClient.parseUDPFrame(udp.received[1]!.msg);
      // The reply names the address the datagram came from (the resolved IP), not the name.
      assert.deepEqual(second.remoteHost, { host: '127.0.0.1', port: dns.port });
      assert.equal(Packet.parse(second.data).header.id, 0x4321);
      assert.equal(dns.queriesFor('echo.test', 'A').length, 1, 'socksmith looked echo.test up once');
      info.socket.destroy();
      await waitFor(() => endedLines(px.logs).length === 1, 'association ended');
      const ended = endedLines(px.logs)[0]!;
      assert.equal(ended.reason, 'control connection closed');
      assert.deepEqual([ended.fromClient, ended.sent, ended.delivered], [2, 2, 2]);
    } finally {
      udp.close();
      await px.close();
    }
  });

  test('PySocks 1.7.1 (Debian python3-socks, socksocket SOCK_DGRAM): DNS over UDP, to an IP and to a name socksmith resolves', async (t) => {
    const python = '/usr/bin/python3';
    const probe = await run(python, ['-c', 'import socks']).catch(() => undefined);
    if (probe?.code !== 0) {
      if (process.env.CI) throw new Error('PySocks is not importable by /usr/bin/python3 (Debian package python3-socks); .ci/run must install it');
      return t.skip('python3-socks not installed');
    }
    // argv: proxyPort dnsHost dnsPort queryHex; prints the answer as hex and its source.
    const SCRIPT = [
      'import socks, socket, sys',
      'pport, host, port, q = sys.argv[1:5]',
      's = socks.socksocket(socket.AF_INET, socket.SOCK_DGRAM)',
      "s.set_proxy(socks.SOCKS5, '127.0.0.1', int(pport), rdns=True)",
      's.settimeout(5)',
      's.sendto(bytes.fromhex(q), (host, int(port)))',
      'data, addr = s.recvfrom(4096)',
      "print(data.hex(), addr[0], addr[1])",
    ].join('\n');
    const px = await udpProxy();
    try {
      for (const [host, id] of [['127.0.0.1', 0x2222], ['echo.test', 0x3333]] as const) {
        const r = await run(python, ['-c', SCRIPT, String(px.port), host, String(dns.port), dnsQuery('www.example.test', id).toString('hex')], { timeoutMs: 15_000 });
        assert.equal(r.code, 0, r.stderr);
        const [data, fromHost, fromPort] = r.stdout.trim().split(' ');
        const answer = Packet.parse(Buffer.from(data!, 'hex'));
        assert.equal(answer.header.id, id);
        assert.deepEqual(answer.answers.map((a: { address?: string }) => a.address), ['127.0.0.1']);
        // PySocks reports the header's source: the DNS server's address (the resolved one for a name).
        assert.deepEqual([fromHost, Number(fromPort)], ['127.0.0.1', dns.port]);
      }
      // PySocks names its UDP port in the request (DST 0.0.0.0:PORT): that port is the only one accepted.
      await waitFor(() => endedLines(px.logs).length === 2, 'both associations ended');
      for (const l of endedLines(px.logs)) assert.deepEqual([l.fromClient, l.sent, l.delivered], [1, 1, 1]);
    } finally {
      await px.close();
    }
  });

  test('10,000 datagrams through one association (window of 32): all echoed, counted, none to a second association', async () => {
    const px = await udpProxy();
    const a = await associate(px.port);
    const b = await associate(px.port);
    const ua = await UdpPeer.open();
    const ub = await UdpPeer.open();
    try {
      // B introduces itself (its port is learnt), then must get nothing of A's traffic.
      ub.send(frame4('127.0.0.1', echo.port, 'b-hello'), b.relayPort);
      await ub.waitCount(1);
      const N = 10_000;
      const WINDOW = 32;
      const seen = new Set<number>();
      let sent = 0;
      const sendOne = () => {
        const payload = Buffer.alloc(64);
        payload.writeUInt32BE(sent, 0);
        ua.send(frame4('127.0.0.1', echo.port, payload), a.relayPort);
        sent++;
      };
      let wrongSource = 0;
      let wrongHeader = 0;
      const header = frame4('127.0.0.1', echo.port, '');
      ua.socket.on('message', (msg, from) => {
        if (from.port !== a.relayPort) wrongSource++;
        if (msg.length !== 74 || !msg.subarray(0, 10).equals(header)) wrongHeader++;
        seen.add(msg.readUInt32BE(10));
        if (sent < N) sendOne();
      });
      for (let i = 0; i < WINDOW; i++) sendOne();
      await waitFor(() => seen.size === N, `all ${N} echoed (have ${seen.size})`, 60_000);
      assert.deepEqual([wrongSource, wrongHeader], [0, 0]);
      assert.equal(ub.received.length, 1, 'B got only its own datagram');
      a.control.end();
      b.control.end();
      await waitFor(() => endedLines(px.logs).length === 2, 'both associations ended');
      const ea = endedLines(px.logs).find((l) => l.fromClient === N)!;
      assert.ok(ea, JSON.stringify(endedLines(px.logs)));
      assert.deepEqual([ea.sent, ea.delivered], [N, N]);
      assert.deepEqual(Object.values(ea.dropped as object).filter((v) => v !== 0), []);
    } finally {
      ua.close();
      ub.close();
      await px.close();
    }
  });

  test('hostile datagrams are dropped and counted: short, bad ATYP, name past the end, port 0, FRAG ≠ 0, .onion, an unknown name, strangers', async () => {
    const px = await udpProxy();
    const a = await associate(px.port);
    const client = await UdpPeer.open();
    const stranger = await UdpPeer.open('127.0.0.2'); // another host on loopback
    const impostor = await UdpPeer.open(); // the client's IP, another port, never contacted
    try {
      // A stranger first: not the client's IP, so never mistaken for it, even before the client spoke.
      stranger.send(frame4('127.0.0.1', echo.port, 'stranger'), a.relayPort);
      await waitFor(() => dropReasons(px.logs).includes('stranger'), 'stranger dropped');
      client.send(frame4('127.0.0.1', echo.port, 'hello'), a.relayPort); // learns the client's port
      await client.waitCount(1);
      const bad = [
        hex('00 00 00'), // short
        hex('00 00 00 02 7f000001 0007 41'), // ATYP 02
        hex('00 00 00 03 40 616263'), // name length past the end
        frame4('127.0.0.1', 0, 'port zero'),
      ];
      for (const m of bad) client.send(m, a.relayPort);
      client.send(frame4('127.0.0.1', echo.port, 'fragment', 1), a.relayPort);
      client.send(frameName('expyuzz4wqqyqhjn.onion', 53, 'onion'), a.relayPort);
      client.send(frameName('nowhere.test', echo.port, 'unknown'), a.relayPort);
      impostor.send(Buffer.concat([hex('00 00 00 01 7f000001'), Buffer.from([0, 80]), Buffer.from('forged')]), a.relayPort);
      stranger.send(Buffer.from('raw'), a.relayPort);
      await waitFor(
        () => ['malformed', 'fragment', 'onion', 'unresolved', 'stranger'].every((r) => dropReasons(px.logs).includes(r)),
        `all drop reasons (have ${dropReasons(px.logs)})`,
      );
      assert.equal(dns.queriesFor('expyuzz4wqqyqhjn.onion').length, 0, '.onion never reaches DNS');
      assert.ok(dns.queriesFor('nowhere.test').length >= 1);
      // The association still works; nothing hostile reached the client.
      client.send(frame4('127.0.0.1', echo.port, 'still'), a.relayPort);
      await client.waitCount(2);
      assert.deepEqual(
        client.received.map((r) => r.msg.subarray(10).toString()),
        ['hello', 'still'],
      );
      assert.equal(impostor.received.length + stranger.received.length, 0);
      assert.equal(echo.received.filter((r) => /stranger|forged|fragment|onion|unknown|port zero/.test(r.msg.toString())).length, 0, 'nothing hostile reached the destination');
      a.control.end();
      await waitFor(() => endedLines(px.logs).length === 1, 'ended');
      assert.deepEqual(endedLines(px.logs)[0]!.dropped, { malformed: 4, fragment: 1, stranger: 3, onion: 1, refused: 0, unresolved: 1, busy: 0, sendFailed: 0, noClient: 0 });
    } finally {
      client.close();
      stranger.close();
      impostor.close();
      await px.close();
    }
  });

  test('a port named in the request is the only one accepted; the same IP from another port is a stranger', async () => {
    const px = await udpProxy();
    const owner = await UdpPeer.open();
    const other = await UdpPeer.open();
    const a = await associate(px.port, { dst: { host: '127.0.0.1', port: owner.port } });
    try {
      other.send(frame4('127.0.0.1', echo.port, 'other'), a.relayPort);
      await waitFor(() => dropReasons(px.logs).includes('stranger'), 'other port dropped');
      owner.send(frame4('127.0.0.1', echo.port, 'owner'), a.relayPort);
      await owner.waitCount(1);
      assert.equal(other.received.length, 0);
    } finally {
      a.control.destroy();
      owner.close();
      other.close();
      await px.close();
    }
  });

  test('replies: "contacted" drops a source the client never sent to; "any" delivers it with its own address in the header', async () => {
    for (const replies of ['contacted', 'any'] as const) {
      const px = await udpProxy({ replies });
      const client = await UdpPeer.open();
      const third = await UdpPeer.open('127.0.0.3');
      const a = await associate(px.port);
      try {
        client.send(frame4('127.0.0.1', echo.port, 'hi'), a.relayPort);
        await client.waitCount(1);
        third.send(Buffer.from('unsolicited'), a.relayPort, a.relayHost);
        if (replies === 'contacted') {
          await waitFor(() => dropReasons(px.logs).includes('stranger'), 'dropped');
          assert.equal(client.received.length, 1);
        } else {
          await client.waitCount(2);
          assert.equal(toHex(client.received[1]!.msg), toHex(frame4('127.0.0.3', third.port, 'unsolicited')));
        }
      } finally {
        a.control.destroy();
        client.close();
        third.close();
        await px.close();
      }
    }
  });

  test('the destination check (policy) applies per datagram, to IPs and to the address a name resolved to', async () => {
    const px = await udpProxy({}, { plugins: { policy: { destinations: [`reject 127.0.0.1:${echo.port}`, 'accept *:*'] } } });
    const client = await UdpPeer.open();
    const a = await associate(px.port);
    try {
      client.send(frame4('127.0.0.1', echo.port, 'refused'), a.relayPort);
      client.send(frameName('echo.test', echo.port, 'refused too'), a.relayPort);
      client.send(frame4('127.0.0.1', dns.port, dnsQuery('www.example.test', 7)), a.relayPort);
      await client.waitCount(1);
      assert.equal(client.received[0]!.msg.readUInt16BE(8), dns.port);
      a.control.end();
      await waitFor(() => endedLines(px.logs).length === 1, 'ended');
      assert.equal((endedLines(px.logs)[0]!.dropped as { refused: number }).refused, 2);
    } finally {
      client.close();
      await px.close();
    }
  });

  test('maxPending bounds datagrams waiting for a lookup: past it they are dropped as busy; the association still relays', async () => {
    const silent = await startSilentDnsServer();
    const px = await startProxy({ resolver: { servers: [`127.0.0.1:${silent.port}`] }, timeouts: { connect: 2000 }, plugins: { 'udp-associate': { maxPending: 2 } } });
    const client = await UdpPeer.open();
    const a = await associate(px.port);
    try {
      // Two names wait for a DNS server that never answers; the next three are over the bound.
      for (let i = 0; i < 5; i++) client.send(frameName(`pending${i}.test`, echo.port, `p${i}`), a.relayPort);
      await waitFor(() => dropReasons(px.logs).includes('busy'), 'busy drop');
      // An IP destination needs no lookup but still a place: it waits until the lookups time out (2 s), then passes.
      await waitFor(() => endedLines(px.logs).length === 0 && silent.asked.length >= 2, 'two lookups asked');
      await sleep(2500);
      client.send(frame4('127.0.0.1', echo.port, 'after'), a.relayPort);
      await client.waitCount(1);
      assert.equal(client.received[0]!.msg.subarray(10).toString(), 'after');
      a.control.end();
      await waitFor(() => endedLines(px.logs).length === 1, 'ended');
      const dropped = endedLines(px.logs)[0]!.dropped as Record<string, number>;
      assert.deepEqual([dropped.busy, dropped.unresolved], [3, 2]);
    } finally {
      client.close();
      silent.close();
      await px.close();
    }
  });

  test('IPv6: a client that reached [::1] gets a UDP relay on ::1 (ATYP 04) and IPv6 sources in the headers', async () => {
    const px = await udpProxy({}, { listen: [{ host: '::1', port: 0 }] });
    const echo6 = await startUdpEcho('::1');
    const client = await UdpPeer.open('::1');
    const c = await connectClient(px.port, { host: '::1' });
    try {
      await socks5Hello(c);
      c.write(udpRequest());
      const reply = await readReply5(c);
      assert.equal(toHex(reply.subarray(0, 20)), `05 00 00 04 ${'00 '.repeat(15)}01`);
      const relayPort = reply.readUInt16BE(20);
      const frame6 = Buffer.concat([hex(`00 00 00 04 ${'00'.repeat(15)}01`), Buffer.from([echo6.port >> 8, echo6.port & 0xff]), Buffer.from('six')]);
      client.send(frame6, relayPort, '::1');
      await client.waitCount(1);
      assert.equal(toHex(client.received[0]!.msg), toHex(frame6));
    } finally {
      c.destroy();
      client.close();
      echo6.close();
      await px.close();
    }
  });

  test('associations per client past maxAssociationsPerClient get 01; closing one frees its place', async () => {
    const px = await udpProxy({ maxAssociationsPerClient: 2 });
    try {
      const a = await associate(px.port);
      const b = await associate(px.port);
      const c = await associate(px.port, { expectRep: 1 });
      assert.equal(toHex(c.reply), zeroReply(1));
      await c.control.waitEnd();
      a.control.end();
      await waitFor(() => endedLines(px.logs).length === 1, 'a ended');
      const d = await associate(px.port);
      b.control.destroy();
      d.control.destroy();
    } finally {
      await px.close();
    }
  });

  test('an idle association ends after idleTimeout: the proxy closes the control connection and the relay port', async () => {
    const px = await udpProxy({ idleTimeout: 300 });
    const client = await UdpPeer.open();
    try {
      const a = await associate(px.port);
      client.send(frame4('127.0.0.1', echo.port, 'one'), a.relayPort);
      await client.waitCount(1);
      await a.control.waitEnd(5000);
      assert.equal(endedLines(px.logs)[0]!.reason, 'idle timeout');
    } finally {
      client.close();
      await px.close();
    }
  });
});

describe('udp-associate under the real CLI: the control connection dies mid-flow', () => {
  test('the UDP socket closes, its port answers nothing more, descriptors return to their count; the process stays up', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'socksmith-udp-'));
    const config = path.join(dir, 'socksmith.config.json');
    fs.writeFileSync(config, JSON.stringify({ listen: [{ host: '127.0.0.1', port: 0 }], resolver: { servers: [dns.address] }, plugins: { 'udp-associate': true } }));
    const cli = await startCli(['--config', config]);
    const pid = cli.child.pid!;
    const port = portOf(cli.listening[0]!);
    const client = await UdpPeer.open();
    const probe = await UdpPeer.open();
    try {
      // Warm up once (lazy module loads, the resolver's sockets), then take the baseline.
      const warm = await associate(port);
      client.send(frame4('127.0.0.1', echo.port, 'warm'), warm.relayPort);
      await client.waitCount(1);
      warm.control.destroy();
      await sleep(300);
      const baseline = fdCount(pid);
      const rounds = 5;
      for (let r = 0; r < rounds; r++) {
        const a = await associate(port);
        assert.ok(fdCount(pid) > baseline, 'the association holds descriptors');
        // Mid-flow: datagrams in both directions, then the client's control connection dies.
        for (let i = 0; i < 20; i++) client.send(frame4('127.0.0.1', echo.port, `r${r}-${i}`), a.relayPort);
        a.control.destroy();
        const settled = await settleFds(pid, baseline, 5000);
        assert.ok(settled <= baseline, `descriptors back to ${baseline}, have ${settled}: ${fdList(pid).join(', ')}`);
        // The relay port is closed: the client (whose port it had learnt) gets no answer through it any more.
        const before = client.received.length;
        client.send(frame4('127.0.0.1', echo.port, 'after'), a.relayPort);
        probe.send(frame4('127.0.0.1', echo.port, 'after'), a.relayPort);
        await sleep(300);
        assert.equal(client.received.length, before);
        assert.equal(probe.received.length, 0);
      }
      assert.equal(cli.child.exitCode, null, 'still running');
      // Still serving.
      const last = await associate(port);
      client.received.length = 0;
      client.send(frame4('127.0.0.1', echo.port, 'alive'), last.relayPort);
      await client.waitCount(1);
      last.control.destroy();
    } finally {
      client.close();
      probe.close();
      await cli.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('udp-associate: the listener and the request', () => {
  test('a request naming a name (ATYP 03) as its source is answered like zeros (the port learnt); reply is the listener address', async () => {
    const px = await udpProxy();
    const c = await connectClient(px.port);
    try {
      await socks5Hello(c);
      c.write(Buffer.concat([hex('05 03 00 03 09'), Buffer.from('localhost'), hex('0000')]));
      const reply = await readReply5(c);
      assert.equal(toHex(reply.subarray(0, 8)), '05 00 00 01 7f 00 00 01');
    } finally {
      c.destroy();
      await px.close();
    }
  });
});
