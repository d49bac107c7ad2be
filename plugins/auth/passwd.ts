#!/usr/bin/env node
/**
 * Make a users-file line for the `auth` plugin:
 *
 * ```sh
 * printf '%s\n' 's3cret' | node dist/plugins/auth/passwd.js alice >> users.txt
 * node dist/plugins/auth/passwd.js --socks4 bob >> users.txt   # type the password, then Enter
 * ```
 *
 * The password is read from stdin (the first line, without its line ending), never from the
 * command line, where other users could see it in the process list. Prints
 * `USER:$scrypt$N=16384,r=8,p=1$<salt>$<key>` (plus `:socks4` with `--socks4`) on stdout.
 * Exit codes: 0 ok, 64 usage error, 65 bad input (empty password).
 * @packageDocumentation
 */
import { formatUserLine, hashPassword, usernameProblem } from './users-file.js';

const USAGE = 'usage: node dist/plugins/auth/passwd.js [--socks4] USER   (password on stdin)';

function fail(message: string, code: number): never {
  process.stderr.write(`passwd: ${message}\n`);
  process.exit(code);
}

/** Read stdin up to the first line break (or EOF); at most 64 KiB. */
async function readPassword(): Promise<Buffer> {
  if (process.stdin.isTTY) process.stderr.write('Password (shown as typed): ');
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    chunks.push(chunk);
    total += chunk.length;
    const all = Buffer.concat(chunks);
    const nl = all.indexOf(0x0a);
    if (nl >= 0) return trimCr(all.subarray(0, nl));
    if (total > 65536) fail('password longer than 64 KiB', 65);
  }
  return trimCr(Buffer.concat(chunks));
}

function trimCr(b: Buffer): Buffer {
  return b.length > 0 && b[b.length - 1] === 0x0d ? b.subarray(0, -1) : b;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args.includes('-h') || args.includes('--help')) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const socks4 = args.includes('--socks4');
  const rest = args.filter((a) => a !== '--socks4');
  if (rest.length !== 1 || rest[0]!.startsWith('-')) fail(USAGE, 64);
  const user = rest[0]!;
  const problem = usernameProblem(user);
  if (problem) fail(problem, 64);
  const password = await readPassword();
  if (password.length === 0) fail('empty password', 65);
  const hash = await hashPassword(password);
  process.stdout.write(`${formatUserLine(user, hash, { socks4 })}\n`);
  // stdin may still be open (a terminal): do not wait for it.
  process.stdin.destroy();
}

main().catch((err: unknown) => fail(err instanceof Error ? err.message : String(err), 70));
