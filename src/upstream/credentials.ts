/**
 * Per-stream credentials for an upstream: a stream key a `socks5` upstream reads before it
 * authenticates (RFC 1929), in place of the configured `upstream.username`/`password`. Unset by
 * default. The isolation plugin sets it (derived from the isolation key) so that an upstream Tor
 * separates circuits by it; any plugin may set it.
 * @packageDocumentation
 */
import type { UpstreamCredentials } from '../kernel/context.js';
import { declareKey, type StreamKey } from '../kernel/stream-keys.js';

/** Credentials the `socks5` upstream presents for this stream; overrides the configured ones. */
export const UpstreamAuth: StreamKey<UpstreamCredentials> = declareKey<UpstreamCredentials>('socksmith.upstreamAuth');
