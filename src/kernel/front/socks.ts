/**
 * The SOCKS4/4a/5 front end (design of issue 12, §2.2): the handshake loop over the sans-IO codec
 * (`src/protocol/server-handshake.ts`), moved out of `connection.ts` unchanged. It is the detect
 * stage's catch-all and SOCKS5's direct path: module-level functions over the {@link Connection},
 * whose plain fields (`hs`, `buf`, `off`, `greeted`, `processing`, `detecting`) hold the state, so a
 * SOCKS connection allocates no session object. A request goes on to the stream pipeline
 * (`pipeline.ts` `runStream`) with this front end's encoder.
 * @packageDocumentation
 */
import { ZERO_ADDRESS } from '../../protocol/address.js';
import { encodeSocks4Reply, encodeSocks5Reply } from '../../protocol/codec.js';
import { Command, Method, Rep, Socks4Rep } from '../../protocol/constants.js';
import { socks4Rejection, socks5ErrorReply } from '../../protocol/server-handshake.js';
import type { Connection } from '../connection.js';
import type { Credentials } from '../context.js';
import { NEED_MORE } from '../detect.js';
import { type GreetingDecision, type MaybePromise, type Reply, callBail, isTapped, isThenable } from '../hooks.js';
import { runStream } from '../pipeline.js';
import type { StreamRequest } from './types.js';

/** The handshake buffer when empty (one shared instance: no allocation per connection). */
const EMPTY = Buffer.alloc(0);

/** Encode a reply for SOCKS5: `05 REP 00 ATYP BND.ADDR BND.PORT`. */
function encodeReplyV5(reply: Reply): Buffer {
  return encodeSocks5Reply(reply.rep, reply.bound ?? ZERO_ADDRESS);
}

/**
 * Encode a reply for SOCKS4: 5A for success, 5B otherwise. The address field carries a RESOLVE
 * answer (port 0, as Tor sends it) and BIND's address and port (the SOCKS4 document: "In the
 * reply to BIND, DSTPORT and DSTIP are meaningful"); CONNECT replies carry zeros, as Tor sends them.
 */
function encodeReplyV4(reply: Reply, request: StreamRequest): Buffer {
  if (reply.rep !== Rep.SUCCEEDED) return socks4Rejection();
  const b = reply.bound;
  if (request.command !== Command.CONNECT && b && b.kind === 'ipv4') return encodeSocks4Reply(Socks4Rep.GRANTED, request.command === Command.BIND ? b.port : 0, b.host);
  return encodeSocks4Reply(Socks4Rep.GRANTED);
}



