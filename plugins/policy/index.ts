/**
 * `policy`: who may connect and where streams may go, with Tor's syntax and Tor's flags.
 *
 * - **Client ACL** (`clients`, Tor's SocksPolicy): refused clients are closed before any byte
 *   (`onAccept`). When it admits only loopback and private addresses, `restrictsClients()` is
 *   true, so socksmith may listen on a non-loopback address.
 * - **Destination policy** (`destinations`, Tor's exit-policy syntax): IP-literal destinations
 *   are checked on the request (`onRequest`, CONNECT); names are checked on the addresses they
 *   resolve to when the `direct` upstream connects (`onResolve`), so a name that resolves into a
 *   refused network (DNS rebinding) is refused before any connection is opened. REP 02.
 * - **SocksPort flags**: SafeSocks, TestSocks, NoDNSRequest, NoOnionTraffic, OnionTrafficOnly,
 *   NoIPv4Traffic, IPv6Traffic, PreferIPv6, RejectPlaintextPorts, WarnPlaintextPorts,
 *   AllowNonRFC953Hostnames, and the client option ClientDNSRejectInternalAddresses, with Tor's
 *   semantics (tor-socks.md a.4 and b; connection_edge.c
 *   `connection_ap_handshake_rewrite_and_attach`, proto_socks.c `process_socks{4,5}_…_request`).
 *
 * README.md lists every option, its default, its reply code and where socksmith differs from Tor.
 * @packageDocumentation
 */
import type ipaddr from 'ipaddr.js';
import {
  Command,
  ConfigError,
  formatAddress,
  inject,
  injectable,
  isOnionName,
  Rep,
  ResolveError,
  Stage,
  Tokens,
  type ConnectionContext,
  type PluginApi,
  type ServiceRegistry,
  type SocksAddress,
  type ResolvedAddress,
  type Resolve,
  type ResolveAnswer,
  type ResolveQuery,
  type SocksmithPlugin,
  type SocksRequest,
} from 'socksmith';
import { type PolicyRule, admittedPublicAddress, canReject, checkClientPolicy, checkPolicy, isPrivateAddress, parseIp, parsePolicy } from './exit-policy.js';
import { PolicyOptionsSchema, type PolicyOptions } from './schema.js';

export type { PolicyOptions } from './schema.js';

const PLUGIN_NAME = 'policy';

/** Characters Tor allows in a hostname unless AllowNonRFC953Hostnames (address.c `address_is_invalid_destination`). */
const RFC953_NAME = /^[A-Za-z0-9._-]+$/;

/** A refused request: the reply code and, for the log, which option or rule refused it. */
interface Refusal {
  readonly rep: number;
  readonly reason: string;
  readonly rule?: string;
}

/** Parse rule strings; a bad one is a config error naming `plugins.policy.<key>.<index>`. */
function parseRules(lines: readonly string[], key: 'clients' | 'destinations'): readonly PolicyRule[] {
  const parsed = parsePolicy(lines);
  if (!parsed.ok) throw new ConfigError(`plugins.${PLUGIN_NAME}.${key}.${parsed.index}`, `${JSON.stringify(lines[parsed.index])}: ${parsed.reason}`);
  return parsed.rules;
}

/** A lookup refused by the destination policy: REP 02 reaches the client through the upstream. */
function notAllowed(message: string): Error & { rep: number } {
  return Object.assign(new Error(message), { rep: Rep.NOT_ALLOWED });
}

/** Client ACL, destination policy and Tor's SocksPort policy flags. */
@injectable()
export class PolicyPlugin implements SocksmithPlugin {
  static readonly meta = {
    name: PLUGIN_NAME,
    schema: PolicyOptionsSchema,
    description: "Client ACL (SocksPolicy), destination policy (exit-policy syntax) and Tor's SocksPort policy flags.",
  };

  private readonly clients: readonly PolicyRule[];
  private readonly destinations: readonly PolicyRule[];
  private readonly warnPorts: ReadonlySet<number>;
  private readonly rejectPorts: ReadonlySet<number>;
  /** Tor's entry_cfg: what a stream may be (OnionTrafficOnly folded in, as Tor's config.c does). */
  private readonly allow: { readonly dns: boolean; readonly ipv4: boolean; readonly ipv6: boolean; readonly onion: boolean };

