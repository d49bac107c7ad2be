/**
 * `isolation`: Tor's stream isolation. Computes an isolation key for every stream from the
 * SocksPort isolation flags, exposes it as the stream key {@link IsolationKey} (and as the
 * stream's `ResolverPartition`, so the resolver partitions its cache by it), chooses SOCKS5 method
 * 02 the way Tor does so clients send their credentials, and gives a socks5 upstream per-key
 * credentials (`UpstreamAuth`) so an upstream Tor (IsolateSOCKSAuth) separates circuits.
 *
 * The key is a keyed hash (HMAC-SHA-256 with a per-process secret) of the enabled fields, so
 * neither the key nor the derived credentials reveal the client's address or credentials. With
 * `workers` > 1 the cluster primary hands every worker the same secret (the process secret,
 * `Tokens.SecretStore`, which the worker seeds), so a client gets the same key whichever worker accepts it.
 * @packageDocumentation
 */
import { createHmac } from 'node:crypto';
import {
  declareKey,
  inject,
  injectable,
  Method,
  ResolverPartition,
  Stage,
  Tokens,
  UpstreamAuth,
  type ConnectionContext,
  type PluginApi,
  type SecretStore,
  type SocksmithPlugin,
  type StreamKey,
  type UpstreamCredentials,
} from 'socksmith';
import { IsolationOptionsSchema, type IsolationOptions } from './schema.js';

export type { IsolationOptions } from './schema.js';

const PLUGIN_NAME = 'isolation';

/**
 * The stream's isolation key (32 hex characters), set by this plugin for every request; streams
 * with different keys must not share state. Hashed on first read. Other plugins read it with
 * `conn.get(IsolationKey)` (`import { IsolationKey } from 'socksmith/plugins/isolation'`).
 */
export const IsolationKey: StreamKey<string> = declareKey<string>('isolation.key');

/** The fields that make up a stream's isolation key, before hashing (for tests and docs). */
export function isolationFields(conn: ConnectionContext, o: IsolationOptions): Buffer[] {
  const fields: Buffer[] = [];
  const group = o.SessionGroup !== undefined ? `group:${o.SessionGroup}` : `listener:${conn.listener.index}`;
  fields.push(Buffer.from(group));
  if (o.IsolateClientAddr && conn.clientFamily !== 'unix') fields.push(Buffer.from(`addr:${conn.clientAddress}`));
  if (o.IsolateSOCKSAuth) {
    // Tor stores an empty field as absent: empty credentials equal no credentials.
    const c = conn.credentials;
    const user = c && c.username.length > 0 ? c.username : undefined;
    const pass = c && c.password && c.password.length > 0 ? c.password : undefined;
    fields.push(user ? Buffer.concat([Buffer.from('user:'), user]) : Buffer.from('user-'));
    fields.push(pass ? Buffer.concat([Buffer.from('pass:'), pass]) : Buffer.from('pass-'));
  }
  if (o.IsolateClientProtocol) fields.push(Buffer.from(`proto:${conn.protocol}`));
  const dest = conn.request?.destination;
  if (o.IsolateDestPort && dest) fields.push(Buffer.from(`port:${dest.port}`));
  if (o.IsolateDestAddr && dest) fields.push(Buffer.from(`dest:${dest.host.toLowerCase()}`));
  return fields;
}

/** Tor's stream isolation as a plugin. */
@injectable()
export class IsolationPlugin implements SocksmithPlugin {
  static readonly meta = {
    name: PLUGIN_NAME,
    schema: IsolationOptionsSchema,
    description: "Tor's stream isolation: per-stream isolation keys from the SocksPort isolation flags.",
  };

  private readonly secret: Buffer;

  constructor(
    @inject(Tokens.PluginOptions) private readonly options: IsolationOptions,
    @inject(Tokens.SecretStore) secrets: SecretStore,
  ) {
    // One default secret per process, not per instance: a reload (a new instance) keeps the keys.
    this.secret = options.secret ? Buffer.from(options.secret, 'utf8') : secrets.processSecret();
    // Bound once here: setLazy stores these functions, so a stream costs no closure.
    this.computeKey = (conn) => this.keyFor(conn);
    this.partitionOf = (conn) => conn.get(IsolationKey)!;
    this.credentialsOf = (conn) => {
      const key = conn.get(IsolationKey)!;
      return { username: `socksmith-${key.slice(0, 16)}`, password: key.slice(16) };
    };
  }

  private readonly computeKey: (conn: ConnectionContext) => string;
  private readonly partitionOf: (conn: ConnectionContext) => string;
  private readonly credentialsOf: (conn: ConnectionContext) => UpstreamCredentials;

  /** The isolation key of `conn`: 32 hex characters of HMAC-SHA-256 over its length-prefixed fields. */
  keyFor(conn: ConnectionContext): string {
    const h = createHmac('sha256', this.secret);
    for (const f of isolationFields(conn, this.options)) {
      const len = Buffer.alloc(4);
      len.writeUInt32BE(f.length);
      h.update(len).update(f);
    }
    return h.digest('hex').slice(0, 32);
  }

  apply(api: PluginApi): void {
    const o = this.options;
    const preferNoAuth = o.PreferSOCKSNoAuth || !o.IsolateSOCKSAuth;
    // Synchronous decisions: sync taps cost no promise per connection.
    api.hooks.onGreeting.tap({ name: PLUGIN_NAME, stage: Stage.CLASSIFY }, ({ firstByte, methods }) => {
      if (firstByte !== 0x05 || !methods.includes(Method.USERPASS)) return undefined;
      // Tor: 02 if offered, unless 00 is offered too and no-auth is preferred.
      if (methods.includes(Method.NO_AUTH) && preferNoAuth) return { method: Method.NO_AUTH };
      return { method: Method.USERPASS };
    });

    const up = api.config.upstream;
    const derive = o.upstreamCredentials === true || (o.upstreamCredentials === 'auto' && !(up.type === 'socks5' && (up.username !== undefined || up.password !== undefined)));
    api.hooks.onRequest.tap({ name: PLUGIN_NAME, stage: Stage.CLASSIFY }, (conn) => {
      // Hashed on first read (at most once): a direct upstream to an IP address never reads it.
      conn.setLazy(IsolationKey, this.computeKey);
      conn.setLazy(ResolverPartition, this.partitionOf);
      if (derive) conn.setLazy(UpstreamAuth, this.credentialsOf);
      return undefined;
    });
  }
}

declare module 'socksmith' {
  /** This plugin's options, for `defineConfig({ plugins: { isolation: … } })`. */
  interface PluginOptionsMap {
    isolation: IsolationOptions;
  }
}

export default IsolationPlugin;
