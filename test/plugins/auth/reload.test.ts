/**
 * `auth` users file lifecycle: reloaded on change (in place, by atomic rename, by polling when
 * fs.watch is unavailable) while open tunnels keep working; a broken or missing file keeps the
 * users loaded; a missing file at startup is a config error naming `plugins.auth.usersFile`
 * (also under `--check`); the open-proxy check counts the plugin as restricting clients.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AuthPlugin } from '../../../plugins/auth/index.js';
import type { AuthOptions } from '../../../plugins/auth/schema.js';
import { resolveConfig } from '../../../src/config/normalize.js';
import { createLogger } from '../../../src/logger.js';
import { SocksmithProxy } from '../../../src/proxy.js';
import { hex, toHex } from '../../helpers/hex.js';
import { runCli } from '../../helpers/cli.js';
import { RawClient, startEchoServer, type TestServer } from '../../helpers/net.js';
import { ALL_OFF, startProxy, type TestProxy } from '../../helpers/proxy.js';
import { readReply5, req5, userpass, waitFor } from '../helpers/socks.js';
import { allLogs, replaceAtomically, tempDir, usersText, writeUsers } from './helpers.js';

let dir: string;
let echo: TestServer;
before(async () => {
  dir = await tempDir();
  echo = await startEchoServer();
});
after(async () => {
  await echo.close();
  await fs.rm(dir, { recursive: true, force: true });
});

/** The RFC 1929 answer for `user`/`pass` (`01 00` or `01 01`). */
async function tryLogin(px: TestProxy, user: string, pass: string): Promise<string> {
  const c = await RawClient.connect(px.port);
  try {
    c.write(Buffer.concat([hex('05 01 02'), userpass(user, pass)]));
    return toHex((await c.read(4)).subarray(2));
  } finally {
    c.destroy();
  }
}

/** An open CONNECT tunnel to the echo server, authenticated as `user`. */
async function openTunnel(px: TestProxy, user: string, pass: string): Promise<RawClient> {
  const c = await RawClient.connect(px.port);
  c.write(Buffer.concat([hex('05 01 02'), userpass(user, pass), req5(1, '127.0.0.1', echo.port)]));
  assert.equal(toHex(await c.read(4)), '05 02 01 00');
  assert.equal((await readReply5(c))[1], 0);
  return c;
}

async function echoes(c: RawClient, probe: string): Promise<void> {
  c.write(probe);
  assert.equal((await c.read(probe.length)).toString(), probe);
}

/** Wait (bounded) until the proxy logged `msg` more than `already` times. */
async function waitLog(px: TestProxy, msg: string, already: number): Promise<void> {
  await waitFor(() => px.logs.filter((l) => l.msg === msg).length > already, `log line "${msg}"`, 5000);
}

const count = (px: TestProxy, msg: string) => px.logs.filter((l) => l.msg === msg).length;
const RELOADED = 'auth: users file reloaded';
const BROKEN = 'auth: users file has errors; keeping the users loaded';
const UNREADABLE = 'auth: cannot read the users file; keeping the users loaded';

