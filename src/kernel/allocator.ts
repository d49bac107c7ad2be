/**
 * The relay's read buffers and the memory managers underneath: two measured fixes.
 *
 * Every read of a Node socket lands in a freshly `malloc`ed 64 KiB buffer (a V8 backing store,
 * counted as "external" memory) that is freed only when V8 collects the `Buffer` holding it.
 *
 * **glibc trimming.** With glibc's initial thresholds (trim when more than 128 KiB is free at
 * the top of the heap) each batch of freed buffers went back to the kernel and the next reads
 * faulted the same pages in again: about 200 minor page faults per MB relayed. glibc raises its
 * thresholds by itself when a block it had `mmap`ed is freed (mallopt(3), "dynamic mmap
 * threshold"): the mmap threshold becomes the size of that block and the trim threshold twice
 * that. {@link primeAllocator} allocates and drops one 30 MiB block, which sets them to 30 and
 * 60 MiB for the life of the process. Measured: 0.2 faults per MB. The price is that up to
 * ~60 MiB freed at the top of the heap may stay resident after a burst. Other allocators (musl,
 * jemalloc) ignore this and are not harmed by it. `SOCKSMITH_MALLOC_PRIME=0` turns it off.
 *
 * **Mark-compacts paid for by external memory.** A relay allocates ~200 bytes of JavaScript
 * objects per 64 KiB chunk, so the young generation fills (and a scavenge frees the dead
 * buffers) only every few GB; meanwhile V8 sees external memory grow by 64 MB and starts a full
 * mark-compact of the whole heap to find what it can free, several times a second: ~20 % of the
 * proxy's CPU in a download (perf: `ConcurrentMarking`, `Sweeper`). {@link noteRelayed} asks for
 * a scavenge (a minor GC: only the young generation, well under a millisecond here) after every
 * 4 MiB relayed, which frees those buffers first, so the mark-compacts do not happen.
 * Measured: 1.57 → 0.98 core-s per GB relayed. Every 16 MiB was enough in a warm process but
 * not after V8's memory reducer had shrunk the heap of an idle one (then ~75 mark-compacts per
 * 2 GiB again, 570–600 MB/s); every 4 MiB: none, 920–1,040 MB/s, before and after idling.
 * `SOCKSMITH_RELAY_SCAVENGE=0` turns it off.
 * @packageDocumentation
 */
import v8 from 'node:v8';
import vm from 'node:vm';

/**
 * Size of the priming block: above glibc's initial mmap threshold (128 KiB) so it is `mmap`ed,
 * and below DEFAULT_MMAP_THRESHOLD_MAX (32 MiB on 64-bit), beyond which glibc ignores it.
 */
export const ALLOCATOR_PRIME_BYTES = 30 * 1024 * 1024;

/** Bytes relayed (all tunnels of the process) between two requested scavenges. */
export const RELAY_SCAVENGE_BYTES = 4 * 1024 * 1024;

type Gc = (opts: { type: 'minor' | 'major'; execution?: 'sync' | 'async' }) => void;

let primed = false;
/** The scavenge trigger: `undefined` until primed or when turned off. */
let scavenge: Gc | undefined;
let sinceScavenge = 0;

/**
 * Prime the allocator and set up the relay's scavenges, once per process (idempotent; the
 * glibc part is a no-op outside Linux). Called by `SocksmithProxy.create`.
 */
export function primeAllocator(): void {
  if (primed) return;
  primed = true;
  const gc = v8Gc();
  if (process.env.SOCKSMITH_RELAY_SCAVENGE !== '0') scavenge = gc;
  if (process.platform !== 'linux' || process.env.SOCKSMITH_MALLOC_PRIME === '0') return;
  // allocUnsafeSlow: its own backing store (not Buffer's shared pool), malloc'ed, hence mmap'ed
  // at this size. Untouched pages cost nothing; it is garbage at once and a scavenge frees
  // (munmaps) it, which is the moment glibc raises its thresholds.
  let block: Buffer | undefined = Buffer.allocUnsafeSlow(ALLOCATOR_PRIME_BYTES);
  block[0] = 0;
  block = undefined;
  gc?.({ type: 'minor' });
}

/** Count bytes relayed; every {@link RELAY_SCAVENGE_BYTES} a scavenge frees the dead read buffers. */
export function noteRelayed(bytes: number): void {
  sinceScavenge += bytes;
  if (sinceScavenge < RELAY_SCAVENGE_BYTES) return;
  sinceScavenge = 0;
  scavenge?.({ type: 'minor' });
}

/**
 * V8's `gc()` without starting node with `--expose-gc` (the flag is set for one new context and
 * switched off again at once; the main context never sees `gc`). `undefined` if unavailable.
 */
function v8Gc(): Gc | undefined {
  try {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as Gc | undefined;
    v8.setFlagsFromString('--no-expose-gc');
    return typeof gc === 'function' ? gc : undefined;
  } catch {
    return undefined;
  }
}
