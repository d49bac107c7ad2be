/**
 * The IPC messages between the cluster primary and its workers (node:cluster's channel,
 * `serialization: 'advanced'`). Every type starts with `socksmith:` so that other users of the
 * channel (node:cluster's own `NODE_CLUSTER` messages) never collide with them.
 * @packageDocumentation
 */
import type { ConfigSource } from './config.js';

/** A config the primary validated, as raw data the worker resolves itself. */
export interface ShippedConfig {
  readonly raw: unknown;
  readonly source: ConfigSource;
}

/** Primary → worker: everything a worker needs before it builds its proxy. Never logged. */
export interface StartMessage {
  readonly type: 'socksmith:start';
  /** The process secret (`Tokens.SecretStore`, the isolation plugin's default secret), hex (the same for every worker). */
  readonly secret: string;
  /** The validated config; absent when it is not plain data (the worker then loads the file). */
  readonly config: ShippedConfig | undefined;
  /** Keep Prometheus metrics for the primary to aggregate. */
  readonly metrics: boolean;
}

/** Primary → worker: bind the listeners now (workers bind one after the other). */
export interface ListenMessage {
  readonly type: 'socksmith:listen';
}

/** Primary → worker: switch to a new configuration (SIGHUP). */
export interface ReloadMessage {
  readonly type: 'socksmith:reload';
  readonly id: number;
  readonly config: ShippedConfig | undefined;
}

/** Primary → worker: stop accepting and drain (idempotent). */
export interface DrainMessage {
  readonly type: 'socksmith:drain';
}

/** Primary → worker: close every connection now (the second signal). */
export interface CloseNowMessage {
  readonly type: 'socksmith:close-now';
  /** The start failed and the primary printed why: stop without logging. */
  readonly quiet?: boolean;
}

/** Primary → worker: send your metrics (prom-client `getMetricsAsJSON()`). */
export interface MetricsRequestMessage {
  readonly type: 'socksmith:metrics';
  readonly id: number;
}

/** Every message the primary sends. */
export type PrimaryMessage = StartMessage | ListenMessage | ReloadMessage | DrainMessage | CloseNowMessage | MetricsRequestMessage;

/**
 * Worker → primary: the worker's message handler is installed; send the start message now. (A
 * message that arrives before a process has a `message` listener is dropped, and a worker loads
 * its modules before it can listen.)
 */
export interface HelloMessage {
  readonly type: 'socksmith:hello';
}

/** Worker → primary: the proxy is built (plugins loaded and applied); waiting for its turn to listen. */
export interface ReadyMessage {
  readonly type: 'socksmith:ready';
}

/** Worker → primary: every listener is bound. */
export interface ListeningMessage {
  readonly type: 'socksmith:listening';
  /** Listener labels as in the `listening on` line. */
  readonly addresses: readonly string[];
}

/** Worker → primary: the worker could not start; it exits with `code` after sending this. */
export interface FailedMessage {
  readonly type: 'socksmith:failed';
  /** The exit code the CLI would have used (78 config, 69 cannot listen, 70 other). */
  readonly code: number;
  /** One line, as the single-process CLI would print it after `socksmith: `. */
  readonly message: string;
}

/** Worker → primary: the answer to a {@link ReloadMessage}. */
export interface ReloadedMessage {
  readonly type: 'socksmith:reloaded';
  readonly id: number;
  /** Listener labels after the reload, when it succeeded. */
  readonly addresses?: readonly string[];
  /** Why it failed (the worker keeps its running configuration). */
  readonly error?: string;
}

/** Worker → primary: a signal reached the worker itself; it is draining and will exit 0. */
export interface StoppingMessage {
  readonly type: 'socksmith:stopping';
  readonly signal: string;
}

/** Worker → primary: the answer to a {@link MetricsRequestMessage}. */
export interface MetricsResponseMessage {
  readonly type: 'socksmith:metrics';
  readonly id: number;
  /** prom-client `getMetricsAsJSON()` of the worker's registry (empty without metrics). */
  readonly metrics: readonly object[];
}

/** Every message a worker sends. */
export type WorkerMessage = HelloMessage | ReadyMessage | ListeningMessage | FailedMessage | ReloadedMessage | StoppingMessage | MetricsResponseMessage;

/** True when `m` looks like one of socksmith's messages (`type` starting with `socksmith:`). */
export function isSocksmithMessage(m: unknown): m is { readonly type: string } {
  return typeof m === 'object' && m !== null && typeof (m as { type?: unknown }).type === 'string' && (m as { type: string }).type.startsWith('socksmith:');
}
