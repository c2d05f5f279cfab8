// IPv6 real-server preparation against the in-memory kernel model: DR (VIP/128 on lo, no
// sysctls), TUN (ip6tnl0 for ip6ip6, sit0 for an IPv6 VIP over an IPv4 real server), ownership by
// the IPv6 metric mark, and exact undo. What the real kernel does with them is proven in
// test/kernel/guest/realserver6.guest.ts.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { FakeKernel } from '../../dataplane/realserver/testing/fake-netns.ts';
import { OWNED_METRIC6, normalizeVips, parseRecord } from '../../dataplane/realserver/plan.ts';
import { TunnelUnsupportedError, cleanupRealServer, inspectRealServer, prepareRealServer } from '../../dataplane/realserver/prepare.ts';
import type { NetnsTarget } from '../../dataplane/exec.ts';
import { pino } from 'pino';
import { prepareCommand } from '../../dataplane/cli/commands.ts';

const test = suite('realserver IPv6');
const RS: NetnsTarget = { kind: 'named', name: 'rs1' };
const VIP6 = '2001:db8:100::10';
const VIP4 = '203.0.113.10';

function setup(opts: ConstructorParameters<typeof FakeKernel>[0] = {}) {
  const k = new FakeKernel(opts);
  const ns = k.ns('/run/netns/rs1');
  return { k, ns, opts: { run: k.runner() }, sysctlsBefore: new Map(ns.sysctls) };
}

test('DR: VIP/128 on lo carrying our metric, lo up, and no sysctl touched', async () => {
  const { ns, opts, sysctlsBefore } = setup();
  const r = await prepareRealServer(opts, RS, [{ mode: 'DR', vip: '2001:DB8:100:0::10' }]);
  assert.ok(ns.links.get('lo')!.up);
  assert.equal(ns.links.get('lo')!.addrs.find((a) => a.address === VIP6), { address: VIP6, prefixLen: 128, scope: 'global', metric: OWNED_METRIC6 });
  assert.equal(ns.sysctls, sysctlsBefore, 'IPv6 needs no ARP or rp_filter setting');
  assert.equal(r.owned, [{ mode: 'DR', vip: VIP6 }]);
  assert.equal(await inspectRealServer(opts, RS, { mode: 'DR', vip: VIP6 }), { prepared: true, problems: [] });
  assert.is((await prepareRealServer(opts, RS, [{ mode: 'DR', vip: VIP6 }])).changed, false);
});

test('TUN: ip6_tunnel loaded on demand, ip6tnl0 up with the VIP; cleanup brings it down and clears the record', async () => {
  const { k, ns, opts, sysctlsBefore } = setup();
  await prepareRealServer(opts, RS, [{ mode: 'TUN', vip: VIP6 }]);
  assert.ok(k.loaded6.has('ip6tnl'));
  const t = ns.links.get('ip6tnl0')!;
  assert.ok(t.up);
  assert.equal(t.addrs.map((a) => [a.address, a.metric]), [[VIP6, OWNED_METRIC6]]);
  assert.not.ok(ns.links.has('sit0'), 'same-family TUN needs no sit0');
  assert.equal(parseRecord(ns.links.get('lo')!.alias)?.tunnels, { ip6tnl0: { up: true, created: false } });
  assert.ok((await inspectRealServer(opts, RS, { mode: 'TUN', vip: VIP6 })).prepared);
  await cleanupRealServer(opts, RS);
  assert.not.ok(ns.links.get('ip6tnl0')!.up);
  assert.equal(ns.links.get('ip6tnl0')!.addrs, []);
  assert.is(ns.links.get('lo')!.alias, '');
  for (const [key, value] of sysctlsBefore) assert.is(ns.sysctls.get(key), value, key);
});

test('mixed: an IPv6 VIP over an IPv4 real server is decapsulated by sit0; ownership remembers encap 4', async () => {
  const { ns, opts } = setup();
  const r = await prepareRealServer(opts, RS, [{ mode: 'TUN', vip: VIP6, encap: 4 }]);
  assert.ok(ns.links.get('sit0')!.up);
  assert.ok(ns.links.get('sit0')!.addrs.some((a) => a.address === VIP6 && a.metric === OWNED_METRIC6));
  assert.not.ok(ns.links.has('ip6tnl0'));
  assert.equal(r.owned, [{ mode: 'TUN', vip: VIP6, encap: 4 }]);
  assert.is((await inspectRealServer(opts, RS, { mode: 'TUN', vip: VIP6 })).prepared, false, 'ip6ip6 would not be accepted');
  await cleanupRealServer(opts, RS, [{ mode: 'TUN', vip: VIP6, encap: 4 }]);
  assert.not.ok(ns.links.get('sit0')!.up);
  assert.equal(ns.links.get('sit0')!.addrs, []);
});

