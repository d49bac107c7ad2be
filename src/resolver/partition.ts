/**
 * The resolver cache partition of a stream: a stream key the kernel reads when it resolves a
 * name for that stream (`LookupOptions.partition`). Default `''` (one shared partition). Streams
 * with different partitions never read each other's cached answers. The isolation plugin sets it
 * to the stream's isolation key.
 * @packageDocumentation
 */
import { declareKey, type StreamKey } from '../kernel/stream-keys.js';

/** The DNS cache partition of a stream (default `''`). */
export const ResolverPartition: StreamKey<string> = declareKey<string>('socksmith.resolverPartition', { default: '' });
