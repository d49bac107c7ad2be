/**
 * The `auth` users file: parsing (pure), password hashing and verification with scrypt.
 *
 * One user per line, `#` starts a comment line, blank lines are ignored:
 *
 * ```
 * # username:hash[:flags]
 * alice:$scrypt$N=16384,r=8,p=1$<salt base64>$<key base64>
 * bob:$scrypt$N=16384,r=8,p=1$<salt base64>$<key base64>:socks4
 * ```
 *
 * The hash is a PHC-style string: `$scrypt$` names the scheme (a future scheme gets another
 * identifier, so old lines stay valid), then the scrypt cost parameters, then salt and derived key
 * in standard base64 (padding optional). Parameters are read from each line, so a file can mix
 * costs, but they are bounded ({@link SCRYPT_LIMITS}): a line beyond the bounds makes the file
 * invalid rather than letting one users file tie up the CPU and memory of every login.
 * @packageDocumentation
 */
import { randomBytes, scrypt as scryptCallback, timingSafeEqual } from 'node:crypto';

/** scrypt cost parameters (RFC 7914 §2: N = CPU/memory cost, r = block size, p = parallelism). */
export interface ScryptParams {
  readonly N: number;
  readonly r: number;
  readonly p: number;
}

/** A parsed password hash. */
export interface PasswordHash extends ScryptParams {
  readonly salt: Buffer;
  /** The derived key: scrypt(password, salt, key.length, {N, r, p}). */
  readonly key: Buffer;
}

/** One user of the file. */
export interface UserEntry {
  /** The name as written in the file (UTF-8); clients must send exactly these bytes. */
  readonly username: string;
  readonly hash: PasswordHash;
  /** Flag `socks4`: a SOCKS4 USERID equal to the name is accepted (with `socks4: 'userid'`). */
  readonly socks4: boolean;
  /** 1-based line number in the file. */
  readonly line: number;
}

/** A parsed users file. */
export interface UsersTable {
  /** Users keyed by their name's UTF-8 bytes read as latin1 (one char per byte, so raw client bytes look up directly). */
  readonly users: ReadonlyMap<string, UserEntry>;
  /**
   * A hash no password matches, with the cost (N, r, p, key and salt length) most users of the
   * file have (a tie goes to the higher cost): an unknown username is checked against it, so a
   * failed login for a name that does not exist costs what one for a real user does.
   */
  readonly dummy: PasswordHash;
  /** Number of distinct costs in the file (above 1, a login's time tells some users apart). */
  readonly costs: number;
}

/** One problem found while parsing. */
export interface UsersFileProblem {
  readonly line: number;
  readonly message: string;
}

/** What {@link parseUsersFile} returns. */
export type UsersFileParse = { readonly ok: true; readonly table: UsersTable } | { readonly ok: false; readonly problems: readonly UsersFileProblem[] };

/** The scheme identifier of the hash format. */
export const SCHEME = 'scrypt';

/** Parameters {@link hashPassword} uses by default (the `node:crypto` defaults: 16 MiB, ~50–100 ms). */
export const DEFAULT_SCRYPT_PARAMS: ScryptParams = Object.freeze({ N: 16384, r: 8, p: 1 });

/**
 * Bounds on the parameters a users file may ask for. Memory is 128·N·r bytes per verification,
 * work grows with N·r·p. The maxima allow OWASP's strongest scrypt recommendation (N=2^17, r=8:
 * 128 MiB) and no more.
 */
export const SCRYPT_LIMITS = Object.freeze({
  /** Largest N (a power of two ≥ 2). */
  maxN: 2 ** 20,
  maxR: 32,
  maxP: 16,
  /** 128·N·r at most. */
  maxMemoryBytes: 128 * 1024 * 1024,
  /** N·r·p at most (16 × the default's 2^17). */
  maxWork: 2 ** 21,
  minSaltBytes: 8,
  maxSaltBytes: 64,
  minKeyBytes: 16,
  maxKeyBytes: 64,
});

/** Salt and key lengths {@link hashPassword} produces. */
const SALT_BYTES = 16;
const KEY_BYTES = 32;

/** Longest username: RFC 1929 carries at most 255 bytes (ULEN is one byte). */
export const MAX_USERNAME_BYTES = 255;