test('dual stack in one namespace: IPv4 needs stay while only the IPv6 VIP goes', async () => {
  const { ns, opts, sysctlsBefore } = setup({ ipipLoaded: true });
  await prepareRealServer(opts, RS, [{ mode: 'DR', vip: VIP4 }, { mode: 'DR', vip: VIP6 }, { mode: 'TUN', vip: VIP4 }, { mode: 'TUN', vip: VIP6 }]);
  assert.is(ns.sysctls.get('net.ipv4.conf.all.arp_ignore'), '1');
  await cleanupRealServer(opts, RS, [{ mode: 'DR', vip: VIP6 }, { mode: 'TUN', vip: VIP6 }]);
  const r = await prepareRealServer(opts, RS, []);
  assert.equal(r.owned, [{ mode: 'DR', vip: VIP4 }, { mode: 'TUN', vip: VIP4 }]);
  assert.is(ns.sysctls.get('net.ipv4.conf.all.arp_ignore'), '1', 'the IPv4 VIP still needs it');
  assert.not.ok(ns.links.get('ip6tnl0')!.up);
  assert.ok(ns.links.get('tunl0')!.up);
  await cleanupRealServer(opts, RS);
  for (const [key, value] of sysctlsBefore) assert.is(ns.sysctls.get(key), value, key);
  assert.equal(ns.links.get('lo')!.addrs.map((a) => a.address), ['127.0.0.1']);
});

test('an IPv6 address someone else put on lo (no mark) satisfies the VIP and is never removed', async () => {
  const { ns, opts } = setup();
  ns.links.get('lo')!.up = true;
  ns.links.get('lo')!.addrs.push({ address: VIP6, prefixLen: 128, scope: 'global' });
  const r = await prepareRealServer(opts, RS, [{ mode: 'DR', vip: VIP6 }]);
  assert.is(r.changed, false);
  assert.equal(r.owned, []);
  await cleanupRealServer(opts, RS);
  assert.ok(ns.links.get('lo')!.addrs.some((a) => a.address === VIP6));
});

test('fallback tunnels only in the initial namespace: we create ip6tnl0 and delete it on cleanup', async () => {
  const { ns, opts } = setup({ fbTunnelsOnlyInitNet: true });
  await prepareRealServer(opts, RS, [{ mode: 'TUN', vip: VIP6 }]);
  assert.equal(parseRecord(ns.links.get('lo')!.alias)?.tunnels.ip6tnl0, { up: true, created: true });
  await cleanupRealServer(opts, RS);
  assert.not.ok(ns.links.has('ip6tnl0'));
});

test('a kernel without ip6_tunnel: a clear error naming it', async () => {
  const { opts } = setup({ tunnels6: false });
  try {
    await prepareRealServer(opts, RS, [{ mode: 'TUN', vip: VIP6 }]);
    assert.unreachable();
  } catch (err) {
    assert.instance(err, TunnelUnsupportedError);
    assert.match((err as Error).message, /^kernel has no ip6tnl support/);
  }
});

test('lvs-agent prepare: IPv6 VIPs, --encap 4 picks sit0 and is named in the summary; a bad --encap is a usage error', async () => {
  const { ns, opts } = setup();
  const lines: string[] = [];
  const log = console.log;
  console.log = (line: string) => { lines.push(line); };
  try {
    const ctx = (encap: string) => ({ values: { forwarding: 'TUN', vip: ['2001:db8:100:0::10'], encap, netns: 'rs1' }, log: pino({ level: 'silent' }), run: opts.run });
    assert.is(await prepareCommand(ctx('4')), 0);
    await prepareCommand(ctx('5')).then(() => assert.unreachable(), (err: Error) => assert.match(err.message, /--encap: must be 4 or 6/));
  } finally {
    console.log = log;
  }
  assert.ok(ns.links.get('sit0')!.up);
  assert.match(lines[0]!, /^netns:rs1: \d+ change\(s\); prepared for 2001:db8:100::10 \(TUN over IPv4\)$/);
});

test('IPv6 VIPs sort after IPv4 ones, numerically', () => {
  const sorted = normalizeVips(['2001:db8::a', '2001:db8::9', '198.51.100.2', '2001:db8::1:0'].map((vip) => ({ mode: 'DR' as const, vip })));
  assert.equal(sorted.map((v) => v.vip), ['198.51.100.2', '2001:db8::9', '2001:db8::a', '2001:db8::1:0']);
});

test.run();
