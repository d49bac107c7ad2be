/**
 * socksmith's error classes. Every error has a stable `code` (`SOCKSMITH_ERR_<AREA>_<WHAT>`),
 * listed in docs/errors.md. Match on `err.code`, never on `instanceof`: a plugin may bundle its own
 * copy of socksmith, and classes from two copies are not the same.
 * @packageDocumentation
 */

/** Every stable error code socksmith raises, with a one-line meaning (rendered into docs/errors.md). */
export const ErrorCodes = {
  SOCKSMITH_ERR_PROTOCOL_BAD_VERSION: 'A message started with a version byte the state machine does not accept here.',
  SOCKSMITH_ERR_PROTOCOL_NO_METHODS: 'A SOCKS5 greeting offered zero methods.',
  SOCKSMITH_ERR_PROTOCOL_BAD_ADDRESS_TYPE: 'A SOCKS5 request used an ATYP other than 01, 03 or 04.',
  SOCKSMITH_ERR_PROTOCOL_BAD_HOSTNAME: 'A hostname was empty, contained a NUL byte or was not valid UTF-8.',
  SOCKSMITH_ERR_PROTOCOL_TOO_LONG: 'A SOCKS4 USERID or SOCKS4A hostname had no NUL within 255 bytes.',
  SOCKSMITH_ERR_PROTOCOL_BAD_AUTH_VERSION: 'An RFC 1929 message had a sub-negotiation version other than 01.',
  SOCKSMITH_ERR_PROTOCOL_UNEXPECTED: 'A message arrived that the handshake does not expect in its current state.',
  SOCKSMITH_ERR_PROTOCOL_BAD_REPLY: 'An upstream SOCKS server sent a reply that does not parse.',
  SOCKSMITH_ERR_CONFIG_INVALID: 'The configuration failed validation; the message names the key.',
  SOCKSMITH_ERR_CONFIG_NOT_FOUND: 'The configuration file named with --config does not exist or could not be loaded.',
  SOCKSMITH_ERR_CONFIG_MODULE: 'A plugin or upstream module named in the config could not be loaded or has the wrong shape.',
  SOCKSMITH_ERR_PLUGIN_DEPENDENCY: 'A plugin depends on another plugin that is not enabled.',
  SOCKSMITH_ERR_PLUGIN_START_TIMEOUT: 'A plugin did not finish start() within the plugin timeout.',
  SOCKSMITH_ERR_PLUGIN_HOOK: 'A plugin threw or rejected inside a hook; the connection got a general-failure reply.',
  SOCKSMITH_ERR_UPSTREAM_CONNECT: 'The upstream could not open the stream; the error carries the SOCKS reply code.',
  SOCKSMITH_ERR_UPSTREAM_TIMEOUT: 'The upstream did not connect within timeouts.connect.',
  SOCKSMITH_ERR_UPSTREAM_REPLY: 'An upstream SOCKS server answered with a non-zero reply code.',
  SOCKSMITH_ERR_RESOLVE_FAILED: 'A name did not resolve (NXDOMAIN, no data, server failure or timeout).',
  SOCKSMITH_ERR_RESOLVE_ONION: 'A .onion name was about to be resolved through DNS; socksmith never does that.',
  SOCKSMITH_ERR_RESOLVE_BAD_NAME: 'A name to resolve does not normalise (UTS-46) to a host name socksmith accepts.',
  SOCKSMITH_ERR_LISTEN: 'A listener could not bind its address.',
} as const;

/** One of the stable error codes in {@link ErrorCodes}. */
export type ErrorCode = keyof typeof ErrorCodes;

/**
 * Base class of every error socksmith throws on purpose.
 *
 * `code` is stable across versions; `message` is for humans and may change.
 */
export class SocksmithError extends Error {
  /** Stable machine-readable code, e.g. `SOCKSMITH_ERR_CONFIG_INVALID`. */
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SocksmithError';
    this.code = code;
  }
}

/** A malformed client or upstream message. `reply` is the SOCKS5 REP to send before closing, if any. */
export class ProtocolError extends SocksmithError {
  /** SOCKS5 reply code to answer with, or `undefined` to close without a reply. */
  readonly reply: number | undefined;

  constructor(code: ErrorCode, message: string, reply?: number) {
    super(code, message);
    this.name = 'ProtocolError';
    this.reply = reply;
  }
}

/** The configuration is invalid. `key` is the full dotted path (`plugins.isolation.foo`). */
export class ConfigError extends SocksmithError {
  /** Dotted path of the offending key, or `''` for the root. */
  readonly key: string;

  constructor(key: string, message: string, code: ErrorCode = 'SOCKSMITH_ERR_CONFIG_INVALID', options?: { cause?: unknown }) {
    super(code, key ? `${key}: ${message}` : message, options);
    this.name = 'ConfigError';
    this.key = key;
  }
}

/**
 * An upstream could not open a stream. `rep` is the SOCKS5 reply code the client should get.
 *
 * Custom upstreams throw this (or any error with a numeric `rep` property) to choose the reply.
 */
export class UpstreamError extends SocksmithError {
  /** SOCKS5 REP value for the client (before the `onReply` hook adjusts it). */
  readonly rep: number;

  constructor(rep: number, message: string, options?: { cause?: unknown; code?: ErrorCode }) {
    super(options?.code ?? 'SOCKSMITH_ERR_UPSTREAM_CONNECT', message, options);
    this.name = 'UpstreamError';
    this.rep = rep;
  }
}

/** A name lookup failed; `rep` is 04 (host unreachable) unless a plugin decided otherwise. */
export class ResolveError extends SocksmithError {
  /** SOCKS5 REP value for the client. */
  readonly rep: number;

  constructor(message: string, options?: { cause?: unknown; code?: ErrorCode; rep?: number }) {
    super(options?.code ?? 'SOCKSMITH_ERR_RESOLVE_FAILED', message, options);
    this.name = 'ResolveError';
    this.rep = options?.rep ?? 0x04;
  }
}

/** A plugin threw or rejected inside a hook. Costs that one connection, never the process. */
export class PluginHookError extends SocksmithError {
  /** The failing plugin's tap name (its config key). */
  readonly plugin: string;
  /** The hook that was running. */
  readonly hook: string;

  constructor(plugin: string, hook: string, cause: unknown) {
    super('SOCKSMITH_ERR_PLUGIN_HOOK', `plugin "${plugin}" failed in ${hook}: ${errorMessage(cause)}`, { cause });
    this.name = 'PluginHookError';
    this.plugin = plugin;
    this.hook = hook;
  }
}

/** A readable message for any thrown value. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/** True when `err` carries the given socksmith code (works across bundled copies of socksmith). */
export function hasCode(err: unknown, code: ErrorCode): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code;
}
