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
 * Verifications take turns per client address (round-robin, at most 64 waiting per address; an
 * IPv6 client counts by its /64), and an unknown username is hashed at the cost most users have.
 *
 * The users file is watched and reloaded on change; a file that fails to parse keeps the users
 * already loaded, and one with no users replacing one with users is installed only if it stays
 * so for {@link EMPTY_SETTLE_MS}. Passwords (and the raw Proxy-Authorization header) are never logged; the
 * username is, at info level, when a login fails.
 * @packageDocumentation
 */
import fs from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import {
  clientKey,
  ConfigError,
  errorMessage,
  inject,
  injectable,
  Method,
  Rep,
  Stage,
  Tokens,
  type ConnectionContext,
  type Credentials,
  type PluginApi,
  type ServiceRegistry,
  type Logger,
  type ResolvedConfig,
  type SocksmithPlugin,
} from 'socksmith';
import { AuthOptionsSchema, type AuthOptions } from './schema.js';
import { DEFAULT_SCRYPT_PARAMS, type UsersFileProblem, type UsersTable, parseUsersFile, socks4User, verifyUser } from './users-file.js';

export type { AuthOptions } from './schema.js';
/** The `socksmith passwd` command (the CLI loads it from here, by this plugin's specifier). */
export { runPasswd, type PasswdOptions } from './passwd.js';
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
 * A file that parses but has no users, replacing one that had some, is installed only if it still
 * has none this long after it was first seen: `>`-style rewrites truncate first and write later,
 * and installing the truncated moment would refuse every login until the write lands.
 */
export const EMPTY_SETTLE_MS = 1000;

/**
 * At most this many scrypt computations at once. Each one holds a libuv thread-pool thread (and
 * 128·N·r bytes), so a burst of logins must not starve file and DNS work; logins beyond it wait
 * their turn (one queue per client address, served round-robin), and a waiting login whose
 * client went away leaves the queue at once, without hashing.
 */
const MAX_CONCURRENT_VERIFY = 2;

/**
 * At most this many logins from one client address waiting or being hashed at once; one more is
 * refused (`01 01`, HTTP 407) without hashing. A browser opens at most 32 connections to one
 * proxy at a time (Chromium's and Firefox's per-proxy limits), so honest clients stay below it.
 */
export const MAX_LOGINS_PER_CLIENT = 64;

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

/** What {@link FairTurnQueue.run} returns for a client already at its cap. */
const OVER_CAP = Symbol('over cap');

/**
 * Runs at most `max` tasks at once. Waiting tasks queue per client (FIFO within a client) and the
 * clients take turns (round-robin), so a client flooding logins gets one turn per round like
 * every other waiting client instead of a place in one long line; a client with `maxPerClient`
 * tasks waiting or running gets {@link OVER_CAP}. A task whose signal aborts while it waits (its
 * client went away) leaves the queue at once, without running, and no longer counts against its
 * client's `maxPerClient`.
 */
export class FairTurnQueue {
  private active = 0;
  /** Waiting turns by client; Map order is the round-robin order (a served client moves to the back). */
  private readonly waiting = new Map<string, Array<() => void>>();
  /** Tasks waiting or running, by client. */
  private readonly held = new Map<string, number>();

  constructor(
    private readonly max: number,
    private readonly maxPerClient: number,
  ) {}

  /** Tasks waiting for a turn (all clients). */
  get waitingCount(): number {
    let n = 0;
    for (const q of this.waiting.values()) n += q.length;
    return n;
  }

