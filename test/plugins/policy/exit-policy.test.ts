/**
 * `policy` plugin, pure part: Tor's address-policy syntax (tor.1 "ExitPolicy", policies.c) parsed
 * and matched without sockets.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PRIVATE_NETWORKS, canReject, checkPolicy, isPrivateAddress, parseIp, parsePolicy, parseRule, type PolicyRule } from '../../../plugins/policy/exit-policy.js';

function rules(...lines: string[]): readonly PolicyRule[] {
  const r = parsePolicy(lines);
  if (!r.ok) throw new Error(`rule ${r.index}: ${r.reason}`);
  return r.rules;
}

function reason(line: string): string {
  const r = parseRule(line);
  assert.equal(r.ok, false, `${line} should not parse`);
  return (r as { reason: string }).reason;
}

describe('parseRule', () => {
  test('address forms: *, *4, *6, private, IPv4, IPv4/bits, IPv4/netmask, [IPv6], [IPv6]/bits', () => {
    const cases: Array<[string, { family: 0 | 4 | 6; networks: string[] | undefined }]> = [
      ['accept *', { family: 0, networks: undefined }],
      ['reject *4', { family: 4, networks: undefined }],
      ['reject *6', { family: 6, networks: undefined }],
      ['reject 10.1.2.3', { family: 4, networks: ['10.1.2.3/32'] }],
      ['reject 10.0.0.0/8', { family: 4, networks: ['10.0.0.0/8'] }],
      ['reject 192.168.0.0/255.255.0.0', { family: 4, networks: ['192.168.0.0/16'] }],
      ['reject [::1]', { family: 6, networks: ['::1/128'] }],
      ['reject [2001:DB8::]/32', { family: 6, networks: ['2001:db8::/32'] }],
    ];
    for (const [line, want] of cases) {
      const r = parseRule(line);
      assert.ok(r.ok, line);
      assert.equal(r.rule.family, want.family, line);
      assert.deepEqual(r.rule.networks?.map(([ip, bits]) => `${ip.toString()}/${bits}`), want.networks, line);
    }
  });

  test('private expands to Tor\'s private_nets plus 100.64.0.0/10', () => {
    const r = parseRule('reject private:*');
    assert.ok(r.ok);
    assert.deepEqual(
      r.rule.networks?.map(([ip, bits]) => `${ip.toString()}/${bits}`),
      PRIVATE_NETWORKS.map((n) => n),
    );
    assert.deepEqual([...PRIVATE_NETWORKS], [
      '0.0.0.0/8', '169.254.0.0/16', '127.0.0.0/8', '192.168.0.0/16', '10.0.0.0/8', '172.16.0.0/12', '100.64.0.0/10',
      '::/8', 'fc00::/7', 'fe80::/10', 'fec0::/10', 'ff00::/8', '::/127',
    ]);
  });

  test('ports: none and * are every port; N; N-M', () => {
    const ports = (line: string) => {
      const r = parseRule(line);
      assert.ok(r.ok, line);
      return [r.rule.portMin, r.rule.portMax];
    };
    assert.deepEqual(ports('accept 1.2.3.4'), [0, 65535]);
    assert.deepEqual(ports('accept 1.2.3.4:*'), [0, 65535]);
    assert.deepEqual(ports('accept *:443'), [443, 443]);
    assert.deepEqual(ports('accept [::1]:80-88'), [80, 88]);
    assert.deepEqual(ports('accept [fc00::]/7:1-1023'), [1, 1023]);
    assert.deepEqual(ports('accept private:22'), [22, 22]);
  });

  test('keywords are case-insensitive, whitespace around and between is ignored, the text is kept', () => {
    const r = parseRule('  REJECT \t Private:25  ');
    assert.ok(r.ok);
    assert.equal(r.rule.action, 'reject');
    assert.equal(r.rule.text, 'REJECT \t Private:25');
  });

  test('accept6/reject6 are IPv6-only; with an IPv4 address they are an error', () => {
    const star = parseRule('reject6 *:*');
    assert.ok(star.ok);
    assert.equal(star.rule.family, 6);
    const priv = parseRule('accept6 private');
    assert.ok(priv.ok);
    assert.ok(priv.rule.networks!.every(([ip]) => ip.kind() === 'ipv6'));
    assert.match(reason('accept6 10.0.0.1'), /^accept6 takes IPv6 addresses; use accept for "10\.0\.0\.1"$/);
  });

  test('errors are one line and say what is wrong', () => {
    const cases: Array<[string, RegExp]> = [
      ['', /^expected "accept\|reject ADDR\[\/MASK\]\[:PORT\]"$/],
      ['accept', /^expected "accept\|reject/],
      ['allow 1.2.3.4', /^"allow" is not accept, reject, accept6 or reject6$/],
      ['accept 1.2.3.4 extra', /^expected "accept\|reject/],
      ['accept *:80,reject *:*', /^one rule per entry/],
      ['accept 1.2.3.4/33', /^mask \/33 is out of range for IPv4 \(0-32\)$/],
      ['accept 1.2.3.4/255.0.255.0', /netmask \/255\.0\.255\.0 is not a prefix/],
      ['accept 1.2.3.4/x', /^bad mask "\/x"/],
      ['accept 1.2.3.4/', /empty mask/],
      ['accept [::1]/129', /^mask \/129 is out of range for IPv6 \(0-128\)$/],
      ['accept [::1]/ffff::', /an IPv6 mask is a bit count/],
      ['accept ::1', /IPv6 addresses go in brackets/],
      ['accept [::1', /missing "\]"/],
      ['accept [1.2.3.4]', /^bad IPv6 address "\[1\.2\.3\.4\]"$/],
      ['accept [fe80::1%eth0]', /^bad IPv6 address/],
      ['accept 1.2.3', /^bad address "1\.2\.3"/],
      ['accept example.com:80', /^bad address "example\.com"/],
      ['accept *:65536', /ports go up to 65535/],
      ['accept *:90-80', /90 is above 80/],
      ['accept *:http', /^bad port "http"/],
      ['accept *:', /^bad port ""/],
      ['accept */8', /takes no mask/],
    ];
    for (const [line, re] of cases) {
      const r = reason(line);
      assert.match(r, re, `${JSON.stringify(line)} → ${r}`);
      assert.ok(!r.includes('\n'));
    }
  });

  test('parsePolicy reports the index of the first bad rule', () => {
    const r = parsePolicy(['accept *:80', 'reject private:*', 'reject 1.2.3.4/40', 'nonsense']);
    assert.deepEqual(r, { ok: false, index: 2, reason: 'mask /40 is out of range for IPv4 (0-32)' });
  });
});

