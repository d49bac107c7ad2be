/**
 * `auth` under adversarial load (issue #10): the scrypt turns are shared round-robin between
 * client addresses with a cap per address (a login flood from some addresses cannot starve an
 * honest login from another; a waiting login whose client went away frees its place at once);
 * an unknown username is hashed at the cost most users have (not the first line's); a users
 * file that is truncated while being rewritten does not lock everyone out. Behaviour is asserted
 * through the scrypt counter, reply bytes and log lines, never through elapsed time. Source
 * addresses 127.0.0.2… are bound on loopback.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { EMPTY_SETTLE_MS, FairTurnQueue, MAX_LOGINS_PER_CLIENT } from '../../../plugins/auth/index.js';
import { formatUserLine, hashPassword, parseUsersFile, scryptStats } from '../../../plugins/auth/users-file.js';
import type { ConfigInput } from '../../../src/config/schema.js';
import { hex, toHex } from '../../helpers/hex.js';
import type { RawClient } from '../../helpers/net.js';
import { startProxy, type TestProxy } from '../../helpers/proxy.js';
import { connectClient, userpass, waitFor } from '../helpers/socks.js';
import { TEST_PARAMS, tempDir, usersText } from './helpers.js';

let dir: string;
before(async () => {
  dir = await tempDir();
});
after(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

const authConfig = (usersFile: string): ConfigInput => ({ plugins: { auth: { usersFile } } as ConfigInput['plugins'] });

/** A users file whose lines have the given costs, one user per entry. */
async function costedFile(name: string, users: ReadonlyArray<{ user: string; pass: string; N: number; r: number }>): Promise<string> {
  const lines = ['# mixed costs'];
  for (const u of users) lines.push(formatUserLine(u.user, await hashPassword(u.pass, { N: u.N, r: u.r, p: 1 })));
  const file = path.join(dir, name);
  await fs.writeFile(file, `${lines.join('\n')}\n`);
  return file;
}

/** Greeting and RFC 1929 in one write from `localAddress`; resolves with the client once `05 02` came back. */
async function startLogin(px: TestProxy, localAddress: string, user: string, pass: string): Promise<RawClient> {
  const c = await connectClient(px.port, { localAddress });
  c.write(Buffer.concat([hex('05 01 02'), userpass(user, pass)]));
  assert.equal(toHex(await c.read(2, 20000)), '05 02');
  return c;
}