  /**
   * Run `task` in turn; `undefined` if `signal` aborted before it ran (it never runs then),
   * {@link OVER_CAP} if `client` already has `maxPerClient` tasks waiting or running.
   */
  async run<T>(client: string, signal: AbortSignal, task: () => Promise<T>): Promise<T | undefined | typeof OVER_CAP> {
    if (signal.aborted) return undefined;
    const held = this.held.get(client) ?? 0;
    if (held >= this.maxPerClient) return OVER_CAP;
    this.held.set(client, held + 1);
    try {
      if (this.active < this.max) this.active++;
      else if (!(await this.turn(client, signal))) return undefined; // left the queue: no slot held
      try {
        if (signal.aborted) return undefined;
        return await task();
      } finally {
        this.release();
      }
    } finally {
      const n = (this.held.get(client) ?? 1) - 1;
      if (n <= 0) this.held.delete(client);
      else this.held.set(client, n);
    }
  }

  /**
   * Wait in `client`'s queue until release() hands over a slot (true), or until `signal` aborts
   * (false: the task has left the queue and holds no slot).
   */
  private turn(client: string, signal: AbortSignal): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      const go = () => {
        signal.removeEventListener('abort', leave);
        resolve(true);
      };
      const leave = () => {
        const q = this.waiting.get(client);
        const i = q ? q.indexOf(go) : -1;
        if (i >= 0) {
          q!.splice(i, 1);
          if (q!.length === 0) this.waiting.delete(client);
        }
        resolve(false);
      };
      const q = this.waiting.get(client);
      if (q) q.push(go);
      else this.waiting.set(client, [go]);
      signal.addEventListener('abort', leave, { once: true });
    });
  }

  /** Hand the slot to the first waiting task of the next client in turn, or free it. */
  private release(): void {
    const first = this.waiting.entries().next();
    if (first.done) {
      this.active--;
      return;
    }
    const [client, q] = first.value;
    const next = q.shift()!;
    this.waiting.delete(client);
    if (q.length > 0) this.waiting.set(client, q); // to the back of the round
    next();
  }
}

/**
 * The scrypt queue of the process: every `auth` plugin instance uses this one. The turns it hands
 * out are libuv thread-pool threads, which are the process's, and a SIGHUP reload builds a new
 * plugin instance while the old one still checks the logins its connections started: with one
 * queue each, both would hash at once (twice {@link MAX_CONCURRENT_VERIFY}) and a client would
 * get a fresh {@link MAX_LOGINS_PER_CLIENT} in the new one. Both limits are constants, so no
 * reload changes them. (Two proxies embedded in one process share it too, as they share the
 * thread pool.)
 */
