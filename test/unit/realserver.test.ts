// Real-server preparation against the in-memory kernel model: end state, idempotency, and undo.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { FakeKernel } from '../../dataplane/realserver/testing/fake-netns.ts';
import { planRealServer } from '../../dataplane/realserver/diff.ts';
import {
  RealServerSpecError, formatRecord, normalizeVips, parseRecord, sysctlNeeds,
} from '../../dataplane/realserver/plan.ts';
import {
  IpipUnsupportedError, cleanupRealServer, inspectRealServer, observeRealServer, prepareRealServer, syncRealServer,
} from '../../dataplane/realserver/prepare.ts';
import type { NetnsTarget } from '../../dataplane/exec.ts';

const test = suite('realserver');
const RS: NetnsTarget = { kind: 'named', name: 'rs1' };
const RS_PATH = '/run/netns/rs1';
const VIP = '203.0.113.10';

function setup(opts: ConstructorParameters<typeof FakeKernel>[0] = {}) {
  const k = new FakeKernel(opts);
  return { k, ns: k.ns(RS_PATH), opts: { run: k.runner() } };
}

const conf = (dev: string, s: string) => `net.ipv4.conf.${dev}.${s}`;

test('DR: VIP/32 on lo with our label, lo up, arp sysctls on lo and all', async () => {
  const { ns, opts } = setup();
  const r = await prepareRealServer(opts, RS, [{ mode: 'DR', vip: VIP }]);
  assert.ok(r.changed);
  const lo = ns.links.get('lo')!;
  assert.ok(lo.up);
  assert.equal(lo.addrs.find((a) => a.address === VIP), { address: VIP, prefixLen: 32, scope: 'global', label: 'lo:lvsop' });
  assert.is(ns.sysctls.get(conf('all', 'arp_ignore')), '1');
  assert.is(ns.sysctls.get(conf('all', 'arp_announce')), '2');
  assert.is(ns.sysctls.get(conf('lo', 'arp_ignore')), '1');
  assert.is(ns.sysctls.get(conf('lo', 'arp_announce')), '2');
  assert.is(ns.sysctls.get(conf('all', 'rp_filter')), '2', 'DR leaves rp_filter alone');
  assert.equal(r.owned, [{ mode: 'DR', vip: VIP }]);
  assert.ok((await inspectRealServer(opts, RS, { mode: 'DR', vip: VIP })).prepared);
});

test('second prepare changes nothing and reports nothing changed', async () => {
  const { k, opts } = setup();
  await prepareRealServer(opts, RS, [{ mode: 'DR', vip: VIP }]);
  const writesBefore = k.calls.filter((c) => !c.includes('show') && !c.includes('-e')).length;
  const r = await prepareRealServer(opts, RS, [{ mode: 'DR', vip: VIP }]);
  assert.is(r.changed, false);
  assert.equal(r.changes, []);
  assert.is(k.calls.filter((c) => !c.includes('show') && !c.includes('-e')).length, writesBefore, 'no mutating command');
});

test('TUN: tunl0 loaded on demand, up, VIP on tunl0, rp_filter 0 on tunl0 and all', async () => {
  const { k, ns, opts } = setup({ ipip: true, ipipLoaded: false });
  assert.not.ok(ns.links.has('tunl0'));
  const r = await prepareRealServer(opts, RS, [{ mode: 'TUN', vip: VIP }]);
  assert.ok(k.ipipLoaded);
  const t = ns.links.get('tunl0')!;
  assert.ok(t.up);
  assert.ok(t.addrs.some((a) => a.address === VIP && a.label === 'tunl0:lvsop'));
  assert.is(ns.sysctls.get(conf('tunl0', 'rp_filter')), '0');
  assert.is(ns.sysctls.get(conf('all', 'rp_filter')), '0');
  assert.is(ns.sysctls.get(conf('all', 'arp_ignore')), '1');
  assert.is(ns.links.get('lo')!.addrs.length, 1, 'nothing on lo for TUN');
  assert.ok(r.changes.some((c) => c.kind === 'link' && c.op === 'ensure'));
  assert.ok((await inspectRealServer(opts, RS, { mode: 'TUN', vip: VIP })).prepared);
  assert.is((await prepareRealServer(opts, RS, [{ mode: 'TUN', vip: VIP }])).changed, false);
});

