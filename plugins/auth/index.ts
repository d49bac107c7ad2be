/**
 * `auth`: require credentials from every client, checked against a users file of scrypt hashes.
 *
 * - SOCKS5: method 02 is chosen when offered, else `05 FF`; the RFC 1929 message is verified
 *   (`01 00`, or `01 01` and close).
 * - SOCKS4: refused with `5B` (default), or with `socks4: 'userid'` a USERID naming a user
 *   flagged `socks4` is accepted.
 * - HTTP CONNECT (http-detect tunnel mode): `Proxy-Authorization: Basic base64(user:pass)`.
 * - A stream that reaches `onRequest` without this plugin's acceptance is refused with REP 02.
 *
 * The users file is watched and reloaded on change; a file that fails to parse keeps the users
 * already loaded. Passwords (and the raw Proxy-Authorization header) are never logged; the
 * username is, at info level, when a login fails.
 * @packageDocumentation
 */
import fs from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { inject, injectable } from 'tsyringe';
import type { ResolvedConfig } from '../../src/config/types.js';
import { Tokens } from '../../src/di/tokens.js';
import { ConfigError, errorMessage } from '../../src/errors.js';
import type { ConnectionContext, Credentials } from '../../src/kernel/context.js';
import type { Kernel } from '../../src/kernel/kernel.js';
import type { SocksmithPlugin } from '../../src/kernel/plugin.js';
import { Stage } from '../../src/kernel/stages.js';
import type { Logger } from '../../src/logger.js';
import { Method, Rep } from '../../src/protocol/constants.js';
import { AuthOptionsSchema, type AuthOptions } from './schema.js';
import { DEFAULT_SCRYPT_PARAMS, type UsersFileProblem, type UsersTable, parseUsersFile, socks4User, verifyUser } from './users-file.js';

export type { AuthOptions } from './schema.js';
export {
  hashPassword,
  verifyPassword,
  parseUsersFile,
  parsePasswordHash,
  formatPasswordHash,
  formatUserLine,
  verifyUser,
  DEFAULT_SCRYPT_PARAMS,
  SCRYPT_LIMITS,
} from './users-file.js';

const PLUGIN_NAME = 'auth';

/** Quiet period after a change event before the file is read (editors write in several steps). */
const RELOAD_DEBOUNCE_MS = 100;

/**
 * At most this many scrypt computations at once. Each one holds a libuv thread-pool thread (and
 * 128·N·r bytes), so a burst of logins must not starve file and DNS work; logins beyond it wait
 * in turn, and a waiting login whose client went away is dropped without hashing.
 */
const MAX_CONCURRENT_VERIFY = 2;

/** Larger users files are refused (a users file is small; this bounds a mistake such as pointing at a log). */
const MAX_FILE_BYTES = 16 * 1024 * 1024;

/** Decode `Basic base64(user:pass)` (RFC 7617) from a raw Proxy-Authorization value; `undefined` if it is not one. */
export function parseBasicAuthorization(header: Buffer): { username: Buffer; password: Buffer } | undefined {
  const m = /^[ \t]*basic[ \t]+([A-Za-z0-9+/]+={0,2})[ \t]*$/i.exec(header.toString('latin1'));
  if (!m) return undefined;
  const decoded = Buffer.from(m[1]!, 'base64');
  const colon = decoded.indexOf(0x3a);
  if (colon < 0) return undefined;
  return { username: decoded.subarray(0, colon), password: decoded.subarray(colon + 1) };
}

/** A username for a log line (never a password). */
function shownName(username: Buffer): string {
  return username.toString('utf8');
}

/** One line per problem, for log lines and config errors. */
function describeProblems(problems: readonly UsersFileProblem[]): string[] {
  return problems.map((p) => `line ${p.line}: ${p.message}`);
}

/** Runs at most `max` tasks at once, in arrival order; skips tasks whose signal aborted while waiting. */
class TurnQueue {
  private active = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(private readonly max: number) {}

