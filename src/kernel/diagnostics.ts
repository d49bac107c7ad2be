/**
 * Diagnostics channels (node:diagnostics_channel) on which the kernel reports what it does, for
 * metrics, tracing and tests. Publishing costs nothing while no one subscribes (undici and Node's
 * own http use the same mechanism), so the hot path stays clean without a metrics plugin.
 *
 * Subscribe with `diagnostics_channel.subscribe(Channels.STREAM_CLOSED, (msg) => …)` or the
 * `subscribe()` helper below. Messages are plain objects; `conn` is the live ConnectionContext
 * (read it, do not keep it).
 * @packageDocumentation
 */
import diagnostics from 'node:diagnostics_channel';
import type { ConnectionContext } from './context.js';
import type { HandshakeOutcome } from './hooks.js';

/** Channel names (stable; part of the public API). */
export const Channels = Object.freeze({
  /** A client connection was accepted (after limits and onAccept). `{ conn }` */
  CONNECTION_ACCEPTED: 'socksmith:connection:accepted',
  /** A connection was refused at accept. `{ reason: 'limits.maxConnections' | 'limits.maxConnectionsPerClient' | 'onAccept', clientAddress }` */
  CONNECTION_REFUSED: 'socksmith:connection:refused',
  /** A request arrived (the handshake is complete). `{ conn, handshakeMs }` */
  REQUEST: 'socksmith:request',
  /** The upstream opened a stream. `{ conn, connectMs }` */
  UPSTREAM_CONNECTED: 'socksmith:upstream:connected',
  /** A connection was torn down. `{ conn, durationMs }` — conn carries version, command, reply and byte counts. */
  CONNECTION_CLOSED: 'socksmith:connection:closed',
  /** A plugin threw or rejected in a hook. `{ plugin, hook, conn }` */
  PLUGIN_ERROR: 'socksmith:plugin:error',
  /** A connection closed without a request. `{ conn, outcome }` — outcome: client_closed, timeout, protocol_error, refused, plugin_error, http_page (http-detect's 501 page), takeover, shed, shutdown. */
  HANDSHAKE_ENDED: 'socksmith:handshake:ended',
  /** A DNS lookup by the resolver service. `{ type: 'forward' | 'reverse', cached: boolean, ok: boolean }` */
  DNS_LOOKUP: 'socksmith:dns:lookup',
} as const);

/** Message of {@link Channels.CONNECTION_ACCEPTED}. */
export interface ConnectionAcceptedMessage {
  readonly conn: ConnectionContext;
}
/** Message of {@link Channels.CONNECTION_REFUSED}. */
export interface ConnectionRefusedMessage {
  readonly reason: string;
  readonly clientAddress: string;
}
/** Message of {@link Channels.REQUEST}. */
export interface RequestMessage {
  readonly conn: ConnectionContext;
  readonly handshakeMs: number;
}
/** Message of {@link Channels.UPSTREAM_CONNECTED}. */
export interface UpstreamConnectedMessage {
  readonly conn: ConnectionContext;
  readonly connectMs: number;
}
/** Message of {@link Channels.CONNECTION_CLOSED}. */
export interface ConnectionClosedMessage {
  readonly conn: ConnectionContext;
  readonly durationMs: number;
}
/** Message of {@link Channels.PLUGIN_ERROR}. */
export interface PluginErrorMessage {
  readonly plugin: string;
  readonly hook: string;
  readonly conn: ConnectionContext | undefined;
}
/** Message of {@link Channels.HANDSHAKE_ENDED}. */
export interface HandshakeEndedMessage {
  readonly conn: ConnectionContext;
  readonly outcome: HandshakeOutcome;
}
/** Message of {@link Channels.DNS_LOOKUP}. */
export interface DnsLookupMessage {
  readonly type: 'forward' | 'reverse';
  readonly cached: boolean;
  readonly ok: boolean;
}

/** The channel objects, created once. */
export const channels = Object.freeze({
  accepted: diagnostics.channel(Channels.CONNECTION_ACCEPTED),
  refused: diagnostics.channel(Channels.CONNECTION_REFUSED),
  request: diagnostics.channel(Channels.REQUEST),
  connected: diagnostics.channel(Channels.UPSTREAM_CONNECTED),
  closed: diagnostics.channel(Channels.CONNECTION_CLOSED),
  pluginError: diagnostics.channel(Channels.PLUGIN_ERROR),
  dns: diagnostics.channel(Channels.DNS_LOOKUP),
  handshakeEnded: diagnostics.channel(Channels.HANDSHAKE_ENDED),
});