test('TUN where fallback tunnels exist only in the initial namespace: we create tunl0, and delete it on cleanup', async () => {
  const { ns, opts } = setup({ ipipLoaded: true, fbTunnelsOnlyInitNet: true });
  assert.not.ok(ns.links.has('tunl0'));
  await prepareRealServer(opts, RS, [{ mode: 'TUN', vip: VIP }]);
  assert.ok(ns.links.get('tunl0')?.up);
  assert.equal(parseRecord(ns.links.get('lo')!.alias)?.tunnels.tunl0, { up: true, created: true });
  assert.is((await prepareRealServer(opts, RS, [{ mode: 'TUN', vip: VIP }])).changed, false);
  await cleanupRealServer(opts, RS);
  assert.not.ok(ns.links.has('tunl0'), 'ours, so deleted');
  assert.is(ns.links.get('lo')!.alias, '');
});

test('TUN without ipip in the kernel: clear error', async () => {
  const { opts } = setup({ ipip: false });
  try {
    await prepareRealServer(opts, RS, [{ mode: 'TUN', vip: VIP }]);
    assert.unreachable();
  } catch (err) {
    assert.instance(err, IpipUnsupportedError);
    assert.match((err as Error).message, /^kernel has no ipip support/);
  }
});

test('cleanup removes only our VIPs and restores the sysctls we changed', async () => {
  const { ns, opts } = setup({ ipipLoaded: true });
  const lo = ns.links.get('lo')!;
  lo.up = true;
  lo.addrs.push({ address: '198.51.100.7', prefixLen: 32, label: 'lo', scope: 'global' }); // someone else's
  ns.sysctls.set(conf('all', 'arp_announce'), '2'); // already right: not ours to restore
  await prepareRealServer(opts, RS, [{ mode: 'DR', vip: VIP }, { mode: 'TUN', vip: '203.0.113.11' }]);
  const r = await cleanupRealServer(opts, RS);
  assert.ok(r.changed);
  assert.equal(lo.addrs.map((a) => a.address).sort(), ['127.0.0.1', '198.51.100.7']);
  assert.equal(ns.links.get('tunl0')!.addrs, []);
  assert.is(ns.links.get('tunl0')!.up, false, 'we brought tunl0 up, so we bring it down');
  assert.is(ns.sysctls.get(conf('all', 'arp_ignore')), '0');
  assert.is(ns.sysctls.get(conf('lo', 'arp_announce')), '0');
  assert.is(ns.sysctls.get(conf('all', 'arp_announce')), '2');
  assert.is(ns.sysctls.get(conf('all', 'rp_filter')), '2');
  assert.is(lo.alias, '', 'record cleared');
  assert.ok(lo.up, 'lo stays up');
  assert.is((await cleanupRealServer(opts, RS)).changed, false);
});

test('cleanup of one VIP keeps the others and the sysctls they need', async () => {
  const { ns, opts } = setup({ ipipLoaded: true });
  await prepareRealServer(opts, RS, [{ mode: 'DR', vip: VIP }, { mode: 'TUN', vip: VIP }]);
  await cleanupRealServer(opts, RS, [{ mode: 'TUN', vip: VIP }]);
  assert.ok(ns.links.get('lo')!.addrs.some((a) => a.address === VIP));
  assert.equal(ns.links.get('tunl0')!.addrs, []);
  assert.is(ns.sysctls.get(conf('all', 'arp_ignore')), '1');
  assert.is(ns.sysctls.get(conf('all', 'rp_filter')), '2', 'TUN-only sysctl restored');
  assert.is(ns.sysctls.get(conf('tunl0', 'rp_filter')), '2', 'restored to the value tunl0 had before');
  assert.is(ns.links.get('tunl0')!.up, false);
});

test('a sysctl changed by someone after us is not restored', async () => {
  const { ns, opts } = setup();
  await prepareRealServer(opts, RS, [{ mode: 'DR', vip: VIP }]);
  ns.sysctls.set(conf('all', 'arp_ignore'), '2'); // admin tightened it
  await cleanupRealServer(opts, RS);
  assert.is(ns.sysctls.get(conf('all', 'arp_ignore')), '2');
  assert.is(ns.sysctls.get(conf('lo', 'arp_ignore')), '0');
});

test('stricter existing arp_ignore is accepted, not lowered', async () => {
  const { ns, opts } = setup();
  ns.sysctls.set(conf('all', 'arp_ignore'), '2');
  await prepareRealServer(opts, RS, [{ mode: 'DR', vip: VIP }]);
  assert.is(ns.sysctls.get(conf('all', 'arp_ignore')), '2');
});

