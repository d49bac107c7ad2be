/**
 * The open-proxy check with a `policy` client ACL (issue #10 item 10): on a non-loopback listener,
 * client rules pass only when every address they admit is loopback or private; rules that merely
 * can refuse someone are refused in one line naming `plugins.policy.clients` (exit 78), through
 * the spawned CLI. The listeners that do start bind 0.0.0.0, so those cases run only inside the
 * test network namespace (only `lo`); CI requires it.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { admittedPublicAddress, parsePolicy } from '../../../plugins/policy/exit-policy.js';
import { runCli, startCli } from '../../helpers/cli.js';
import { ALL_OFF } from '../../helpers/proxy.js';

const inNetns = process.env.SOCKSMITH_TEST_NETNS === '1';
const needNetns = (t: { skip(msg: string): void }): boolean => {
  if (inNetns) return true;
  if (process.env.CI) assert.fail('this test binds 0.0.0.0 and needs the private network namespace (scripts/run-tests.mjs)');
  t.skip('binds 0.0.0.0: only inside the test network namespace');
  return false;
};

let dir: string;
before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'socksmith-open-acl-'));
});
after(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

let n = 0;
function configFile(clients: readonly string[] | undefined, extra: object = {}): string {
  const file = path.join(dir, `c${n++}.json`);
  const plugins = clients === undefined ? ALL_OFF : { ...ALL_OFF, policy: { clients } };
  fs.writeFileSync(file, JSON.stringify({ listen: [{ host: '0.0.0.0', port: 0 }], plugins, ...extra }));
  return file;
}

const rules = (lines: string[]) => {
  const p = parsePolicy(lines);
  assert.ok(p.ok);
  return p.rules;
};

/** Rules that admit someone outside loopback and private networks, and the lowest such address. */
const OPEN: ReadonlyArray<[string[], string]> = [
  [['reject 192.0.2.99'], '1.0.0.0'],
  [['accept 0.0.0.0/0', 'reject *'], '1.0.0.0'],
  [['accept *4', 'reject *'], '1.0.0.0'],
  [['reject *4'], '[64:ff9b:1::]'],
  [['accept 10.0.0.0/8', 'accept 8.8.8.0/24', 'reject *'], '8.8.8.0'],
  [['reject private', 'accept *'], '1.0.0.0'],
  [['accept6 [::]/0', 'reject *'], '[64:ff9b:1::]'],
  [['accept 10.0.0.0/8'], '1.0.0.0'],
  // NAT64 local-use (RFC 8215): inside [::]/8, but its clients may be anyone (issue #10 review).
  [['accept [::]/8', 'reject *'], '[64:ff9b:1::]'],
  [['accept private', 'accept [64:ff9b:1::]/48', 'reject *'], '[64:ff9b:1::]'],
];

/** Rules that admit only loopback and private clients. */
const FINE: ReadonlyArray<string[]> = [
  ['accept 10.0.0.0/8', 'reject *'],
  ['accept private', 'reject *'],
  ['accept 127.0.0.0/8', 'accept 192.168.1.0/24', 'accept [fc00::]/7', 'reject *'],
  ['reject 10.0.0.5', 'accept 10.0.0.0/8', 'reject *4', 'reject *6'],
  ['reject *'],
  ['accept [64:ff9b::]/96', 'reject *'], // never matches: those clients are matched as IPv4
];

describe('which client rules admit the public', () => {
  test('admittedPublicAddress: the lowest public address the rules admit, or undefined', () => {
    for (const [lines, example] of OPEN) assert.equal(admittedPublicAddress(rules(lines)), example, lines.join(', '));
    for (const lines of FINE) assert.equal(admittedPublicAddress(rules(lines)), undefined, lines.join(', '));
  });
});

describe('CLI on 0.0.0.0 with a policy client ACL', () => {
  for (const [lines, example] of OPEN.slice(0, 3)) {
    test(`${JSON.stringify(lines)}: exit 78, one line naming plugins.policy.clients`, async () => {
      const r = await runCli(['--config', configFile(lines)]);
      assert.equal(r.code, 78, r.stderr);
      assert.equal(r.stdout, '');
      assert.equal(
        r.stderr,
        `socksmith: config error: plugins.policy.clients: admits clients outside loopback and private networks (e.g. ${example}), and listen.0.host 0.0.0.0 is not a loopback address: this would be an open proxy. Admit only loopback and private networks (end the list with "reject *"), enable the auth plugin, or set allowOpenProxy: true if that is really intended\n`,
      );
    });
  }

  test('without any client ACL the listener is still named', async () => {
    const r = await runCli(['--config', configFile(undefined)]);
    assert.equal(r.code, 78);
    assert.match(r.stderr, /^socksmith: config error: listen\.0\.host: 0\.0\.0\.0 is not a loopback address, and no plugin restricts who may connect/);
    assert.equal(r.stderr.trim().split('\n').length, 1);
  });

  for (const lines of FINE.slice(0, 3)) {
    test(`${JSON.stringify(lines)}: starts`, async (t) => {
      if (!needNetns(t)) return;
      const cli = await startCli(['--config', configFile(lines)]);
      try {
        assert.match(cli.listening[0]!, /^0\.0\.0\.0:\d+$/);
      } finally {
        assert.equal(await cli.stop(), 0);
      }
    });
  }

  test('allowOpenProxy: true lets open rules start', async (t) => {
    if (!needNetns(t)) return;
    const cli = await startCli(['--config', configFile(['accept 0.0.0.0/0', 'reject *'], { allowOpenProxy: true })]);
    try {
      assert.match(cli.listening[0]!, /^0\.0\.0\.0:\d+$/);
    } finally {
      assert.equal(await cli.stop(), 0);
    }
  });
});
