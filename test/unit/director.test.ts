// Director setup against the in-memory kernel model: end state, read-back report, idempotency.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { FakeKernel } from '../../dataplane/realserver/testing/fake-netns.ts';
import {
  DirectorSpecError, connReuseMode, directorSpecFromPlan, directorSysctls, nftTables, nftTransaction, normalizeSpec, sameRuleset,
  type DirectorSpec,
} from '../../dataplane/director/plan.ts';
import { observeDirector, planDirector, syncDirector, teardownDirector } from '../../dataplane/director/setup.ts';
import type { Plan, PlanService } from '../../api/plan.ts';
import { inNetns } from '../../dataplane/exec.ts';

const test = suite('director');
const DIR = { kind: 'named', name: 'director' } as const;
const PATH = '/run/netns/director';
const VIP = '203.0.113.10';

function setup(opts: ConstructorParameters<typeof FakeKernel>[0] = {}) {
  const k = new FakeKernel(opts);
  return { k, ns: k.ns(PATH), opts: { run: k.runner(), target: DIR } };
}

const spec = (over: Partial<DirectorSpec> = {}): DirectorSpec => ({
  vips: [{ address: VIP, announce: false }], snat: [], natFamilies: [], kernelRelease: '6.1.0-56-amd64', ...over,
});

test('VIPs land on lvs0 (dummy, up) as /32 and /128', async () => {
  const { ns, opts } = setup();
  const r = await syncDirector(opts, spec({ vips: [{ address: VIP, announce: false }, { address: '2001:DB8::a', announce: false }] }));
  const dev = ns.links.get('lvs0')!;
  assert.is(dev.kind, 'dummy');
  assert.ok(dev.up);
  assert.equal(dev.addrs.map((a) => `${a.address}/${a.prefixLen}`).sort(), ['2001:db8::a/128', `${VIP}/32`]);
  assert.equal(r.vips, [VIP, '2001:db8::a']);
  assert.ok(r.changed);
});

test('IPVS sysctls set and read back; report says what changed from what', async () => {
  const { ns, opts } = setup();
  const r = await syncDirector(opts, spec());
  assert.is(ns.sysctls.get('net.ipv4.vs.expire_nodest_conn'), '1');
  assert.is(ns.sysctls.get('net.ipv4.vs.expire_quiescent_template'), '1');
  assert.is(ns.sysctls.get('net.ipv4.vs.conn_reuse_mode'), '1');
  assert.is(ns.sysctls.get('net.ipv4.vs.conntrack'), '0', 'no SNAT, conntrack untouched');
  assert.is(ns.sysctls.get('net.ipv4.ip_forward'), '0', 'no NAT service, forwarding untouched');
  assert.is(ns.sysctls.get('net.ipv4.conf.all.arp_announce'), '2');
  const nodest = r.sysctls.find((s) => s.key === 'net.ipv4.vs.expire_nodest_conn')!;
  assert.equal([nodest.value, nodest.previous], ['1', '0']);
  assert.is(r.sysctls.find((s) => s.key === 'net.ipv4.vs.conn_reuse_mode')!.previous, undefined, 'already 1');
});

test('connection sync: its sysctls only where it runs; the kernel\'s tab-separated sync_threshold counts as equal', async () => {
  const { ns, opts } = setup();
  const keys = ['net.ipv4.vs.sync_threshold', 'net.ipv4.vs.sync_refresh_period', 'net.ipv4.vs.sync_version'];
  await syncDirector(opts, spec());
  assert.equal(keys.map((k) => ns.sysctls.get(k)), ['3\t50', '0', '1'], 'the kernel\'s defaults without connection sync');
  const r = await syncDirector(opts, spec({ connectionSync: true }));
  assert.equal(keys.map((k) => ns.sysctls.get(k)), ['3 0', '10', '1']);
  assert.equal(r.sysctls.filter((s) => s.previous !== undefined).map((s) => s.key).sort(), ['net.ipv4.vs.sync_refresh_period', 'net.ipv4.vs.sync_threshold']);
  ns.sysctls.set('net.ipv4.vs.sync_threshold', '3\t0'); // as the kernel prints it back
  const again = await syncDirector(opts, spec({ connectionSync: true }));
  assert.not.ok(again.changed, 'nothing to do');
});

