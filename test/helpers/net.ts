/**
 * Loopback servers and raw socket helpers for tests. Every server listens on 127.0.0.1 or ::1,
 * port 0, and is closed by the test that started it.
 */
import { once } from 'node:events';
import net from 'node:net';
import http from 'node:http';

/**
 * A loopback port that was free a moment ago (bound to :0, read, closed). Also a port nothing
 * listens on, for "connection refused" cases.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const s = net.createServer();
  s.listen(0, host);
  await once(s, 'listening');
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** A server that can be closed, with its port. */
export interface TestServer {
  readonly port: number;
  readonly host: string;
  close(): Promise<void>;
}

function closer(server: net.Server, sockets: Set<net.Socket>): () => Promise<void> {
  return () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    });
}

/** TCP echo server (allowHalfOpen: echoes, then ends when the client ends). */
export async function startEchoServer(host = '127.0.0.1'): Promise<TestServer & { connections: number }> {
  const sockets = new Set<net.Socket>();
  const state = { connections: 0 };
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    state.connections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    s.pipe(s);
  });
  server.listen(0, host);
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    host,
    close: closer(server, sockets),
    get connections() {
      return state.connections;
    },
  };
}

/** A server whose per-connection behaviour the test supplies. */
export async function startTcpServer(onConnection: (s: net.Socket) => void, host = '127.0.0.1'): Promise<TestServer> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    onConnection(s);
  });
  server.listen(0, host);
  await once(server, 'listening');
  return { port: (server.address() as net.AddressInfo).port, host, close: closer(server, sockets) };
}

/** HTTP server answering every request with `body` (default `hello from <path>`). */
export async function startHttpServer(body?: (req: http.IncomingMessage) => string, host = '127.0.0.1'): Promise<TestServer & { requests: string[] }> {
  const requests: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = http.createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    const text = body ? body(req) : `hello from ${req.url}`;
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.listen(0, host);
  await once(server, 'listening');
  return { port: (server.address() as net.AddressInfo).port, host, requests, close: closer(server, sockets) };
}

/** A raw client socket with helpers to read exact byte counts. */
export class RawClient {
  private buf: Buffer = Buffer.alloc(0);
  private waiters: Array<() => void> = [];
  ended = false;
  closed = false;

  constructor(readonly socket: net.Socket) {
    socket.on('data', (c: Buffer) => {
      this.buf = Buffer.concat([this.buf, c]);
      this.wake();
    });
    socket.on('end', () => {
      this.ended = true;
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => {
      this.wake();
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Connect to a proxy port. */
  static async connect(port: number, host = '127.0.0.1'): Promise<RawClient> {
    const socket = net.connect({ port, host, allowHalfOpen: true });
    await once(socket, 'connect');
    return new RawClient(socket);
  }

  write(bytes: Uint8Array | string): void {
    this.socket.write(bytes);
  }

  /** Bytes received so far and not yet read. */
  get pending(): Buffer {
    return this.buf;
  }

  /** Read exactly `n` bytes (rejects on EOF or after `timeoutMs`). */
  async read(n: number, timeoutMs = 5000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.buf.length < n) {
      if (this.ended || this.closed) throw new Error(`EOF after ${this.buf.length} of ${n} bytes: ${this.buf.toString('hex')}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timeout after ${this.buf.length} of ${n} bytes: ${this.buf.toString('hex')}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return Buffer.from(out);
  }

  /** Read everything until the peer ends the stream (rejects after `timeoutMs`). */
  async readToEnd(timeoutMs = 5000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (!this.ended && !this.closed) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no EOF within ${timeoutMs} ms; got ${this.buf.toString('hex')}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    const out = this.buf;
    this.buf = Buffer.alloc(0);
    return out;
  }

  /** Resolve once the peer ended or closed (rejects after `timeoutMs`). */
  async waitEnd(timeoutMs = 5000): Promise<void> {
    await this.readToEnd(timeoutMs);
  }

  end(): void {
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }
}
