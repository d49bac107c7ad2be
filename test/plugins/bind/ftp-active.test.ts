/**
 * An FTP active-mode exchange through socksmith with the `bind` plugin: the npm `socks` client
 * opens the control connection with CONNECT and the data connection with BIND, tells a small
 * loopback FTP-like server `PORT h1,h2,h3,h4,p1,p2` with the BIND's first reply, and the server
 * connects back from its own address (the BIND request names it, so `checkPeer: 'address'` admits
 * it) to send a listing. The server answers with RFC 959's codes (220, 331, 230, 200, 150, 226, 221).
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { SocksClient } from 'socks';
import { startTcpServer } from '../../helpers/net.js';
import { startProxy } from '../../helpers/proxy.js';

const LISTING = '-rw-r--r-- 1 ftp ftp 42 Dec 04 19:00 hello.txt\r\n-rw-r--r-- 1 ftp ftp 7 Dec 04 19:00 notes.md\r\n';

type Event = { socket: net.Socket; remoteHost?: { host: string; port: number } };

/** Read CRLF-terminated lines from a socket. */
function lines(s: net.Socket): () => Promise<string> {
  let buf = '';
  const waiting: Array<(l: string) => void> = [];
  const queue: string[] = [];
  s.on('data', (d: Buffer) => {
    buf += d.toString();
    for (let i = buf.indexOf('\r\n'); i >= 0; i = buf.indexOf('\r\n')) {
      const l = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const w = waiting.shift();
      if (w) w(l);
      else queue.push(l);
    }
  });
  return () => new Promise<string>((resolve) => (queue.length > 0 ? resolve(queue.shift()!) : waiting.push(resolve)));
}

test('FTP active mode through socksmith: CONNECT for control, BIND for data, PORT from the first reply, the server connects back, LIST arrives', { timeout: 20_000 }, async () => {
  // A minimal FTP server (USER, PASS, TYPE, PORT, LIST, QUIT) on 127.0.0.1 that connects back from 127.0.0.1.
  const server = await startTcpServer((ctl) => {
    ctl.write('220 socksmith test ftp\r\n');
    const next = lines(ctl);
    let port: { host: string; port: number } | undefined;
    void (async () => {
      for (;;) {
        const cmd = await next();
        const [verb, arg = ''] = cmd.split(' ');
        if (verb === 'USER') ctl.write('331 password please\r\n');
        else if (verb === 'PASS') ctl.write('230 logged in\r\n');
        else if (verb === 'TYPE') ctl.write('200 type set\r\n');
        else if (verb === 'PORT') {
          const n = arg.split(',').map(Number);
          port = { host: n.slice(0, 4).join('.'), port: n[4]! * 256 + n[5]! };
          ctl.write('200 PORT ok\r\n');
        } else if (verb === 'LIST' && port) {
          ctl.write('150 opening data connection\r\n');
          const data = net.connect({ ...port, localAddress: '127.0.0.1' });
          data.on('error', () => ctl.write('425 cannot open data connection\r\n'));
          data.once('connect', () => data.end(LISTING));
          data.once('close', () => ctl.write('226 transfer complete\r\n'));
        } else if (verb === 'QUIT') {
          ctl.end('221 bye\r\n');
          return;
        } else ctl.write('502 not implemented\r\n');
      }
    })();
  });
  const px = await startProxy({ plugins: { bind: true } });
  try {
    const proxy = { host: '127.0.0.1', port: px.port, type: 5 as const };
    const { socket: ctl } = await SocksClient.createConnection({ proxy, command: 'connect', destination: { host: '127.0.0.1', port: server.port }, timeout: 5000 });
    const reply = lines(ctl);
    assert.match(await reply(), /^220 /);
    for (const [cmd, code] of [['USER anonymous', '331'], ['PASS guest', '230'], ['TYPE A', '200']] as const) {
      ctl.write(`${cmd}\r\n`);
      assert.match(await reply(), new RegExp(`^${code} `));
    }
    // The data connection: BIND, naming the FTP server as the expected peer.
    const bind = new SocksClient({ proxy, command: 'bind', destination: { host: '127.0.0.1', port: 0 }, timeout: 5000 });
    const bound = new Promise<Event>((resolve) => bind.once('bound', resolve));
    const established = new Promise<Event>((resolve) => bind.once('established', resolve));
    const failed = new Promise<never>((_, reject) => bind.once('error', reject));
    bind.connect();
    const at = (await Promise.race([bound, failed])).remoteHost!;
    ctl.write(`PORT ${at.host.split('.').join(',')},${at.port >> 8},${at.port & 0xff}\r\n`);
    assert.match(await reply(), /^200 /);
    ctl.write('LIST\r\n');
    assert.match(await reply(), /^150 /);
    const data = (await Promise.race([established, failed])).socket;
    assert.equal((await Promise.race([established, failed])).remoteHost!.host, '127.0.0.1');
    let listing = '';
    data.on('data', (d: Buffer) => (listing += d.toString()));
    await new Promise<void>((resolve) => data.once('end', resolve));
    assert.equal(listing, LISTING);
    assert.match(await reply(), /^226 /);
    ctl.write('QUIT\r\n');
    assert.match(await reply(), /^221 /);
    data.destroy();
    ctl.destroy();
  } finally {
    await px.close();
    await server.close();
  }
});
