/**
 * `udp-associate`: SOCKS5 UDP ASSOCIATE (RFC 1928 §7), off by default, written only against the
 * public plugin API: it owns command 03 (`api.commands.register`), holds the control connection
 * (`StreamControl.hold()`) and relays datagrams on a UDP socket of its own.
 *
 * - Upstream `direct`: a UDP socket bound where the client reached the proxy (port 0); names in
 *   datagrams resolved through `api.resolution.lookup` (isolation, cache, policy; `.onion`
 *   dropped), every datagram checked by `Tokens.DestinationCheck`.
 * - Another upstream: relayed through the upstream's own UDP ASSOCIATE (`options.upstream:
 *   'forward'`, names never resolved here) or refused with 07 (`'refuse'`).
 *
 * See README.md for who may use an association, the limits and what is dropped.
 * @packageDocumentation
 */
import {
  clientKey,
  Command,
  errorMessage,
  formatAddress,
  inject,
  injectable,
  isSession,
  Rep,
  repForError,
  Tokens,
  UpstreamError,
  type PluginApi,
  type SocksAddress,
  type SocksmithPlugin,
  type StreamControl,
  type UpstreamSession,
} from 'socksmith';
import { Association, isZeroAddress, plainIp, type Route } from './association.js';
import { DirectRoute } from './direct.js';
import { ForwardRoute, UpstreamSocket, relayAddress } from './forward.js';
import { UdpAssociateOptionsSchema, type UdpAssociateOptions } from './schema.js';

export type { UdpAssociateOptions } from './schema.js';
export { UdpAssociateOptionsSchema } from './schema.js';
export type { AssociationStats, DropCounts } from './association.js';

const PLUGIN_NAME = 'udp-associate';

/** Serves SOCKS5 UDP ASSOCIATE (command 03). */
@injectable()
export class UdpAssociatePlugin implements SocksmithPlugin {
  static readonly meta = {
    name: PLUGIN_NAME,
    schema: UdpAssociateOptionsSchema,
    description: 'SOCKS5 UDP ASSOCIATE (RFC 1928 §7): a UDP relay per request, direct or through the upstream.',
  };

  /** Open associations per client key. */
  private readonly perClient = new Map<string, number>();

  constructor(@inject(Tokens.PluginOptions) readonly options: UdpAssociateOptions) {}

  /** Open associations now (all clients). */
  get openAssociations(): number {
    let n = 0;
    for (const v of this.perClient.values()) n += v;
    return n;
  }

  apply(api: PluginApi): void {
    const direct = api.config.upstream.type === 'direct';
    if (!direct && this.options.upstream === 'refuse') return; // unregistered: the kernel answers 07
    api.commands.register(Command.UDP_ASSOCIATE, PLUGIN_NAME, (stream) => (direct ? this.serveDirect(api, stream) : this.serveForward(api, stream)));
  }

  /** Count one more association for the client; false (nothing counted) past the limit. */
  private admit(key: string): boolean {
    const n = this.perClient.get(key) ?? 0;
    if (n >= this.options.maxAssociationsPerClient) return false;
    this.perClient.set(key, n + 1);
    return true;
  }

  private leave(key: string): void {
    const n = (this.perClient.get(key) ?? 1) - 1;
    if (n <= 0) this.perClient.delete(key);
    else this.perClient.set(key, n);
  }

  /** The common start: who the client is, the per-client limit, the client-facing socket. `undefined`: already answered. */
  private async open(api: PluginApi, stream: StreamControl): Promise<Association | undefined> {
    const conn = stream.conn;
    const local = plainIp(stream.local.address);
    const clientIp = plainIp(conn.clientAddress);
    if (local === '' || clientIp === '' || conn.clientFamily === 'unix') {
      // A unix-socket client has no IP address a datagram could be checked against.
      await stream.fail({ rep: Rep.COMMAND_NOT_SUPPORTED });
      return undefined;
    }
    const key = clientKey(conn.clientAddress);
    if (!this.admit(key)) {
      conn.refusal = `${PLUGIN_NAME}: more than ${this.options.maxAssociationsPerClient} associations for this client`;
      await stream.fail({ rep: Rep.GENERAL_FAILURE });
      return undefined;
    }
    // DST.ADDR/DST.PORT name where the client will send from (RFC 1928 §7). The address is never
    // trusted over the control connection's (a client behind NAT names its private one); a
    // non-zero port is kept, else the port is learnt from the client's first datagram.
    const dst = stream.request.destination;
    const clientPort = dst.kind !== 'domain' && dst.port !== 0 ? dst.port : undefined;
    if (dst.kind !== 'domain' && !isZeroAddress(dst.host) && plainIp(dst.host) !== clientIp) {
      conn.log.debug({ named: dst.host, client: clientIp }, `${PLUGIN_NAME}: the request names another address than the control connection's; datagrams are accepted from the control connection's`);
    }
    const family: 4 | 6 = local.includes(':') ? 6 : 4;
    const started = api.clock.now();
    const a = new Association(
      {
        conn,
        options: this.options,
        clientIp,
        clientPort,
        onEnd: (assoc, reason) => {
          this.leave(key);
          stream.end();
          conn.log.info(
            { plugin: PLUGIN_NAME, reason, ms: Math.round(api.clock.now() - started), fromClient: assoc.stats.fromClient, sent: assoc.stats.sent, delivered: assoc.stats.delivered, dropped: assoc.stats.dropped },
            'udp-associate: association ended',
          );
        },
      },
      family,
    );
    try {
      await a.bind(local);
    } catch (err) {
      conn.failure = `${PLUGIN_NAME}: UDP bind on ${local}: ${errorMessage(err)}`;
      await stream.fail({ rep: Rep.GENERAL_FAILURE });
      a.close(`bind failed: ${errorMessage(err)}`);
      return undefined;
    }
    return a;
  }