/** Flags a users-file line may carry after the hash. */
export const USER_FLAGS = ['socks4'] as const;

/**
 * Number of scrypt computations so far and the cost of the last one, for tests: proves an unknown
 * username still costs one scrypt of a real user's cost (timing cannot be asserted reliably, but
 * the work done can).
 */
export const scryptStats: { calls: number; last: { N: number; r: number; p: number; keyLength: number; saltLength: number } | undefined } = {
  calls: 0,
  last: undefined,
};

/** A malformed hash string or users-file line. */
export class UsersFileSyntaxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsersFileSyntaxError';
  }
}

const B64 = /^[A-Za-z0-9+/]+={0,2}$/;

/** Strict base64 (standard alphabet, padding optional): Buffer.from() silently skips junk. */
function decodeBase64(s: string, what: string): Buffer {
  if (!B64.test(s)) throw new UsersFileSyntaxError(`${what} is not base64`);
  const b = Buffer.from(s, 'base64');
  if (b.toString('base64').replace(/=+$/, '') !== s.replace(/=+$/, '')) throw new UsersFileSyntaxError(`${what} is not canonical base64`);
  return b;
}

/** Base64 without padding, as PHC strings write it. */
function encodeBase64(b: Buffer): string {
  return b.toString('base64').replace(/=+$/, '');
}

/** Check parameters against {@link SCRYPT_LIMITS}; throws with the reason. */
export function checkScryptParams(params: ScryptParams): void {
  const { N, r, p } = params;
  const L = SCRYPT_LIMITS;
  if (!Number.isSafeInteger(N) || N < 2 || N > L.maxN || (N & (N - 1)) !== 0) throw new UsersFileSyntaxError(`N must be a power of two from 2 to ${L.maxN}`);
  if (!Number.isSafeInteger(r) || r < 1 || r > L.maxR) throw new UsersFileSyntaxError(`r must be from 1 to ${L.maxR}`);
  if (!Number.isSafeInteger(p) || p < 1 || p > L.maxP) throw new UsersFileSyntaxError(`p must be from 1 to ${L.maxP}`);
  if (128 * N * r > L.maxMemoryBytes) throw new UsersFileSyntaxError(`N=${N},r=${r} needs ${(128 * N * r) / 2 ** 20} MiB; at most ${L.maxMemoryBytes / 2 ** 20} MiB allowed`);
  if (N * r * p > L.maxWork) throw new UsersFileSyntaxError(`N·r·p = ${N * r * p} exceeds ${L.maxWork}`);
}

const DECIMAL = /^(0|[1-9][0-9]{0,9})$/;

/** Parse `$scrypt$N=16384,r=8,p=1$<salt>$<key>`. Throws {@link UsersFileSyntaxError}. */
export function parsePasswordHash(s: string): PasswordHash {
  const parts = s.split('$');
  // ['', 'scrypt', 'N=…,r=…,p=…', salt, key]
  if (parts.length !== 5 || parts[0] !== '') throw new UsersFileSyntaxError('hash must look like $scrypt$N=16384,r=8,p=1$<salt>$<key>');
  if (parts[1] !== SCHEME) throw new UsersFileSyntaxError(`unknown hash scheme "${parts[1]}" (supported: ${SCHEME})`);
  const params: Record<string, number> = {};
  for (const kv of parts[2]!.split(',')) {
    const eq = kv.indexOf('=');
    const k = kv.slice(0, eq);
    const v = kv.slice(eq + 1);
    if (eq < 0 || !['N', 'r', 'p'].includes(k) || !DECIMAL.test(v)) throw new UsersFileSyntaxError(`bad scrypt parameter "${kv}" (expected N=…,r=…,p=…)`);
    if (k in params) throw new UsersFileSyntaxError(`scrypt parameter ${k} given twice`);
    params[k] = Number(v);
  }
  if (params.N === undefined || params.r === undefined || params.p === undefined) throw new UsersFileSyntaxError('scrypt parameters N, r and p are all required');
  const hash = { N: params.N, r: params.r, p: params.p };
  checkScryptParams(hash);
  const salt = decodeBase64(parts[3]!, 'salt');
  const key = decodeBase64(parts[4]!, 'key');
  const L = SCRYPT_LIMITS;
  if (salt.length < L.minSaltBytes || salt.length > L.maxSaltBytes) throw new UsersFileSyntaxError(`salt must be ${L.minSaltBytes}–${L.maxSaltBytes} bytes`);
  if (key.length < L.minKeyBytes || key.length > L.maxKeyBytes) throw new UsersFileSyntaxError(`key must be ${L.minKeyBytes}–${L.maxKeyBytes} bytes`);
  return { ...hash, salt, key };
}