  async run<T>(signal: AbortSignal, task: () => Promise<T>): Promise<T | undefined> {
    if (this.active < this.max) this.active++;
    else await new Promise<void>((resolve) => this.waiting.push(resolve)); // the slot is handed over by release()
    try {
      if (signal.aborted) return undefined;
      return await task();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }
}

/** Username/password authentication against a users file. */
@injectable()
export class AuthPlugin implements SocksmithPlugin {
  static readonly meta = {
    name: PLUGIN_NAME,
    schema: AuthOptionsSchema,
    description: 'Require SOCKS5 username/password (optionally a SOCKS4 USERID) checked against a users file of scrypt hashes.',
  };

  /** Absolute path of the users file. */
  readonly file: string;
  private table: UsersTable | undefined;
  /** Connections this plugin accepted; `onRequest` refuses the others. */
  private readonly accepted = new WeakSet<ConnectionContext>();
  private readonly queue = new TurnQueue(MAX_CONCURRENT_VERIFY);
  private watcher: fs.FSWatcher | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private debounceTimer: NodeJS.Timeout | undefined;
  /** `ino:size:mtime:ctime` of the file when it was last read. */
  private signature: string | undefined;
  /** Text last read (loaded or rejected), so one bad version is reported once. */
  private lastText: string | undefined;
  /** Last read error code reported, so a missing file is reported once. */
  private lastReadError: string | undefined;
  private reloading: Promise<void> | undefined;
  private reloadAgain = false;
  private closed = false;

  // The constructor only stores: the file is read in apply(), watched from start().
  constructor(
    @inject(Tokens.PluginOptions) private readonly options: AuthOptions,
    @inject(Tokens.Config) config: ResolvedConfig,
    @inject(Tokens.Logger) private readonly log: Logger,
  ) {
    this.file = path.resolve(config.source.dir, options.usersFile);
  }

  /** Number of users currently loaded. */
  get userCount(): number {
    return this.table?.users.size ?? 0;
  }

  /** Always true: with this plugin on, only clients with valid credentials get a stream. */
  restrictsClients(): boolean {
    return true;
  }

  apply(kernel: Kernel): void {
    // Read once, synchronously, here rather than in start(): a missing or broken users file is a
    // config error (exit 78, also under --check, which builds the proxy but never starts it),
    // not a start failure.
    this.loadInitial();

    kernel.hooks.onGreeting.tapPromise({ name: PLUGIN_NAME, stage: Stage.AUTH }, async ({ conn, firstByte, methods }) => {
      if (firstByte !== 0x05) return undefined; // SOCKS4 is answered in onAuth (5B); HTTP is http-detect's
      if (methods.includes(Method.USERPASS)) return { method: Method.USERPASS };
      conn.log.info({ methods }, 'auth: client does not offer username/password, refused');
      return { method: Method.NO_ACCEPTABLE };
    });

    // Success returns undefined, not { accept: true }: the credentials are good, and any later
    // onAuth tap may still refuse the client for reasons of its own.
    kernel.hooks.onAuth.tapPromise({ name: PLUGIN_NAME, stage: Stage.AUTH }, async ({ conn, credentials }) => {
      if (await this.check(conn, credentials)) {
        this.accepted.add(conn);
        return undefined;
      }
      return { accept: false };
    });

    // Defence in depth: a stream reaches its request only after this plugin accepted it. This
    // catches HTTP CONNECT without Proxy-Authorization (http-detect then skips onAuth) and any
    // path where an earlier tap chose method 00.
    kernel.hooks.onRequest.tapPromise({ name: PLUGIN_NAME, stage: Stage.AUTH }, async (conn) => {
      if (this.accepted.has(conn)) return undefined;
      conn.log.info({ protocol: conn.protocol }, 'auth: request without authentication refused');
      return { rep: Rep.NOT_ALLOWED };
    });
  }

