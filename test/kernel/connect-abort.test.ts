/**
 * The kernel's CONNECT options with a lazy abort signal (src/kernel/connect-abort.ts): the
 * `AbortSignal` exists only once something reads `signal`, is aborted with the connect's reason
 * whenever it is built, and the fast path (`connectAbortOf`) is never taken for options whose
 * signal an interceptor replaced. The wire-level behaviour (connect timeout → 06, client gone →
 * the attempt's socket closed) is covered by timeouts-upstream.test.ts and the fault matrix.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Command, deriveDispatchOptions } from '../../src/index.js';
import { ConnectAbort, connectAbortOf, lazyDispatchOptions } from '../../src/kernel/connect-abort.js';

test('connect-abort: the signal is built only when read, and then once', () => {
  const a = new ConnectAbort();
  const o = lazyDispatchOptions(Command.CONNECT, undefined, undefined, a);
  assert.equal(o.command, Command.CONNECT);
  assert.equal(a.built, false);
  assert.equal(connectAbortOf(o), a);
  assert.equal(a.built, false, 'connectAbortOf does not build it');
  const s = o.signal;
  assert.ok(s instanceof AbortSignal);
  assert.equal(a.built, true);
  assert.equal(o.signal, s, 'the same signal every time');
  assert.equal(connectAbortOf(o), a);
});

test('connect-abort: abort reaches the listeners once, and a signal built before or after, with the same reason', () => {
  const before = new ConnectAbort();
  const early = before.signal;
  const seen: string[] = [];
  before.listen({ handleEvent: () => seen.push('first') });
  const second = { handleEvent: () => seen.push('second') };
  before.listen(second);
  const third = { handleEvent: () => seen.push('third') };
  before.listen(third);
  before.unlisten(second);
  const reason = new Error('connect timeout');
  before.abort(reason);
  before.abort(new Error('again'));
  assert.deepEqual(seen, ['first', 'third']);
  assert.equal(early.aborted, true);
  assert.equal(early.reason, reason);
  assert.equal(before.reason, reason);

  const after = new ConnectAbort();
  after.abort(reason);
  assert.equal(after.aborted, true);
  const late = after.signal;
  assert.equal(late.aborted, true, 'built after the abort: already aborted');
  assert.equal(late.reason, reason);
});

test('connect-abort: a spread copies the signal (building it) and keeps the fast path; a replaced signal turns it off', () => {
  const a = new ConnectAbort();
  const o = lazyDispatchOptions(Command.CONNECT, undefined, undefined, a);
  const copy = { ...o };
  assert.equal(a.built, true, 'the spread read signal');
  assert.equal(copy.signal, o.signal);
  assert.equal(connectAbortOf(copy), a);
  const own = new AbortController();
  const replaced = { ...o, signal: own.signal };
  assert.equal(connectAbortOf(replaced), undefined, "an interceptor's own signal is listened to, not the kernel's");
  assert.equal(connectAbortOf({ signal: own.signal, early: undefined }), undefined);
});

test('deriveDispatchOptions: keeps the kernel options lazy; copies other options with the changes', () => {
  const a = new ConnectAbort();
  const o = lazyDispatchOptions(Command.CONNECT, undefined, undefined, a);
  const d = deriveDispatchOptions(o, { command: Command.RESOLVE });
  assert.equal(a.built, false);
  assert.equal(d.command, Command.RESOLVE);
  assert.equal(d.early, undefined);
  assert.equal(connectAbortOf(d), a);
  a.abort(new Error('gone'));
  assert.equal(d.signal.aborted, true);

  const own = new AbortController();
  const plain = { command: Command.CONNECT, signal: own.signal, early: undefined, held: undefined };
  const p = deriveDispatchOptions(plain, { command: Command.RESOLVE_PTR });
  assert.deepEqual(p, { command: Command.RESOLVE_PTR, signal: own.signal, early: undefined, held: undefined });
});