  // The constructor parses and checks the options (pure; no I/O), so `--check` reports bad rules.
  constructor(@inject(Tokens.PluginOptions) private readonly options: PolicyOptions) {
    this.clients = parseRules(options.clients, 'clients');
    this.destinations = parseRules(options.destinations, 'destinations');
    this.warnPorts = new Set(options.WarnPlaintextPorts);
    this.rejectPorts = new Set(options.RejectPlaintextPorts);
    const onionOnly = options.OnionTrafficOnly;
    if (onionOnly && options.NoOnionTraffic) {
      throw new ConfigError(`plugins.${PLUGIN_NAME}.NoOnionTraffic`, 'cannot be combined with OnionTrafficOnly: no request could ever be allowed');
    }
    this.allow = Object.freeze({
      dns: !options.NoDNSRequest && !onionOnly,
      ipv4: !options.NoIPv4Traffic && !onionOnly,
      ipv6: options.IPv6Traffic && !onionOnly,
      onion: !options.NoOnionTraffic,
    });
    if (!this.allow.ipv4 && !this.allow.ipv6 && !this.allow.onion) {
      throw new ConfigError(`plugins.${PLUGIN_NAME}`, 'NoIPv4Traffic, IPv6Traffic: false and NoOnionTraffic together allow no request at all');
    }
  }

  /**
   * True when the client ACL admits only loopback and private addresses ({@link PRIVATE_NETWORKS}
   * in exit-policy.ts). Rules that merely can refuse someone (`reject 192.0.2.99`, or
   * `accept 0.0.0.0/0` before `reject *`) still let the public in, so they do not count.
   */
  restrictsClients(): boolean {
    return this.clients.length > 0 && admittedPublicAddress(this.clients) === undefined;
  }

  /** Why the client ACL does not keep the public out, for the open-proxy check; `undefined` without one. */
  openProxyProblem(): { key: string; reason: string } | undefined {
    if (this.clients.length === 0) return undefined;
    const example = admittedPublicAddress(this.clients);
    if (example === undefined) return undefined;
    return { key: `plugins.${PLUGIN_NAME}.clients`, reason: `admits clients outside loopback and private networks (e.g. ${example})` };
  }

  /**
   * Supplies `Tokens.DestinationCheck`: may this stream reach `address` outside its CONNECT (a BIND
   * peer, a datagram's target)? The address checks of a CONNECT: NoOnionTraffic, NoDNSRequest for
   * a name, the families, RejectPlaintextPorts, and the destination policy for an IP literal.
   */
  provision(services: ServiceRegistry): void {
    services.provide(Tokens.DestinationCheck, (_conn: ConnectionContext, address: SocksAddress) => this.checkAddress(address));
  }

  /** The destination checks that depend only on the address (see {@link provision}). */
  checkAddress(address: SocksAddress): { rep: number; reason: string } | undefined {
    const ip = parseIp(address.host);
    if (!ip) {
      if (isOnionName(address.host)) return this.allow.onion ? undefined : { rep: Rep.NOT_ALLOWED, reason: 'NoOnionTraffic' };
      return this.allow.dns ? undefined : { rep: Rep.NOT_ALLOWED, reason: 'NoDNSRequest' };
    }
    if (ip.kind() === 'ipv4' ? !this.allow.ipv4 : !this.allow.ipv6) return { rep: Rep.NOT_ALLOWED, reason: ip.kind() === 'ipv4' ? 'NoIPv4Traffic' : 'IPv6Traffic: false' };
    if (this.rejectPorts.has(address.port)) return { rep: Rep.NOT_ALLOWED, reason: 'RejectPlaintextPorts' };
    if (this.destinations.length > 0) {
      const verdict = checkPolicy(this.destinations, ip, address.port);
      if (verdict.action === 'reject') return { rep: Rep.NOT_ALLOWED, reason: `destinations${verdict.rule ? `: ${verdict.rule.text}` : ''}` };
    }
    return undefined;
  }

  apply(api: PluginApi): void {
    if (this.clients.length > 0) {
      if (!canReject(this.clients)) {
        api.logger.warn(
          { plugin: PLUGIN_NAME },
          'policy: no rule in "clients" can refuse anyone (a client no rule matches is accepted); end the list with "reject *" to admit only the listed clients',
        );
      }
      api.hooks.onAccept.tap({ name: PLUGIN_NAME, stage: Stage.ACCESS }, (conn) => this.admit(conn));
    }

    // Before extended-errors (same stage): a refusal by policy outranks its onion answers.
    api.hooks.onRequest.tapPromise({ name: PLUGIN_NAME, stage: Stage.POLICY, before: 'extended-errors' }, async (conn, request) => {
      const refusal = this.check(conn, request);
      if (!refusal) return undefined;
      const dest = conn.destination ?? request.destination;
      conn.log.debug({ destination: formatAddress(dest), reason: refusal.reason, ...(refusal.rule ? { rule: refusal.rule } : {}) }, 'policy: request refused');
      conn.refusal = `policy: ${refusal.reason}${refusal.rule ? `: ${refusal.rule}` : ''}`;
      return { rep: refusal.rep };
    });

    const o = this.options;
    const filtersFamilies = !this.allow.ipv4 || !this.allow.ipv6 || o.PreferIPv6;
    if (this.destinations.length > 0 || filtersFamilies || o.ClientDNSRejectInternalAddresses) {
      // An interceptor, not an onResolve tap: it filters whatever answered (any onResolve tap, or the resolver).
      api.resolution.intercept({ name: PLUGIN_NAME, stage: Stage.POLICY }, (next) => (query) => this.resolve(api, query, next));
    }
  }

