/**
 * Keep glibc from handing relay buffers back to the kernel after every garbage collection.
 *
 * Every read of a Node socket lands in a freshly `malloc`ed 64 KiB buffer that is freed when V8
 * collects it, which happens in batches of tens of MB. With glibc's initial thresholds (trim
 * when more than 128 KiB is free at the top of the heap) each batch is returned to the kernel
 * and the next reads fault the same pages in again: about 200 minor page faults per MB relayed,
 * which made a one-stream download 5–6× slower than it needs to be (docs/performance.md).
 *
 * glibc raises its thresholds by itself when a block it had `mmap`ed is freed (mallopt(3),
 * "dynamic mmap threshold"): the mmap threshold becomes the size of that block and the trim
 * threshold twice that. So one 30 MiB buffer, allocated once and dropped, sets them to 30 and
 * 60 MiB for the life of the process: the relay then reuses the same heap pages (0.2 faults per
 * MB, measured). The price is that up to ~60 MiB freed at the top of the heap may stay resident
 * after a burst. Other allocators (musl, jemalloc) ignore this and are not harmed by it.
 * @packageDocumentation
 */

/**
 * Size of the priming block: above glibc's initial mmap threshold (128 KiB) so it is `mmap`ed,
 * and below DEFAULT_MMAP_THRESHOLD_MAX (32 MiB on 64-bit), beyond which glibc ignores it.
 */
export const ALLOCATOR_PRIME_BYTES = 30 * 1024 * 1024;

import v8 from 'node:v8';
import vm from 'node:vm';

let primed = false;

/**
 * Prime the allocator once per process (idempotent; a no-op outside Linux). Set
 * `SOCKSMITH_MALLOC_PRIME=0` in the environment to skip it.
 */
export function primeAllocator(): void {
  if (primed) return;
  primed = true;
  if (process.platform !== 'linux' || process.env.SOCKSMITH_MALLOC_PRIME === '0') return;
  // allocUnsafeSlow: its own backing store (not Buffer's shared pool), malloc'ed, hence mmap'ed
  // at this size. Untouched pages cost nothing; it is garbage at once and the next scavenge
  // frees (munmaps) it, which is the moment glibc raises its thresholds.
  let block: Buffer | undefined = Buffer.allocUnsafeSlow(ALLOCATOR_PRIME_BYTES);
  block[0] = 0;
  block = undefined;
  collectNow();
}

/**
 * One scavenge now, so the priming block is freed before the first relay rather than after the
 * first few tens of MB (the documented way to reach `gc()` without starting node with
 * `--expose-gc`; the flag is switched off again at once and the main context never sees `gc`).
 */
function collectNow(): void {
  try {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as (opts?: { type: 'minor' | 'major'; execution?: 'sync' | 'async' }) => void;
    v8.setFlagsFromString('--no-expose-gc');
    gc({ type: 'minor' });
  } catch {
    // Not essential: the next scavenge frees it anyway.
  }
}
