/**
 * The kernel's six hooks, created once per proxy, typed and frozen (webpack `lib/Compiler.js`).
 *
 * Plugins tap; only the kernel calls. The kind of each hook states its contract:
 * Bail = "I handled it" (return `undefined` to pass), Waterfall = "I transform it".
 * docs/hooks.md documents each: when it runs, its arguments, what a tap may return, and which
 * reply a failure gives.
 * @packageDocumentation
 */
import type { Duplex } from 'node:stream';
import { AsyncSeriesBailHook, AsyncSeriesWaterfallHook, SyncBailHook, SyncWaterfallHook } from 'tapable';
import type { SocksAddress } from '../protocol/address.js';
import type { SocksRequest } from '../protocol/codec.js';
import type { ConnectionContext, Credentials } from './context.js';
import { PluginHookError } from '../errors.js';

/** What `onGreeting` taps see: the first message of a connection. */
export interface GreetingInfo {
  readonly conn: ConnectionContext;
  /** First byte of the connection: 0x05, 0x04, or anything else (an unknown protocol). */
  readonly firstByte: number;
  /** SOCKS5 methods offered, in the client's order; empty for SOCKS4 and unknown protocols. */
  readonly methods: readonly number[];
}

/**
 * How a connection that never made a request ended (debug line `handshake ended`, metric
 * `socksmith_handshakes_unfinished_total{outcome}`): the client closed or reset it, the handshake
 * timed out, its bytes were not SOCKS (or were malformed), a plugin refused it (greeting or
 * credentials) or failed, a plugin that took it over answered it (`http_page`: http-detect's 501
 * page; `takeover`: any other), the kernel closed it to make room under a connection limit
 * (`shed`) or because the proxy stops (`shutdown`).
 */
export type HandshakeOutcome = 'client_closed' | 'timeout' | 'protocol_error' | 'refused' | 'plugin_error' | 'http_page' | 'takeover' | 'shed' | 'shutdown';

/**
 * The rest of a connection, handed to a plugin that took it over in `onGreeting`. The kernel
 * still owns teardown. Deprecated: add a front end (`api.frontEnds.add`, `FrontEnd` and
 * `ClientSession` in `front/types.ts`); this is the same session under older names, and no
 * built-in uses it.
 */
export interface Takeover {
  readonly conn: ConnectionContext;
  /**
   * The client socket, paused: attach your 'data' listener, then `resume()` it. Pause it again
   * before calling {@link Takeover.runRequest}. Do not destroy it yourself; call {@link Takeover.finish}.
   */
  readonly socket: Duplex;
  /**
   * Bytes read so far and not consumed by the kernel: for SOCKS4 and unknown protocols everything
   * from the first byte; for SOCKS5 whatever followed the greeting.
   */
  readonly buffered: Buffer;
  /**
   * Run a request through the kernel's pipeline (`onRequest`, the upstream, `onReply`, relay) as
   * if it had come over SOCKS. `encodeReply` turns the final reply into the front end's bytes;
   * `leftover` is client data already read after the request (it is relayed, never dropped).
   * Resolves once the final reply is written: the relay has started, or the connection is
   * ending. Not when the stream ends.
   */
  runRequest(request: SocksRequest, encodeReply: (reply: Reply) => Buffer, leftover: Buffer): Promise<void>;
  /**
   * Record credentials the front end carried (e.g. HTTP `Proxy-Authorization`) on `conn` and run
   * `onAuth` on them, as the kernel does for SOCKS. Resolves true when accepted.
   */
  authenticate(credentials: Credentials): Promise<boolean>;
  /**
   * Send `bytes` (if any), end the connection gracefully and tear it down. Idempotent.
   * `outcome` names what happened, for the debug line and the metrics of handshakes that ended
   * without a request (`http_page`: http-detect served its 501 page); default `takeover`.
   */
  finish(bytes?: Buffer, outcome?: HandshakeOutcome): void;
}

/** A plugin that takes over a connection after the first byte. */
export type TakeoverHandler = (takeover: Takeover) => void | Promise<void>;

/** An `onGreeting` decision. */
export type GreetingDecision =
  /** SOCKS5: answer with this method (0xFF: none acceptable, then close). */
  | { readonly method: number }
  /** Close now: SOCKS5 gets `05 FF` first; SOCKS4 and unknown protocols get nothing. */
  | { readonly reject: true }
  /** Hand the connection to a plugin (unknown protocols and SOCKS alike). */
  | { readonly takeover: TakeoverHandler };