/** The string form of a hash: `$scrypt$N=…,r=…,p=…$<salt>$<key>`. */
export function formatPasswordHash(h: PasswordHash): string {
  return `$${SCHEME}$N=${h.N},r=${h.r},p=${h.p}$${encodeBase64(h.salt)}$${encodeBase64(h.key)}`;
}

/** Why `name` cannot be a username, or `undefined` if it can. */
export function usernameProblem(name: string): string | undefined {
  if (name.length === 0) return 'empty username';
  if (Buffer.byteLength(name, 'utf8') > MAX_USERNAME_BYTES) return `username longer than ${MAX_USERNAME_BYTES} bytes`;
  // ':' separates fields; whitespace and control characters would be invisible or ambiguous.
  if (/[:\s\p{Cc}]/u.test(name)) return 'username contains ":", whitespace or a control character';
  if (name.includes('\uFFFD') || name.includes('\uFEFF')) return 'username contains U+FFFD or U+FEFF';
  return undefined;
}

/** A users-file line: `username:hash[:flags]`. */
export function formatUserLine(username: string, hash: string, flags: { socks4?: boolean } = {}): string {
  const problem = usernameProblem(username);
  if (problem) throw new UsersFileSyntaxError(problem);
  return `${username}:${hash}${flags.socks4 ? ':socks4' : ''}`;
}

/** Parse one non-comment line. Throws {@link UsersFileSyntaxError}. */
export function parseUserLine(text: string, line = 1): UserEntry {
  const fields = text.split(':');
  if (fields.length < 2 || fields.length > 3) throw new UsersFileSyntaxError('expected username:hash or username:hash:flags');
  const [username, hashText, flagText] = fields as [string, string, string | undefined];
  const problem = usernameProblem(username);
  if (problem) throw new UsersFileSyntaxError(problem);
  const hash = parsePasswordHash(hashText);
  let socks4 = false;
  if (flagText !== undefined) {
    for (const f of flagText.split(',')) {
      if (f === 'socks4') socks4 = true;
      else throw new UsersFileSyntaxError(`unknown flag "${f}" (known: ${USER_FLAGS.join(', ')})`);
    }
  }
  return { username, hash, socks4, line };
}

/** The lookup key of a username: its bytes as latin1. */
export function userKey(username: Buffer | string): string {
  return (typeof username === 'string' ? Buffer.from(username, 'utf8') : username).toString('latin1');
}

/** A hash nothing matches, with the given cost. */
export function dummyHash(params: ScryptParams = DEFAULT_SCRYPT_PARAMS, keyLength = KEY_BYTES, saltLength = SALT_BYTES): PasswordHash {
  return { N: params.N, r: params.r, p: params.p, salt: randomBytes(saltLength), key: randomBytes(keyLength) };
}

/**
 * Parse a whole users file. Pure apart from the dummy hash's random bytes. Every problem is
 * reported with its line number; problems never quote the hash (only the username).
 */
export function parseUsersFile(text: string): UsersFileParse {
  const users = new Map<string, UserEntry>();
  const problems: UsersFileProblem[] = [];
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  for (const [i, raw] of lines.entries()) {
    const t = raw.trim();
    if (t === '' || t.startsWith('#')) continue;
    try {
      const entry = parseUserLine(t, i + 1);
      const key = userKey(entry.username);
      const prev = users.get(key);
      if (prev) problems.push({ line: i + 1, message: `user "${entry.username}" already defined on line ${prev.line}` });
      else users.set(key, entry);
    } catch (err) {
      problems.push({ line: i + 1, message: err instanceof UsersFileSyntaxError ? err.message : String(err) });
    }
  }
  if (problems.length > 0) return { ok: false, problems };
  const { cost, costs } = commonCost(users.values());
  const dummy = cost ? dummyHash(cost, cost.key.length, cost.salt.length) : dummyHash();
  return { ok: true, table: { users, dummy, costs } };
}