test('conn_reuse_mode by kernel version (kube-proxy rule: 0 below 5.9)', async () => {
  assert.is(connReuseMode('4.19.0-20-amd64'), '0');
  assert.is(connReuseMode('5.8.18'), '0');
  assert.is(connReuseMode('5.9.0'), '1');
  assert.is(connReuseMode('5.10.0-30-amd64'), '1');
  assert.is(connReuseMode('6.1.0-56-amd64'), '1');
  const { ns, opts } = setup();
  await syncDirector(opts, spec({ kernelRelease: '5.4.0-150-generic' }));
  assert.is(ns.sysctls.get('net.ipv4.vs.conn_reuse_mode'), '0');
});

test('SNAT: vs.conntrack=1, ip_forward=1, one masquerade rule per NAT service in our inet table', async () => {
  const { ns, opts } = setup();
  const r = await syncDirector(opts, spec({
    snat: [{ family: 4, protocol: 'UDP', vip: VIP, port: 53 }, { family: 4, protocol: 'TCP', vip: VIP, port: 80 }],
    natFamilies: [4],
  }));
  assert.is(ns.sysctls.get('net.ipv4.vs.conntrack'), '1');
  assert.is(ns.sysctls.get('net.ipv4.ip_forward'), '1');
  const inet = ns.nft.get('inet lvs_operator')!;
  assert.match(inet, /type nat hook postrouting priority srcnat/);
  const rules = inet.split('\n').filter((l) => l.includes('masquerade')).map((l) => l.trim());
  assert.equal(rules, [
    `meta nfproto ipv4 meta l4proto tcp ct original ip daddr ${VIP} ct original proto-dst 80 masquerade`,
    `meta nfproto ipv4 meta l4proto udp ct original ip daddr ${VIP} ct original proto-dst 53 masquerade`,
  ]);
  assert.equal(r.nftTables, ['inet lvs_operator', 'arp lvs_operator']);
});

test('ARP: non-announced IPv4 VIPs are dropped at arp input; announced ones are not', async () => {
  const { ns, opts } = setup();
  await syncDirector(opts, spec({ vips: [{ address: VIP, announce: false }, { address: '203.0.113.11', announce: true }, { address: '2001:db8::1', announce: false }] }));
  const arp = ns.nft.get('arp lvs_operator')!;
  assert.match(arp, new RegExp(`arp operation request arp daddr ip ${VIP.replace(/\./g, '\\.')} drop`));
  assert.not.match(arp, /203\.0\.113\.11/);
  assert.not.match(arp, /2001/);
});

test('NDP: solicitations for non-announced IPv6 VIPs are dropped at ip6 input (raw target match); announced ones are not', async () => {
  const { ns, opts } = setup();
  const vips = [{ address: VIP, announce: false }, { address: '2001:db8::1', announce: false }, { address: '2001:db8:0:1::a', announce: true }];
  const r = await syncDirector(opts, spec({ vips }));
  const ip6 = ns.nft.get('ip6 lvs_operator')!;
  assert.equal(ip6.split('\n').filter((l) => l.includes('drop')).map((l) => l.trim()), [
    'icmpv6 type nd-neighbor-solicit @th,64,128 0x20010db8000000000000000000000001 drop',
  ]);
  assert.equal(r.nftTables, ['arp lvs_operator', 'ip6 lvs_operator']);
  assert.not.match(ns.nft.get('arp lvs_operator')!, /2001/);
  // A removed VIP stays silenced until its address is gone; then the table goes with the last one.
  const gone = await syncDirector(opts, spec({ vips: [{ address: VIP, announce: false }] }));
  assert.ok(gone.steps.some((s) => s.kind === 'address' && s.op === 'remove'));
  assert.not.ok(ns.nft.has('ip6 lvs_operator'));
  // nft >= 1.1 may print the same match as `icmpv6 taddr`: no rewrite for that.
  assert.ok(sameRuleset(ip6, ip6.replace('@th,64,128 0x20010db8000000000000000000000001', 'icmpv6 taddr 2001:db8::1')));
});

test('second sync changes nothing; removal drops addresses, rules and the ARP entry', async () => {
  const { k, ns, opts } = setup();
  const full = spec({ vips: [{ address: VIP, announce: false }, { address: '203.0.113.11', announce: false }], snat: [{ family: 4, protocol: 'TCP', vip: '203.0.113.11', port: 80 }], natFamilies: [4] });
  await syncDirector(opts, full);
  const n = k.calls.length;
  const again = await syncDirector(opts, full);
  assert.is(again.changed, false);
  assert.equal(again.steps, []);
  assert.ok(k.calls.slice(n).every((c) => c.includes('show') || c.includes('-e') || c.includes('list')), 'only reads');
  const r = await syncDirector(opts, spec());
  assert.equal(r.vips, [VIP]);
  assert.equal(ns.links.get('lvs0')!.addrs.map((a) => a.address), [VIP]);
  assert.not.ok(ns.nft.has('inet lvs_operator'));
  assert.not.match(ns.nft.get('arp lvs_operator')!, /203\.0\.113\.11/);
});