  /** Verify credentials; logs the username (never the password) when they are refused. */
  private async check(conn: ConnectionContext, c: Credentials): Promise<boolean> {
    const table = this.table;
    if (!table) return false;
    switch (c.source) {
      case 'rfc1929': {
        return this.verify(conn, table, c.source, c.username, c.password ?? Buffer.alloc(0));
      }
      case 'socks4-userid': {
        if (this.options.socks4 === 'reject') {
          conn.log.info({ source: c.source }, "auth: SOCKS4 refused (socks4: 'reject')");
          return false;
        }
        const user = socks4User(table, c.username);
        if (user) {
          conn.log.debug({ user: user.username, source: c.source }, 'auth: accepted');
          return true;
        }
        // The USERID is not logged: in this mode it is the only secret there is.
        conn.log.info({ source: c.source }, 'auth: SOCKS4 user id not allowed');
        return false;
      }
      case 'http': {
        if (!this.options.http) {
          conn.log.info({ source: c.source }, 'auth: HTTP CONNECT refused (http: false)');
          return false;
        }
        // The username is the raw Proxy-Authorization value: it contains the password, so it is
        // never logged; only the decoded name is.
        const basic = parseBasicAuthorization(c.username);
        if (!basic) {
          conn.log.info({ source: c.source }, 'auth: Proxy-Authorization is not Basic credentials');
          return false;
        }
        return this.verify(conn, table, c.source, basic.username, basic.password);
      }
      default:
        return false;
    }
  }

  /** One scrypt verification, in turn with the others. */
  private async verify(conn: ConnectionContext, table: UsersTable, source: Credentials['source'], username: Buffer, password: Buffer): Promise<boolean> {
    const user = await this.queue.run(conn.signal, () => verifyUser(table, username, password));
    if (conn.signal.aborted) return false; // the client went away while waiting for its turn
    if (user) {
      conn.log.debug({ user: user.username, source }, 'auth: accepted');
      conn.user = user.username; // the access line's user (a SOCKS4 USERID is a secret: never set)
      return true;
    }
    conn.log.info({ user: shownName(username), source }, 'auth: wrong username or password');
    return false;
  }

  // ---------------------------------------------------------------------------------------------
  // Loading and reloading

  private loadInitial(): void {
    const key = `plugins.${PLUGIN_NAME}.usersFile`;
    let text: string;
    let sig: string;
    try {
      const st = fs.statSync(this.file);
      if (!st.isFile()) throw new Error('not a regular file');
      if (st.size > MAX_FILE_BYTES) throw new Error(`larger than ${MAX_FILE_BYTES} bytes`);
      sig = signatureOf(st);
      text = fs.readFileSync(this.file, 'utf8');
    } catch (err) {
      throw new ConfigError(key, `cannot read users file ${this.file}: ${errorMessage(err)}`, 'SOCKSMITH_ERR_CONFIG_INVALID', { cause: err });
    }
    const parsed = parseUsersFile(text);
    if (!parsed.ok) {
      const lines = describeProblems(parsed.problems);
      const more = lines.length > 1 ? ` (and ${lines.length - 1} more)` : '';
      throw new ConfigError(key, `users file ${this.file}: ${lines[0]}${more}`);
    }
    this.install(parsed.table, text, sig, 'auth: users loaded');
  }

  private install(table: UsersTable, text: string, sig: string, message: string): void {
    this.table = table;
    this.lastText = text;
    this.signature = sig;
    this.lastReadError = undefined;
    const weak = [...table.users.values()].filter((u) => u.hash.N * u.hash.r < DEFAULT_SCRYPT_PARAMS.N * DEFAULT_SCRYPT_PARAMS.r).length;
    this.log.info({ plugin: PLUGIN_NAME, file: this.file, users: table.users.size }, message);
    if (weak > 0) this.log.warn({ plugin: PLUGIN_NAME, file: this.file, users: weak }, 'auth: some users have scrypt costs below N=16384, r=8');
  }