describe('reload', () => {
  test('in-place rewrite and atomic rename: new passwords work, old ones stop, an open tunnel keeps working', async () => {
    const file = await writeUsers(dir, [{ user: 'alice', pass: 'first-pw' }], 'inplace.txt');
    const px = await startProxy({ plugins: { auth: { usersFile: file } } });
    try {
      const open = await openTunnel(px, 'alice', 'first-pw');
      await echoes(open, 'before reload');

      let n = count(px, RELOADED);
      await fs.writeFile(file, await usersText([{ user: 'alice', pass: 'second-pw' }, { user: 'carol', pass: 'carol-pw' }]));
      await waitLog(px, RELOADED, n);
      assert.equal(await tryLogin(px, 'alice', 'second-pw'), '01 00');
      assert.equal(await tryLogin(px, 'carol', 'carol-pw'), '01 00');
      assert.equal(await tryLogin(px, 'alice', 'first-pw'), '01 01');
      await echoes(open, 'after in-place rewrite');

      n = count(px, RELOADED);
      await replaceAtomically(file, await usersText([{ user: 'alice', pass: 'third-pw' }]));
      await waitLog(px, RELOADED, n);
      assert.equal(await tryLogin(px, 'alice', 'third-pw'), '01 00');
      assert.equal(await tryLogin(px, 'carol', 'carol-pw'), '01 01', 'carol was removed');
      assert.equal(px.logs.filter((l) => l.msg === RELOADED).at(-1)?.users, 1);

      // A second rename, after the watched inode was replaced once already.
      n = count(px, RELOADED);
      await replaceAtomically(file, await usersText([{ user: 'alice', pass: 'fourth-pw' }]));
      await waitLog(px, RELOADED, n);
      assert.equal(await tryLogin(px, 'alice', 'fourth-pw'), '01 00');

      await echoes(open, 'after two renames');
      open.destroy();
    } finally {
      await px.close();
    }
  });

  test('a broken file keeps the old users and logs one error line; fixing it loads the new users', async () => {
    const file = await writeUsers(dir, [{ user: 'alice', pass: 'good-pw' }], 'broken.txt');
    const px = await startProxy({ plugins: { auth: { usersFile: file } } });
    try {
      const n = count(px, BROKEN);
      await fs.writeFile(file, `alice:not-a-hash\nbob:$scrypt$N=3,r=8,p=1$x$y\n`);
      await waitLog(px, BROKEN, n);
      const line = px.logs.filter((l) => l.msg === BROKEN).at(-1)!;
      assert.equal(line.level, 'error');
      assert.equal(line.users, 1, 'it says how many users stay loaded');
      assert.deepEqual(
        (line.problems as string[]).map((p) => p.split(':')[0]),
        ['line 1', 'line 2'],
      );
      assert.equal(await tryLogin(px, 'alice', 'good-pw'), '01 00', 'the old users still work');

      const r = count(px, RELOADED);
      await replaceAtomically(file, await usersText([{ user: 'alice', pass: 'fixed-pw' }]));
      await waitLog(px, RELOADED, r);
      assert.equal(await tryLogin(px, 'alice', 'fixed-pw'), '01 00');
      assert.equal(count(px, BROKEN), n + 1, 'the broken version was reported once');
    } finally {
      await px.close();
    }
  });

  test('a deleted file keeps the users loaded; a new file appears and is loaded', async () => {
    const file = await writeUsers(dir, [{ user: 'alice', pass: 'pw-a' }], 'deleted.txt');
    const px = await startProxy({ plugins: { auth: { usersFile: file } } });
    try {
      const n = count(px, UNREADABLE);
      await fs.rm(file);
      await waitLog(px, UNREADABLE, n);
      assert.equal(await tryLogin(px, 'alice', 'pw-a'), '01 00');
      const r = count(px, RELOADED);
      await replaceAtomically(file, await usersText([{ user: 'alice', pass: 'pw-b' }]));
      await waitLog(px, RELOADED, r);
      assert.equal(await tryLogin(px, 'alice', 'pw-b'), '01 00');
    } finally {
      await px.close();
    }
  });

  test('without fs.watch (it throws), the reloadInterval poll picks changes up', async () => {
    const file = await writeUsers(dir, [{ user: 'alice', pass: 'poll-1' }], 'polled.txt');
    const realWatch = fsSync.watch;
    (fsSync as { watch: unknown }).watch = () => {
      throw Object.assign(new Error('ENOSPC: System limit for number of file watchers reached'), { code: 'ENOSPC' });
    };
    let px: TestProxy;
    try {
      px = await startProxy({ plugins: { auth: { usersFile: file, reloadInterval: 50 } } });
    } finally {
      (fsSync as { watch: unknown }).watch = realWatch;
    }
    try {
      assert.ok(px.logs.some((l) => l.msg === 'auth: cannot watch the users file; polling only'));
      const n = count(px, RELOADED);
      await replaceAtomically(file, await usersText([{ user: 'alice', pass: 'poll-2' }]));
      await waitLog(px, RELOADED, n);
      assert.equal(await tryLogin(px, 'alice', 'poll-2'), '01 00');
    } finally {
      await px.close();
    }
  });

  test('no password reaches the logs across reloads', async () => {
    const file = await writeUsers(dir, [{ user: 'alice', pass: 'log-secret-1' }], 'logs.txt');
    const px = await startProxy({ plugins: { auth: { usersFile: file } } });
    try {
      assert.equal(await tryLogin(px, 'alice', 'log-secret-wrong'), '01 01');
      const n = count(px, RELOADED);
      await fs.writeFile(file, await usersText([{ user: 'alice', pass: 'log-secret-2' }]));
      await waitLog(px, RELOADED, n);
      assert.equal(await tryLogin(px, 'alice', 'log-secret-2'), '01 00');
    } finally {
      await px.close();
    }
    const logs = allLogs(px.logs);
    for (const s of ['log-secret-1', 'log-secret-2', 'log-secret-wrong']) assert.ok(!logs.includes(s), s);
  });
});