const HASHING_QUEUE = new FairTurnQueue(MAX_CONCURRENT_VERIFY, MAX_LOGINS_PER_CLIENT);

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
  /** The process's one scrypt queue ({@link HASHING_QUEUE}), shared with the configurations a reload replaced. */
  private readonly queue = HASHING_QUEUE;
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
  /** When a version without users was first seen while users were loaded (see {@link EMPTY_SETTLE_MS}). */
  private emptySince: number | undefined;
  private settleTimer: NodeJS.Timeout | undefined;
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

  /** Supplies `Tokens.UsersStore`: this plugin's users file, for plugins that check credentials of their own. */
  provision(services: ServiceRegistry): void {
    const plugin = this;
    services.provide(Tokens.UsersStore, {
      verify: (user: Buffer, pass: Buffer, conn: ConnectionContext) => plugin.check(conn, { source: 'rfc1929', username: user, password: pass }),
      get size() {
        return plugin.userCount;
      },
    });
  }

  apply(api: PluginApi): void {
    // Read once, synchronously, here rather than in start(): a missing or broken users file is a
    // config error (exit 78, also under --check, which builds the proxy but never starts it),
    // not a start failure.
    this.loadInitial();

    api.hooks.onGreeting.tapPromise({ name: PLUGIN_NAME, stage: Stage.AUTH }, async ({ conn, firstByte, methods }) => {
      if (firstByte !== 0x05) return undefined; // SOCKS4 is answered in onAuth (5B); HTTP is http-detect's
      if (methods.includes(Method.USERPASS)) return { method: Method.USERPASS };
      conn.log.info({ methods }, 'auth: client does not offer username/password, refused');
      return { method: Method.NO_ACCEPTABLE };
    });

    // Success returns undefined, not { accept: true }: the credentials are good, and any later
    // onAuth tap may still refuse the client for reasons of its own.
    api.hooks.onAuth.tapPromise({ name: PLUGIN_NAME, stage: Stage.AUTH }, async ({ conn, credentials }) => {
      if (await this.check(conn, credentials)) {
        this.accepted.add(conn);
        return undefined;
      }
      return { accept: false };
    });

    // Defence in depth: a stream reaches its request only after this plugin accepted it. This
    // catches any path that skipped onAuth (http-detect runs it for every CONNECT, header or
    // not) and any where an earlier tap chose method 00.
    api.hooks.onRequest.tapPromise({ name: PLUGIN_NAME, stage: Stage.AUTH }, async (conn) => {
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

  /** One scrypt verification, in turn with the others (round-robin over client addresses). */
  private async verify(conn: ConnectionContext, table: UsersTable, source: Credentials['source'], username: Buffer, password: Buffer): Promise<boolean> {
    // By clientKey(): an IPv6 client takes its turns (and has its cap) by its /64.
    const user = await this.queue.run(clientKey(conn.clientAddress), conn.signal, () => verifyUser(table, username, password));
    if (user === OVER_CAP) {
      conn.log.info({ client: conn.clientAddress, source, max: MAX_LOGINS_PER_CLIENT }, 'auth: too many logins waiting from this address; refused without hashing');
      return false;
    }
    if (conn.signal.aborted) return false; // the client went away while waiting for its turn (it left the queue then)
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
    if (table.costs > 1) {
      const d = table.dummy;
      this.log.warn(
        { plugin: PLUGIN_NAME, file: this.file, costs: table.costs, unknownUserCost: `N=${d.N},r=${d.r},p=${d.p}` },
        'auth: users have different scrypt costs; a failed login takes as long as for most users, so the time of one can tell the others apart (rehash them to one cost)',
      );
    }
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
      this.endSettle();
      return false;
    }
    const parsed = parseUsersFile(text);
    if (parsed.ok && parsed.table.users.size === 0 && this.userCount > 0) {
      // Truncated, perhaps about to be written: keep the users until it has stayed empty.
      const now = Date.now();
      if (this.emptySince === undefined) {
        this.emptySince = now;
        this.log.warn(
          { plugin: PLUGIN_NAME, file: this.file, users: this.userCount, settleMs: EMPTY_SETTLE_MS },
          'auth: users file has no users; keeping the users loaded and reading it again before accepting that',
        );
      }
      if (now - this.emptySince < EMPTY_SETTLE_MS) {
        this.signature = sig;
        if (!this.settleTimer) {
          this.settleTimer = setTimeout(() => {
            this.settleTimer = undefined;
            this.runReload();
          }, EMPTY_SETTLE_MS - (now - this.emptySince));
          this.settleTimer.unref();
        }
        return false;
      }
    }
    this.endSettle();
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

  /** Forget a version without users seen earlier (the file has users again, or it stayed empty). */
  private endSettle(): void {
    this.emptySince = undefined;
    if (this.settleTimer) clearTimeout(this.settleTimer);
    this.settleTimer = undefined;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.watcher?.close();
    this.watcher = undefined;
    if (this.pollTimer) clearInterval(this.pollTimer);
    if (this.debounceTimer) clearTimeout(this.debounceTimer);
    this.endSettle();
    this.pollTimer = undefined;
    this.debounceTimer = undefined;
    await this.reloading;
  }
}

/** What identifies one version of the file without reading it. */
function signatureOf(st: fs.Stats): string {
  return `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
}

declare module 'socksmith' {
  /** This plugin's options, for `defineConfig({ plugins: { auth: … } })`. */
  interface PluginOptionsMap {
    auth: AuthOptions;
  }
}

export default AuthPlugin;
