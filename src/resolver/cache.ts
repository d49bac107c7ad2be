/**
 * A bounded TTL cache with LRU eviction, partitioned by isolation key: the partition is part of
 * every key, so one isolation group can never read another's answers.
 * @packageDocumentation
 */

interface Entry<V> {
  readonly value: V;
  readonly expires: number;
}

/** LRU + TTL cache keyed by (partition, key). */
export class PartitionedCache<V> {
  private readonly map = new Map<string, Entry<V>>();

  /**
   * @param maxEntries most entries over all partitions (0 disables caching)
   * @param now monotonic clock in ms
   */
  constructor(
    private readonly maxEntries: number,
    private readonly now: () => number,
  ) {}

  private static key(partition: string, key: string): string {
    // NUL cannot occur in a DNS name, nor in an isolation key (hex), so the join is unambiguous.
    return `${partition}\u0000${key}`;
  }

  /** The cached value, or `undefined` if absent or expired. */
  get(partition: string, key: string): V | undefined {
    const k = PartitionedCache.key(partition, key);
    const e = this.map.get(k);
    if (!e) return undefined;
    if (e.expires <= this.now()) {
      this.map.delete(k);
      return undefined;
    }
    // Refresh LRU position.
    this.map.delete(k);
    this.map.set(k, e);
    return e.value;
  }

  /** Store `value` for `ttlMs`; evicts the least recently used entry when full. */
  set(partition: string, key: string, value: V, ttlMs: number): void {
    if (this.maxEntries <= 0 || ttlMs <= 0) return;
    const k = PartitionedCache.key(partition, key);
    this.map.delete(k);
    while (this.map.size >= this.maxEntries) {
      const oldest = this.map.keys().next().value;
      if (oldest === undefined) break;
      this.map.delete(oldest);
    }
    this.map.set(k, { value, expires: this.now() + ttlMs });
  }

  /** Number of entries (expired ones included until touched). */
  get size(): number {
    return this.map.size;
  }

  /** Drop everything. */
  clear(): void {
    this.map.clear();
  }
}
