/**
 * Time sources, injectable so tests and plugins can reason about time without globals.
 * @packageDocumentation
 */

/** Monotonic milliseconds for durations and wall-clock milliseconds for logs and TTLs. */
export interface Clock {
  /** Monotonic time in milliseconds (performance.now()). */
  now(): number;
  /** Wall-clock time in milliseconds since the epoch (Date.now()). */
  wall(): number;
}

/** The real clock. */
export const systemClock: Clock = Object.freeze({
  now: () => performance.now(),
  wall: () => Date.now(),
});
