/**
 * udp-associate with a socks5 upstream: socksmith forwards the association to the upstream's own
 * UDP ASSOCIATE (`api.dispatch.run`) and relays to its relay, headers passed through; names are
 * never resolved locally. Against dante-server (which serves UDP ASSOCIATE) and microsocks (which
 * does not: its 07 reaches the client); `upstream: 'refuse'` answers 07 itself.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import dns2 from 'dns2';
import { type Daemon, startDante } from '../../e2e/helpers/daemons.js';
import { childPids } from '../../helpers/cli.js';
import { toHex } from '../../helpers/hex.js';
import { startProxy, type TestProxy } from '../../helpers/proxy.js';
import { requireTool } from '../../helpers/tools.js';
import { startDnsServer, type TestDnsServer, dnsQuery } from '../helpers/dns-server.js';
import { socks5Upstream, startMicrosocks, waitFor, zeroReply } from '../helpers/socks.js';
import { associate, dropReasons, endedLines, frame4, frameName, startUdpEcho, UdpPeer } from './helpers.js';

const { Packet } = dns2;

let dns: TestDnsServer;
let echo: UdpPeer;
before(async () => {
  dns = await startDnsServer();
  dns.setA('www.example.test', ['127.0.0.1']);
  echo = await startUdpEcho();
});
after(async () => {
  echo.close();
  await dns.close();
});


describe('udp-associate chained: socksmith → dante-server → loopback', () => {
  let dante: Daemon | undefined;
  let px: TestProxy | undefined;
  after(async () => {
    await px?.close();
    await dante?.stop();
  });

  test('DNS and an echo through dante\'s relay; headers name the true source; the association ends with the client\'s control connection', async (t) => {
    const bin = requireTool(t, 'danted', 'dante-server');
    if (!bin) return;
    dante = await startDante(bin, { commands: 'connect udpassociate udpreply' });
    px = await startProxy({ upstream: socks5Upstream(dante.port), resolver: { servers: [dns.address] }, plugins: { 'udp-associate': true } });
    const client = await UdpPeer.open();
    const a = await associate(px.port);
    try {
      assert.equal(a.relayHost, '127.0.0.1');
      client.send(frame4('127.0.0.1', dns.port, dnsQuery('www.example.test', 0x0bad)), a.relayPort);
      await client.waitCount(1, 10_000);
      const r = client.received[0]!;
      assert.equal(r.from.port, a.relayPort, 'from socksmith\'s relay, not dante\'s');
      assert.equal(toHex(r.msg.subarray(0, 10)), toHex(frame4('127.0.0.1', dns.port, '')));
      const answer = Packet.parse(r.msg.subarray(10));
      assert.equal(answer.header.id, 0x0bad);
      assert.deepEqual(answer.answers.map((x: { address?: string }) => x.address), ['127.0.0.1']);
      for (let i = 0; i < 50; i++) client.send(frame4('127.0.0.1', echo.port, `echo-${i}`), a.relayPort);
      await client.waitCount(51, 10_000);
      assert.deepEqual(new Set(client.received.slice(1).map((x) => x.msg.subarray(10).toString())).size, 50);
      // A name goes to dante as it is: socksmith's resolver never sees it (no local DNS leak).
      // `localhost` is one dante resolves from /etc/hosts, so no DNS server of the machine is asked.
      dns.clearLog();
      client.send(frameName('localhost', echo.port, 'named'), a.relayPort);
      await client.waitCount(52, 10_000);
      const named = client.received[51]!;
      assert.equal(named.msg.subarray(10).toString(), 'named');
      assert.equal(toHex(named.msg.subarray(0, 10)), toHex(frame4('127.0.0.1', echo.port, '')), 'the reply names the address dante sent to');
      assert.equal(dns.queriesFor('localhost').length, 0, 'socksmith resolved nothing');
      a.control.end();
      await waitFor(() => endedLines(px!.logs).length === 1, 'association ended');
      const ended = endedLines(px.logs)[0]!;
      assert.equal(ended.reason, 'control connection closed');
      assert.ok((ended.sent as number) >= 52);
      assert.equal(ended.delivered, 52);
    } finally {
      client.close();
      a.control.destroy();
    }
  });

  test('the upstream\'s control connection ending ends the association (dante\'s processes killed)', async (t) => {
    if (!dante || !px) return t.skip('needs the first test');
    const a = await associate(px.port);
    // danted's io-child keeps a session open after its mother exits: kill the children we started (by PID) first.
    for (const pid of childPids(dante.pid)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    await dante.stop();
    dante = undefined;
    await a.control.waitEnd(10_000);
    await waitFor(() => endedLines(px!.logs).some((l) => l.reason === 'upstream control connection closed'), 'ended by the upstream');
  });
});

describe('udp-associate with an upstream that does not serve UDP ASSOCIATE', () => {
  test('forward: microsocks\'s 07 reaches the client; refuse: 07 without asking the upstream', async (t) => {
    const bin = requireTool(t, 'microsocks');
    if (!bin) return;
    const ms = await startMicrosocks(bin);
    const forward = await startProxy({ upstream: socks5Upstream(ms.port), plugins: { 'udp-associate': true } });
    const refuse = await startProxy({ upstream: socks5Upstream(ms.port), plugins: { 'udp-associate': { upstream: 'refuse' } } });
    try {
      const f = await associate(forward.port, { expectRep: 7 });
      assert.equal(toHex(f.reply), zeroReply(7));
      await f.control.waitEnd();
      const r = await associate(refuse.port, { expectRep: 7 });
      assert.equal(toHex(r.reply), zeroReply(7));
      await r.control.waitEnd();
      assert.equal(dropReasons(forward.logs).length, 0);
    } finally {
      await forward.close();
      await refuse.close();
      await ms.stop();
    }
  });
});
