/**
 * Helpers for the `auth` plugin tests: temporary users files with cheap scrypt costs (N=64 keeps
 * each verification well under a millisecond; real files use the default N=16384).
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { formatUserLine, hashPassword } from '../../../plugins/auth/users-file.js';

/** Cost used in test users files. */
export const TEST_PARAMS = Object.freeze({ N: 64, r: 8, p: 1 });

/** A user to write into a test file. */
export interface TestUser {
  readonly user: string;
  readonly pass: string;
  readonly socks4?: boolean;
}

/** Users-file text for `users` (with a comment and a blank line, as a real file has). */
export async function usersText(users: readonly TestUser[]): Promise<string> {
  const lines = ['# socksmith auth users (test)', ''];
  for (const u of users) lines.push(formatUserLine(u.user, await hashPassword(u.pass, TEST_PARAMS), { socks4: u.socks4 }));
  return `${lines.join('\n')}\n`;
}

/** A fresh temporary folder; remove it with `rm`. */
export async function tempDir(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), 'socksmith-auth-'));
}

/** Write a users file into `dir` and return its path. */
export async function writeUsers(dir: string, users: readonly TestUser[], name = 'users.txt'): Promise<string> {
  const file = path.join(dir, name);
  await fs.writeFile(file, await usersText(users));
  return file;
}

/** Replace `file` atomically: write a temporary file next to it, then rename it over. */
export async function replaceAtomically(file: string, text: string): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  await fs.writeFile(tmp, text);
  await fs.rename(tmp, file);
}

/** Every log line as one string, to search for secrets. */
export function allLogs(logs: ReadonlyArray<Record<string, unknown>>): string {
  return logs.map((l) => JSON.stringify(l)).join('\n');
}

/** `Basic base64(user:pass)`. */
export function basic(user: string, pass: string): string {
  return `Basic ${Buffer.from(`${user}:${pass}`, 'utf8').toString('base64')}`;
}