  /** Upstream `direct`: relay datagrams ourselves. */
  private async serveDirect(api: PluginApi, stream: StreamControl): Promise<void> {
    const a = await this.open(api, stream);
    if (a === undefined) return;
    const route = new DirectRoute(api, api.services.get(Tokens.DestinationCheck), a.family, this.options.maxPeers);
    await this.answer(stream, a, route);
  }

  /**
   * Another upstream: open a UDP ASSOCIATE at the upstream through the dispatch chain (so the
   * isolation plugin's per-stream credentials apply), naming the port our upstream-facing socket
   * sends from, then relay between the client and the upstream's relay. Nothing is sent directly.
   */
  private async serveForward(api: PluginApi, stream: StreamControl): Promise<void> {
    const conn = stream.conn;
    if (!api.dispatch.canOpen) {
      await stream.fail({ rep: Rep.COMMAND_NOT_SUPPORTED });
      return;
    }
    const a = await this.open(api, stream);
    if (a === undefined) return;
    const upstream = api.config.upstream as { host?: unknown };
    const upFamily: 4 | 6 = typeof upstream.host === 'string' && upstream.host.replace(/^\[|\]$/g, '').includes(':') ? 6 : 4;
    const up = new UpstreamSocket(upFamily);
    let session: UpstreamSession | undefined;
    try {
      const port = await up.bind();
      // RFC 1928: the address we will send from is not known (wildcard), the port is.
      const dst: SocksAddress = { kind: upFamily === 6 ? 'ipv6' : 'ipv4', host: upFamily === 6 ? '::' : '0.0.0.0', port };
      const result = await api.dispatch.run(dst, conn, { command: Command.UDP_ASSOCIATE, signal: api.lookupSignal(conn), early: undefined, held: undefined });
      if (!isSession(result)) throw new UpstreamError(Rep.GENERAL_FAILURE, 'the upstream dispatch did not return a session for UDP ASSOCIATE');
      session = result;
      const relay = relayAddress(session, upFamily);
      if (relay === undefined) throw new UpstreamError(Rep.GENERAL_FAILURE, `the upstream's UDP relay ${formatAddress(session.bound)} is a name, port 0 or of another family`);
      await up.connect(relay.port, relay.host);
    } catch (err) {
      session?.close();
      up.close();
      conn.failure = `${PLUGIN_NAME}: upstream UDP ASSOCIATE: ${errorMessage(err)}`;
      await stream.fail({ rep: repForError(err) });
      a.close('upstream UDP ASSOCIATE failed');
      return;
    }
    const route = new ForwardRoute(api.services.get(Tokens.DestinationCheck), up, session, this.options.maxPeers);
    route.attach(a);
    await this.answer(stream, a, route);
  }

  /** Reply with the relay's address, hold the control connection, start relaying. */
  private async answer(stream: StreamControl, a: Association, route: Route): Promise<void> {
    const bound = a.socket.address();
    const host = plainIp(bound.address);
    a.start(route);
    if (a.closed) return;
    const ok = await stream.reply({ rep: Rep.SUCCEEDED, bound: { kind: host.includes(':') ? 'ipv6' : 'ipv4', host, port: bound.port } });
    if (!ok) {
      a.close('client gone before the reply');
      return;
    }
    if (!a.closed) stream.hold();
  }
}

declare module 'socksmith' {
  /** This plugin's options, for `defineConfig({ plugins: { 'udp-associate': … } })`. */
  interface PluginOptionsMap {
    'udp-associate': UdpAssociateOptions;
  }
}

export default UdpAssociatePlugin;