/**
 * The cost most entries share (N, r, p, key length, salt length; a tie goes to the higher N·r·p),
 * and how many distinct costs there are. The dummy hash of unknown users takes that cost: with
 * the first entry's instead, one cheap line at the top made every unknown name answer fast.
 */
function commonCost(entries: Iterable<UserEntry>): { cost: PasswordHash | undefined; costs: number } {
  const count = new Map<string, { hash: PasswordHash; n: number }>();
  for (const e of entries) {
    const h = e.hash;
    const k = `${h.N},${h.r},${h.p},${h.key.length},${h.salt.length}`;
    const c = count.get(k);
    if (c) c.n++;
    else count.set(k, { hash: h, n: 1 });
  }
  let best: { hash: PasswordHash; n: number } | undefined;
  for (const c of count.values()) {
    const work = (h: PasswordHash) => h.N * h.r * h.p;
    if (!best || c.n > best.n || (c.n === best.n && work(c.hash) > work(best.hash))) best = c;
  }
  return { cost: best?.hash, costs: count.size };
}

/** scrypt as a promise, counted, with `maxmem` sized to the (already bounded) parameters. */
function deriveKey(password: Buffer, h: PasswordHash): Promise<Buffer> {
  scryptStats.calls++;
  scryptStats.last = { N: h.N, r: h.r, p: h.p, keyLength: h.key.length, saltLength: h.salt.length };
  return new Promise((resolve, reject) => {
    scryptCallback(password, h.salt, h.key.length, { N: h.N, r: h.r, p: h.p, maxmem: 256 * h.N * h.r + 1024 * 1024 }, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/** True when `password` derives `h.key`; compared in constant time. */
export async function checkPassword(h: PasswordHash, password: Buffer | string): Promise<boolean> {
  const pw = typeof password === 'string' ? Buffer.from(password, 'utf8') : password;
  const derived = await deriveKey(pw, h);
  return derived.length === h.key.length && timingSafeEqual(derived, h.key);
}

/**
 * Hash a password for the users file: `$scrypt$N=16384,r=8,p=1$<salt>$<key>` with a random
 * 16-byte salt and a 32-byte key. `params` defaults to {@link DEFAULT_SCRYPT_PARAMS}.
 */
export async function hashPassword(password: Buffer | string, params: ScryptParams = DEFAULT_SCRYPT_PARAMS): Promise<string> {
  checkScryptParams(params);
  const pw = typeof password === 'string' ? Buffer.from(password, 'utf8') : password;
  const salt = randomBytes(SALT_BYTES);
  const key = await deriveKey(pw, { ...params, salt, key: Buffer.alloc(KEY_BYTES) });
  return formatPasswordHash({ ...params, salt, key });
}

/**
 * True when `password` matches `line`: a whole users-file line (`user:hash[:flags]`) or just the
 * hash (`$scrypt$…`). A malformed line throws {@link UsersFileSyntaxError}.
 */
export async function verifyPassword(line: string, password: Buffer | string): Promise<boolean> {
  const t = line.trim();
  const h = t.startsWith('$') ? parsePasswordHash(t) : parseUserLine(t).hash;
  return checkPassword(h, password);
}

/**
 * Check a username/password pair against the table: the entry on success, `undefined` otherwise.
 * Exactly one scrypt runs either way; for an unknown name it runs against `table.dummy`, so the
 * answer takes as long as for a known name with a wrong password.
 */
export async function verifyUser(table: UsersTable, username: Buffer, password: Buffer): Promise<UserEntry | undefined> {
  const entry = table.users.get(userKey(username));
  const ok = await checkPassword(entry ? entry.hash : table.dummy, password);
  return entry && ok ? entry : undefined;
}

/** The SOCKS4 user whose name is `userId`, if it carries the `socks4` flag (no password: SOCKS4 has none). */
export function socks4User(table: UsersTable, userId: Buffer): UserEntry | undefined {
  const entry = table.users.get(userKey(userId));
  return entry?.socks4 ? entry : undefined;
}
