#!/usr/bin/env node
/**
 * Make a users-file line for the `auth` plugin: `npx socksmith passwd` (the CLI's subcommand
 * runs {@link runPasswd}; this file can also be run directly with node).
 *
 * ```sh
 * npx socksmith passwd alice --users-file users.txt         # asks twice, without echo
 * printf '%s\n' 's3cret' | npx socksmith passwd alice >> users.txt
 * npx socksmith passwd --socks4 bob --users-file users.txt
 * ```
 *
 * The password is read from the terminal without echo (typed twice), or from stdin when it is not
 * a terminal (the first line, without its line ending) — never from the command line, where
 * other users could see it in the process list. Without `--users-file`, prints
 * `USER:$scrypt$N=16384,r=8,p=1$<salt>$<key>` (plus `:socks4` with `--socks4`) on stdout; with
 * it, adds that line to FILE or replaces USER's line there (the file is written to a temporary
 * file and renamed over FILE; a new file gets mode 0600).
 * Exit codes: 0 ok, 64 usage error, 65 bad input (empty password, the two entries differ, a
 * users file that cannot be read or written), 70 anything else.
 * @packageDocumentation
 */
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { formatUserLine, hashPassword, usernameProblem } from './users-file.js';

/** Options of {@link runPasswd}. */
export interface PasswdOptions {
  /** How the usage line names the command. */
  readonly command?: string;
  readonly stdin?: NodeJS.ReadStream;
  readonly stdout?: NodeJS.WritableStream;
  readonly stderr?: NodeJS.WritableStream;
}

/** Most bytes a password may have (one line of stdin). */
const MAX_PASSWORD = 65536;

class PasswdFailure extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

/** Read stdin up to the first line break (or EOF); at most 64 KiB. */
async function readLine(stdin: NodeJS.ReadStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of stdin as AsyncIterable<Buffer>) {
    const nl = chunk.indexOf(0x0a);
    if (nl >= 0) {
      chunks.push(chunk.subarray(0, nl));
      return trimCr(Buffer.concat(chunks));
    }
    chunks.push(chunk);
    total += chunk.length;
    if (total > MAX_PASSWORD) throw new PasswdFailure('password longer than 64 KiB', 65);
  }
  return trimCr(Buffer.concat(chunks));
}

function trimCr(b: Buffer): Buffer {
  return b.length > 0 && b[b.length - 1] === 0x0d ? b.subarray(0, -1) : b;
}

/**
 * Read one line from a terminal already in raw mode (nothing echoed). Enter ends it, Backspace
 * removes the last character, Ctrl-C and Ctrl-D (on an empty line) abort.
 */
function readHidden(stdin: NodeJS.ReadStream, stderr: NodeJS.WritableStream, prompt: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const bytes: number[] = [];
    stdin.resume();
    stderr.write(prompt);
    const done = (err: Error | undefined) => {
      stdin.removeListener('data', onData);
      stdin.pause();
      stderr.write('\n');
      if (err) reject(err);
      else resolve(Buffer.from(bytes));
    };
    const onData = (chunk: Buffer) => {
      for (const b of chunk) {
        if (b === 0x0d || b === 0x0a) return done(undefined);
        if (b === 0x03) return done(new PasswdFailure('interrupted', 130));
        if (b === 0x04) {
          if (bytes.length === 0) return done(new PasswdFailure('no password given', 65));
          continue;
        }
        if (b === 0x7f || b === 0x08) {
          // Backspace: drop the last UTF-8 character (its continuation bytes too).
          while (bytes.length > 0 && (bytes[bytes.length - 1]! & 0xc0) === 0x80) bytes.pop();
          bytes.pop();
          continue;
        }
        if (bytes.length >= MAX_PASSWORD) return done(new PasswdFailure('password longer than 64 KiB', 65));
        bytes.push(b);
      }
    };
    stdin.on('data', onData);
  });
}

/**
 * The password: from the terminal without echo (twice), or the first line of stdin. Echo is off
 * from before the first prompt until after the second answer, so nothing typed is ever shown.
 */
async function readPassword(stdin: NodeJS.ReadStream, stderr: NodeJS.WritableStream): Promise<Buffer> {
  if (!stdin.isTTY) return readLine(stdin);
  const wasRaw = stdin.isRaw;
  stdin.setRawMode(true);
  try {
    const first = await readHidden(stdin, stderr, 'Password: ');
    if (first.length === 0) return first;
    const second = await readHidden(stdin, stderr, 'Retype password: ');
    if (!first.equals(second)) throw new PasswdFailure('the passwords do not match', 65);
    return first;
  } finally {
    stdin.setRawMode(wasRaw);
  }
}