/** What `onAuth` taps see. */
export interface AuthInfo {
  readonly conn: ConnectionContext;
  readonly credentials: Credentials;
}

/** An `onAuth` decision: accept (`01 00`) or reject (`01 01` and close; SOCKS4: `5B`). */
export interface AuthDecision {
  readonly accept: boolean;
}

/**
 * A reply to a request. `rep` is a SOCKS5 REP value for every front end: SOCKS4 sends 5A for 00
 * and 5B otherwise; HTTP CONNECT maps it to a status line.
 */
export interface Reply {
  readonly rep: number;
  /** BND.ADDR / BND.PORT: the bound address, a RESOLVE answer, or a RESOLVE_PTR name. Zero when absent. */
  readonly bound?: SocksAddress;
}

/** One resolved address. */
export interface ResolvedAddress {
  readonly address: string;
  readonly family: 4 | 6;
}

/** What `onResolve` taps see: a forward (name → addresses) or reverse (address → names) lookup. */
export interface ResolveQuery {
  /** The connection that asked, or `undefined` for lookups the kernel makes on its own. */
  readonly conn: ConnectionContext | undefined;
  readonly type: 'forward' | 'reverse';
  /** The name (forward) or the IP literal (reverse). */
  readonly name: string;
  /** Wanted family for forward lookups: 4, 6, or 0 for both. */
  readonly family: 0 | 4 | 6;
}

/** An `onResolve` answer. Throw a `ResolveError` (or any error with a numeric `rep`) to fail the lookup. */
export type ResolveAnswer = { readonly addresses: readonly ResolvedAddress[] } | { readonly names: readonly string[] };

/** Direction of relayed bytes, for `onData`. */
export type DataDirection = 'up' | 'down';

/** What `onData` taps see besides the chunk. Two per connection, preallocated. */
export interface DataInfo {
  readonly conn: ConnectionContext;
  /** `up`: client → upstream; `down`: upstream → client. */
  readonly direction: DataDirection;
}

/** The kernel hooks: the six of the design, plus `onAccept` for decisions before any byte. */
export interface Hooks {
  /**
   * A client connected; nothing has been read or sent yet. Return `false` to close it at once,
   * without a byte (client ACLs, per-address limits); `undefined` to go on. Synchronous: it runs
   * on every accept. Added beside the six design hooks because "reject before any byte" cannot
   * be expressed at the first byte (a silent client would hold its slot until the handshake
   * timeout).
   */
  readonly onAccept: SyncBailHook<[ConnectionContext], false | undefined>;
  /**
   * First message of a connection: a SOCKS5 greeting, the first byte of a SOCKS4 request, or the
   * first byte of an unknown protocol. Bail with a {@link GreetingDecision}; `undefined` gives the
   * default (SOCKS5: 00 if offered, else 02, else FF; unknown protocol: close silently).
   */
  readonly onGreeting: AsyncSeriesBailHook<[GreetingInfo], GreetingDecision | undefined>;
  /** Credentials arrived (RFC 1929, or a SOCKS4 USERID). Bail with an {@link AuthDecision}; default accept. */
  readonly onAuth: AsyncSeriesBailHook<[AuthInfo], AuthDecision | undefined>;
  /**
   * A request arrived. Bail with a {@link Reply} to answer it without an upstream connection (then
   * close); return `undefined` to let the kernel connect `conn.destination` through the upstream.
   */
  readonly onRequest: AsyncSeriesBailHook<[ConnectionContext, SocksRequest], Reply | undefined>;
  /** A name or address is being resolved. Bail with a {@link ResolveAnswer}; default: the resolver service. */
  readonly onResolve: AsyncSeriesBailHook<[ResolveQuery], ResolveAnswer | undefined>;
  /** Every reply to a request, success or failure, just before it is encoded. Return the reply to send. */
  readonly onReply: AsyncSeriesWaterfallHook<[Reply, ConnectionContext]>;
  /**
   * Every relayed chunk, both directions, early data included. Return the chunk to forward (the
   * same one, a transformed one, or an empty buffer to drop it). Synchronous: it is on the hot
   * path, and the kernel skips it entirely while no plugin taps it.
   */
  readonly onData: SyncWaterfallHook<[Buffer, DataInfo]>;
}

/** Hook names, in lifecycle order. */
export const HOOK_NAMES = ['onAccept', 'onGreeting', 'onAuth', 'onRequest', 'onResolve', 'onReply', 'onData'] as const;

