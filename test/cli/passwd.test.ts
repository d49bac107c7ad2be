/**
 * `socksmith passwd` (issue 14): the password from a terminal without echo (typed twice), or the
 * first line of stdin; `--users-file` adds or replaces the user's line and keeps the rest; usage
 * errors exit 64. The terminal cases run the real CLI under a pseudo-terminal (python3's pty).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { verifyPassword } from '../../plugins/auth/users-file.js';
import { CLI, ROOT } from '../helpers/cli.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'socksmith-passwd-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

function passwd(args: string[], input: string) {
  return spawnSync(process.execPath, [CLI, 'passwd', ...args], { cwd: dir, input, encoding: 'utf8', timeout: 30_000 });
}

/**
 * Run `socksmith passwd ARGS` on a pseudo-terminal: answer each prompt with the next of
 * `answers` (typed, then Enter), and return everything the terminal showed and the exit code.
 */
function onTerminal(args: string[], answers: string[]): { screen: string; code: number } | undefined {
  const script = `
import json, os, pty, select, sys, time
args = json.loads(sys.argv[3]); answers = json.loads(sys.argv[4])
pid, fd = pty.fork()
if pid == 0:
    os.chdir(sys.argv[5])
    os.execv(sys.argv[1], [sys.argv[1], sys.argv[2], 'passwd'] + args)
out = b''
answered = 0
deadline = time.time() + 20
while time.time() < deadline:
    r, _, _ = select.select([fd], [], [], 0.1)
    if r:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
        # Answer each prompt once, when it appears (as a person would: after reading it).
        if answers and out.count(b'assword: ') > answered and out.endswith(b'assword: '):
            answered += 1
            os.write(fd, answers.pop(0).encode() + b'\\r')
try:
    os.kill(pid, 9)  # bounded: a child still running after the deadline is killed
except ProcessLookupError:
    pass
_, status = os.waitpid(pid, 0)
sys.stdout.write(json.dumps({'screen': out.decode('utf8', 'replace'), 'code': os.waitstatus_to_exitcode(status)}))
`;
  const r = spawnSync('python3', ['-c', script, process.execPath, CLI, JSON.stringify(args), JSON.stringify(answers), dir], { encoding: 'utf8', timeout: 30_000 });
  if (r.error) return undefined;
  return JSON.parse(r.stdout) as { screen: string; code: number };
}

function needPython(t: { skip(m: string): void }): void {
  if (process.env.CI) assert.fail('python3 is needed for the terminal tests');
  t.skip('python3 not available');
}

test('on a terminal: asks twice, echoes nothing, prints the line', (t) => {
  const r = onTerminal(['alice'], ['s3cret', 's3cret']);
  if (!r) return needPython(t);
  assert.equal(r.code, 0, r.screen);
  assert.doesNotMatch(r.screen, /s3cret/, 'the password is never shown');
  assert.match(r.screen, /Password: \r?\nRetype password: \r?\n/);
  assert.match(r.screen, /^alice:\$scrypt\$N=16384,r=8,p=1\$\S+\$\S+\r?$/m);
});

test('on a terminal: two different entries exit 65 and write nothing', (t) => {
  const file = path.join(dir, 'mismatch.txt');
  const r = onTerminal(['bob', '--users-file', file], ['one', 'two']);
  if (!r) return needPython(t);
  assert.equal(r.code, 65, r.screen);
  assert.match(r.screen, /socksmith passwd: the passwords do not match/);
  assert.equal(fs.existsSync(file), false);
});

test('--users-file adds a line, replaces the same user, keeps comments and other users; the hash verifies', async () => {
  const file = path.join(dir, 'users.txt');
  fs.writeFileSync(file, '# staff\ncarol:$scrypt$N=16384,r=8,p=1$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==\n', { mode: 0o640 });
  const add = passwd(['alice', '--users-file', 'users.txt'], 'first\n');
  assert.equal(add.status, 0, add.stderr);
  assert.equal(add.stderr, `socksmith passwd: added alice to ${file}\n`);
  const replace = passwd(['--socks4', 'alice', '--users-file', 'users.txt'], 'second\r\n');
  assert.equal(replace.status, 0, replace.stderr);
  assert.equal(replace.stderr, `socksmith passwd: replaced the line of alice in ${file}\n`);
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  assert.equal(lines[0], '# staff');
  assert.match(lines[1]!, /^carol:/);
  assert.match(lines[2]!, /^alice:\$scrypt\$.*:socks4$/);
  assert.equal(lines.length, 4, 'one line per user, and a final newline');
  assert.equal(await verifyPassword(lines[2]!, 'second'), true);
  assert.equal(await verifyPassword(lines[2]!, 'first'), false);
  assert.equal(fs.statSync(file).mode & 0o777, 0o640, 'the file keeps its mode');
  assert.deepEqual(fs.readdirSync(dir).filter((f) => f.endsWith('.tmp')), [], 'no temporary file left');
});

test('usage errors exit 64; an empty password exits 65', () => {
  assert.equal(passwd([], '').status, 64);
  assert.equal(passwd(['a', 'b'], '').status, 64);
  const bad = passwd(['--bogus', 'alice'], 'x\n');
  assert.equal(bad.status, 64);
  assert.match(bad.stderr, /^socksmith passwd: unknown option --bogus\nusage: socksmith passwd \[--socks4\] \[--users-file FILE\] USER/);
  const colon = passwd(['al:ice'], 'x\n');
  assert.equal(colon.status, 64);
  const empty = passwd(['alice'], '\n');
  assert.equal(empty.status, 65);
  assert.equal(empty.stderr, 'socksmith passwd: empty password\n');
  assert.equal(passwd(['--help'], '').stdout.startsWith('usage: socksmith passwd'), true);
  void ROOT;
});
