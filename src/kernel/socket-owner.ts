/**
 * One owner per socket: every socket socksmith creates or accepts gets one permanent `'error'`
 * listener, attached when the socket is created (or accepted) and never removed. That listener
 * does nothing by itself but route the error to whoever owns the socket at that moment (an
 * upstream's connect attempt, the connection driver, the relay, the teardown). Handing a socket
 * over is a field assignment, not a listener swap, so there is no window, in any order of events,
 * in which the socket has no `'error'` listener: an unhandled `'error'` (which would kill the
 * process) cannot happen on a socket that went through {@link adopt} or {@link release}.
 *
 * Between two owners (an upstream that has connected and resolved, before the kernel takes the
 * stream) the socket is *released*: an error is held and given to the next owner when it adopts
 * the socket. docs/architecture.md ("Socket ownership") describes who owns a socket in which phase.
 *
 * Shape: one module-level listener shared by every socket, the owner in a symbol property (a
 * closure per socket would cost heap for every open tunnel; docs/performance.md).
 * @packageDocumentation
 */
import type { Duplex } from 'node:stream';

/** Whoever currently answers for a socket's errors. */
export interface SocketOwner {
  /** `socket` emitted `'error'` while this owner held it (or an error held for it is handed over). */
  socketError(socket: Duplex, err: Error): void;
}

const kOwner = Symbol('socksmith.socketOwner');
const kHeld = Symbol('socksmith.heldSocketError');

type Owned = Duplex & { [kOwner]?: SocketOwner | null; [kHeld]?: Error | undefined };

/**
 * The owner of a socket that is being (or has been) torn down: its errors need no action, the
 * socket is destroyed already or about to be.
 */
export const DISCARD: SocketOwner = Object.freeze({ socketError() {} });

/** The one permanent listener. `this` is the socket. */
function routeError(this: Owned, err: Error): void {
  const owner = this[kOwner];
  if (owner) owner.socketError(this, err);
  else if (this[kHeld] === undefined) this[kHeld] = err; // released: held for the next owner
}

/** Deliver a held error to whoever owns the socket by then (never synchronously inside adopt()). */
function deliverHeld(s: Owned): void {
  const err = s[kHeld];
  if (err === undefined || !s[kOwner]) return;
  s[kHeld] = undefined;
  s[kOwner].socketError(s, err);
}

function ensureListener(s: Owned): void {
  if (kOwner in s) return;
  s[kOwner] = null;
  s.on('error', routeError);
}

/**
 * Make `owner` the owner of `socket`. The first call on a socket attaches the permanent listener:
 * call it right where the socket is created or accepted, before anything can fail. An error held
 * while the socket was released reaches `owner` on the next tick (as Node emits errors), so an
 * owner never sees an error while it is still being set up.
 */
export function adopt(socket: Duplex, owner: SocketOwner): void {
  const s = socket as Owned;
  ensureListener(s);
  s[kOwner] = owner;
  if (s[kHeld] !== undefined) process.nextTick(deliverHeld, s);
}

/**
 * Let go of `socket` without a new owner yet (an upstream hands a connected stream to the
 * kernel): the listener stays, and the first error is held for the next {@link adopt}.
 */
export function release(socket: Duplex): void {
  const s = socket as Owned;
  ensureListener(s);
  s[kOwner] = null;
}

/** Hand `socket` to {@link DISCARD} and destroy it (a socket no one will use again). */
export function discard(socket: Duplex): void {
  adopt(socket, DISCARD);
  socket.destroy();
}

/** True when `socket` has the permanent listener (tests and assertions). */
export function isOwned(socket: Duplex): boolean {
  return kOwner in (socket as Owned);
}

/**
 * Reset a TCP socket (RST) if it can be, else destroy it. Node's `resetAndDestroy` throws on a
 * non-TCP handle (a unix-socket client), emits an error when the handle is already gone, waits
 * for the connect of a socket still connecting, and leaks the descriptor of a socket whose
 * `end()` is still waiting for its writes to drain (libuv refuses the reset; Node 20 then never
 * closes the handle); all four fall back to a plain destroy here.
 */
export function resetOrDestroy(stream: Duplex): void {
  if (stream.destroyed) return;
  const s = stream as Duplex & { resetAndDestroy?: () => void; _handle?: unknown; connecting?: boolean };
  // Still connecting: resetAndDestroy would wait for a connect that may never come. Ended with
  // writes still queued (a shutdown pending in libuv): libuv refuses the reset (EINVAL) and Node
  // then drops the handle without closing it, leaking the descriptor; a plain destroy closes it.
  const shutdownPending = stream.writableEnded && !stream.writableFinished;
  if (typeof s.resetAndDestroy === 'function' && s._handle && !s.connecting && !shutdownPending) {
    try {
      s.resetAndDestroy();
      return;
    } catch {
      // not a TCP handle (unix socket): a plain destroy below
    }
  }
  stream.destroy();
}
