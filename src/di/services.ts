/**
 * Service types that plugins supply (in `provision()`) and consume (by token), beyond the kernel's
 * own (resolver, name resolution, upstream).
 * @packageDocumentation
 */
import type { ConnectionContext } from '../kernel/context.js';
import type { SocksAddress } from '../protocol/address.js';

/**
 * Is `conn` allowed to reach `address`? `undefined`: yes; else the reply code and why. For
 * destinations a stream reaches outside a CONNECT request (a BIND peer, a UDP datagram's target).
 * The default allows everything; the `policy` plugin provides its own.
 */
export type DestinationCheck = (conn: ConnectionContext, address: SocksAddress) => { readonly rep: number; readonly reason: string } | undefined;

/** A users table that checks credentials (the `auth` plugin provides its file-backed one). */
export interface UsersStore {
  /** True if `user`/`pass` are a known user's credentials. */
  verify(user: Buffer, pass: Buffer, conn: ConnectionContext): Promise<boolean>;
  /** Number of users. */
  readonly size: number;
}
