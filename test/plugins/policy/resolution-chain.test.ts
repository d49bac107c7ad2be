/**
 * `policy` filters whatever answered a name (issue 12): it is an interceptor on the resolution
 * chain, outside the `onResolve` hook, so an `onResolve` tap that answers (at any stage, even one
 * before POLICY) cannot hand the upstream an address the policy refuses. Before issue 12 policy was
 * itself an `onResolve` tap at POLICY, and a tap at an earlier stage bailed ahead of it
 * (DNS-rebinding check bypassed; the README admitted it).
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Stage } from '../../../src/kernel/stages.js';
import { startEchoServer, type TestServer } from '../../helpers/net.js';
import { startWithPlugins, type Kernel } from '../../kernel/hook-kit.js';
import { startDnsServer, type TestDnsServer } from '../helpers/dns-server.js';
import { GUARDED, once5, open5, echoes, refusal5, spyConnects, type ConnectSpy } from './kit.js';

let dns: TestDnsServer;
let echo: TestServer;
let guard: ConnectSpy;

before(async () => {
  guard = spyConnects();
  dns = await startDnsServer();
  echo = await startEchoServer('127.0.0.1');
});
after(async () => {
  guard.restore();
  assert.deepEqual(GUARDED, [], 'no non-loopback address was ever handed to node');
  await dns.close();
  await echo.close();
});

/** Answers `tapped.test` with 127.0.0.1 from an onResolve tap at `stage`. */
class AnsweringTap {
  static readonly meta = { name: 'answering-tap' };
  asked = 0;
  constructor(private readonly stage: number) {}
  apply(kernel: Kernel): void {
    kernel.hooks.onResolve.tapPromise({ name: AnsweringTap.meta.name, stage: this.stage }, async (q) => {
      if (q.type !== 'forward' || q.name !== 'tapped.test') return undefined;
      this.asked++;
      return { addresses: [{ address: '127.0.0.1', family: 4 }] };
    });
  }
}

describe('policy filters an onResolve tap’s answer (ClientDNSRejectInternalAddresses)', () => {
  for (const [label, stage] of [
    ['a tap at REWRITE, before policy’s stage', Stage.REWRITE],
    ['a tap at OBSERVE, after it', Stage.OBSERVE],
  ] as const) {
    test(`${label}: CONNECT to the name it answers with 127.0.0.1 is refused with 04; the tap did answer`, async () => {
      const tap = new AnsweringTap(stage);
      const px = await startWithPlugins([tap], { resolver: { servers: [dns.address] }, plugins: { policy: { ClientDNSRejectInternalAddresses: true } } });
      try {
        assert.equal(await once5(px.port, 1, 'tapped.test', echo.port), refusal5(4));
        assert.equal(tap.asked, 1, 'the tap answered; policy filtered its answer');
        // The literal is not a DNS answer: the same address still works when the client names it.
        const c = await open5(px.port, '127.0.0.1', echo.port);
        await echoes(c);
        c.destroy();
      } finally {
        await px.close();
      }
    });
  }

  test('policy off: the tap’s answer is used (the contrast)', async () => {
    const tap = new AnsweringTap(Stage.REWRITE);
    const px = await startWithPlugins([tap], { resolver: { servers: [dns.address] } });
    try {
      const c = await open5(px.port, 'tapped.test', echo.port, true);
      await echoes(c);
      c.destroy();
      assert.equal(tap.asked, 1);
    } finally {
      await px.close();
    }
  });
});
