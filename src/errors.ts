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
  SOCKSMITH_ERR_PROTOCOL_SHORT_DATAGRAM: 'A SOCKS5 UDP datagram (RFC 1928 §7) was shorter than its header.',
  SOCKSMITH_ERR_PROTOCOL_BAD_REPLY: 'An upstream SOCKS server sent a reply that does not parse.',
  SOCKSMITH_ERR_CONFIG_INVALID: 'The configuration failed validation; the message names the key.',
  SOCKSMITH_ERR_CONFIG_NOT_FOUND: 'The configuration file named with --config does not exist or could not be loaded.',
  SOCKSMITH_ERR_CONFIG_MODULE: 'A plugin or upstream module named in the config could not be loaded or has the wrong shape.',
  SOCKSMITH_ERR_PLUGIN_DEPENDENCY: 'A plugin depends on another plugin that is not enabled.',
  SOCKSMITH_ERR_PLUGIN_START_TIMEOUT: 'A plugin did not finish start() within the plugin timeout.',
  SOCKSMITH_ERR_PLUGIN_HOOK: 'A plugin threw or rejected inside a hook; the connection got a general-failure reply.',
  SOCKSMITH_ERR_PLUGIN_LATE: 'A plugin added an interceptor after the proxy started (intercept() belongs in apply()).',
  SOCKSMITH_ERR_PLUGIN_FAILED: 'A plugin threw while being constructed, in apply(), or in start(); the message names the plugin, its file and the phase.',
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

/**
 * The configuration is invalid. `key` is the full dotted path (`plugins.isolation.foo`).
 *
 * When a config has several mistakes they are all reported at once: the error thrown is the
 * first, its `errors` lists every one (itself first), and its `message` is theirs, one per line.
 */
export class ConfigError extends SocksmithError {
  /** Dotted path of the offending key, or `''` for the root. */
  readonly key: string;
  /** Every mistake found in the same pass, this one first (a single-element list when alone). */
  readonly errors: readonly ConfigError[];
  /**
   * For a file that does not parse: the parser's code frame (the lines around the mistake, with
   * a caret), printed under the one-line message. The message itself ends in `(line L, column C)`.
   */
  readonly frame: string | undefined;

  constructor(key: string, message: string, code: ErrorCode = 'SOCKSMITH_ERR_CONFIG_INVALID', options?: { cause?: unknown; frame?: string }) {
    super(code, key ? `${key}: ${message}` : message, options);
    this.name = 'ConfigError';
    this.key = key;
    this.errors = [this];
    this.frame = options?.frame;
  }

  /**
   * One error standing for all of `errors` (at least one): the first, with `errors` set to the
   * whole list and the message listing them one per line. A single error is returned as it is.
   */
  static all(errors: readonly ConfigError[]): ConfigError {
    const flat = errors.flatMap((e) => e.errors);
    if (flat.length === 1) return flat[0]!;
    const first = flat[0]!;
    const out = new ConfigError('', flat.map((e) => e.message).join('\n'), first.code, { cause: first.cause });
    Object.defineProperty(out, 'key', { value: first.key });
    Object.defineProperty(out, 'errors', { value: flat });
    return out;
  }
}

/** Every config error `err` stands for (`err.errors` when it has them), or `[err]`. */
export function configErrorsOf(err: unknown): readonly unknown[] {
  const list = (err as { errors?: unknown })?.errors;
  return Array.isArray(list) && list.length > 0 ? list : [err];
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

/** Where a plugin failed outside a connection: {@link PluginError.phase}. */
export type PluginPhase = 'constructor' | 'provision()' | 'apply()' | 'start()';

/**
 * A plugin threw while being constructed, in `provision()`, `apply()` or `start()`. The message names the
 * plugin, its module file (for a plugin loaded from a file) and the phase, on one line:
 * `plugin "deny-list" (/srv/deny-list.ts) failed in start(): cannot open database`. The
 * original error is the `cause`.
 */
export class PluginError extends SocksmithError {
  /** The plugin's config key. */
  readonly plugin: string;
  /** The phase that failed. */
  readonly phase: PluginPhase;
  /** The module file the plugin was loaded from; undefined for built-ins. */
  readonly file: string | undefined;

  constructor(plugin: string, phase: PluginPhase, file: string | undefined, cause: unknown, note?: string) {
    const where = phase === 'constructor' ? 'its constructor' : phase;
    super('SOCKSMITH_ERR_PLUGIN_FAILED', `plugin "${plugin}"${file ? ` (${file})` : ''} failed in ${where}: ${oneLine(errorMessage(cause))}${note ? `; ${note}` : ''}`, { cause });
    this.name = 'PluginError';
    this.plugin = plugin;
    this.phase = phase;
    this.file = file;
  }
}

/** Fold a message onto one line (line breaks become spaces, blank lines dropped). */
export function oneLine(s: string): string {
  return s
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .join(' ');
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