test('outside edits are undone: a stray address on lvs0, a flipped sysctl, a deleted table', async () => {
  const { ns, opts } = setup();
  await syncDirector(opts, spec({ snat: [{ family: 4, protocol: 'TCP', vip: VIP, port: 80 }], natFamilies: [4] }));
  ns.links.get('lvs0')!.addrs.push({ address: '192.0.2.99', prefixLen: 24, scope: 'global', label: 'lvs0' });
  ns.sysctls.set('net.ipv4.vs.expire_nodest_conn', '0');
  ns.nft.delete('inet lvs_operator');
  const r = await syncDirector(opts, spec({ snat: [{ family: 4, protocol: 'TCP', vip: VIP, port: 80 }], natFamilies: [4] }));
  assert.equal(r.vips, [VIP]);
  assert.is(ns.sysctls.get('net.ipv4.vs.expire_nodest_conn'), '1');
  assert.ok(ns.nft.has('inet lvs_operator'));
});

test('keepSnat: a held service keeps the SNAT rule it has, and gets none it lacks', async () => {
  const { ns, opts } = setup();
  const other = '203.0.113.11';
  const vips = [{ address: VIP, announce: false }, { address: other, announce: false }];
  await syncDirector(opts, spec({ vips, snat: [{ family: 4, protocol: 'TCP', vip: VIP, port: 80 }], natFamilies: [4] }));
  const keep = [{ family: 4 as const, protocol: 'TCP' as const, vip: VIP, port: 80 }, { family: 4 as const, protocol: 'TCP' as const, vip: other, port: 8080 }];
  await syncDirector(opts, spec({ vips, keepSnat: keep }));
  const inet = ns.nft.get('inet lvs_operator') ?? '';
  assert.match(inet, /daddr 203\.0\.113\.10 ct original proto-dst 80 masquerade/, 'present: kept');
  assert.not.match(inet, /203\.0\.113\.11/, 'absent: not invented');
  await syncDirector(opts, spec({ vips }));
  assert.not.ok(ns.nft.has('inet lvs_operator'), 'no longer held: removed');
});

test('ownership survives a restart: the device is the record', async () => {
  const { k, opts } = setup();
  await syncDirector(opts, spec({ vips: [{ address: VIP, announce: false }, { address: '203.0.113.11', announce: false }] }));
  const obs = await observeDirector(inNetns(k.runner(), DIR));
  const steps = planDirector(normalizeSpec(spec()), obs);
  assert.equal(steps.filter((s) => s.kind === 'address'), [{ kind: 'address', address: '203.0.113.11/32', op: 'remove' }]);
  // The ARP drop rule for the VIP being removed stays until the address is gone.
  assert.not.ok(steps.some((s) => s.kind === 'nft' && !s.tables.arp.includes('203.0.113.11')), 'still silenced while being removed');
});

test('without IPVS loaded: clear error', async () => {
  const { opts } = setup({ ipvs: false });
  try { await syncDirector(opts, spec()); assert.unreachable(); } catch (err) {
    assert.match((err as Error).message, /net\.ipv4\.vs\.\w+ does not exist .*ip_vs module is not loaded/);
  }
});

test('teardown removes device and tables, leaves sysctls', async () => {
  const { ns, opts } = setup();
  await syncDirector(opts, spec({ snat: [{ family: 4, protocol: 'TCP', vip: VIP, port: 80 }], natFamilies: [4] }));
  const r = await teardownDirector(opts);
  assert.not.ok(ns.links.has('lvs0'));
  assert.equal([...ns.nft.keys()], []);
  assert.is(ns.sysctls.get('net.ipv4.vs.conntrack'), '1');
  // The device (its VIP with it) before the tables: the VIP is never answered while still local.
  assert.equal(r.steps.map((x) => x.kind), ['link', 'nft']);
});

