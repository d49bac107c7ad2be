/**
 * `callBail` (src/kernel/hooks.ts), the kernel's synchronous way to run onGreeting, onAuth and
 * onRequest: the same outcome as tapable's `hook.promise()` (value, error, which taps ran, in
 * which order) for every combination of three taps of every kind, and a plain value, not a
 * promise, while every tap answers synchronously.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { callBail, createHooks, isThenable } from '../../src/kernel/hooks.js';
import { PluginHookError } from '../../src/errors.js';
import type { SocksRequest } from '../../src/protocol/codec.js';
import type { ConnectionContext } from '../../src/kernel/context.js';

type Kind =
  | 'sync-pass'
  | 'sync-value'
  | 'sync-throw'
  | 'cb-now-pass'
  | 'cb-now-value'
  | 'cb-now-error'
  | 'cb-later-pass'
  | 'cb-later-value'
  | 'cb-later-error'
  | 'promise-pass'
  | 'promise-value'
  | 'promise-reject';

const KINDS: readonly Kind[] = ['sync-pass', 'sync-value', 'sync-throw', 'cb-now-pass', 'cb-now-value', 'cb-now-error', 'cb-later-pass', 'cb-later-value', 'cb-later-error', 'promise-pass', 'promise-value', 'promise-reject'];

/** Tap `kinds` on a fresh onRequest hook (two arguments, error attribution on); `log` records each tap's call. */
function hookWith(kinds: readonly Kind[], log: string[]) {
  const hooks = createHooks();
  const h = hooks.onRequest;
  kinds.forEach((k, i) => {
    const name = `t${i}`;
    const value = { rep: i };
    if (k.startsWith('sync')) {
      h.tap(name, () => {
        log.push(name);
        if (k === 'sync-throw') throw new Error(`${name} threw`);
        return k === 'sync-value' ? value : undefined;
      });
    } else if (k.startsWith('cb')) {
      h.tapAsync(name, (_c, _r, cb) => {
        log.push(name);
        const answer = () => (k.endsWith('error') ? cb(new Error(`${name} failed`)) : k.endsWith('value') ? cb(null, value) : cb());
        if (k.startsWith('cb-now')) answer();
        else setImmediate(answer);
      });
    } else {
      h.tapPromise(name, async () => {
        log.push(name);
        await new Promise((r) => setImmediate(r));
        if (k === 'promise-reject') throw new Error(`${name} rejected`);
        return k === 'promise-value' ? value : undefined;
      });
    }
  });
  return h;
}

/** The outcome of a run: the value or the error (its class, plugin and message), and the taps called. */
async function outcome(run: () => unknown, log: string[]): Promise<string> {
  try {
    const v = await run();
    return `ok ${JSON.stringify(v)} after ${log.join(',')}`;
  } catch (err) {
    const e = err as Error & { plugin?: string };
    return `error ${e.constructor.name} ${e.plugin ?? ''} ${e.message} after ${log.join(',')}`;
  }
}

const CTX = {} as ConnectionContext;
const REQ = {} as SocksRequest;

describe('callBail: tapable AsyncSeriesBailHook semantics, synchronously while taps answer synchronously', () => {
  test('every combination of three taps: the same value or error, and the same taps called, as hook.promise()', async () => {
    let compared = 0;
    for (const a of KINDS)
      for (const b of KINDS)
        for (const c of KINDS) {
          const kinds = [a, b, c];
          const logP: string[] = [];
          const logB: string[] = [];
          const viaPromise = await outcome(() => hookWith(kinds, logP).promise(CTX, REQ), logP);
          const viaBail = await outcome(() => callBail(hookWith(kinds, logB), CTX, REQ), logB);
          assert.equal(viaBail, viaPromise, `taps ${kinds.join(', ')}`);
          compared++;
        }
    assert.equal(compared, KINDS.length ** 3);
  });

  test('a plain value, not a promise, when every tap answers synchronously; a promise from the first tap that answers later', () => {
    const now: Kind[] = ['sync-pass', 'cb-now-pass', 'cb-now-value'];
    const r = callBail(hookWith(now, []), CTX, REQ);
    assert.equal(isThenable(r), false);
    assert.deepEqual(r, { rep: 2 });
    assert.equal(callBail(hookWith(['sync-pass', 'cb-now-pass'], []), CTX, REQ), undefined);
    assert.equal(isThenable(callBail(hookWith(['sync-pass', 'cb-later-pass'], []), CTX, REQ)), true);
    assert.equal(isThenable(callBail(hookWith(['promise-pass'], []), CTX, REQ)), true);
  });

  test('a synchronous throw is a rejected promise naming the plugin, never a throw', async () => {
    const r = callBail(hookWith(['sync-throw'], []), CTX, REQ);
    assert.equal(isThenable(r), true);
    await assert.rejects(r as Promise<unknown>, (err: unknown) => err instanceof PluginHookError && err.plugin === 't0');
  });

  test('one-argument hooks (onGreeting): callback taps get (info, callback)', () => {
    const hooks = createHooks();
    const seen: unknown[] = [];
    hooks.onGreeting.tapAsync('cb', (info, cb) => {
      seen.push(info.firstByte);
      cb(null, { method: 0 });
    });
    const r = callBail(hooks.onGreeting, { conn: CTX, firstByte: 5, methods: [0] });
    assert.deepEqual(r, { method: 0 });
    assert.deepEqual(seen, [5]);
  });

  test('a hook with a call interceptor goes through hook.promise(), which calls the interceptor', async () => {
    const hooks = createHooks();
    let calls = 0;
    hooks.onRequest.intercept({ call: () => void calls++ });
    hooks.onRequest.tap('s', () => ({ rep: 7 }));
    const r = callBail(hooks.onRequest, CTX, REQ);
    assert.equal(isThenable(r), true);
    assert.deepEqual(await r, { rep: 7 });
    assert.equal(calls, 1);
  });
});
