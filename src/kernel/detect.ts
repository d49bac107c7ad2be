/**
 * The detect stage's registry: which front end serves a connection whose first byte is not 05
 * (design of issue 12, §2.1). Detection peeks and never consumes.
 *
 * Order, as on the wire today: a first byte 05 goes straight to the SOCKS front end (SOCKS5 is
 * the fast path; `onGreeting` needs its whole greeting). Any other first byte meets `onGreeting`
 * first (`firstByte`, no methods); when no tap decided, the front ends plugins added are asked in
 * registration order ({@link FrontEnd.match}); when none takes the connection, the SOCKS front end
 * is the catch-all (SOCKS4/4a, RFC 1929 before a greeting, and every unknown byte, which it
 * closes without a reply).
 * @packageDocumentation
 */
import { SocksmithError } from '../errors.js';
import type { FrontEnd } from './front/types.js';

/** Returned by {@link FrontEndRegistry.select} while a front end needs more bytes to decide. */
export const NEED_MORE = 'need-more' as const;

/** Where plugins add front ends (`api.frontEnds`). */
export class FrontEndRegistry {
  private list: FrontEnd[] = [];
  private sealed = false;

  /**
   * Add a front end, in `apply()`. Front ends are asked in the order they were added. Throws
   * `SOCKSMITH_ERR_PLUGIN_LATE` once the proxy started.
   */
  add(frontEnd: FrontEnd): void {
    if (this.sealed) throw new SocksmithError('SOCKSMITH_ERR_PLUGIN_LATE', `front end "${frontEnd.name}": frontEnds.add() after start`);
    this.list.push(frontEnd);
  }

  /** The front ends added so far, in order. */
  get frontEnds(): readonly FrontEnd[] {
    return this.list;
  }

  /** @internal Freeze the list (`kernel.seal()`). */
  seal(): void {
    if (this.sealed) return;
    this.sealed = true;
    this.list = Object.freeze(this.list) as FrontEnd[];
  }

  /**
   * The front end that takes the bytes read so far (`buf` from `off`): a front end, `undefined`
   * when none does (the SOCKS catch-all serves it), or {@link NEED_MORE} while one that was asked
   * needs more bytes. One loop, no allocation.
   */
  select(buf: Buffer, off: number): FrontEnd | typeof NEED_MORE | undefined {
    const list = this.list;
    for (let i = 0; i < list.length; i++) {
      const m = list[i]!.match(buf, off);
      if (m === true) return list[i];
      if (m === undefined) return NEED_MORE;
    }
    return undefined;
  }
}
