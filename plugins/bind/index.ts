/**
 * `bind`: SOCKS5 BIND (RFC 1928 §4, CMD 02) and SOCKS4 BIND (CD 2), off by default, built only on
 * the public plugin API (`api.commands`).
 *
 * With the `direct` upstream: listen on a loopback-by-default address (the address the client's
 * control connection reached, port 0), send the first reply with that address and port, accept
 * exactly one incoming connection from the expected peer (`checkPeer`), check it with
 * `Tokens.DestinationCheck` (the `policy` plugin's destination checks), send the second reply with
 * the peer's address and port, then relay. The listener closes on every path: the peer arrived,
 * `acceptTimeout`, the client went away (`conn.signal`), an error, the plugin's `close()`.
 *
 * With any other upstream (`socks5`, a module): never listen locally (that would bypass the
 * upstream); `upstream: 'forward'` sends the BIND through the upstream dispatch, `'refuse'`
 * answers 07. README.md describes every option and what real clients send.
 * @packageDocumentation
 */
import net from 'node:net';
import {
  classifyHost,
  Command,
  ConfigError,
  errorMessage,
  formatAddress,
  inject,
  injectable,
  isOnionName,
  isSession,
  Rep,
  repForError,
  Tokens,
  UpstreamError,
  type ConnectionContext,
  type DestinationCheck,
  type PluginApi,
  type SocksAddress,
  type SocksmithPlugin,
  type StreamControl,
  type UpstreamSession,
} from 'socksmith';
import { BindOptionsSchema, type BindOptions } from './schema.js';

export { BindOptionsSchema, type BindOptions } from './schema.js';

const PLUGIN_NAME = 'bind';

/** An address as a peer check compares it: IPv4-mapped IPv6 as IPv4, IPv6 in canonical form. */
export function peerAddress(host: string, port: number): SocksAddress {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(host);
  return classifyHost(m ? m[1]! : host, port);
}

/** True for `0.0.0.0` and `::` (the "any address" of a BIND request or a listen option). */
export function isUnspecified(host: string): boolean {
  return host === '0.0.0.0' || host === '::';
}

/** Why a wait ended without a peer. */
type WaitEnd = { readonly peer: net.Socket } | { readonly timeout: true } | { readonly error: Error } | { readonly gone: true };

/** A no-op 'error' listener for a socket being destroyed (errors after destroy need no action). */
function ignore(): void {}

/** SOCKS4 and SOCKS5 BIND. */
@injectable()
export class BindPlugin implements SocksmithPlugin {
  static readonly meta = {
    name: PLUGIN_NAME,
    schema: BindOptionsSchema,
    description: 'SOCKS4 and SOCKS5 BIND: one incoming connection, relayed to the client (off by default).',
  };

  /** Listeners open now (closed by {@link close} as a backstop; each also closes on its own path). */
  private readonly servers = new Set<net.Server>();

  constructor(@inject(Tokens.PluginOptions) private readonly options: BindOptions) {
    const a = options.address;
    if (a !== undefined && net.isIP(a) === 0) throw new ConfigError(`plugins.${PLUGIN_NAME}.address`, `${JSON.stringify(a)} is not an IP address`);
  }

  /** Own command 02 for SOCKS4 and SOCKS5: served here with the `direct` upstream, else forwarded or refused (`options.upstream`). */
  apply(api: PluginApi): void {
    const check = api.services.get(Tokens.DestinationCheck);
    const direct = api.config.upstream.type === 'direct';
    api.commands.register(
      Command.BIND,
      PLUGIN_NAME,
      (s) => {
        if (direct) return this.serveDirect(api, check, s);
        if (this.options.upstream === 'refuse') return s.fail({ rep: Rep.COMMAND_NOT_SUPPORTED });
        return this.forward(api, s);
      },
      { versions: [4, 5] },
    );
  }

  /** Close every listener still open (shutdown; normally none is, as each closes with its control connection). */
  close(): void {
    for (const server of this.servers) server.close();
    this.servers.clear();
  }