describe('scrypt turns are shared per client address', () => {
  test('FairTurnQueue: waiting clients take turns; within a client, arrival order; a client at its cap is refused', async () => {
    const q = new FairTurnQueue(1, 3);
    const order: string[] = [];
    const signal = new AbortController().signal;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const first = q.run('a', signal, async () => {
      await gate;
      order.push('a0');
    });
    const runs = [
      q.run('a', signal, async () => void order.push('a1')),
      q.run('a', signal, async () => void order.push('a2')),
      q.run('b', signal, async () => void order.push('b0')),
      q.run('b', signal, async () => void order.push('b1')),
      q.run('c', signal, async () => void order.push('c0')),
    ];
    const over = await q.run('a', signal, async () => void order.push('a3'));
    assert.equal(typeof over, 'symbol', 'a fourth task from a (cap 3) is refused at once');
    assert.equal(q.waitingCount, 5);
    release();
    await Promise.all([first, ...runs]);
    assert.deepEqual(order, ['a0', 'a1', 'b0', 'c0', 'a2', 'b1']);
    assert.equal(q.waitingCount, 0);
  });

  test('FairTurnQueue: a waiting task whose signal aborts leaves the queue at once and frees its place under the cap; it never runs', async () => {
    const q = new FairTurnQueue(1, 2);
    const signal = new AbortController().signal;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const ran: string[] = [];
    const first = q.run('a', signal, async () => {
      await gate;
      ran.push('a0');
    });
    const gone = new AbortController();
    const waiting = q.run('a', gone.signal, async () => void ran.push('a1'));
    assert.equal(typeof (await q.run('a', signal, async () => void ran.push('a2'))), 'symbol', 'at the cap of 2');
    assert.equal(q.waitingCount, 1);
    gone.abort();
    // Settled within the same turn of the event loop (before any slot was released).
    const settled = await Promise.race([waiting, new Promise((r) => setImmediate(() => r('still waiting')))]);
    assert.equal(settled, undefined, 'the aborted task settles at once, before any turn came');
    assert.equal(q.waitingCount, 0, 'and has left the queue');
    const next = q.run('a', signal, async () => void ran.push('a3'));
    assert.equal(q.waitingCount, 1, 'its place under the cap is free again: a new task queues instead of being refused');
    assert.equal(typeof (await q.run('a', signal, async () => 'x')), 'symbol', 'the cap still holds');
    const late = new AbortController();
    late.abort();
    assert.equal(await q.run('b', late.signal, async () => void ran.push('b0')), undefined, 'a task aborted before it queues never runs');
    release();
    await Promise.all([first, next]);
    assert.deepEqual(ran, ['a0', 'a3']);
    assert.equal(q.waitingCount, 0);
  });

  test('logins whose clients reset leave the queue at once: 64 waiting from one address go away, and 64 new logins from that address are hashed, none refused', async () => {
    // The slots stay busy with 20 slow logins from 127.0.0.8 (p=16: 16 times the work of
    // N=4096, r=8, p=1, in 4 MiB), so before the fix the 64 gone logins held their places for
    // many slow turns.
    const file = path.join(dir, 'gone.txt');
    const lines = [
      formatUserLine('slow', await hashPassword('slow-pass', { N: 4096, r: 8, p: 16 })),
      formatUserLine('alice', await hashPassword('alice-pass', { N: 4096, r: 8, p: 1 })),
      formatUserLine('bob', await hashPassword('bob-pass', { N: 4096, r: 8, p: 1 })),
    ];
    await fs.writeFile(file, `${lines.join('\n')}\n`);
    const px = await startProxy(authConfig(file));
    const busy: RawClient[] = [];
    const clients: RawClient[] = [];
    const OVER = 'auth: too many logins waiting from this address; refused without hashing';
    try {
      busy.push(...(await Promise.all(Array.from({ length: 20 }, (_, i) => startLogin(px, '127.0.0.8', 'slow', `wrong-${i}`)))));
      const gone = await Promise.all(Array.from({ length: MAX_LOGINS_PER_CLIENT }, (_, i) => startLogin(px, '127.0.0.9', 'alice', `wrong-${i}`)));
      const hashedAtReset = scryptStats.calls;
      for (const c of gone) c.socket.resetAndDestroy(); // the clients went away (RST)
      await waitFor(() => px.proxy.kernel.connectionCount <= busy.length, 'the proxy to see the 64 clients go', 10000);
      const again = await Promise.all(Array.from({ length: MAX_LOGINS_PER_CLIENT }, (_, i) => startLogin(px, '127.0.0.9', 'alice', `again-${i}`)));
      clients.push(...again);
      const answers = await Promise.all(again.map(async (c) => toHex(await c.read(2, 60000))));
      assert.ok(answers.every((a) => a === '01 01'));
      assert.equal(px.logs.filter((l) => l.msg === OVER).length, 0, 'no login from 127.0.0.9 was refused: the 64 that went away held no place');
      // 20 slow ones and the 64 new ones at most: the 64 that went away were never hashed.
      assert.ok(scryptStats.calls - hashedAtReset <= 20 + MAX_LOGINS_PER_CLIENT, `${scryptStats.calls - hashedAtReset} hashings`);
    } finally {
      for (const c of [...busy, ...clients]) c.destroy();
      await px.close();
    }
  });

  test('300-style flood: 3 addresses × 40 bad logins queued, then an honest login from a 4th address is served after at most one turn per address, before the flood drains', async () => {
    // A cost high enough that the flood's 120 hashings outlast the test's own steps.
    const FLOOD = { N: 4096, r: 8 };
    const file = await costedFile('flood.txt', [
      { user: 'alice', pass: 'alice-pass', ...FLOOD },
      { user: 'victim', pass: 'victim-pass', ...FLOOD },
    ]);
    const px = await startProxy(authConfig(file));
    const flood: RawClient[] = [];
    let answered = 0;
    try {
      const sources = ['127.0.0.2', '127.0.0.3', '127.0.0.4'];
      const started = await Promise.all(
        sources.flatMap((src) =>
          Array.from({ length: 40 }, async (_, i) => {
            const c = await startLogin(px, src, 'victim', `wrong-${i}`);
            void c.read(2, 60000).then(
              () => answered++,
              () => answered++,
            );
            return c;
          }),
        ),
      );
      flood.push(...started);
      // Every flood login has had its greeting answered, so its credentials sit in the queue.
      const before = scryptStats.calls;
      const honest = await startLogin(px, '127.0.0.5', 'alice', 'alice-pass');
      assert.equal(toHex(await honest.read(2, 30000)), '01 00');
      const hashed = scryptStats.calls - before;
      const floodAnswered = answered;
      honest.destroy();
      // Two turns were running when it arrived; then each of the 3 flooding addresses gets one
      // turn before alice's address comes up, then alice's own hashing: 6 in all (what an idle
      // machine shows). The bound leaves room for the turns the other slot starts while the
      // connection is set up and the answer travels back. In one queue it would be ~120.
      assert.ok(hashed <= 2 + 3 * 3 + 1, `hashings started between the honest login and its answer: ${hashed}`);
      assert.ok(floodAnswered < 120 - 20, `the flood had not drained (${floodAnswered} of 120 answered)`);
    } finally {
      for (const c of flood) c.destroy();
      await px.close();
    }
  });

  test(`more than ${MAX_LOGINS_PER_CLIENT} logins at once from one address: the extra ones get 01 01 without hashing`, async () => {
    const file = await costedFile('cap.txt', [{ user: 'victim', pass: 'victim-pass', N: 4096, r: 8 }]);
    const px = await startProxy(authConfig(file));
    const clients: RawClient[] = [];
    try {
      const before = scryptStats.calls;
      const total = MAX_LOGINS_PER_CLIENT + 56;
      const answers = await Promise.all(
        Array.from({ length: total }, async (_, i) => {
          const c = await startLogin(px, '127.0.0.6', 'victim', `wrong-${i}`);
          clients.push(c);
          return toHex(await c.read(2, 60000));
        }),
      );
      assert.ok(answers.every((a) => a === '01 01'));
      const refused = px.logs.filter((l) => l.msg === 'auth: too many logins waiting from this address; refused without hashing').length;
      assert.ok(refused >= 1, 'some logins were over the cap');
      assert.equal(scryptStats.calls - before, total - refused, 'a refused login runs no scrypt');
    } finally {
      for (const c of clients) c.destroy();
      await px.close();
    }
  });
});