  async start(): Promise<void> {
    const dir = path.dirname(this.file);
    const base = path.basename(this.file);
    // Watch the folder, not the file: an editor's or an atomic write-and-rename replaces the
    // file's inode, and a watch on the old inode would never fire again.
    try {
      this.watcher = fs.watch(dir, { persistent: false }, (_event, filename) => {
        if (filename === null || filename === base) this.scheduleReload();
      });
      this.watcher.on('error', (err) => {
        this.log.warn({ plugin: PLUGIN_NAME, dir, err: errorMessage(err) }, 'auth: watching the users file failed; polling only');
        this.watcher?.close();
        this.watcher = undefined;
      });
    } catch (err) {
      this.log.warn({ plugin: PLUGIN_NAME, dir, err: errorMessage(err) }, 'auth: cannot watch the users file; polling only');
    }
    if (this.options.reloadInterval > 0) {
      this.pollTimer = setInterval(() => void this.poll(), this.options.reloadInterval);
      this.pollTimer.unref();
    }
    await this.poll(); // changed since apply()?
  }

  /** Reload if the file's stat signature differs from the version last read. */
  private async poll(): Promise<void> {
    let sig: string | undefined;
    try {
      sig = signatureOf(await stat(this.file));
    } catch {
      sig = undefined; // missing: let reload() report it once
    }
    if (sig !== this.signature) this.scheduleReload(0);
  }

  private scheduleReload(delay = RELOAD_DEBOUNCE_MS): void {
    if (this.closed) return;
    if (this.debounceTimer) clearTimeout(this.debounceTimer);
    this.debounceTimer = setTimeout(() => {
      this.debounceTimer = undefined;
      this.runReload();
    }, delay);
    this.debounceTimer.unref();
  }

  /** One reload at a time; a change during a reload triggers one more. */
  private runReload(): void {
    if (this.reloading) {
      this.reloadAgain = true;
      return;
    }
    this.reloading = this.reload()
      .then(() => undefined)
      .catch((err: unknown) => this.log.error({ plugin: PLUGIN_NAME, file: this.file, err: errorMessage(err) }, 'auth: reload failed'))
      .finally(() => {
        this.reloading = undefined;
        if (this.reloadAgain && !this.closed) {
          this.reloadAgain = false;
          this.runReload();
        }
      });
  }

  /**
   * Read and parse the file; install it if it parses. Never throws for a bad file: the users
   * already loaded stay, and one error line says why.
   */
  async reload(): Promise<boolean> {
    let text: string;
    let sig: string;
    try {
      const st = await stat(this.file);
      if (!st.isFile()) throw Object.assign(new Error('not a regular file'), { code: 'ENOTFILE' });
      if (st.size > MAX_FILE_BYTES) throw Object.assign(new Error(`larger than ${MAX_FILE_BYTES} bytes`), { code: 'ETOOBIG' });
      sig = signatureOf(st);
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      const code = (err as { code?: string }).code ?? errorMessage(err);
      if (this.lastReadError !== code) {
        this.lastReadError = code;
        this.signature = undefined;
        this.log.error({ plugin: PLUGIN_NAME, file: this.file, err: errorMessage(err), users: this.userCount }, 'auth: cannot read the users file; keeping the users loaded');
      }
      return false;
    }
    if (this.closed) return false;
    this.lastReadError = undefined;
    if (text === this.lastText) {
      this.signature = sig; // touched or rewritten with the same content
      return false;
    }
    const parsed = parseUsersFile(text);
    if (!parsed.ok) {
      this.lastText = text;
      this.signature = sig;
      this.log.error(
        { plugin: PLUGIN_NAME, file: this.file, problems: describeProblems(parsed.problems), users: this.userCount },
        'auth: users file has errors; keeping the users loaded',
      );
      return false;
    }
    this.install(parsed.table, text, sig, 'auth: users file reloaded');
    return true;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.watcher?.close();
    this.watcher = undefined;
    if (this.pollTimer) clearInterval(this.pollTimer);
    if (this.debounceTimer) clearTimeout(this.debounceTimer);
    this.pollTimer = undefined;
    this.debounceTimer = undefined;
    await this.reloading;
  }
}

/** What identifies one version of the file without reading it. */
function signatureOf(st: fs.Stats): string {
  return `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
}

export default AuthPlugin;