/**
 * Add `line` to the users file, or replace the line of the same user. Comments, blank lines and
 * other users' lines are kept as they are. Returns whether a line was replaced.
 */
export function upsertUserLine(file: string, username: string, line: string): 'added' | 'replaced' {
  let text = '';
  let mode = 0o600;
  try {
    text = fs.readFileSync(file, 'utf8');
    mode = fs.statSync(file).mode & 0o7777;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new PasswdFailure(`cannot read ${file}: ${(err as Error).message}`, 65);
  }
  const lines = text.length === 0 ? [] : text.replace(/\n$/, '').split('\n');
  let replaced = false;
  const out = lines.map((l) => {
    const t = l.trim();
    if (t.startsWith('#') || t === '') return l;
    if (t.slice(0, t.indexOf(':')) === username) {
      if (replaced) return undefined; // a duplicate would make the whole file invalid
      replaced = true;
      return line;
    }
    return l;
  });
  const kept = out.filter((l): l is string => l !== undefined);
  if (!replaced) kept.push(line);
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  try {
    fs.writeFileSync(tmp, `${kept.join('\n')}\n`, { mode });
    fs.chmodSync(tmp, mode);
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw new PasswdFailure(`cannot write ${file}: ${(err as Error).message}`, 65);
  }
  return replaced ? 'replaced' : 'added';
}

/**
 * `socksmith passwd [--socks4] [--users-file FILE] USER`. Returns the exit code (0, 64, 65, 70,
 * 130 when interrupted at the prompt); messages go to stderr prefixed with the command's name.
 */
export async function runPasswd(argv: readonly string[], options: PasswdOptions = {}): Promise<number> {
  const command = options.command ?? 'passwd';
  const stdin = options.stdin ?? process.stdin;
  const stdout = options.stdout ?? process.stdout;
  const stderr = options.stderr ?? process.stderr;
  const usage = `usage: ${command} [--socks4] [--users-file FILE] USER   (password from the terminal, not echoed, or the first line of stdin)`;
  const fail = (message: string, code: number) => {
    stderr.write(`${command}: ${message}\n`);
    return code;
  };
  let socks4 = false;
  let usersFile: string | undefined;
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-h' || a === '--help') {
      stdout.write(`${usage}\n`);
      return 0;
    }
    if (a === '--socks4') socks4 = true;
    else if (a === '--users-file') {
      usersFile = argv[++i];
      if (usersFile === undefined || usersFile === '') return fail(`--users-file needs a file name\n${usage}`, 64);
    } else if (a.startsWith('--users-file=')) usersFile = a.slice('--users-file='.length);
    else if (a.startsWith('-')) return fail(`unknown option ${a}\n${usage}`, 64);
    else rest.push(a);
  }
  if (rest.length !== 1) return fail(usage, 64);
  const user = rest[0]!;
  const problem = usernameProblem(user);
  if (problem) return fail(problem, 64);
  try {
    const password = await readPassword(stdin, stderr);
    if (password.length === 0) return fail('empty password', 65);
    const line = formatUserLine(user, await hashPassword(password), { socks4 });
    if (usersFile === undefined) stdout.write(`${line}\n`);
    else {
      const file = path.resolve(usersFile);
      const what = upsertUserLine(file, user, line);
      stderr.write(`${command}: ${what === 'added' ? 'added' : 'replaced the line of'} ${user} ${what === 'added' ? 'to' : 'in'} ${file}\n`);
    }
    return 0;
  } catch (err) {
    if (err instanceof PasswdFailure) return fail(err.message, err.exitCode);
    return fail(err instanceof Error ? err.message : String(err), 70);
  } finally {
    // stdin may still be open (a terminal): do not wait for it.
    if (stdin === process.stdin) process.stdin.destroy();
  }
}

// Run directly (`node dist/plugins/auth/passwd.js`), not when imported by the CLI.
function isEntryPoint(): boolean {
  try {
    return process.argv[1] !== undefined && import.meta.url === pathToFileURL(fs.realpathSync(process.argv[1])).href;
  } catch {
    return false;
  }
}
if (isEntryPoint()) {
  void runPasswd(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
