/**
 * The forward route (an upstream other than `direct`): datagrams go, header and all, to the
 * upstream's own UDP relay (opened with `api.dispatch.run(…, { command: UDP_ASSOCIATE })`), from a
 * socket `connect()`ed to that relay; names are never resolved here (the upstream resolves them).
 * @packageDocumentation
 */
import dgram from 'node:dgram';
import { errorMessage, parseUdpHeader, type DestinationCheck, type SocksAddress, type UpstreamSession } from 'socksmith';
import { PeerSet, peerKey, plainIp, type Association, type Route } from './association.js';

/** The upstream-facing UDP socket, bound before the upstream request (its port is the request's DST.PORT). */
export class UpstreamSocket {
  readonly socket: dgram.Socket;
  private closed = false;
  /** Called on a socket error after the bind. */
  onError: ((err: Error) => void) | undefined;

  constructor(readonly family: 4 | 6) {
    this.socket = dgram.createSocket({ type: family === 6 ? 'udp6' : 'udp4' });
    // From creation to destruction: an error ends the association (onError), never the process.
    this.socket.on('error', (err) => this.onError?.(err));
  }

  /** Bind to the wildcard address of the family, port 0; resolves with the port. */
  async bind(): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.socket.once('error', onError);
      this.socket.bind({ address: this.family === 6 ? '::' : '0.0.0.0', port: 0, exclusive: true }, () => {
        this.socket.off('error', onError);
        resolve();
      });
    });
    return this.socket.address().port;
  }

  /** Accept datagrams only from `host`:`port` (the upstream's relay) and send only there. */
  async connect(port: number, host: string): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.socket.once('error', onError);
      this.socket.connect(port, host, () => {
        this.socket.off('error', onError);
        resolve();
      });
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.socket.close();
    } catch {
      // never bound
    }
  }
}

/**
 * Where the upstream's relay is: its reply's BND, or, when that is all zeros (RFC 1928: "not
 * known"), the address of the upstream's control connection. `undefined` for a name (never
 * resolved here) or another family than `family`.
 */
export function relayAddress(session: UpstreamSession, family: 4 | 6): { host: string; port: number } | undefined {
  const b = session.bound;
  if (b.kind === 'domain' || b.port === 0) return undefined;
  let host = b.host;
  if (host === '0.0.0.0' || host === '::') host = plainIp((session.stream as { remoteAddress?: string }).remoteAddress ?? '');
  if (host === '') return undefined;
  if ((host.includes(':') ? 6 : 4) !== family) return undefined;
  return { host, port: b.port };
}

/** Relays an association through the upstream's UDP ASSOCIATE. */
export class ForwardRoute implements Route {
  private readonly peers: PeerSet;
  /** True once the client sent to a name: its replies come from an address we cannot know. */
  private sentToName = false;

  constructor(
    private readonly check: DestinationCheck,
    private readonly up: UpstreamSocket,
    private readonly session: UpstreamSession,
    maxPeers: number,
  ) {
    this.peers = new PeerSet(maxPeers);
  }

  /** Wire the upstream side to `a` (before the reply: an upstream that ends first ends the association). */
  attach(a: Association): void {
    a.route = this; // from here a.close() closes the upstream side too
    if (a.closed) return this.close();
    this.up.onError = (err) => a.close(`upstream-facing socket error: ${errorMessage(err)}`);
    this.up.socket.on('message', (msg) => this.fromUpstream(a, msg));
    void this.session.ended.then(() => a.close('upstream control connection closed'));
  }

  fromClient(a: Association, msg: Buffer, dest: SocksAddress): void {
    if (this.check(a.init.conn, dest) !== undefined) {
      a.drop('refused');
      return;
    }
    if (dest.kind === 'domain') this.sentToName = true;
    else this.peers.add(peerKey(plainIp(dest.host), dest.port));
    if (!a.reserve(msg.length)) return;
    // Header and all: the upstream reads DST (a name included) itself.
    a.send(msg, undefined, undefined, msg.length, () => a.stats.sent++, this.up.socket);
  }

  private fromUpstream(a: Association, msg: Buffer): void {
    if (a.closed) return;
    const h = parseUdpHeader(msg);
    if (h.status !== 'ok') return a.drop('malformed');
    if (h.value.frag !== 0) return a.drop('fragment');
    const src = h.value.address;
    // The upstream names the source. Without names sent, it must be one the client sent to.
    if (a.init.options.replies === 'contacted' && !this.sentToName && !this.peers.has(peerKey(plainIp(src.host), src.port))) return a.drop('stranger');
    a.sendToClient(msg, msg.length);
  }

  close(): void {
    this.up.close();
    this.session.close();
  }
}
