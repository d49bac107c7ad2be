/**
 * Deadlines of one fixed duration (the handshake timeout, the connect timeout) without a timer
 * each. Every item gets the same duration, so the order items were added in is the order they
 * fall due: a `Map` in insertion order is the queue, and one timer, armed for the oldest item,
 * serves them all. Removing an item is a `Map` delete; the timer is not touched (if it fires for
 * an item no longer there, it re-arms for the next). A `setTimeout` and a `clearTimeout` per
 * connection cost more, and create and tear down Node's per-duration timer lists whenever few
 * connections are in flight (docs/performance.md).
 * @packageDocumentation
 */
import { performance } from 'node:perf_hooks';

/** Items that each expire `durationMs` after they were added, unless deleted first. */
export class DeadlineQueue<T> {
  /** Item → when it falls due (performance.now() ms), in the order added, which is the order due. */
  private readonly due = new Map<T, number>();
  private timer: NodeJS.Timeout | undefined;
  private readonly fire = (): void => this.expire();

  /**
   * @param durationMs how long after {@link add} an item expires
   * @param onExpire called once for each item that expires (after it left the queue); a throw
   *   is not caught here, so it must not throw
   */
  constructor(
    readonly durationMs: number,
    private readonly onExpire: (item: T) => void,
  ) {}

  /** Start `item`'s deadline (again, from now, if it was already there). */
  add(item: T): void {
    const at = performance.now() + this.durationMs;
    if (this.due.has(item)) this.due.delete(item); // re-added: it goes to the back
    this.due.set(item, at);
    if (this.timer === undefined) this.arm(at);
  }

  /** Cancel `item`'s deadline. */
  delete(item: T): void {
    this.due.delete(item);
  }

  /** Items waiting. */
  get size(): number {
    return this.due.size;
  }

  /** Cancel every deadline and the timer. */
  clear(): void {
    this.due.clear();
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private arm(at: number): void {
    // +1: setTimeout rounds to whole milliseconds and may fire a fraction early.
    // Unref'd: a deadline never keeps the process alive (the sockets it times do, while they are open).
    this.timer = setTimeout(this.fire, Math.max(0, Math.ceil(at - performance.now())) + 1);
    this.timer.unref();
  }

  private expire(): void {
    this.timer = undefined;
    const now = performance.now();
    // Bounded: each pass takes at most the items present when it started, oldest first.
    let left = this.due.size;
    for (const [item, at] of this.due) {
      if (at > now || left-- <= 0) {
        this.arm(at);
        return;
      }
      this.due.delete(item);
      this.onExpire(item);
    }
  }
}