describe('a reload (SIGHUP) shares the scrypt queue (issue #10 review)', () => {
  test(`${MAX_LOGINS_PER_CLIENT} logins from one address waiting in the old configuration: one more from that address after a reload is refused without hashing`, async () => {
    // Before: each configuration's plugin had its own queue, so right after a reload a client got
    // a fresh cap of 64 (and the two queues hashed 2 + 2 at once).
    const file = await costedFile('reload.txt', [{ user: 'victim', pass: 'victim-pass', N: 16384, r: 8 }]);
    const px = await startProxy(authConfig(file));
    const clients: RawClient[] = [];
    try {
      const answered: string[] = [];
      await Promise.all(
        Array.from({ length: MAX_LOGINS_PER_CLIENT }, async (_, i) => {
          const c = await startLogin(px, '127.0.0.7', 'victim', `wrong-${i}`);
          clients.push(c);
          void c.read(2, 120000).then(
            (r) => answered.push(toHex(r)),
            () => {},
          );
        }),
      );
      await px.proxy.reload(px.proxy.config);
      const extra = await startLogin(px, '127.0.0.7', 'victim', 'victim-pass');
      clients.push(extra);
      assert.equal(toHex(await extra.read(2, 20000)), '01 01', "the right password, refused: over the cap the old configuration's logins still hold");
      // The premise: the old logins were still queued (at two 16 MiB scrypt runs at a time, 64 take
      // far longer than a reload and one connection).
      assert.ok(answered.length < MAX_LOGINS_PER_CLIENT - 2, `old logins still waiting (${answered.length} answered)`);
      const refused = px.logs.filter((l) => l.msg === 'auth: too many logins waiting from this address; refused without hashing');
      assert.equal(refused.length, 1, 'refused by the cap, without hashing');
    } finally {
      for (const c of clients) c.destroy();
      await px.close();
    }
  });
});