/**
 * True when at least one plugin tapped `hook`. The kernel uses this, not tapable's `isUsed()`, to
 * skip a hook nobody listens to: `isUsed()` also counts interceptors, and every kernel hook has the
 * error-attribution interceptor, so it would always be true.
 */
export function isTapped(hook: { readonly taps: readonly unknown[] }): boolean {
  return hook.taps.length > 0;
}

/** A value now, or a promise of it: what {@link callBail} returns. */
export type MaybePromise<T> = T | Promise<T>;

/** True for a promise (or any thenable): the caller of {@link callBail} awaits only these. */
export function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as { then?: unknown }).then === 'function';
}

/** A tap as tapable keeps it (its `fn` already wrapped by {@link attributeErrors}). */
interface RunnableTap {
  readonly type: string;
  readonly fn: (...args: unknown[]) => unknown;
  readonly context?: boolean;
}

/** The members of an `AsyncSeriesBailHook` that {@link callBail} reads. */
interface BailHook {
  readonly taps: readonly RunnableTap[];
  readonly interceptors: readonly { readonly call?: unknown; readonly tap?: unknown; readonly loop?: unknown; readonly error?: unknown; readonly result?: unknown; readonly done?: unknown }[];
  readonly _args?: readonly string[];
  promise(...args: unknown[]): Promise<unknown>;
}

/**
 * Run an `AsyncSeriesBailHook` (onGreeting, onAuth, onRequest) with tapable's semantics (taps in
 * tapable's order; the first result other than `undefined` wins; a throw, a rejection or a
 * callback error fails the call), but synchronously for as long as the taps answer synchronously:
 * a `tap` tap, or a `tapAsync` tap that calls back before it returns (the built-ins that pass on
 * a request that is not theirs). The value comes back as is, not in a promise, so the caller
 * goes on without a promise and a microtask turn per hook per connection (`hook.promise()`
 * builds a promise and closures on every call, whatever the taps do). From the first tap that
 * answers later (a `tapPromise` tap, a callback after the return) the rest runs asynchronously
 * and a promise is returned; a failure is always a rejected promise, never a throw. Hooks with an
 * interceptor other than the kernel's `register` one, or a tap that asks for tapable's
 * (deprecated) `context`, go through `hook.promise()` unchanged.
 */
export function callBail<R>(hook: { readonly taps: readonly unknown[] }, a: unknown, b?: unknown): MaybePromise<R | undefined> {
  const h = hook as unknown as BailHook;
  if (!plainHook(h)) return h.promise(a, b) as Promise<R | undefined>;
  try {
    return runBail(h.taps, 0, (h._args?.length ?? 2) === 1, a, b) as MaybePromise<R | undefined>;
  } catch (err) {
    return Promise.reject(err);
  }
}

/** True when no interceptor acts per call and no tap asks for `context` (then {@link runBail} is tapable's semantics). */
function plainHook(h: BailHook): boolean {
  const ics = h.interceptors;
  for (let i = 0; i < ics.length; i++) {
    const ic = ics[i]!;
    if (ic.call !== undefined || ic.tap !== undefined || ic.loop !== undefined || ic.error !== undefined || ic.result !== undefined || ic.done !== undefined) return false;
  }
  const taps = h.taps;
  for (let i = 0; i < taps.length; i++) if (taps[i]!.context) return false;
  return true;
}

/** Taps from `i` on: a bail value, `undefined`, or a promise once a tap answers later. Throws what a tap throws synchronously. */
function runBail(taps: readonly RunnableTap[], i: number, unary: boolean, a: unknown, b: unknown): unknown {
  for (; i < taps.length; i++) {
    const tap = taps[i]!;
    if (tap.type === 'sync') {
      const r = tap.fn(a, b);
      if (r !== undefined) return r;
    } else if (tap.type === 'async') {
      let sync = true;
      let called = false;
      let syncErr: unknown;
      let syncRes: unknown;
      let resolve: ((v: unknown) => void) | undefined;
      let reject: ((e: unknown) => void) | undefined;
      const next = i + 1;
      const cb = (err?: unknown, res?: unknown): void => {
        if (called) return;
        called = true;
        if (sync) {
          syncErr = err;
          syncRes = res;
          return;
        }
        if (err) reject!(err);
        else if (res !== undefined) resolve!(res);
        else {
          try {
            resolve!(runBail(taps, next, unary, a, b));
          } catch (e) {
            reject!(e);
          }
        }
      };
      if (unary) tap.fn(a, cb);
      else tap.fn(a, b, cb);
      sync = false;
      if (!called) {
        return new Promise((res, rej) => {
          resolve = res;
          reject = rej;
        });
      }
      if (syncErr) throw syncErr;
      if (syncRes !== undefined) return syncRes;
    } else {
      const p = tap.fn(a, b) as PromiseLike<unknown> | undefined;
      if (!p || typeof p.then !== 'function') throw new Error(`Tap function (tapPromise) did not return promise (returned ${String(p)})`);
      const next = i + 1;
      return Promise.resolve(p).then(
        (r) => (r !== undefined ? r : runBail(taps, next, unary, a, b)),
        (e: unknown) => {
          throw e ? e : new Error(`Tap function (tapPromise) rejects "${String(e)}" value`);
        },
      );
    }
  }
  return undefined;
}

