/**
 * `auth` users file: parsing, the hash format, bounded scrypt costs, verification (one scrypt
 * also for unknown users), the Basic header parser, and the passwd command.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';
import { parseBasicAuthorization } from '../../../plugins/auth/index.js';
import {
  DEFAULT_SCRYPT_PARAMS,
  SCRYPT_LIMITS,
  formatPasswordHash,
  hashPassword,
  parsePasswordHash,
  parseUsersFile,
  scryptStats,
  socks4User,
  verifyPassword,
  verifyUser,
} from '../../../plugins/auth/users-file.js';
import { ROOT } from '../../helpers/cli.js';
import { run } from '../helpers/socks.js';
import { TEST_PARAMS, usersText } from './helpers.js';

/** A syntactically valid hash with chosen parameters (salt/key are not derived from anything). */
function fakeHash(params: string, salt = 'c2FsdHNhbHRzYWx0c2FsdA', key = 'a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U'): string {
  return `$scrypt$${params}$${salt}$${key}`;
}

describe('hash format', () => {
  test('hashPassword → $scrypt$N=16384,r=8,p=1$<16-byte salt>$<32-byte key>, round-trips and verifies', async () => {
    const h = await hashPassword('s3cret');
    assert.match(h, /^\$scrypt\$N=16384,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
    const parsed = parsePasswordHash(h);
    assert.deepEqual({ N: parsed.N, r: parsed.r, p: parsed.p }, DEFAULT_SCRYPT_PARAMS);
    assert.equal(parsed.salt.length, 16);
    assert.equal(parsed.key.length, 32);
    assert.equal(formatPasswordHash(parsed), h);
    assert.equal(await verifyPassword(h, 's3cret'), true);
    assert.equal(await verifyPassword(h, 's3cret '), false);
    assert.equal(await verifyPassword(`alice:${h}`, 's3cret'), true, 'a whole users-file line works too');
    assert.equal(await verifyPassword(`alice:${h}:socks4`, Buffer.from('wrong')), false);
  });

  test('two hashes of one password differ (random salt)', async () => {
    assert.notEqual(await hashPassword('x', TEST_PARAMS), await hashPassword('x', TEST_PARAMS));
  });

  test('padding is optional; parameters in any order', () => {
    const a = parsePasswordHash(fakeHash('N=64,r=8,p=1', 'c2FsdHNhbHRzYWx0c2FsdA=='));
    const b = parsePasswordHash(fakeHash('p=1,N=64,r=8'));
    assert.deepEqual(a, b);
  });

  const bad: Array<[string, RegExp]> = [
    ['$bcrypt$N=64,r=8,p=1$c2FsdHNhbHRzYWx0c2FsdA$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U', /unknown hash scheme "bcrypt"/],
    ['scrypt$N=64,r=8,p=1$x$y', /hash must look like/],
    [fakeHash('N=64,r=8'), /N, r and p are all required/],
    [fakeHash('N=64,r=8,p=1,p=1'), /given twice/],
    [fakeHash('N=64,r=8,q=1'), /bad scrypt parameter "q=1"/],
    [fakeHash('N=064,r=8,p=1'), /bad scrypt parameter/],
    [fakeHash('N=100,r=8,p=1'), /power of two/],
    [fakeHash('N=1,r=8,p=1'), /power of two/],
    [fakeHash(`N=${2 ** 21},r=1,p=1`), /power of two from 2 to 1048576/],
    [fakeHash('N=262144,r=8,p=1'), /MiB/],
    [fakeHash('N=16384,r=64,p=1'), /r must be/],
    [fakeHash('N=16384,r=8,p=17'), /p must be/],
    [fakeHash('N=131072,r=8,p=4'), /exceeds/],
    [fakeHash('N=64,r=8,p=1', 'c2FsdA'), /salt must be 8/],
    [fakeHash('N=64,r=8,p=1', 'c2Fs!HNhbHRzYWx0c2FsdA'), /salt is not base64/],
    [fakeHash('N=64,r=8,p=1', undefined, 'a2V5'), /key must be 16/],
  ];
  for (const [text, why] of bad) {
    test(`refused: ${text.slice(0, 40)}…`, () => assert.throws(() => parsePasswordHash(text), why));
  }

  test('the limits admit the default and OWASP strongest (N=2^17, r=8) and no more memory', () => {
    assert.ok(128 * 2 ** 17 * 8 <= SCRYPT_LIMITS.maxMemoryBytes);
    assert.doesNotThrow(() => parsePasswordHash(fakeHash('N=131072,r=8,p=1')));
    assert.doesNotThrow(() => parsePasswordHash(fakeHash('N=16384,r=8,p=1')));
  });
});

describe('users file', () => {
  test('comments, blank lines, CRLF, a BOM and the socks4 flag', async () => {
    const h = await hashPassword('pw', TEST_PARAMS);
    const text = `\uFEFF# users\r\n\r\nalice:${h}\r\n   # indented comment\n  bob:${h}:socks4  \n`;
    const r = parseUsersFile(text);
    assert.ok(r.ok);
    assert.deepEqual(
      [...r.table.users.values()].map((u) => [u.username, u.socks4, u.line]),
      [
        ['alice', false, 3],
        ['bob', true, 5],
      ],
    );
    assert.equal(socks4User(r.table, Buffer.from('bob'))?.username, 'bob');
    assert.equal(socks4User(r.table, Buffer.from('alice')), undefined, 'alice has no socks4 flag');
    assert.equal(socks4User(r.table, Buffer.from('carol')), undefined);
  });

  test('UTF-8 usernames are matched as bytes', async () => {
    const r = parseUsersFile(await usersText([{ user: 'zoë', pass: 'pw' }]));
    assert.ok(r.ok);
    assert.ok(await verifyUser(r.table, Buffer.from('zoë', 'utf8'), Buffer.from('pw')));
    assert.equal(await verifyUser(r.table, Buffer.from('zoë', 'latin1'), Buffer.from('pw')), undefined);
  });

  test('every problem is reported with its line; the hash is never quoted', async () => {
    const h = await hashPassword('pw', TEST_PARAMS);
    const text = [`alice:${h}`, `alice:${h}`, 'bob', `carol:${h}:admin`, `da ve:${h}`, `eve:${h.replace('scrypt', 'md5')}`, `:${h}`].join('\n');
    const r = parseUsersFile(text);
    assert.equal(r.ok, false);
    assert.ok(!r.ok);
    assert.deepEqual(
      r.problems.map((p) => p.line),
      [2, 3, 4, 5, 6, 7],
    );
    assert.match(r.problems[0]!.message, /user "alice" already defined on line 1/);
    assert.match(r.problems[2]!.message, /unknown flag "admin"/);
    const salt = h.split('$')[3]!;
    for (const p of r.problems) assert.ok(!p.message.includes(salt), p.message);
  });

  test('an empty file is valid and has no users', () => {
    const r = parseUsersFile('# nobody yet\n');
    assert.ok(r.ok);
    assert.equal(r.table.users.size, 0);
  });
});

describe('verifyUser', () => {
  test('right password → the entry; wrong password or unknown user → undefined; each costs exactly one scrypt', async () => {
    const r = parseUsersFile(await usersText([{ user: 'alice', pass: 's3cret' }]));
    assert.ok(r.ok);
    const cost = async (user: string, pass: string) => {
      const before = scryptStats.calls;
      const entry = await verifyUser(r.table, Buffer.from(user), Buffer.from(pass));
      return { entry: entry?.username, scrypts: scryptStats.calls - before };
    };
    assert.deepEqual(await cost('alice', 's3cret'), { entry: 'alice', scrypts: 1 });
    assert.deepEqual(await cost('alice', 'wrong'), { entry: undefined, scrypts: 1 });
    assert.deepEqual(await cost('mallory', 's3cret'), { entry: undefined, scrypts: 1 }, 'an unknown user still runs one scrypt');
    assert.deepEqual(await cost('', ''), { entry: undefined, scrypts: 1 });
  });

  test("the dummy hash of unknown users has the file's cost (one user: that user's)", async () => {
    const r = parseUsersFile(await usersText([{ user: 'alice', pass: 'x' }]));
    assert.ok(r.ok);
    assert.deepEqual({ N: r.table.dummy.N, r: r.table.dummy.r, p: r.table.dummy.p }, TEST_PARAMS);
    const empty = parseUsersFile('');
    assert.ok(empty.ok);
    assert.equal(empty.table.dummy.N, DEFAULT_SCRYPT_PARAMS.N);
  });
});

describe('parseBasicAuthorization', () => {
  test('Basic base64(user:pass); the password may contain colons', () => {
    const b = parseBasicAuthorization(Buffer.from(`Basic ${Buffer.from('alice:s3:cret').toString('base64')}`));
    assert.deepEqual(b && [b.username.toString(), b.password.toString()], ['alice', 's3:cret']);
    const lower = parseBasicAuthorization(Buffer.from(`basic   ${Buffer.from('bob:').toString('base64')}`));
    assert.deepEqual(lower && [lower.username.toString(), lower.password.toString()], ['bob', '']);
  });

  test('anything else → undefined', () => {
    for (const v of ['', 'Bearer abc', 'Basic', `Basic ${Buffer.from('nocolon').toString('base64')}`, 'Basic !!!', 'alice']) {
      assert.equal(parseBasicAuthorization(Buffer.from(v)), undefined, v);
    }
  });
});

describe('passwd command', () => {
  const PASSWD = path.join(ROOT, 'dist/plugins/auth/passwd.js');

  test('prints a line that verifies; the password comes from stdin', async () => {
    const r = await run(process.execPath, [PASSWD, 'alice'], { input: 's3cret\n' });
    assert.equal(r.code, 0, r.stderr);
    const line = r.stdout.trim();
    assert.match(line, /^alice:\$scrypt\$N=16384,r=8,p=1\$[^:]+$/);
    assert.ok(!r.stdout.includes('s3cret') && !r.stderr.includes('s3cret'));
    assert.equal(await verifyPassword(line, 's3cret'), true);
    assert.equal(await verifyPassword(line, 's3cret\n'), false, 'the line ending is not part of the password');
  });

  test('--socks4 adds the flag; CRLF input', async () => {
    const r = await run(process.execPath, [PASSWD, '--socks4', 'bob'], { input: 'pw\r\n' });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout.trim(), /^bob:\$scrypt\$[^:]+:socks4$/);
    assert.equal(await verifyPassword(r.stdout, 'pw'), true);
  });

  test('usage errors exit 64, an empty password 65', async () => {
    assert.equal((await run(process.execPath, [PASSWD])).code, 64);
    assert.equal((await run(process.execPath, [PASSWD, 'a:b'], { input: 'x\n' })).code, 64);
    assert.equal((await run(process.execPath, [PASSWD, 'a', 'b'], { input: 'x\n' })).code, 64);
    assert.equal((await run(process.execPath, [PASSWD, 'alice'], { input: '\n' })).code, 65);
  });
});