  /**
   * BIND through a non-direct upstream (`upstream: 'forward'`): the dispatch chain (interceptors,
   * the isolation plugin's per-stream credentials) to the upstream's `open()`. Its first reply
   * (where the upstream listens) and its second (the peer) reach the client as they came; then
   * the upstream's control connection is relayed. Nothing listens here.
   */
  private async forward(api: PluginApi, s: StreamControl): Promise<void> {
    const conn = s.conn;
    const dest = conn.destination ?? s.request.destination;
    const v4 = s.request.version === 4;
    // First wait: the upstream's greeting, credentials and first reply, bounded like a CONNECT (timeouts.connect).
    const connectMs = api.config.timeouts.connect;
    const first = new AbortController();
    const firstTimer = setTimeout(() => first.abort(new UpstreamError(Rep.TTL_EXPIRED, `upstream BIND: no first reply within ${connectMs} ms`)), connectMs);
    let session: UpstreamSession;
    try {
      const r = await api.dispatch.run(dest, conn, { command: Command.BIND, signal: AbortSignal.any([conn.signal, first.signal]), early: undefined, held: undefined });
      if (!isSession(r)) {
        // An interceptor answered with something else: a reply passes on (never a success without a session).
        if ('stream' in r) r.stream.destroy();
        const rep = 'rep' in r && r.rep !== Rep.SUCCEEDED ? r.rep : Rep.GENERAL_FAILURE;
        return await s.fail({ rep });
      }
      session = r;
    } catch (err) {
      if (conn.signal.aborted) return;
      conn.log.debug({ err: errorMessage(err), rep: repForError(err) }, 'bind: the upstream refused or failed the BIND');
      conn.failure = api.config.log.safeLogging ? 'upstream BIND failed' : errorMessage(err);
      return await s.fail({ rep: repForError(err) });
    } finally {
      clearTimeout(firstTimer);
    }
    // Second wait: the upstream's second reply (its peer arrived), bounded by acceptTimeout.
    const ms = this.options.acceptTimeout;
    const second = new AbortController();
    const secondTimer = setTimeout(() => second.abort(new UpstreamError(Rep.TTL_EXPIRED, `upstream BIND: no second reply within ${ms} ms`)), ms);
    try {
      if (v4 && session.bound.kind !== 'ipv4') {
        conn.log.debug({ bound: formatAddress(session.bound) }, 'bind: a SOCKS4 reply cannot carry the upstream\'s bound address');
        session.close();
        return await s.fail({ rep: Rep.ADDRESS_TYPE_NOT_SUPPORTED });
      }
      if (!(await s.reply({ rep: Rep.SUCCEEDED, bound: session.bound }))) return session.close();
      const peer = await session.nextReply(AbortSignal.any([conn.signal, second.signal]));
      if (!(await s.reply({ rep: Rep.SUCCEEDED, bound: peer.bound }))) return session.close();
      s.relay(session.detach());
    } catch (err) {
      session.close();
      if (conn.signal.aborted) return;
      conn.log.debug({ err: errorMessage(err), rep: repForError(err) }, 'bind: no second reply from the upstream');
      return await s.fail({ rep: repForError(err) });
    } finally {
      clearTimeout(secondTimer);
    }
  }

  /** The addresses the peer may come from; `undefined`: any. Rejects with a `rep` when there can be none. */
  private async expectedPeers(api: PluginApi, conn: ConnectionContext, dest: SocksAddress): Promise<ReadonlySet<string> | undefined> {
    if (this.options.checkPeer === 'none') return undefined;
    if (dest.kind !== 'domain') return isUnspecified(dest.host) ? undefined : new Set([peerAddress(dest.host, 0).host]);
    // A name: the addresses it resolves to, the kernel's way (isolation partition, onResolve,
    // policy's resolution filters). A .onion name never reaches DNS.
    if (isOnionName(dest.host)) throw Object.assign(new Error(`${dest.host}: .onion needs an onion-capable upstream`), { rep: Rep.HOST_UNREACHABLE });
    try {
      const addrs = await api.resolution.lookup(dest.host, 0, conn);
      return new Set(addrs.map((a) => peerAddress(a.address, 0).host));
    } catch (err) {
      throw Object.assign(new Error(`${dest.host}: ${errorMessage(err)}`), { rep: repForError(err) === Rep.GENERAL_FAILURE ? Rep.HOST_UNREACHABLE : repForError(err) });
    }
  }

