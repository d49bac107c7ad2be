/**
 * socksmith's public API: everything a config file, a plugin or an embedder needs.
 *
 * Import only from `'socksmith'` in plugins (never from its internal paths), so that a plugin
 * and the proxy share one copy of the tokens and classes.
 * @packageDocumentation
 */
import 'reflect-metadata';

export { inject, injectable } from 'tsyringe';
export type { DependencyContainer } from 'tsyringe';

export { defineConfig, type SocksmithConfig, type PluginsConfig, type PluginOptionsMap, type PluginSetting, type CustomPluginSetting } from './config/define-config.js';
// Type-only (erased from index.js, so no run-time import of a plugin): loads the built-ins' PluginOptionsMap augmentations.
export type {
  AuthOptions,
  BindOptions,
  ExtendedErrorsOptions,
  HttpDetectOptions,
  IsolationOptions,
  OptimisticDataOptions,
  PolicyOptions,
  ResolveOptions,
  ResolvePtrOptions,
  UdpAssociateOptions,
} from 'socksmith/builtin-types';
export type { ConfigInput, ListenConfig, UpstreamConfig, DirectUpstreamConfig, Socks5UpstreamConfig, ModuleUpstreamConfig, ResolverConfig } from './config/schema.js';
export type { ResolvedConfig, PluginEntry, ResolvedResolverConfig } from './config/types.js';
export { loadConfig } from './config/load.js';
export { resolveConfig, DEFAULTS } from './config/normalize.js';
export { BUILTIN_PLUGINS, BUILTIN_PLUGIN_NAMES, type BuiltinPluginName } from './config/builtins.js';

export { Tokens, resolveToken, type Token } from './di/tokens.js';
export { ProcessSecretStore, type SecretStore } from './di/secrets.js';

export { Kernel } from './kernel/kernel.js';
export { Stage, type StageValue } from './kernel/stages.js';
export { ConnectionContext } from './kernel/context.js';
export { clientKey } from './kernel/client-key.js';
export type { ListenerInfo, Credentials, CredentialSource, UpstreamCredentials, FrontendProtocol, SignalSource } from './kernel/context.js';
export { declareKey, WideReplyCodes, type StreamKey } from './kernel/stream-keys.js';
export { ResolverPartition } from './resolver/partition.js';
export { UpstreamAuth } from './upstream/credentials.js';
export { HOOK_NAMES, isDeliberate } from './kernel/hooks.js';
export type {
  Hooks,
  GreetingInfo,
  GreetingDecision,
  Takeover,
  TakeoverHandler,
  HandshakeOutcome,
  AuthInfo,
  AuthDecision,
  Reply,
  ResolveQuery,
  ResolveAnswer,
  ResolvedAddress,
  DataInfo,
  DataDirection,
} from './kernel/hooks.js';
export type { PluginMeta, SocksmithPlugin, PluginClass } from './kernel/plugin.js';
export type { PluginApi, ServiceReader, ServiceRegistry } from './kernel/api.js';
export type { FrontEnd, ClientSession, StreamRequest, ReplyEncoder } from './kernel/front/types.js';
export { FrontEndRegistry } from './kernel/detect.js';
export { CommandRegistry, type CommandHandler, type StreamControl } from './kernel/commands.js';
export type { DestinationCheck, UsersStore } from './di/services.js';
export { EarlyData } from './kernel/early-data.js';
export { deriveDispatchOptions } from './kernel/connect-abort.js';
export {
  Channels,
  type ConnectionAcceptedMessage,
  type ConnectionRefusedMessage,
  type RequestMessage,
  type UpstreamConnectedMessage,
  type ConnectionClosedMessage,
  type PluginErrorMessage,
  type HandshakeEndedMessage,
  type DnsLookupMessage,
} from './kernel/diagnostics.js';

export type { Upstream, UpstreamStream, UpstreamSession, SessionReply, OpenOptions, ConnectFn, ConnectOptions, UpstreamInterceptor, Dispatch, DispatchInterceptor, DispatchOptions, DispatchResult } from './upstream/types.js';
export { composeUpstream, isStream, isSession } from './upstream/types.js';
export { UpstreamDispatch, type ChainRegistry } from './kernel/dispatch.js';
export { DirectUpstream } from './upstream/direct.js';
export { Socks5Upstream, type Socks5UpstreamOptions } from './upstream/socks5.js';
export { repForError, ERRNO_TO_REP } from './upstream/errors.js';

export type { Resolver, LookupOptions } from './resolver/types.js';
export { DnsResolver } from './resolver/dns-resolver.js';
export { NameResolution } from './resolver/name-resolution.js';
export type { Resolve, ResolveInterceptor } from './resolver/chain.js';

export * from './protocol/constants.js';
export * from './protocol/address.js';
export * from './protocol/codec.js';
export * from './protocol/names.js';
export { base32Decode, isValidOnion, onionAddressFromKey, onionProblem } from './protocol/onion.js';
export { ServerHandshake, classifyFirstByte, socks4Rejection, socks5ErrorReply, type HandshakeEvent, type HandshakeState, type ProtocolGuess } from './protocol/server-handshake.js';

export {
  ErrorCodes,
  type ErrorCode,
  SocksmithError,
  ProtocolError,
  ConfigError,
  PluginError,
  type PluginPhase,
  configErrorsOf,
  UpstreamError,
  ResolveError,
  PluginHookError,
  hasCode,
  errorMessage,
} from './errors.js';

export { SCRUBBED, canScrub, createLogger, isSafeLogging, scrubLine, scrubText, setLogFormat, setSafeLogging, type Logger, type LogLevel, type LogFormat } from './logger.js';
export { systemClock, type Clock } from './clock.js';
export { SocksmithProxy, createProxy, isLoopbackHost, type CreateProxyOptions, type ListenerProbe } from './proxy.js';
export { Metrics, METRICS_PREFIX, LATENCY_BUCKETS, type MetricsOptions } from './metrics/metrics.js';
export { startMetricsServer, type MetricsServer, type MetricsServerOptions } from './metrics/server.js';