/** True for errors that are deliberate answers (they carry a numeric SOCKS `rep`), not plugin crashes. */
export function isDeliberate(err: unknown): err is Error & { rep: number } {
  return typeof err === 'object' && err !== null && typeof (err as { rep?: unknown }).rep === 'number';
}

/**
 * Wrap every tap so that a throw or rejection names its plugin: the error becomes a
 * {@link PluginHookError} (unless it is a deliberate answer carrying `rep`). This is a tapable
 * `register` interceptor, so it costs nothing per call beyond the wrapper.
 */
function attributeErrors(hookName: string, hook: { intercept(i: object): void; readonly _args?: readonly string[] }): void {
  // Fixed-arity wrappers (every kernel hook takes one or two arguments): no rest arrays, no
  // spreads per call.
  const arity = hook._args?.length ?? 2;
  hook.intercept({
    register(tap: { name: string; type: string; fn: (...args: unknown[]) => unknown }) {
      const fn = tap.fn;
      const attributed = (err: unknown): unknown => (isDeliberate(err) || err instanceof PluginHookError ? err : new PluginHookError(tap.name, hookName, err));
      const rethrow = (err: unknown): never => {
        throw attributed(err);
      };
      if (tap.type === 'promise') {
        tap.fn = (a: unknown, b: unknown) => {
          let p: unknown;
          try {
            p = fn(a, b);
          } catch (err) {
            return Promise.reject(attributed(err));
          }
          return (p as Promise<unknown>).then(undefined, rethrow);
        };
      } else if (tap.type === 'sync') {
        tap.fn = (a: unknown, b: unknown) => {
          try {
            return fn(a, b);
          } catch (err) {
            return rethrow(err);
          }
        };
      } else {
        // tapAsync: the callback comes after the hook's arguments (no argument arrays per call).
        type Cb = (err?: unknown, res?: unknown) => void;
        const settle = (cb: Cb): Cb => (err, res) => (err ? cb(attributed(err)) : cb(null, res));
        tap.fn = (
          arity === 1
            ? (a: unknown, cb: Cb) => {
                try {
                  fn(a, settle(cb));
                } catch (err) {
                  cb(attributed(err));
                }
              }
            : (a: unknown, b: unknown, cb: Cb) => {
                try {
                  fn(a, b, settle(cb));
                } catch (err) {
                  cb(attributed(err));
                }
              }
        ) as (...args: unknown[]) => unknown;
      }
      return tap;
    },
  });
}

/** Create the six hooks for one proxy instance, with error attribution, frozen. */
export function createHooks(): Hooks {
  const hooks: Hooks = {
    onAccept: new SyncBailHook<[ConnectionContext], false | undefined>(['conn'], 'onAccept'),
    onGreeting: new AsyncSeriesBailHook<[GreetingInfo], GreetingDecision | undefined>(['greeting'], 'onGreeting'),
    onAuth: new AsyncSeriesBailHook<[AuthInfo], AuthDecision | undefined>(['auth'], 'onAuth'),
    onRequest: new AsyncSeriesBailHook<[ConnectionContext, SocksRequest], Reply | undefined>(['conn', 'request'], 'onRequest'),
    onResolve: new AsyncSeriesBailHook<[ResolveQuery], ResolveAnswer | undefined>(['query'], 'onResolve'),
    onReply: new AsyncSeriesWaterfallHook<[Reply, ConnectionContext]>(['reply', 'conn'], 'onReply'),
    onData: new SyncWaterfallHook<[Buffer, DataInfo]>(['chunk', 'info'], 'onData'),
  };
  for (const name of HOOK_NAMES) attributeErrors(name, hooks[name] as unknown as { intercept(i: object): void; readonly _args?: readonly string[] });
  return Object.freeze(hooks);
}