describe('checkPolicy', () => {
  test('NAT64 destinations are not translated: [::]/8 keeps all of 64:ff9b::/96 and 64:ff9b:1::/48 inside private (issue #10 review)', () => {
    const p = rules('reject private:*', 'accept *:*');
    for (const dest of ['64:ff9b::7f00:1', '64:ff9b::127.0.0.1', '64:ff9b::808:808', '64:ff9b:1::a00:1']) {
      assert.equal(checkPolicy(p, dest, 80).rule?.text, 'reject private:*', dest);
      assert.equal(isPrivateAddress(dest), true, dest);
    }
    assert.equal(checkPolicy(rules('reject 127.0.0.0/8:*'), '64:ff9b::7f00:1', 80).action, 'accept', 'an IPv4 rule does not see a NAT64 destination');
  });

  test('first match wins; an address no rule matches is accepted (Tor)', () => {
    const p = rules('accept 10.1.0.0/16:*', 'reject 10.0.0.0/8:*', 'reject *:25');
    assert.equal(checkPolicy(p, '10.1.2.3', 80).action, 'accept');
    assert.equal(checkPolicy(p, '10.2.0.1', 80).action, 'reject');
    assert.equal(checkPolicy(p, '10.2.0.1', 80).rule?.text, 'reject 10.0.0.0/8:*');
    assert.equal(checkPolicy(p, '192.0.2.1', 25).action, 'reject');
    const none = checkPolicy(p, '192.0.2.1', 443);
    assert.deepEqual(none, { action: 'accept', rule: undefined });
    assert.equal(checkPolicy([], '127.0.0.1', 80).action, 'accept', 'no rules: everything is allowed');
  });

  test('a rule matches only inside its port range', () => {
    const p = rules('accept *:80-81', 'reject *:*');
    assert.equal(checkPolicy(p, '192.0.2.1', 79).action, 'reject');
    assert.equal(checkPolicy(p, '192.0.2.1', 80).action, 'accept');
    assert.equal(checkPolicy(p, '192.0.2.1', 81).action, 'accept');
    assert.equal(checkPolicy(p, '192.0.2.1', 82).action, 'reject');
  });

  test('port undefined ignores port specifiers (client ACL, like SocksPolicy)', () => {
    const p = rules('reject 127.0.0.2:9999');
    assert.equal(checkPolicy(p, '127.0.0.2', undefined).action, 'reject');
    assert.equal(checkPolicy(p, '127.0.0.2', 80).action, 'accept');
  });

  test('*4 and *6 match one family; * matches both', () => {
    const v4 = rules('reject *4');
    assert.equal(checkPolicy(v4, '192.0.2.1', 1).action, 'reject');
    assert.equal(checkPolicy(v4, '2001:db8::1', 1).action, 'accept');
    const v6 = rules('reject *6');
    assert.equal(checkPolicy(v6, '192.0.2.1', 1).action, 'accept');
    assert.equal(checkPolicy(v6, '2001:db8::1', 1).action, 'reject');
    const all = rules('reject *');
    assert.equal(checkPolicy(all, '192.0.2.1', 1).action, 'reject');
    assert.equal(checkPolicy(all, '2001:db8::1', 1).action, 'reject');
  });

  test('an IPv4 rule never matches an IPv6 address, and the reverse', () => {
    const p = rules('reject 0.0.0.0/0', 'accept *');
    assert.equal(checkPolicy(p, '::1', 1).action, 'accept');
    const q = rules('reject [::]/0', 'accept *');
    assert.equal(checkPolicy(q, '127.0.0.1', 1).action, 'accept');
  });

  test('IPv4-mapped IPv6 addresses are matched as IPv4 (no way around an IPv4 rule)', () => {
    const p = rules('reject 10.0.0.0/8:*', 'accept *:*');
    assert.equal(checkPolicy(p, '::ffff:10.0.0.5', 80).action, 'reject');
    assert.equal(checkPolicy(p, '[::ffff:a00:5]', 80).action, 'reject');
    assert.equal(checkPolicy(rules('reject *4'), '::ffff:192.0.2.1', 80).action, 'reject');
  });

  test('reject private:* covers loopback, RFC 1918, link-local, CGNAT, 0/8, ULA, IPv6 link-local and multicast; not public addresses', () => {
    const p = rules('reject private:*', 'accept *:*');
    for (const a of ['127.0.0.1', '127.255.0.9', '10.0.0.5', '172.16.0.1', '172.31.255.255', '192.168.1.1', '169.254.169.254', '100.64.0.1', '100.127.255.255', '0.0.0.0', '0.1.2.3', '::1', '::', 'fe80::1', 'fc00::1', 'fd12:3456::1', 'fec0::1', 'ff02::1', '::ffff:127.0.0.1', '::ffff:192.168.0.1']) {
      assert.equal(checkPolicy(p, a, 443).action, 'reject', a);
      assert.equal(isPrivateAddress(a), true, a);
    }
    for (const a of ['192.0.2.1', '8.8.8.8', '172.32.0.1', '100.128.0.1', '11.0.0.1', '2001:db8::1', '2606:4700::1']) {
      assert.equal(checkPolicy(p, a, 443).action, 'accept', a);
      assert.equal(isPrivateAddress(a), false, a);
    }
  });

  test('a host rule without a mask matches that host only', () => {
    const p = rules('reject 192.0.2.7');
    assert.equal(checkPolicy(p, '192.0.2.7', 1).action, 'reject');
    assert.equal(checkPolicy(p, '192.0.2.8', 1).action, 'accept');
  });

  test('something that is not an IP literal cannot be checked and is rejected', () => {
    assert.equal(checkPolicy(rules('accept *'), 'example.com', 80).action, 'reject');
  });
});

