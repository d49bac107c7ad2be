/**
 * DeadlineQueue (src/kernel/deadlines.ts): one timer for many deadlines of one duration. Items
 * expire once each, oldest first, never before their duration, and not at all once deleted;
 * re-adding restarts an item's deadline. The wire-level timeouts (handshake, connect) are tested
 * in timeouts-upstream.test.ts, budgets.test.ts and the fault matrix. Real timers; the only
 * times asserted are lower bounds (an item never expires early).
 */
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { test } from 'node:test';
import { DeadlineQueue } from '../../src/kernel/deadlines.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function until(cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await sleep(5);
}

test('deadlines: every item expires once, in the order added, never before its duration; deleted ones never', async () => {
  const expired: { item: number; after: number }[] = [];
  const added = new Map<number, number>();
  const q = new DeadlineQueue<number>(60, (item) => expired.push({ item, after: performance.now() - added.get(item)! }));
  for (let i = 0; i < 50; i++) {
    added.set(i, performance.now());
    q.add(i);
    if (i % 10 === 9) await sleep(7);
  }
  for (let i = 0; i < 50; i += 5) q.delete(i);
  assert.equal(q.size, 40);
  await until(() => expired.length >= 40, 5000);
  await sleep(100);
  assert.deepEqual(
    expired.map((e) => e.item),
    [...Array(50).keys()].filter((i) => i % 5 !== 0),
  );
  for (const e of expired) assert.ok(e.after >= 59, `item ${e.item} expired after ${e.after.toFixed(1)} ms (< 60)`);
  assert.equal(q.size, 0);
});

test('deadlines: re-adding restarts the deadline; an item added while others expire is served too; clear() cancels all', async () => {
  const expired: string[] = [];
  const q = new DeadlineQueue<string>(50, (item) => {
    expired.push(item);
    if (item === 'a') q.add('late'); // added from inside onExpire
  });
  q.add('a');
  q.add('b');
  await sleep(30);
  const bAgain = performance.now();
  q.add('b'); // restarts: b now falls due ~50 ms from here, after 'a'
  await until(() => expired.includes('a'), 2000);
  assert.ok(!expired.includes('b') || performance.now() - bAgain >= 49);
  await until(() => expired.includes('b') && expired.includes('late'), 2000);
  assert.deepEqual(expired, ['a', 'b', 'late']);

  const q2 = new DeadlineQueue<string>(30, (item) => expired.push(`q2:${item}`));
  q2.add('x');
  q2.clear();
  await sleep(80);
  assert.ok(!expired.includes('q2:x'));
});