describe('unknown usernames cost what a real user costs', () => {
  test('parseUsersFile: the dummy hash takes the cost most users have, not the first line’s', async () => {
    const file = await costedFile('mixed-parse.txt', [
      { user: 'cheap', pass: 'x', N: 16, r: 1 },
      { user: 'u1', pass: 'x', N: 64, r: 8 },
      { user: 'u2', pass: 'x', N: 64, r: 8 },
    ]);
    const r = parseUsersFile(await fs.readFile(file, 'utf8'));
    assert.ok(r.ok);
    assert.deepEqual({ N: r.table.dummy.N, r: r.table.dummy.r, p: r.table.dummy.p }, TEST_PARAMS);
    assert.equal(r.table.costs, 2);
    // A tie goes to the higher cost.
    const tie = parseUsersFile(await usersText([]) + formatUserLine('a', await hashPassword('x', { N: 16, r: 1, p: 1 })) + '\n' + formatUserLine('b', await hashPassword('x', TEST_PARAMS)) + '\n');
    assert.ok(tie.ok);
    assert.equal(tie.table.dummy.N, TEST_PARAMS.N);
  });

  test('over the wire, an unknown username is hashed with the common cost (N=64, r=8), although the first line has N=16, r=1', async () => {
    const file = await costedFile('mixed.txt', [
      { user: 'cheap', pass: 'cheap-pass', N: 16, r: 1 },
      { user: 'alice', pass: 'alice-pass', N: 64, r: 8 },
      { user: 'bob', pass: 'bob-pass', N: 64, r: 8 },
    ]);
    const px = await startProxy(authConfig(file));
    try {
      const known = await startLogin(px, '127.0.0.1', 'alice', 'wrong');
      assert.equal(toHex(await known.read(2)), '01 01');
      known.destroy();
      const real = scryptStats.last;
      const unknown = await startLogin(px, '127.0.0.1', 'mallory', 'wrong');
      assert.equal(toHex(await unknown.read(2)), '01 01');
      unknown.destroy();
      assert.deepEqual(scryptStats.last, real, 'the dummy verification used the parameters of a real one');
      assert.deepEqual(scryptStats.last, { N: 64, r: 8, p: 1, keyLength: 32, saltLength: 16 });
      assert.ok(px.logs.some((l) => l.level === 'warn' && String(l.msg).startsWith('auth: users have different scrypt costs')), 'mixed costs are warned about');
    } finally {
      await px.close();
    }
  });
});

describe('a users file truncated while it is rewritten', () => {
  const EMPTY = 'auth: users file has no users; keeping the users loaded and reading it again before accepting that';
  const RELOADED = 'auth: users file reloaded';
  const count = (px: TestProxy, msg: string) => px.logs.filter((l) => l.msg === msg).length;

  async function login(px: TestProxy, user: string, pass: string): Promise<string> {
    const c = await startLogin(px, '127.0.0.1', user, pass);
    try {
      return toHex(await c.read(2));
    } finally {
      c.destroy();
    }
  }

  test('written in two steps (truncate, then the new text): the old users keep working in between, then the new ones load', async () => {
    const file = path.join(dir, 'two-steps.txt');
    await fs.writeFile(file, await usersText([{ user: 'alice', pass: 'old-pass' }]));
    const px = await startProxy({ plugins: { auth: { usersFile: file, reloadInterval: 50 } } as ConfigInput['plugins'] });
    try {
      assert.equal(await login(px, 'alice', 'old-pass'), '01 00');
      await fs.writeFile(file, ''); // step 1: truncated
      // Seen (and, before issue #10, installed: "users file reloaded" with 0 users).
      await waitFor(() => count(px, EMPTY) + count(px, RELOADED) === 1, 'the empty version to be seen');
      assert.equal(await login(px, 'alice', 'old-pass'), '01 00', 'the users loaded before stay while the file is empty');
      await fs.writeFile(file, await usersText([{ user: 'alice', pass: 'new-pass' }, { user: 'carol', pass: 'carol-pass' }])); // step 2
      await waitFor(() => count(px, RELOADED) === 1, 'the new version to load');
      assert.equal(px.logs.find((l) => l.msg === RELOADED)?.users, 2, 'the empty version was never installed');
      assert.equal(await login(px, 'carol', 'carol-pass'), '01 00');
      assert.equal(await login(px, 'alice', 'old-pass'), '01 01');
    } finally {
      await px.close();
    }
  });

  test(`a file that stays empty is installed after ${EMPTY_SETTLE_MS} ms (emptying the file does lock everyone out, on purpose)`, async () => {
    const file = path.join(dir, 'stays-empty.txt');
    await fs.writeFile(file, await usersText([{ user: 'alice', pass: 'old-pass' }]));
    const px = await startProxy({ plugins: { auth: { usersFile: file, reloadInterval: 50 } } as ConfigInput['plugins'] });
    try {
      await fs.writeFile(file, '# nobody\n');
      await waitFor(() => count(px, EMPTY) === 1, 'the empty version to be seen');
      await waitFor(() => count(px, RELOADED) === 1, 'the empty version to be installed after the settle', EMPTY_SETTLE_MS + 5000);
      assert.equal(px.logs.find((l) => l.msg === RELOADED)?.users, 0);
      assert.equal(await login(px, 'alice', 'old-pass'), '01 01');
    } finally {
      await px.close();
    }
  });
});
