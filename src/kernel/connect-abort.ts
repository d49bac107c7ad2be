/**
 * The options of the kernel's CONNECT dispatch, with a lazy abort signal.
 *
 * Every CONNECT may be aborted (connect timeout, client gone), so its options carry an
 * `AbortSignal`. On Node 20 building one costs about 2.5 µs (an `EventTarget` and a prototype
 * change) and listening to it about 1.5 µs more, a few per cent of a whole handshake
 * (docs/performance.md), while almost every connect ends without an abort. So the kernel's
 * options object builds its `signal` only when something reads it; the built-in `direct`
 * upstream listens without it, through {@link connectAbortOf}. Whatever reads `signal` (an
 * interceptor or upstream that needs it) gets a real `AbortSignal`, aborted with the same reason
 * whenever the connect is.
 *
 * Interceptors that pass changed options on keep the signal lazy with
 * {@link deriveDispatchOptions}; spreading the options (`{ ...options, early }`) works as well,
 * but reads `signal` and so builds it.
 * @packageDocumentation
 */
import type { EarlyData } from './early-data.js';
import type { ConnectOptions, DispatchOptions } from '../upstream/types.js';

/** Something told once when a connect is aborted (the `direct` upstream's attempt). */
export interface AbortListener {
  handleEvent(): void;
}

/** A connect's abort state: aborted once, with a reason; its `AbortSignal` built on demand. */
export class ConnectAbort {
  private controller: AbortController | undefined;
  private listener: AbortListener | undefined;
  private more: AbortListener[] | undefined;
  /** True once {@link abort} ran. */
  aborted = false;
  /** The reason given to {@link abort}. */
  reason: unknown = undefined;

  /** @param timeoutMs the connect timeout in force (for the timeout's message) */
  constructor(readonly timeoutMs = 0) {}

  /** True once {@link signal} was read (its `AbortSignal` exists). */
  get built(): boolean {
    return this.controller !== undefined;
  }

  /** The connect's `AbortSignal`, built on first use (already aborted if the connect was). */
  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.aborted) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  /** Abort the connect: the signal (if built) and every listener, once. */
  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.controller?.abort(reason);
    const first = this.listener;
    const more = this.more;
    this.listener = undefined;
    this.more = undefined;
    first?.handleEvent();
    if (more) for (const l of more) l.handleEvent();
  }

  /** Tell `l` when the connect is aborted (not if it was already: check {@link aborted} first). */
  listen(l: AbortListener): void {
    if (this.listener === undefined) this.listener = l;
    else (this.more ??= []).push(l);
  }

  /** Stop telling `l`. */
  unlisten(l: AbortListener): void {
    if (this.listener === l) this.listener = undefined;
    else if (this.more) {
      const i = this.more.indexOf(l);
      if (i !== -1) this.more.splice(i, 1);
    }
  }
}

const kAbort = Symbol('socksmith.connectAbort');

/** The kernel's dispatch options: plain fields, `signal` an own getter (so a spread copies it, building it). */
type LazyOptions = DispatchOptions & { readonly [kAbort]: ConnectAbort };

/** Options for one dispatch whose signal is `abort`'s, built only if read. @internal */
export function lazyDispatchOptions(command: number, early: EarlyData | undefined, held: EarlyData | undefined, abort: ConnectAbort): DispatchOptions {
  const o: LazyOptions = {
    command,
    early,
    held,
    [kAbort]: abort,
    get signal(): AbortSignal {
      return this[kAbort].signal;
    },
  };
  return o;
}

/**
 * The abort state behind `options` when the kernel made them (or {@link deriveDispatchOptions}
 * from them, or a spread copied them without replacing `signal`), so an upstream can listen
 * without building the `AbortSignal`; `undefined` otherwise (then listen to `options.signal`).
 * A spread reads `signal`, which builds it: options whose `signal` is not the connect's own
 * (an interceptor put its own signal in) are never taken for the kernel's. @internal
 */
export function connectAbortOf(options: ConnectOptions): ConnectAbort | undefined {
  const a = (options as Partial<LazyOptions>)[kAbort];
  if (a === undefined) return undefined;
  // Not built: nothing read `signal`, so nothing could have replaced it.
  if (a.built && options.signal !== a.signal) return undefined;
  return a;
}

/**
 * Options for the next step of a dispatch chain: `options` with `changes` applied. When
 * `options` are the kernel's, the result keeps their abort signal lazy (not built until
 * something reads `signal`; building it costs a few microseconds per connect on Node 20);
 * otherwise it is a copy with `changes`, as `{ ...options, ...changes }` would make.
 *
 * ```ts
 * // An interceptor that grants optimistic data (plugins/optimistic-data):
 * (next) => (destination, conn, o) => next(destination, conn, deriveDispatchOptions(o, { early: o.held }));
 * ```
 */
export function deriveDispatchOptions(options: DispatchOptions, changes: { readonly command?: number; readonly early?: EarlyData | undefined; readonly held?: EarlyData | undefined }): DispatchOptions {
  const command = changes.command ?? options.command;
  const early = 'early' in changes ? changes.early : options.early;
  const held = 'held' in changes ? changes.held : options.held;
  const a = connectAbortOf(options);
  if (a !== undefined) return lazyDispatchOptions(command, early, held, a);
  return { ...options, command, signal: options.signal, early, held };
}