  /** BIND with the `direct` upstream: listen here, accept one peer, relay. */
  private async serveDirect(api: PluginApi, check: DestinationCheck, s: StreamControl): Promise<void> {
    const conn = s.conn;
    const v4 = s.request.version === 4;
    const dest = conn.destination ?? s.request.destination;
    let expected: ReadonlySet<string> | undefined;
    try {
      expected = await this.expectedPeers(api, conn, dest);
    } catch (err) {
      conn.log.debug({ err: errorMessage(err) }, 'bind: no address to expect the peer from');
      return s.fail({ rep: repForError(err) });
    }
    if (conn.signal.aborted) return;

    // Where to listen, and the address the first reply names.
    const reached = peerAddress(s.local.address, 0);
    if (reached.host === '' && this.options.address === undefined) {
      conn.log.debug('bind: the control connection has no IP address (unix socket) and no address option is set');
      return s.fail({ rep: Rep.GENERAL_FAILURE });
    }
    let host = this.options.address === undefined ? reached.host : peerAddress(this.options.address, 0).host;
    if (v4 && host === '::') host = '0.0.0.0'; // a SOCKS4 reply carries IPv4 only
    const announced = isUnspecified(host) ? reached : peerAddress(host, 0);
    if (announced.host === '') return s.fail({ rep: Rep.GENERAL_FAILURE }); // a wildcard address, reached over a unix socket: nothing to announce
    if (v4 && announced.kind !== 'ipv4') {
      conn.log.debug({ address: announced.host }, 'bind: a SOCKS4 reply cannot carry an IPv6 address');
      return s.fail({ rep: Rep.ADDRESS_TYPE_NOT_SUPPORTED });
    }

    const server = net.createServer({ allowHalfOpen: true, noDelay: true });
    this.servers.add(server);
    let done = false;
    let settle: (end: WaitEnd) => void = () => {};
    const ended = new Promise<WaitEnd>((resolve) => (settle = resolve));
    const finish = (end: WaitEnd) => {
      if (done) return;
      done = true;
      settle(end);
    };
    const onAbort = () => finish({ gone: true });
    // The listener's 'error' handler, from creation to close.
    server.on('error', (err: Error) => finish({ error: err }));
    server.on('connection', (peer: net.Socket) => {
      // Every accepted socket gets its 'error' handler first, and keeps it until destroyed.
      peer.on('error', ignore);
      if (done) return void peer.destroy();
      const from = peerAddress(peer.remoteAddress ?? '', peer.remotePort ?? 0);
      if (expected !== undefined && !expected.has(from.host)) {
        conn.log.debug({ peer: formatAddress(from) }, 'bind: connection from an unexpected address closed; still waiting');
        peer.destroy();
        return;
      }
      finish({ peer });
    });
    conn.signal.addEventListener('abort', onAbort, { once: true });
    let timer: NodeJS.Timeout | undefined;
    try {
      if (conn.signal.aborted) return;
      // exclusive: in a cluster worker, port 0 must be this worker's own port, not one shared through the primary.
      server.listen({ host, port: 0, exclusive: true });
      const listening = await Promise.race([new Promise<true>((resolve) => server.once('listening', () => resolve(true))), ended]);
      if (listening !== true) {
        if ('error' in listening) {
          conn.log.debug({ err: errorMessage(listening.error), address: host }, 'bind: cannot listen');
          await s.fail({ rep: repForError(listening.error) });
        }
        return;
      }
      const port = (server.address() as net.AddressInfo).port;
      const bound: SocksAddress = { kind: announced.kind, host: announced.host, port };
      conn.log.debug({ listening: formatAddress(bound), expect: expected ? [...expected] : 'any' }, 'bind: listening');
      if (!(await s.reply({ rep: Rep.SUCCEEDED, bound }))) return;
      timer = setTimeout(() => finish({ timeout: true }), this.options.acceptTimeout);
      const end = await ended;
      clearTimeout(timer);
      server.close(); // exactly one connection: stop accepting at once
      if ('gone' in end) return;
      if ('timeout' in end) {
        conn.log.debug({ ms: this.options.acceptTimeout }, 'bind: no connection arrived in time');
        conn.failure = 'bind: accept timeout';
        return s.fail({ rep: Rep.TTL_EXPIRED });
      }
      if ('error' in end) {
        conn.log.debug({ err: errorMessage(end.error) }, 'bind: listener failed');
        return s.fail({ rep: Rep.GENERAL_FAILURE });
      }
      const peer = end.peer;
      const from = peerAddress(peer.remoteAddress ?? '', peer.remotePort ?? 0);
      // The peer is a destination this stream reaches: the destination checks apply to it.
      const refused = check(conn, from);
      if (refused !== undefined) {
        peer.destroy();
        conn.log.debug({ peer: formatAddress(from), reason: refused.reason }, 'bind: peer refused by the destination check');
        conn.refusal = `bind: ${refused.reason}`;
        return s.fail({ rep: refused.rep });
      }
      if (!(await s.reply({ rep: Rep.SUCCEEDED, bound: from }))) return void peer.destroy();
      // Reset or closed while the second reply went out (not a graceful EOF: that waits, unread, for the relay).
      if (peer.destroyed) return s.end();
      s.relay({ stream: peer, bound: undefined });
    } finally {
      clearTimeout(timer);
      conn.signal.removeEventListener('abort', onAbort);
      done = true;
      server.close();
      this.servers.delete(server);
    }
  }
}

declare module 'socksmith' {
  /** This plugin's options, for `defineConfig({ plugins: { bind: … } })`. */
  interface PluginOptionsMap {
    bind: BindOptions;
  }
}

export default BindPlugin;
