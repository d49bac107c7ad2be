/**
 * Client bytes that arrive after the request and before the upstream is ready (optimistic data).
 *
 * They are held here, bounded: above the limit the kernel pauses the client (backpressure), it
 * never drops bytes. The kernel passes them to the upstream dispatch as `options.held`; an
 * interceptor that grants early sending passes them on as `options.early`, and an upstream given
 * `early` calls {@link EarlyData.attach} with its socket: held bytes go out at once, and later
 * ones as they arrive. Otherwise the kernel attaches the upstream after it confirmed.
 * @packageDocumentation
 */
import type { Writable } from 'node:stream';

/** Bounded holding area for early client data. */
export class EarlyData {
  private chunks: Buffer[] = [];
  private held = 0;
  private sink: Writable | undefined;
  private blocked = false;
  /** Total bytes that went through (held or forwarded). */
  total = 0;

  /**
   * @param limit bytes held before the client is paused
   * @param client what is paused when `limit` is reached and resumed when the bytes have gone
   *   (the client socket)
   */
  constructor(
    private readonly limit: number,
    private readonly client: { pause(): unknown; resume(): unknown },
  ) {}

  /** Bytes currently held (not yet handed to a sink). */
  get bytes(): number {
    return this.held;
  }

  /** True once a sink is attached. */
  get attached(): boolean {
    return this.sink !== undefined;
  }

  /** Add a chunk: forwarded if a sink is attached, else held. */
  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.total += chunk.length;
    if (this.sink) {
      this.write(chunk);
      return;
    }
    this.chunks.push(chunk);
    this.held += chunk.length;
    if (this.held >= this.limit && !this.blocked) {
      this.blocked = true;
      this.client.pause();
    }
  }

  /** Send everything held to `sink` and forward later chunks directly, with backpressure. */
  attach(sink: Writable): void {
    if (this.sink) return;
    this.sink = sink;
    const chunks = this.chunks;
    this.chunks = [];
    this.held = 0;
    let full = false;
    for (const c of chunks) full = !sink.write(c) || full;
    if (full) this.waitDrain();
    else if (this.blocked) {
      this.blocked = false;
      this.client.resume();
    }
  }

  /** Forget held bytes (the connect failed) and detach. */
  discard(): void {
    this.chunks = [];
    this.held = 0;
    this.sink = undefined;
  }

  private write(chunk: Buffer): void {
    if (!this.sink!.write(chunk) && !this.blocked) this.waitDrain();
  }

  private waitDrain(): void {
    const sink = this.sink!;
    if (!this.blocked) {
      this.blocked = true;
      this.client.pause();
    }
    sink.once('drain', () => {
      if (this.sink !== sink) return;
      this.blocked = false;
      this.client.resume();
    });
  }
}
