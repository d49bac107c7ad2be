import 'reflect-metadata';
/**
 * Error replies on the wire, byte for byte, over real loopback sockets (no plugins): what a
 * client gets for commands socksmith does not support, for unreachable destinations, for
 * greetings it cannot serve and for bytes that are not SOCKS at all. Every case also checks that
 * the proxy closes the connection after its answer (RFC 1928 §6: "the SOCKS server MUST
 * terminate the TCP connection shortly after sending the reply").
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { hex, toHex } from '../helpers/hex.js';
import { RawClient } from '../helpers/net.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';
import { demandUserPass } from './helpers/auth.js';
import { freePort } from './helpers/daemons.js';
import { port16, waitForAccessLine } from './helpers/socks.js';

let px: TestProxy;
let pxAuth: TestProxy;
/** A loopback port with nothing listening (bound and released a moment ago). */
let closedPort: number;

before(async () => {
  px = await startProxy();
  pxAuth = await startProxy();
  demandUserPass(pxAuth, { username: 'alice', password: 's3cret' });
  closedPort = await freePort();
});
after(async () => {
  await px?.close();
  await pxAuth?.close();
});

/**
 * Send `steps` in order, each followed by the exact bytes expected back, then assert the proxy
 * closes with nothing more (`final` = bytes expected between the last step and EOF).
 */
async function exchange(proxy: TestProxy, steps: Array<[send: Buffer, expect: Buffer]>, final: Buffer): Promise<void> {
  const c = await RawClient.connect(proxy.port);
  try {
    for (const [send, expect] of steps) {
      c.write(send);
      assert.equal(toHex(await c.read(expect.length)), toHex(expect));
    }
    assert.equal(toHex(await c.readToEnd(3000)), toHex(final), 'then the proxy closes');
  } finally {
    c.destroy();
  }
}

const GREETING = hex('05 01 00');
const METHOD_00 = hex('05 00');

describe('SOCKS5 commands socksmith does not support → REP 07, then close', () => {
  test('BIND (05 02): 05 07 00 01 00000000 0000', async () => {
    await exchange(px, [[GREETING, METHOD_00], [hex('05 02 00 01 7f000001 1f90'), Buffer.alloc(0)]], hex('05 07 00 01 00000000 0000'));
  });

  test('UDP ASSOCIATE (05 03): 05 07 00 01 00000000 0000', async () => {
    await exchange(px, [[GREETING, METHOD_00], [hex('05 03 00 01 00000000 0000'), Buffer.alloc(0)]], hex('05 07 00 01 00000000 0000'));
  });

  test('unknown command 0x09: 05 07 00 01 00000000 0000', async () => {
    await exchange(px, [[GREETING, METHOD_00], [hex('05 09 00 01 7f000001 0050'), Buffer.alloc(0)]], hex('05 07 00 01 00000000 0000'));
    const line = await waitForAccessLine(px, (l) => l.command === '0x09');
    assert.equal(line.reply, 'COMMAND_NOT_SUPPORTED');
  });

  test('unknown address type 0x05: 05 08 00 01 00000000 0000 (RFC 1928 §6 X\'08\')', async () => {
    await exchange(px, [[GREETING, METHOD_00], [hex('05 01 00 05 7f000001 0050'), Buffer.alloc(0)]], hex('05 08 00 01 00000000 0000'));
  });
});

describe('SOCKS4 commands socksmith does not support', () => {
  test('SOCKS4 BIND (04 02): 00 5b 0000 00000000, then close', async () => {
    await exchange(px, [[Buffer.concat([hex('04 02 1f90 7f000001'), Buffer.from('user\0')]), Buffer.alloc(0)]], hex('00 5b 0000 00000000'));
  });
});

describe('unreachable destination', () => {
  test('SOCKS5 CONNECT to a closed loopback port: 05 05 00 01 00000000 0000', async () => {
    await exchange(px, [[GREETING, METHOD_00], [Buffer.concat([hex('05 01 00 01 7f000001'), port16(closedPort)]), Buffer.alloc(0)]], hex('05 05 00 01 00000000 0000'));
    const line = await waitForAccessLine(px, (l) => l.destination === `127.0.0.1:${closedPort}` && l.version === 5);
    assert.equal(line.reply, 'CONNECTION_REFUSED');
  });

  test('SOCKS5 CONNECT by name (localhost) to a closed port: REP 05 as well', async () => {
    await exchange(
      px,
      [[GREETING, METHOD_00], [Buffer.concat([hex('05 01 00 03 09'), Buffer.from('localhost'), port16(closedPort)]), Buffer.alloc(0)]],
      hex('05 05 00 01 00000000 0000'),
    );
  });

  test('SOCKS4 CONNECT to a closed loopback port: 00 5b 0000 00000000', async () => {
    await exchange(px, [[Buffer.concat([hex('04 01'), port16(closedPort), hex('7f000001 00')]), Buffer.alloc(0)]], hex('00 5b 0000 00000000'));
  });

  test('SOCKS4A CONNECT (0.0.0.1 + localhost) to a closed port: 00 5b 0000 00000000', async () => {
    await exchange(
      px,
      [[Buffer.concat([hex('04 01'), port16(closedPort), hex('00000001 00'), Buffer.from('localhost\0')]), Buffer.alloc(0)]],
      hex('00 5b 0000 00000000'),
    );
  });
});

describe('greetings and first bytes', () => {
  test('greeting offering only GSSAPI (05 01 01): 05 ff, then close', async () => {
    await exchange(px, [[hex('05 01 01'), Buffer.alloc(0)]], hex('05 ff'));
  });

  test('wrong version byte 0x06: close with no reply at all', async () => {
    await exchange(px, [[hex('06 01 00'), Buffer.alloc(0)]], Buffer.alloc(0));
  });

  test('RFC 1929 message before any greeting (01 …): close with no reply', async () => {
    await exchange(px, [[Buffer.concat([hex('01 05'), Buffer.from('alice'), hex('06'), Buffer.from('s3cret')]), Buffer.alloc(0)]], Buffer.alloc(0));
  });
});

describe('RFC 1929 (with a test tap that demands alice/s3cret)', () => {
  const AUTH_GREETING = hex('05 02 00 02');
  const userpass = (u: string, p: string) => Buffer.concat([Buffer.from([0x01, u.length]), Buffer.from(u), Buffer.from([p.length]), Buffer.from(p)]);

  test('wrong password: 05 02, then 01 01, then close', async () => {
    await exchange(pxAuth, [[AUTH_GREETING, hex('05 02')], [userpass('alice', 'nope'), Buffer.alloc(0)]], hex('01 01'));
  });

  test('right password: 05 02, 01 00, then a request is served (BIND → 07)', async () => {
    await exchange(
      pxAuth,
      [
        [AUTH_GREETING, hex('05 02')],
        [userpass('alice', 's3cret'), hex('01 00')],
        [hex('05 02 00 01 7f000001 0050'), Buffer.alloc(0)],
      ],
      hex('05 07 00 01 00000000 0000'),
    );
  });
});