describe('configuration', () => {
  const create = (plugins: Record<string, unknown>, cwd?: string) =>
    SocksmithProxy.create({ listen: [{ host: '127.0.0.1', port: 0 }], plugins: { ...ALL_OFF, ...plugins } as never }, { logger: createLogger('silent'), cwd });

  test('a missing users file is a config error naming plugins.auth.usersFile', async () => {
    await assert.rejects(create({ auth: { usersFile: path.join(dir, 'nope.txt') } }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'SOCKSMITH_ERR_CONFIG_INVALID');
      assert.match(err.message, /^plugins\.auth\.usersFile: cannot read users file .*nope\.txt: ENOENT/);
      return true;
    });
  });

  test('a broken users file at startup is a config error naming the line', async () => {
    const file = path.join(dir, 'bad-start.txt');
    await fs.writeFile(file, `# ok\nalice:$scrypt$N=16384,r=8$AAAAAAAAAAA$BBBB\n`);
    await assert.rejects(create({ auth: { usersFile: file } }), /^ConfigError: plugins\.auth\.usersFile: users file .*: line 2: scrypt parameters N, r and p are all required$/);
  });

  test('usersFile is required; socks4 takes only reject | userid', async () => {
    await assert.rejects(create({ auth: {} }), /plugins\.auth.*usersFile/);
    await assert.rejects(create({ auth: true }), /plugins\.auth.*usersFile/);
    const file = await writeUsers(dir, [{ user: 'alice', pass: 'x' }], 'opts.txt');
    await assert.rejects(create({ auth: { usersFile: file, socks4: 'allow' } }), /plugins\.auth\.socks4/);
  });

  test('usersFile is relative to the config folder', async () => {
    await writeUsers(dir, [{ user: 'alice', pass: 'x' }], 'relative.txt');
    const proxy = await create({ auth: { usersFile: 'relative.txt' } }, dir);
    await proxy.close(0); // close() without start()
  });

  test('socksmith --check: a missing users file exits 78 with one line; an existing one passes', async () => {
    const bad = path.join(dir, 'check-bad.json');
    await fs.writeFile(bad, JSON.stringify({ plugins: { auth: { usersFile: 'no-such-users.txt' } } }));
    const r = await runCli(['--config', bad, '--check']);
    assert.equal(r.code, 78, r.stderr);
    assert.match(r.stderr, /^socksmith: config error: plugins\.auth\.usersFile: cannot read users file .*no-such-users\.txt/);
    assert.equal(r.stderr.trim().split('\n').length, 1);

    await writeUsers(dir, [{ user: 'alice', pass: 'x' }], 'check-users.txt');
    const good = path.join(dir, 'check-good.json');
    await fs.writeFile(good, JSON.stringify({ plugins: { auth: { usersFile: 'check-users.txt' } } }));
    const ok = await runCli(['--config', good, '--check']);
    assert.equal(ok.code, 0, ok.stderr);
  });
});

describe('open-proxy check', () => {
  const options: AuthOptions = { usersFile: 'unused.txt', socks4: 'reject', http: true, reloadInterval: 5000 };

  test('restrictsClients() is true', () => {
    const config = resolveConfig({}, { file: undefined, dir });
    const plugin = new AuthPlugin(options, config, createLogger('silent'));
    assert.equal(plugin.restrictsClients(), true);
  });

  test('with auth, a non-loopback listener passes the check; without, it is refused (checked without binding)', async () => {
    const file = await writeUsers(dir, [{ user: 'alice', pass: 'x' }], 'open.txt');
    const check = (p: SocksmithProxy) => (p as unknown as { checkOpenProxy(): void }).checkOpenProxy();
    const open = { listen: [{ host: '0.0.0.0', port: 0 }] };
    const guarded = await SocksmithProxy.create({ ...open, plugins: { ...ALL_OFF, auth: { usersFile: file } } as never }, { logger: createLogger('silent') });
    assert.doesNotThrow(() => check(guarded));
    await guarded.close(0);
    const bare = await SocksmithProxy.create({ ...open, plugins: ALL_OFF }, { logger: createLogger('silent') });
    assert.throws(() => check(bare), /listen\.0\.host: 0\.0\.0\.0 is not a loopback address/);
    await bare.close(0);
  });
});