export async function socksFeed(c: Connection): Promise<void> {
  c.processing = true;
  try {
    while (c.phase === 'handshake' && c.off < c.buf.length) {
      if (c.detecting) {
        // The detect stage: the front ends plugins added, asked in order; none: SOCKS serves it.
        const fe = c.kernel.frontEnds.select(c.buf, c.off);
        if (fe === NEED_MORE) {
          if (c.socket.readableEnded) return c.finish();
          if (c.socket.isPaused() && c.phase === 'handshake') c.socket.resume();
          return;
        }
        c.detecting = false;
        if (fe !== undefined) return c.serveWith(fe);
        continue;
      }
      if (!c.greeted && c.buf[c.off] !== 0x05) {
        // SOCKS4 and unknown protocols meet onGreeting at their first byte (http-detect answers
        // on one byte, as Tor does); SOCKS5 meets it with its whole greeting.
        c.greeted = true;
        const first = c.buf[c.off]!;
        c.ctx.protocol = first === 0x04 ? 'socks4' : 'unknown';
        const pending = greeting(c, first, []);
        const decision = isThenable(pending) ? await pending : pending;
        if (c.phase !== 'handshake') return;
        if (decision && 'takeover' in decision) return c.takeover(decision.takeover);
        if (decision && 'reject' in decision) {
          c.outcome = 'refused';
          return c.endWith(undefined);
        }
        if (c.kernel.frontEnds.frontEnds.length > 0) c.detecting = true;
        continue;
      }
      const ev = c.hs.step(c.buf, c.off);
      switch (ev.type) {
        case 'need-more':
          if (c.socket.readableEnded) return c.finish(); // EOF mid-handshake: nothing to answer
          if (c.socket.isPaused() && c.phase === 'handshake') c.socket.resume();
          return;
        case 'unknown-protocol':
          c.ctx.log.debug({ firstByte: ev.firstByte }, 'unknown protocol, closing');
          c.outcome = 'protocol_error';
          return c.endWith(undefined);
        case 'error':
          c.ctx.log.debug({ err: ev.error.message, code: ev.error.code }, 'handshake error');
          c.outcome = 'protocol_error';
          if (ev.reply) c.ctx.reply = c.hs.version === 4 ? Rep.GENERAL_FAILURE : ev.reply[1];
          return c.endWith(ev.reply);
        case 'greeting': {
          c.off += ev.length;
          c.greeted = true;
          c.ctx.protocol = 'socks5';
          c.ctx.version = 5;
          const pending = greeting(c, 0x05, ev.greeting.methods);
          const decision = isThenable(pending) ? await pending : pending;
          if (c.phase !== 'handshake') return;
          if (decision && 'takeover' in decision) return c.takeover(decision.takeover);
          let method: number;
          if (decision && 'method' in decision) method = decision.method;
          else if (decision && 'reject' in decision) method = Method.NO_ACCEPTABLE;
          else method = defaultMethod(ev.greeting.methods);
          c.ctx.method = method;
          const bytes = c.hs.selectMethod(method);
          if (method === Method.NO_ACCEPTABLE) {
            c.outcome = 'refused';
            return c.endWith(bytes);
          }
          c.socket.write(bytes);
          break;
        }
        case 'auth': {
          c.off += ev.length;
          const credentials: Credentials = { source: 'rfc1929', username: ev.auth.username, password: ev.auth.password };
          c.ctx.credentials = credentials;
          const verdict = c.authVerdict(credentials);
          const accepted = typeof verdict === 'boolean' ? verdict : await verdict;
          if (c.phase !== 'handshake') return;
          const bytes = c.hs.authResult(accepted);
          if (!accepted) {
            c.outcome = 'refused';
            return c.endWith(bytes);
          }
          c.socket.write(bytes);
          break;
        }
        case 'request': {
          c.off += ev.length;
          const req = ev.request;
          c.ctx.version = req.version;
          if (req.version === 4) {
            c.ctx.protocol = 'socks4';
            const credentials: Credentials = { source: 'socks4-userid', username: req.userId ?? Buffer.alloc(0), password: undefined };
            c.ctx.credentials = credentials;
            const verdict = c.authVerdict(credentials);
            const accepted = typeof verdict === 'boolean' ? verdict : await verdict;
            if (c.phase !== 'handshake') return;
            if (!accepted) {
              c.ctx.reply = Rep.NOT_ALLOWED;
              return c.endWith(socks4Rejection());
            }
          }
          const leftover = c.buf.subarray(c.off);
          c.buf = EMPTY;
          c.off = 0;
          const encode = req.version === 5 ? encodeReplyV5 : encodeReplyV4;
          await runStream(c, req, encode, leftover);
          return;
        }
      }
    }
  } catch (err) {
    failHandshake(c, err);
  } finally {
    c.processing = false;
  }
}

/**
 * onGreeting's decision: at once (no promise, no await) when no plugin taps it or every tap
 * answers synchronously (isolation's), else a promise ({@link callBail}).
 */
function greeting(c: Connection, firstByte: number, methods: readonly number[]): MaybePromise<GreetingDecision | undefined> {
  const hook = c.kernel.hooks.onGreeting;
  if (!isTapped(hook)) return undefined;
  return callBail<GreetingDecision>(hook, { conn: c.ctx, firstByte, methods });
}



/** A hook failed (or a bug) during the handshake: answer in the form the state allows, then close. */
function failHandshake(c: Connection, err: unknown): void {
  c.logHookError(err);
  if (c.phase !== 'handshake') return;
  c.outcome = 'plugin_error';
  let bytes: Buffer | undefined;
  switch (c.hs.state) {
    case 'await-method-decision':
      bytes = Buffer.from([0x05, Method.NO_ACCEPTABLE]);
      break;
    case 'await-auth-decision':
      bytes = Buffer.from([0x01, 0x01]);
      break;
    default:
      // onGreeting runs on a SOCKS4 client's first byte, before the state machine knows the
      // version: the front end's protocol decides the form of the answer.
      bytes =
        c.hs.version === 4 || c.ctx.protocol === 'socks4'
          ? socks4Rejection()
          : c.hs.version === 5
            ? socks5ErrorReply(Rep.GENERAL_FAILURE)
            : undefined;
  }
  c.ctx.reply = Rep.GENERAL_FAILURE;
  c.endWith(bytes);
}

/** Method choice without plugins: 00 if offered, else 02 (credentials accepted unchecked), else FF. */
export function defaultMethod(methods: readonly number[]): number {
  if (methods.includes(Method.NO_AUTH)) return Method.NO_AUTH;
  if (methods.includes(Method.USERPASS)) return Method.USERPASS;
  return Method.NO_ACCEPTABLE;
}