test('a foreign lo alias: prepared, not recordable, alias untouched, nothing restored', async () => {
  const { ns, opts } = setup();
  ns.links.get('lo')!.alias = 'owned by someone';
  const r = await prepareRealServer(opts, RS, [{ mode: 'DR', vip: VIP }]);
  assert.is(r.recordable, false);
  assert.is(ns.links.get('lo')!.alias, 'owned by someone');
  await cleanupRealServer(opts, RS);
  assert.not.ok(ns.links.get('lo')!.addrs.some((a) => a.address === VIP));
  assert.is(ns.sysctls.get(conf('all', 'arp_ignore')), '1', 'no record, so no restore');
});

test('an unlabelled VIP already on lo satisfies DR and survives cleanup', async () => {
  const { ns, opts } = setup();
  ns.links.get('lo')!.addrs.push({ address: VIP, prefixLen: 32, label: 'lo', scope: 'global' });
  const r = await prepareRealServer(opts, RS, [{ mode: 'DR', vip: VIP }]);
  assert.not.ok(r.changes.some((c) => c.kind === 'address'));
  await cleanupRealServer(opts, RS);
  assert.ok(ns.links.get('lo')!.addrs.some((a) => a.address === VIP));
});

test('sync to an exact set removes owned VIPs no longer wanted', async () => {
  const { ns, opts } = setup();
  await prepareRealServer(opts, RS, [{ mode: 'DR', vip: VIP }, { mode: 'DR', vip: '203.0.113.12' }]);
  const r = await syncRealServer(opts, RS, [{ mode: 'DR', vip: '203.0.113.12' }]);
  assert.equal(r.owned, [{ mode: 'DR', vip: '203.0.113.12' }]);
  assert.not.ok(ns.links.get('lo')!.addrs.some((a) => a.address === VIP));
});

test('namespaces are separate: host untouched when preparing a pid target', async () => {
  const { k, opts } = setup();
  await prepareRealServer(opts, { kind: 'pid', pid: 4242 }, [{ mode: 'DR', vip: VIP }]);
  assert.ok(k.ns('/proc/4242/ns/net').links.get('lo')!.addrs.some((a) => a.address === VIP));
  assert.is(k.ns('host').sysctls.get(conf('all', 'arp_ignore')), '0');
  assert.ok(k.calls.every((c) => c[0] !== 'ip' && c[0] !== 'sysctl'), 'every namespace command goes through nsenter');
});

test('inspection explains what is missing', async () => {
  const { opts } = setup();
  const r = await inspectRealServer(opts, RS, { mode: 'DR', vip: VIP });
  assert.is(r.prepared, false);
  assert.ok(r.problems.some((p) => p.includes(`${VIP} is not an address of lo`)));
  assert.ok(r.problems.some((p) => p.startsWith('net.ipv4.conf.all.arp_ignore is 0')));
});

test('bad input names the field', () => {
  assert.throws(() => normalizeVips([{ mode: 'DR', vip: '203.0.113.300' }]), (e: unknown) => e instanceof RealServerSpecError && e.field === 'vips[0].vip');
  assert.throws(() => normalizeVips([{ mode: 'NAT' as 'DR', vip: VIP }]), /vips\[0\]\.mode: must be DR or TUN/);
  assert.throws(() => normalizeVips([{ mode: 'DR', vip: '2001:db8::1', encap: 4 }]), /vips\[0\]\.encap: DR delivers the packet unchanged/);
  assert.throws(() => normalizeVips([{ mode: 'TUN', vip: VIP, encap: 6 }]), /IPv4 in IPv6\) is not supported/);
  assert.throws(() => normalizeVips([{ mode: 'TUN', vip: VIP, encap: 5 as 4 }]), /vips\[0\]\.encap: must be 4 or 6/);
});

test('planning is pure and ordered for ARP safety: sysctls before the address', async () => {
  const { opts } = setup();
  const obs = await observeRealServer(opts.run);
  const plan = planRealServer(normalizeVips([{ mode: 'DR', vip: VIP }]), obs);
  const firstAddr = plan.steps.findIndex((s) => s.kind === 'address');
  const lastSysctl = plan.steps.map((s) => s.kind).lastIndexOf('sysctl');
  assert.ok(lastSysctl >= 0 && firstAddr > lastSysctl);
});

test('record round-trips and stays short', () => {
  const all = { up: true, created: true };
  const r = { sysctls: Object.fromEntries(sysctlNeeds([{ mode: 'DR', vip: VIP }, { mode: 'TUN', vip: VIP }]).map((n) => [n.key, '2'])), tunnels: { tunl0: all, ip6tnl0: all, sit0: all } };
  const text = formatRecord(r);
  assert.equal(parseRecord(text), r);
  assert.ok(text.length < 255, `${text.length} chars fit IFALIASZ`);
  assert.is(parseRecord('something else'), undefined);
});

test.run();