describe('helpers', () => {
  test('parseIp: IPv4, IPv6 with or without brackets, IPv4-mapped unmapped; names are undefined', () => {
    assert.equal(parseIp('127.0.0.1')?.toString(), '127.0.0.1');
    assert.equal(parseIp('[::1]')?.toString(), '::1');
    assert.equal(parseIp('::ffff:10.0.0.5')?.toString(), '10.0.0.5');
    assert.equal(parseIp('::ffff:10.0.0.5')?.kind(), 'ipv4');
    for (const n of ['example.com', '127.1', '10.0.0.5.', '2130706433', 'fe80::1%lo', '']) assert.equal(parseIp(n), undefined, n);
  });

  test('canReject: accept rules alone reject nobody; a reject after accept-all of both families is dead', () => {
    assert.equal(canReject(rules()), false);
    assert.equal(canReject(rules('accept 127.0.0.1')), false);
    assert.equal(canReject(rules('accept 127.0.0.1', 'reject *')), true);
    assert.equal(canReject(rules('reject 10.0.0.0/8')), true);
    assert.equal(canReject(rules('accept *', 'reject *')), false);
    assert.equal(canReject(rules('accept *4', 'reject *4')), false);
    assert.equal(canReject(rules('accept *4', 'reject *')), true, 'IPv6 clients are still refused');
    assert.equal(canReject(rules('accept 0.0.0.0/0', 'accept [::]/0', 'reject *')), false);
    assert.equal(canReject(rules('accept *6', 'reject 10.0.0.0/8')), true);
  });
});