test('teardown from an observation: one process per kind of step, no read-back; the recorded sysctls come back', async () => {
  const { k, ns, opts } = setup();
  const original = ns.sysctls.get('net.ipv4.vs.expire_nodest_conn');
  await syncDirector(opts, spec({ natFamilies: [4] }));
  assert.is(ns.sysctls.get('net.ipv4.vs.expire_nodest_conn'), '1');
  const obs = await observeDirector(inNetns(opts.run, DIR));
  const before = k.calls.length;
  // What the agent's release does at its stop, inside the kubelet's grace period (each process
  // costs about a second under emulation): lvs0 in one `ip -batch`, the tables in one transaction,
  // the sysctls in one write.
  const r = await teardownDirector(opts, { 'net.ipv4.vs.expire_nodest_conn': original!, 'net.ipv4.vs.expire_quiescent_template': '0' }, obs);
  assert.equal(k.calls.slice(before).map((c) => c.slice(c.indexOf('--') + 1, c.indexOf('--') + 3).join(' ')), ['ip -batch', 'nft -f', 'sysctl -q']);
  assert.equal(r.steps.map((x) => x.kind), ['link', 'nft', 'sysctl', 'sysctl']);
  assert.not.ok(ns.links.has('lvs0'));
  assert.equal([...ns.nft.keys()], []);
  assert.equal([ns.sysctls.get('net.ipv4.vs.expire_nodest_conn'), ns.sysctls.get('net.ipv4.vs.expire_quiescent_template')], [original, '0']);
});

test('bad input names the field', () => {
  assert.throws(() => normalizeSpec(spec({ vips: [{ address: 'not-an-ip', announce: false }] })), (e: unknown) => e instanceof DirectorSpecError && e.field === 'vips[0].address');
  assert.throws(() => normalizeSpec(spec({ snat: [{ family: 4, protocol: 'TCP', vip: '192.0.2.1', port: 80 }] })), /snat\[0\]\.vip: 192\.0\.2\.1 is not one of this director's VIPs/);
  assert.throws(() => normalizeSpec(spec({ snat: [{ family: 4, protocol: 'TCP', vip: VIP, port: 70000 }] })), /snat\[0\]\.port/);
  assert.throws(() => normalizeSpec(spec({ kernelRelease: 'linux' })), /kernelRelease/);
});

test('spec from a plan: only services this node directs; SNAT only for NAT+SNAT', () => {
  const svc = (over: Partial<PlanService>): PlanService => ({
    key: '', owner: { namespace: 'd', name: 'v', generation: 1 }, portName: 'p', vip: VIP, family: 4, protocol: 'TCP', port: 80,
    forwarding: 'NAT', scheduler: { name: 'rr', flags: [] }, prepareRealServers: false, realServers: [], directors: ['n1'], ...over,
  });
  const plan: Plan = {
    services: [
      svc({ natReturnPath: 'SNAT' }),
      svc({ port: 443, forwarding: 'DR' }),
      svc({ vip: '203.0.113.20', natReturnPath: 'Gateway' }),
      svc({ vip: '203.0.113.30', directors: ['n2'], natReturnPath: 'SNAT' }),
    ],
    virtualServers: new Map(),
  };
  const s = directorSpecFromPlan(plan, 'n1', '6.1.0');
  assert.equal(s.vips.map((v) => v.address), [VIP, '203.0.113.20']);
  assert.equal(s.snat, [{ family: 4, protocol: 'TCP', vip: VIP, port: 80 }]);
  assert.equal(s.natFamilies, [4]);
  assert.ok(directorSysctls(s).some((x) => x.key === 'net.ipv4.vs.conntrack'));
});

test('nft transaction replaces only our tables, atomically', () => {
  const t = nftTransaction(nftTables(normalizeSpec(spec())));
  assert.equal(t.split('\n').filter((l) => /^(table|delete)/.test(l)).map((l) => l.replace(/ \{.*$/, '')), [
    'table inet lvs_operator', 'delete table inet lvs_operator', 'table arp lvs_operator', 'delete table arp lvs_operator', 'table arp lvs_operator',
    'table ip6 lvs_operator', 'delete table ip6 lvs_operator',
  ]);
  assert.ok(sameRuleset('table x {\n\tchain y {\n\t}\n}\n', 'table x { chain y { } }'));
});

test('the director is read one process at a time: a check leaves the other CPUs to the syncs', async () => {
  const { opts } = setup();
  await syncDirector(opts, spec());
  let running = 0, most = 0, started = 0;
  const run: typeof opts.run = async (cmd, args, o) => {
    running++; started++; most = Math.max(most, running);
    try {
      await new Promise((r) => setTimeout(r, 5));
      return await opts.run(cmd, args, o);
    } finally { running--; }
  };
  const r = await syncDirector({ ...opts, run }, spec());
  assert.is(r.changed, false);
  assert.ok(started >= 6, `${started} reads`);
  assert.is(most, 1, 'reads ran side by side');
});

test.run();
