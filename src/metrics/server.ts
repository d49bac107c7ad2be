/**
 * The opt-in metrics listener (`metrics: { host, port }`): Prometheus `GET /metrics` and a
 * `GET /healthz` readiness check on a plain node:http server, separate from the SOCKS listeners.
 * @packageDocumentation
 */
import http from 'node:http';
import type net from 'node:net';
import { SocksmithError, errorMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import { formatHostPort } from '../protocol/address.js';

/**
 * What the metrics listener serves on `/metrics`: a `Metrics` of one process, or the
 * cluster primary's aggregate of its workers (`ClusterMetrics`).
 */
export interface MetricsSource {
  /** Content-Type of {@link MetricsSource.scrape}'s output. */
  readonly contentType: string;
  /** The metrics in the Prometheus text format. */
  scrape(): Promise<string>;
}

/** Options for {@link startMetricsServer}. */
export interface MetricsServerOptions {
  /** Address to bind (keep it private: loopback or an internal address). */
  readonly host: string;
  /** Port to bind; 0 picks a free one. */
  readonly port: number;
  /** The metrics served on `/metrics`. */
  readonly metrics: MetricsSource;
  /** True when the proxy is ready (every listener bound and not closing): `/healthz` answers 200. */
  readonly ready: () => boolean;
  /** True once the proxy is shutting down (draining): `/healthz` answers 503 `stopping`. Default: never. */
  readonly stopping?: () => boolean;
  /** Logger; scrapes are logged at debug at most. */
  readonly logger: Logger;
}

/** A running metrics listener. */
export interface MetricsServer {
  /** The bound address (the real port when 0 was asked). */
  readonly address: { readonly host: string; readonly port: number };
  /** Stop listening and close open scrape connections. Idempotent. */
  close(): Promise<void>;
}

/** Longest time a client may take to send its request headers (and the whole request). */
const REQUEST_TIMEOUT_MS = 10_000;
/** Idle keep-alive connections are closed after this long (Prometheus scrapes reuse connections). */
const KEEP_ALIVE_TIMEOUT_MS = 65_000;

/**
 * Bind the metrics listener. Resolves once it accepts connections; rejects with
 * `SOCKSMITH_ERR_LISTEN` if the address cannot be bound.
 */
// node:http rather than a framework: two fixed GET routes. Request bodies are never read (the
// socket is drained and discarded by node:http), headers are capped by maxHeaderSize, and
// headersTimeout/requestTimeout bound slow clients, so a scraper cannot make the proxy buffer.
export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const { metrics, ready, logger } = options;
  const stopping = options.stopping ?? (() => false);
  let closing: Promise<void> | undefined;

  const server = http.createServer(
    {
      headersTimeout: REQUEST_TIMEOUT_MS,
      requestTimeout: REQUEST_TIMEOUT_MS,
      keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
      maxHeaderSize: 16 * 1024,
    },
    (req, res) => {
      const started = performance.now();
      const send = (status: number, body: string, contentType = 'text/plain; charset=utf-8', extra: http.OutgoingHttpHeaders = {}) => {
        res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store', ...extra });
        res.end(req.method === 'HEAD' ? undefined : body);
        logger.debug({ method: req.method, url: req.url, status, ms: Math.round(performance.now() - started) }, 'metrics request');
      };
      req.resume(); // bodies are ignored, never buffered
      const path = (req.url ?? '/').split('?', 1)[0];
      if (path !== '/metrics' && path !== '/healthz') return send(404, 'not found\n');
      if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'method not allowed\n', undefined, { Allow: 'GET, HEAD' });
      if (path === '/healthz') {
        if (closing || stopping()) return send(503, 'stopping\n');
        return ready() ? send(200, 'ok\n') : send(503, 'starting\n');
      }
      metrics.scrape().then(
        (text) => send(200, text, metrics.contentType),
        (err: unknown) => {
          logger.warn({ err: errorMessage(err) }, 'metrics collection failed');
          send(500, 'metrics collection failed\n');
        },
      );
    },
  );
  server.on('clientError', (_err, socket: net.Socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    else socket.destroy();
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) =>
      reject(new SocksmithError('SOCKSMITH_ERR_LISTEN', `cannot listen on ${formatHostPort(options.host, options.port)} (metrics): ${errorMessage(err)}`, { cause: err }));
    server.once('error', onError);
    server.listen({ host: options.host, port: options.port, ipv6Only: options.host.includes(':') }, () => {
      server.removeListener('error', onError);
      resolve();
    });
  });
  server.on('error', (err) => logger.error({ err: errorMessage(err) }, 'metrics listener error'));
  const bound = server.address() as net.AddressInfo;
  const address = Object.freeze({ host: options.host, port: bound.port });
  logger.debug({ address: formatHostPort(address.host, address.port) }, 'metrics listener bound');

  return {
    address,
    close() {
      closing ??= new Promise<void>((resolve) => {
        // A scrape in progress gets a second to finish; then its connection is cut.
        const force = setTimeout(() => server.closeAllConnections(), 1000);
        force.unref();
        server.close(() => {
          clearTimeout(force);
          resolve();
        });
        // Idle keep-alive scrape connections would hold close() open until their timeout.
        server.closeIdleConnections();
      });
      return closing;
    },
  };
}
