/**
 * The Tor-extension plugins driven by real clients (clients.md): tor-resolve (RESOLVE and
 * RESOLVE_PTR; no tor daemon is started), torsocks (name lookups become RESOLVE), and curl with
 * SOCKS5 credentials for isolation. Names are answered by a loopback DNS server; nothing connects
 * to the answers.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startHttpServer, type TestServer } from '../helpers/net.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';
import { requireTool } from '../helpers/tools.js';
import { ptrName, startDnsServer, type TestDnsServer } from './helpers/dns-server.js';
import { startRecordingUpstream, type RecordingUpstream } from './helpers/recording-upstream.js';
import { run, socks5Upstream } from './helpers/socks.js';

let dns: TestDnsServer;
let px: TestProxy;
let tmp: string;
before(async () => {
  dns = await startDnsServer();
  dns.setA('example.test', ['10.1.2.3']);
  dns.setA('socksmith-dest.test', ['10.4.5.6']);
  dns.setPTR('127.0.0.1', ['loopback.example.test']);
  dns.setPTR('10.1.2.3', ['host.example.test']);
  px = await startProxy({ resolver: { servers: [dns.address] }, plugins: { resolve: true, 'resolve-ptr': true } });
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'socksmith-plugins-'));
});
after(async () => {
  await px.close();
  await dns.close();
  await fs.rm(tmp, { recursive: true, force: true });
});

describe('tor-resolve', () => {
  test('-4 (SOCKS4a RESOLVE) and -5 (SOCKS5 RESOLVE) print exactly the DNS answer and exit 0', async (t) => {
    const bin = requireTool(t, 'tor-resolve', 'tor');
    if (!bin) return;
    for (const flag of ['-4', '-5']) {
      const r = await run(bin, [flag, 'example.test', `127.0.0.1:${px.port}`]);
      assert.equal(r.code, 0, `${flag}: ${r.stderr}`);
      assert.equal(r.stdout, '10.1.2.3\n', flag);
    }
    assert.ok(dns.queriesFor('example.test', 'A').length >= 1);
  });

  test('-x 10.1.2.3 (RESOLVE_PTR) prints exactly the PTR name and exits 0', async (t) => {
    const bin = requireTool(t, 'tor-resolve', 'tor');
    if (!bin) return;
    const r = await run(bin, ['-x', '10.1.2.3', `127.0.0.1:${px.port}`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'host.example.test\n');
  });

  test('-x 127.0.0.1 prints the PTR name the configured DNS server answers and exits 0', async (t) => {
    const bin = requireTool(t, 'tor-resolve', 'tor');
    if (!bin) return;
    dns.clearLog();
    const r = await run(bin, ['-x', '127.0.0.1', `127.0.0.1:${px.port}`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'loopback.example.test\n', 'the answer of resolver.servers, not of /etc/hosts');
    assert.equal(dns.queriesFor(ptrName('127.0.0.1'), 'PTR').length, 1, 'the PTR query reached the configured DNS server');
  });

  test('a name that fails: tor-resolve exits 1 (-4, -5) with nothing on stdout; a failing -x too', async (t) => {
    const bin = requireTool(t, 'tor-resolve', 'tor');
    if (!bin) return;
    for (const args of [['-4', 'nx.test'], ['-5', 'nx.test'], ['-5', 'abcdefghijklmnop.onion'], ['-x', '10.9.9.9']]) {
      const r = await run(bin, [...args, `127.0.0.1:${px.port}`]);
      assert.equal(r.code, 1, `${args.join(' ')}: ${r.stdout} ${r.stderr}`);
      assert.equal(r.stdout, '');
    }
  });
});

describe('torsocks', () => {
  test('a name lookup under torsocks becomes a RESOLVE and prints the DNS answer', async (t) => {
    const bin = requireTool(t, 'torsocks');
    if (!bin) return;
    const conf = path.join(tmp, 'torsocks.conf');
    await fs.writeFile(conf, `TorAddress 127.0.0.1\nTorPort ${px.port}\n`);
    dns.clearLog();
    const r = await run(bin, ['-a', '127.0.0.1', '-P', String(px.port), '/usr/bin/python3', '-c', 'import socket; print(socket.gethostbyname("socksmith-dest.test"))'], {
      env: { ...process.env, TORSOCKS_CONF_FILE: conf },
      timeoutMs: 15000,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '10.4.5.6\n');
    assert.ok(dns.queriesFor('socksmith-dest.test', 'A').length >= 1, 'resolved by socksmith through the configured DNS server');
  });
});

describe('curl --socks5-hostname with user:password (isolation)', () => {
  let up: RecordingUpstream;
  let web: TestServer & { requests: string[] };
  let iso: TestProxy;
  before(async () => {
    up = await startRecordingUpstream();
    web = await startHttpServer();
    iso = await startProxy({ upstream: socks5Upstream(up.port), plugins: { isolation: true } });
  });
  after(async () => {
    await iso.close();
    await up.close();
    await web.close();
  });

  test('two different users → two different upstream credential pairs; the same user again → the same pair', async (t) => {
    const curl = requireTool(t, 'curl');
    if (!curl) return;
    let n = 0;
    const fetch = async (user: string) => {
      // The path carries no credential text: the upstream's raw bytes are checked for it below.
      const r = await run(curl, ['-s', '--max-time', '5', '--socks5-hostname', `127.0.0.1:${iso.port}`, '--proxy-user', user, `http://localhost:${web.port}/req${++n}`]);
      assert.equal(r.code, 0, r.stderr);
      return r.stdout;
    };
    assert.equal(await fetch('alice:s3cret'), 'hello from /req1');
    assert.equal(await fetch('bob:hunter2'), 'hello from /req2');
    assert.equal(await fetch('alice:s3cret'), 'hello from /req3');
    await up.waitSessions(3);
    const pairs = up.sessions.map((s) => (s.credentials ? `${s.credentials.username.toString('hex')}/${s.credentials.password.toString('hex')}` : 'none'));
    assert.ok(!pairs.includes('none'), 'every stream reached the upstream with credentials');
    assert.notEqual(pairs[0], pairs[1], 'alice and bob: different pairs');
    assert.equal(pairs[0], pairs[2], 'alice twice: the same pair');
    for (const s of up.sessions) {
      for (const secret of ['alice', 's3cret', 'bob', 'hunter2', '127.0.0.1']) assert.ok(!s.raw.includes(secret), `the upstream saw ${secret}`);
    }
  });
});
