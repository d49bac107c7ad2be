/**
 * A minimal Tor control-port client for the Tor tests: cookie authentication, commands, and
 * STREAM events (the circuit each stream was attached to, and its SOCKS credentials).
 */
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';

/** One `650 STREAM` event. */
export interface StreamEvent {
  readonly id: string;
  readonly status: string;
  readonly circuit: string;
  readonly target: string;
  readonly fields: Record<string, string>;
  readonly line: string;
}

/** A connected, authenticated control connection. */
export class TorControl {
  private buf = '';
  private replyLines: string[] = [];
  private waiters: Array<(lines: string[]) => void> = [];
  readonly streams: StreamEvent[] = [];
  private streamWaiters: Array<() => void> = [];

  private constructor(private readonly socket: net.Socket) {
    socket.setEncoding('utf8');
    socket.on('error', () => {});
    socket.on('data', (d: string) => {
      this.buf += d;
      for (;;) {
        const i = this.buf.indexOf('\r\n');
        if (i < 0) break;
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 2);
        this.onLine(line);
      }
    });
  }

  static async connect(port: number, cookieFile: string): Promise<TorControl> {
    const socket = net.connect({ host: '127.0.0.1', port });
    await once(socket, 'connect');
    const c = new TorControl(socket);
    const r = await c.command(`AUTHENTICATE ${fs.readFileSync(cookieFile).toString('hex')}`);
    if (!r[r.length - 1]!.startsWith('250')) throw new Error(`control port ${port}: authentication failed: ${r.join(' | ')}`);
    return c;
  }

  private onLine(line: string): void {
    if (line.startsWith('650 ')) {
      const m = /^650 STREAM (\S+) (\S+) (\S+) (\S+)(.*)$/.exec(line);
      if (m) {
        const fields: Record<string, string> = {};
        for (const f of m[5]!.matchAll(/ ([A-Z_]+)=("(?:[^"\\]|\\.)*"|\S*)/g)) fields[f[1]!] = f[2]!.replace(/^"(.*)"$/, '$1');
        this.streams.push({ id: m[1]!, status: m[2]!, circuit: m[3]!, target: m[4]!, fields, line });
        const w = this.streamWaiters;
        this.streamWaiters = [];
        for (const f of w) f();
      }
      return;
    }
    this.replyLines.push(line);
    // A final reply line is "NNN text" (a space after the code); "NNN-" and "NNN+" continue.
    if (line.length >= 4 && line[3] === ' ' && /^\d{3}$/.test(line.slice(0, 3))) {
      const lines = this.replyLines;
      this.replyLines = [];
      this.waiters.shift()?.(lines);
    }
  }

  /** Send one command and return its reply lines (rejects after `timeoutMs`). */
  command(cmd: string, timeoutMs = 10_000): Promise<string[]> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`control command "${cmd.split(' ')[0]}" got no reply within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push((lines) => {
        clearTimeout(t);
        resolve(lines);
      });
      this.socket.write(`${cmd}\r\n`);
    });
  }

  /** Wait for a STREAM event matching `pred` (rejects after `timeoutMs` naming `what`). */
  async waitStream(pred: (e: StreamEvent) => boolean, what: string, timeoutMs = 20_000): Promise<StreamEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const e = this.streams.find(pred);
      if (e) return e;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no STREAM event for ${what} within ${timeoutMs} ms; seen: ${this.streams.map((s) => s.line).join('\n') || 'none'}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.streamWaiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  close(): void {
    this.socket.destroy();
  }
}