  /** `onAccept`: `false` closes a client the ACL refuses. Unix-socket clients have no address and pass (Tor). */
  private admit(conn: ConnectionContext): false | undefined {
    if (conn.clientFamily === 'unix') return undefined;
    const verdict = checkClientPolicy(this.clients, conn.clientAddress); // NAT64 64:ff9b::/96 clients as IPv4
    if (verdict.action === 'accept') return undefined;
    conn.log.debug({ client: conn.clientAddress, rule: verdict.rule?.text ?? '(not an IP address)' }, 'policy: client refused by the clients ACL');
    conn.refusal = `policy: clients: ${verdict.rule?.text ?? '(not an IP address)'}`;
    return false;
  }

  /** The request checks, in Tor's order. `undefined`: not refused. */
  check(conn: ConnectionContext, request: SocksRequest): Refusal | undefined {
    const o = this.options;
    const cmd = request.command;
    if (cmd !== Command.CONNECT && cmd !== Command.RESOLVE && cmd !== Command.RESOLVE_PTR) return undefined; // the kernel answers 07
    const sent = request.destination;
    const dest = conn.destination ?? sent;
    // Tor answers every refused RESOLVE/RESOLVE_PTR like a failed lookup (connection_edge.c
    // `connection_mark_unattached_ap` → RESOLVED_TYPE_ERROR → REP 04).
    const lookup = cmd !== Command.CONNECT;
    const refuse = lookup ? Rep.HOST_UNREACHABLE : Rep.NOT_ALLOWED;

    // 1. SafeSocks / TestSocks: Tor decides while parsing, on the request as sent (proto_socks.c).
    if ((conn.protocol === 'socks4' || conn.protocol === 'socks5') && !(request.version === 5 && cmd === Command.RESOLVE_PTR)) {
      const unsafe = request.version === 4 ? !request.socks4a : sent.kind !== 'domain';
      if (o.TestSocks) {
        const protocol = request.version === 4 ? (request.socks4a ? 'socks4a' : 'socks4') : 'socks5';
        if (unsafe) conn.log.info({ protocol, port: sent.port }, 'TestSocks: unsafe request: the client sent only an IP address, so it resolved the name itself (a possible DNS leak)');
        else conn.log.info({ protocol, port: sent.port }, 'TestSocks: safe request: the client sent a name for the proxy to resolve');
      }
      // Tor exempts an address that MapAddress rewrites; here, one a REWRITE-stage plugin replaced.
      if (unsafe && o.SafeSocks && dest.host === sent.host) return { rep: Rep.NOT_ALLOWED, reason: 'SafeSocks' };
    }

    const ip = parseIp(dest.host); // an IP literal, also in a name field; IPv4-mapped IPv6 unmapped
    // 2. .onion names: only NoOnionTraffic applies (Tor's connection_ap_handle_onion).
    if (!ip && isOnionName(dest.host)) return this.allow.onion ? undefined : { rep: refuse, reason: 'NoOnionTraffic' };

    // 3. Everything else (Tor's "handle everything that isn't a .onion address").
    if (!ip && !o.AllowNonRFC953Hostnames && !RFC953_NAME.test(dest.host)) {
      return { rep: lookup ? Rep.HOST_UNREACHABLE : Rep.GENERAL_FAILURE, reason: 'AllowNonRFC953Hostnames' };
    }
    if (!this.allow.dns && !this.allow.ipv4 && !this.allow.ipv6) {
      return { rep: refuse, reason: o.OnionTrafficOnly ? 'OnionTrafficOnly' : 'NoDNSRequest, NoIPv4Traffic, IPv6Traffic: false' };
    }
    if (!ip) {
      if (!this.allow.dns) return { rep: refuse, reason: 'NoDNSRequest' };
    } else if (ip.kind() === 'ipv4') {
      if (!this.allow.ipv4) return { rep: refuse, reason: 'NoIPv4Traffic' };
    } else if (!this.allow.ipv6) return { rep: refuse, reason: 'IPv6Traffic: false' };

    if (cmd === Command.RESOLVE_PTR) {
      // Tor: "Don't let clients try to do a reverse lookup on 10.0.0.1."
      if (ip && o.ClientDNSRejectInternalAddresses && isPrivateAddress(ip)) return { rep: Rep.HOST_UNREACHABLE, reason: 'ClientDNSRejectInternalAddresses' };
      return undefined;
    }
    if (cmd !== Command.CONNECT) return undefined;

    // 4. CONNECT: plaintext ports (Tor's consider_plaintext_ports), then the destination policy.
    if (this.warnPorts.has(dest.port)) {
      conn.log.warn(
        { destination: formatAddress(dest), port: dest.port, rejected: this.rejectPorts.has(dest.port) },
        'WarnPlaintextPorts: this port is commonly used for unencrypted protocols; anything sent can be read on the way',
      );
    }
    if (this.rejectPorts.has(dest.port)) return { rep: Rep.NOT_ALLOWED, reason: 'RejectPlaintextPorts' };
    if (ip && this.destinations.length > 0) {
      const verdict = checkPolicy(this.destinations, ip, dest.port);
      if (verdict.action === 'reject') return { rep: Rep.NOT_ALLOWED, reason: 'destinations', rule: verdict.rule?.text };
    }
    return undefined;
  }

  /**
   * The resolution interceptor (forward lookups): let the rest of the chain answer (onResolve
   * taps, else the resolver) for the families this stream may use, then keep only the addresses
   * it may use: the allowed families (with PreferIPv6, IPv6 first), no private addresses with
   * ClientDNSRejectInternalAddresses, and, for the destination of a CONNECT, what the destination
   * policy accepts for its port. When none of that applies the query passes through untouched.
   */
  private async resolve(api: PluginApi, query: ResolveQuery, next: Resolve): Promise<ResolveAnswer> {
    if (query.type !== 'forward') return next(query);
    const o = this.options;
    const conn = query.conn;
    // The family flags are SocksPort flags: they bind lookups made for a client's stream only.
    const onPort = conn !== undefined;
    const families = onPort && (!this.allow.ipv4 || !this.allow.ipv6 || o.PreferIPv6);
    // The destination policy binds the name a CONNECT goes to, nothing else the stream may look up.
    const dest = conn?.destination;
    const policed =
      this.destinations.length > 0 && conn?.request?.command === Command.CONNECT && dest !== undefined && dest.host.toLowerCase() === query.name.toLowerCase();
    if (!families && !policed && !o.ClientDNSRejectInternalAddresses) return next(query);

    let family = query.family;
    if (onPort) {
      const want4 = family !== 6 && this.allow.ipv4;
      const want6 = family !== 4 && this.allow.ipv6;
      if (!want4 && !want6) throw new ResolveError(`${query.name}: no address family allowed for this lookup (NoIPv4Traffic / IPv6Traffic)`);
      family = want4 && want6 ? 0 : want4 ? 4 : 6;
    }
    const answered = await next(family === query.family ? query : { conn, type: 'forward', name: query.name, family });
    const answer = 'addresses' in answered ? answered.addresses : [];
    let kept = answer.map((a) => ({ a, ip: parseIp(a.address) })).filter((x): x is { a: ResolvedAddress; ip: ipaddr.IPv4 | ipaddr.IPv6 } => x.ip !== undefined);
    const log = conn?.log ?? api.logger;
    const dropped = (what: string, before: typeof kept) => {
      if (kept.length < before.length) log.debug({ name: query.name, dropped: before.filter((x) => !kept.includes(x)).map((x) => x.a.address), by: what }, 'policy: resolved addresses dropped');
    };

    if (onPort) {
      const before = kept;
      kept = kept.filter((x) => (x.ip.kind() === 'ipv4' ? this.allow.ipv4 : this.allow.ipv6));
      dropped('NoIPv4Traffic / IPv6Traffic', before);
      if (kept.length === 0) throw new ResolveError(`${query.name} has no address of an allowed family`);
    }
    if (o.ClientDNSRejectInternalAddresses) {
      const before = kept;
      kept = kept.filter((x) => !isPrivateAddress(x.ip));
      dropped('ClientDNSRejectInternalAddresses', before);
      if (kept.length === 0) throw new ResolveError(`${query.name} resolved only to internal addresses (ClientDNSRejectInternalAddresses)`);
    }
    if (policed) {
      const before = kept;
      kept = kept.filter((x) => checkPolicy(this.destinations, x.ip, dest.port).action === 'accept');
      dropped('destinations', before);
      if (kept.length === 0) throw notAllowed(`${query.name}:${dest.port}: every address it resolves to is refused by the destination policy`);
    }
    if (onPort && o.PreferIPv6) kept = [...kept.filter((x) => x.ip.kind() === 'ipv6'), ...kept.filter((x) => x.ip.kind() === 'ipv4')];
    return { addresses: kept.map((x) => x.a) };
  }
}

declare module 'socksmith' {
  /** This plugin's options, for `defineConfig({ plugins: { policy: … } })`. */
  interface PluginOptionsMap {
    policy: PolicyOptions;
  }
}

export default PolicyPlugin;
