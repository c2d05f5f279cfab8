// The cluster agent end to end over fakes (Kubernetes API, IPVS kernel, commands): it programs
// exactly the published plans, gates DR/TUN real servers on their node's report, writes an
// honest report only when it changed, and never tears down on doubt. Assertions are on end state:
// the kernel's tables and the stored AgentReport.
import pino from 'pino';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { AGENT_REPORTS, PLAN_SLICES, type KubeObject } from '../../kube/types.ts';
import { KubeApiError } from '../../kube/errors.ts';
import type { NetnsFinder } from '../../dataplane/agent/netns.ts';
import { partitionable } from '../../kube/testing/fake.ts';
import { harness, otherReport, ownerPlan, POD, POD_NS, podFinder, publish, service, unpublish, VIP } from '../lib/cluster-fixtures.ts';

const test = suite('cluster agent: programs published plans, reports honestly');

test('a published plan is programmed; the report says up to where; nothing is written twice', async () => {
  const h = harness('n1');
  const web = ownerPlan('web', [service()]);
  publish(h.api, web);
  await h.start();
  try {
    assert.equal(h.view(), [`TCP/${VIP}:80 -> 10.244.1.5:8080 w=1`]);
    const r = h.report()!;
    assert.equal([r.syncedResourceVersion, r.nodeErrors, r.failing, r.frozen, r.prepared], [h.api.all(PLAN_SLICES)[0]!.metadata.resourceVersion, [], [], [], []]);
    assert.ok(h.cmd.host.ns('host').links.get('lvs0')?.addrs.some((a) => a.address === VIP), 'VIP bound on lvs0');
    // Resyncs and passes with nothing new: no further write.
    await h.clock.advance(120_000);
    assert.equal([h.api.count('create', 'agentreports'), h.api.count('replace', 'agentreports')], [1, 0]);
    // A new plan revision: programmed, and the report moves on once.
    publish(h.api, ownerPlan('web', [service({ realServers: [{ address: '10.244.1.6', port: 8080, weight: 3, state: 'Ready' }] })], { generation: 2 }));
    await h.clock.advance(2_000);
    assert.equal(h.view(), [`TCP/${VIP}:80 -> 10.244.1.6:8080 w=3`]);
    assert.is(h.report()!.syncedResourceVersion, h.api.all(PLAN_SLICES)[0]!.metadata.resourceVersion);
    assert.equal([h.api.count('create', 'agentreports'), h.api.count('replace', 'agentreports')], [1, 1]);
  } finally { await h.close(); }
});

test('idle, syncs come only on the verify ticks: nothing loops between a sync, its report and the next sync (no minimum gap holds it back)', async () => {
  const h = harness('n1');
  publish(h.api, ownerPlan('web', [service()]));
  publish(h.api, ownerPlan('pods', [service({ vip: '203.0.113.20', forwarding: 'DR', prepareRealServers: true, realServers: [{ address: POD, port: 80, weight: 1, state: 'Ready', node: 'n1' }] })]));
  let syncs = 0;
  await h.start({ metrics: { programmed: () => {}, synced: () => { syncs++; } } });
  try {
    await h.clock.advance(10_000);
    assert.equal(h.report()!.prepared, [{ address: POD, vip: '203.0.113.20', forwarding: 'DR' }]);
    const before = syncs;
    await h.clock.advance(60_000);
    // A verify tick every 5 s (12 here); a director check may take a follow-up sync.
    assert.ok(syncs - before <= 14, `${syncs - before} syncs in 60 idle seconds`);
  } finally { await h.close(); }
});

test('synced() (/readyz) turns true at the first sync of the published plans, not at start, and stays true while the apiserver is away', async () => {
  const h = harness('n1');
  const net = partitionable(h.api);
  publish(h.api, ownerPlan('web', [service()]));
  net.cut(true);
  await h.start({ api: net.api });
  try {
    await h.clock.advance(5_000);
    assert.is(h.synced(), false, 'plans not listed yet: not ready');
    assert.equal(h.view(), []);
    net.cut(false);
    await h.clock.advance(60_000);
    assert.equal(h.view(), [`TCP/${VIP}:80 -> 10.244.1.5:8080 w=1`]);
    assert.is(h.synced(), true);
    net.cut(true);
    await h.clock.advance(60_000);
    assert.is(h.synced(), true, 'the apiserver going away changes nothing programmed');
    assert.equal(h.view(), [`TCP/${VIP}:80 -> 10.244.1.5:8080 w=1`]);
  } finally { net.cut(false); await h.close(); }
});

test('exit: a VIP still bound keeps lvs0 and the sysctls; with nothing left to serve, lvs0 goes and the node\'s own sysctls come back', async () => {
  const h = harness('n1');
  const host = () => h.cmd.host.ns('host');
  const original = host().sysctls.get('net.ipv4.vs.expire_nodest_conn');
  publish(h.api, ownerPlan('web', [service()]));
  await h.start();
  try {
    assert.is(host().sysctls.get('net.ipv4.vs.expire_nodest_conn'), '1', 'the director setting');
    await h.stop();
    assert.ok(host().links.get('lvs0')?.addrs.some((a) => a.address === VIP), 'a restart keeps the VIP');
    assert.is(host().sysctls.get('net.ipv4.vs.expire_nodest_conn'), '1');
    // Restarted (it must not take its own setting for the node's), then the plan is deleted.
    const logged: Array<Record<string, unknown>> = [];
    await h.start({ log: pino({ level: 'info' }, { write: (line: string) => void logged.push(JSON.parse(line) as Record<string, unknown>) }) });
    unpublish(h.api, ownerPlan('web', []));
    await h.clock.advance(120_000);
    assert.equal(h.view(), []);
    assert.equal(host().links.get('lvs0')?.addrs.filter((a) => a.scope !== 'link') ?? [], []);
    await h.stop();
    // The stop says what each of its steps took (it runs against the kubelet's grace period).
    const stopped = logged.find((e) => e.msg === 'agent work stopped');
    assert.equal(Object.keys((stopped?.ms ?? {}) as object).sort(), ['election', 'informers', 'realServerPass', 'release', 'report', 'sync']);
    assert.equal(stopped?.busy, { sync: false, realServerPass: false, report: false });
    assert.is(host().links.get('lvs0'), undefined, 'lvs0 removed');
    assert.is(host().sysctls.get('net.ipv4.vs.expire_nodest_conn'), original, 'the node\'s own value');
    assert.is(host().sysctls.get('net.ipv4.vs.expire_quiescent_template'), '0');
    assert.is(host().sysctls.get('net.ipv4.ip_forward'), '1', 'forwarding is the node\'s: never turned off again');
  } finally { await h.close(); }
});

test('a restart over an unchanged state writes no report and changes no kernel object', async () => {
  const h = harness('n1');
  publish(h.api, ownerPlan('web', [service()]));
  await h.start();
  await h.stop();
  const mutations = h.kernel.mutations;
  await h.start();
  try {
    assert.equal([h.api.count('create', 'agentreports'), h.api.count('replace', 'agentreports')], [1, 0]);
    assert.is(h.kernel.mutations, mutations);
  } finally { await h.close(); }
});

test('gating: a DR pod on another node gets weight 0 until that node reports it prepared for the VIP', async () => {
  const h = harness('n1');
  const dr = service({ forwarding: 'DR', prepareRealServers: true, realServers: [{ address: POD, port: 80, weight: 2, state: 'Ready', node: 'n2' }, { address: '192.0.2.3', port: 80, weight: 1, state: 'Ready' }], port: 80 });
  publish(h.api, ownerPlan('web', [dr]));
  h.api.apply(AGENT_REPORTS, otherReport('n2', [{ address: POD, vip: '203.0.113.99', forwarding: 'DR' }]));
  await h.start();
  try {
    assert.equal(h.view(), [`TCP/${VIP}:80 -> 10.244.2.7:80 w=0`, `TCP/${VIP}:80 -> 192.0.2.3:80 w=1`], 'prepared for another VIP only: gated; a host without node: not gated');
    h.api.apply(AGENT_REPORTS, otherReport('n2', [{ address: POD, vip: VIP, forwarding: 'DR' }]));
    await h.clock.advance(2_000);
    assert.equal(h.view(), [`TCP/${VIP}:80 -> 10.244.2.7:80 w=2`, `TCP/${VIP}:80 -> 192.0.2.3:80 w=1`]);
  } finally { await h.close(); }
});

test('this node prepares its own DR pod, reports it, and then opens its own gate', async () => {
  const h = harness('n1');
  const dr = service({ forwarding: 'DR', prepareRealServers: true, realServers: [{ address: POD, port: 80, weight: 1, state: 'Ready', node: 'n1' }] });
  publish(h.api, ownerPlan('web', [dr]));
  await h.start();
  try {
    await h.clock.advance(2_000);
    assert.equal(h.report()!.prepared, [{ address: POD, vip: VIP, forwarding: 'DR' }]);
    assert.ok(h.cmd.host.ns('/run/netns/pod-web').links.get('lo')?.addrs.some((a) => a.address === VIP), 'VIP on the pod\'s lo');
    assert.equal(h.view(), [`TCP/${VIP}:80 -> ${POD}:80 w=1`]);
  } finally { await h.close(); }
});

test('a dual-stack pod of this node is prepared for an IPv4 and an IPv6 TUN VIP, reported, and gated open for both', async () => {
  const POD6 = 'fd00:10::7', VIP6 = '2001:db8::10';
  const finder: NetnsFinder = {
    async find(addresses) { return new Map(addresses.filter((a) => a === POD || a === POD6).map((a) => [a, POD_NS] as const)); },
    size: () => 1,
    async confirm(_t, addresses) { return [...addresses]; },
    forget() {},
  };
  const h = harness('n1', { finder });
  const tun = (vip: string, family: 4 | 6, address: string) => service({ vip, family, forwarding: 'TUN', prepareRealServers: true, realServers: [{ address, port: 80, weight: 1, state: 'Ready', node: 'n1' }] });
  publish(h.api, ownerPlan('web', [tun(VIP, 4, POD), tun(VIP6, 6, POD6)]));
  await h.start();
  try {
    await h.clock.advance(2_000);
    assert.equal(h.report()!.prepared, [{ address: POD, vip: VIP, forwarding: 'TUN' }, { address: POD6, vip: VIP6, forwarding: 'TUN' }]);
    const links = h.cmd.host.ns('/run/netns/pod-web').links;
    assert.ok(links.get('tunl0')?.addrs.some((a) => a.address === VIP) && links.get('tunl0')?.up, 'IPv4 VIP on tunl0');
    assert.ok(links.get('ip6tnl0')?.addrs.some((a) => a.address === VIP6) && links.get('ip6tnl0')?.up, 'IPv6 VIP on ip6tnl0');
    assert.equal(h.view(), [`TCP/${VIP}:80 -> ${POD}:80 w=1`, `TCP/${VIP6}:80 -> ${POD6}:80 w=1`]);
  } finally { await h.close(); }
});

test('a pod not found yet is looked for again on a timer, without any plan change', async () => {
  const present = { pod: false };
  const h = harness('n1', { finder: podFinder(present) });
  publish(h.api, ownerPlan('web', [service({ forwarding: 'DR', prepareRealServers: true, realServers: [{ address: POD, port: 80, weight: 1, state: 'Ready', node: 'n1' }] })]));
  await h.start();
  try {
    assert.equal([h.report()!.prepared, h.report()!.failing], [[], []], 'a pod still starting is no failure');
    assert.equal(h.view(), [`TCP/${VIP}:80 -> ${POD}:80 w=0`]);
    present.pod = true;
    await h.clock.advance(6_000);
    assert.equal(h.report()!.prepared, [{ address: POD, vip: VIP, forwarding: 'DR' }]);
    assert.equal(h.view(), [`TCP/${VIP}:80 -> ${POD}:80 w=1`]);
  } finally { await h.close(); }
});

test('NAT endpoints changing, a NAT VirtualServer coming or going run no real-server pass; a DR plan change, a new NAT VIP, a NAT VIP of a local DR pod and a DR deletion do', async () => {
  let finds = 0;
  const base = podFinder();
  const h = harness('n1', { finder: { ...base, find: (a) => { finds++; return base.find(a); } } });
  const dr = ownerPlan('pods', [service({ vip: '203.0.113.20', forwarding: 'DR', prepareRealServers: true, realServers: [{ address: POD, port: 80, weight: 1, state: 'Ready', node: 'n1' }] })]);
  const nat = (gen: number, address: string, vip = VIP) => ownerPlan('web', [service({ vip, realServers: [{ address, port: 8080, weight: 1, state: 'Ready' }] })], { generation: gen });
  publish(h.api, dr);
  publish(h.api, nat(1, '10.244.1.5'));
  await h.start();
  try {
    await h.clock.advance(2_000);
    assert.equal(h.report()!.prepared, [{ address: POD, vip: '203.0.113.20', forwarding: 'DR' }]);
    const before = finds;
    assert.ok(before > 0, 'the pass looked for the DR pod');
    for (let g = 2; g < 12; g++) {
      publish(h.api, nat(g, `10.244.1.${g}`));
      await h.clock.advance(2_000);
    }
    assert.equal(h.view().filter((l) => l.startsWith(`TCP/${VIP}:`)), [`TCP/${VIP}:80 -> 10.244.1.11:8080 w=1`], 'the NAT changes were programmed');
    assert.is(finds, before, 'ten NAT endpoint changes ran no real-server pass');
    publish(h.api, nat(12, '10.244.1.12', '203.0.113.30'));
    await h.clock.advance(2_000);
    assert.is(finds, before + 1, 'a NAT plan with another VIP runs one (the VIPs this node directs feed the return path)');
    publish(h.api, ownerPlan('pods', [service({ vip: '203.0.113.20', forwarding: 'DR', prepareRealServers: true, realServers: [{ address: POD, port: 80, weight: 2, state: 'Ready', node: 'n1' }] })], { generation: 2 }));
    await h.clock.advance(2_000);
    assert.is(finds, before + 2, 'a DR plan change runs one');
    const other = (vip: string, port = 80) => ownerPlan('other', [service({ vip, port, realServers: [{ address: '10.244.2.1', port: 8080, weight: 1, state: 'Ready' }] })]);
    publish(h.api, other('203.0.113.40'));
    await h.clock.advance(2_000);
    assert.ok(h.view().includes('TCP/203.0.113.40:80 -> 10.244.2.1:8080 w=1'), 'the new NAT VirtualServer was programmed');
    assert.is(finds, before + 2, 'a NAT VirtualServer created runs none');
    unpublish(h.api, other('203.0.113.40'));
    await h.clock.advance(2_000);
    assert.not.ok(h.view().some((l) => l.includes('203.0.113.40')), 'and deleted');
    assert.is(finds, before + 2, 'a NAT VirtualServer deleted runs none');
    publish(h.api, other('203.0.113.20', 8443));
    await h.clock.advance(2_000);
    assert.is(finds, before + 3, 'a NAT VirtualServer on the VIP of this node\'s DR pod runs one (its return path)');
    unpublish(h.api, other('203.0.113.20', 8443));
    await h.clock.advance(2_000);
    assert.is(finds, before + 4, 'and so does its deletion');
    assert.equal(h.report()!.prepared, [{ address: POD, vip: '203.0.113.20', forwarding: 'DR' }]);
    unpublish(h.api, dr);
    await h.clock.advance(2_000);
    assert.is(finds, before + 5, 'a DR deletion runs one');
  } finally { await h.close(); }
});

test('no report before the first real-server pass (it would close the gates of pods still prepared)', async () => {
  const found = (addresses: readonly string[]) => new Map(addresses.filter((a) => a === POD).map((a) => [a, POD_NS] as const));
  let released = false;
  const waiting: Array<() => void> = [];
  const release = () => { released = true; for (const w of waiting.splice(0)) w(); };
  const slow: NetnsFinder = {
    ...podFinder(),
    find: (addresses) => new Promise((r) => { if (released) r(found(addresses)); else waiting.push(() => r(found(addresses))); }),
  };
  const h = harness('n1', { finder: slow });
  publish(h.api, ownerPlan('web', [service({ forwarding: 'DR', prepareRealServers: true, realServers: [{ address: POD, port: 80, weight: 1, state: 'Ready', node: 'n1' }] })]));
  await h.start();
  try {
    assert.ok(h.view().length === 1, 'the sync ran');
    assert.is(h.report(), undefined);
    release();
    await h.clock.advance(100);
    assert.equal(h.report()!.prepared, [{ address: POD, vip: VIP, forwarding: 'DR' }]);
  } finally { release(); await h.close(); }
});

test('kernel read-back fails (EPERM): nodeErrors names the step, nothing is claimed; clean once it clears', async () => {
  const h = harness('n1');
  h.kernel.fail('dump', 'EPERM');
  publish(h.api, ownerPlan('web', [service()]));
  await h.start();
  try {
    assert.is(h.kernel.mutations, 0);
    const r = h.report()!;
    assert.is(r.nodeErrors.length, 1, JSON.stringify(r));
    assert.match(r.nodeErrors[0]!, /^kernel read-back failed: .*EPERM/);
    h.kernel.clearFailures();
    await h.clock.advance(5_000);
    assert.equal(h.report()!.nodeErrors, []);
    assert.equal(h.view(), [`TCP/${VIP}:80 -> 10.244.1.5:8080 w=1`]);
  } finally { await h.close(); }
});

test('a failing service and a failing preparation name their owner, key and step', async () => {
  const h = harness('n1');
  h.kernel.fail('addDestination', 'EINVAL', { key: `TCP/${VIP}:80` });
  publish(h.api, ownerPlan('web', [service()]));
  publish(h.api, ownerPlan('pods', [service({ vip: '203.0.113.20', forwarding: 'DR', prepareRealServers: true, realServers: [{ address: POD, port: 80, weight: 1, state: 'Ready', node: 'n1' }] })], { directors: ['n9'] }));
  h.cmd.state.failing = (argv) => argv[0] === 'nsenter' && argv.includes('sysctl') && argv.includes('-w');
  await h.start();
  try {
    const r = h.report()!;
    assert.equal(r.failing.map((f) => f.virtualServer), ['default/pods', 'default/web']);
    assert.match(r.failing[0]!.message, /^real-server preparation failed: netns:pod-web: .*sysctl/);
    assert.match(r.failing[1]!.message, new RegExp(`^TCP/${VIP}:80: netlink addDestination 10.244.1.5:8080 failed: .*EINVAL`));
    assert.equal([r.failing[1]!.uid, r.nodeErrors, r.prepared], ['uid-web', [], []]);
    h.kernel.clearFailures();
    h.cmd.state.failing = undefined;
    // Nothing else changes: the failed sync and the failed pass are retried on their own.
    await h.clock.advance(6_000);
    assert.equal([h.report()!.failing, h.report()!.prepared], [[], [{ address: POD, vip: '203.0.113.20', forwarding: 'DR' }]]);
  } finally { await h.close(); }
});

test('a plan being rewritten is incomplete, not frozen: the last good plan stays, the node reports itself synced only below the rewrite', async () => {
  const h = harness('n1');
  const rs = (n: number, port: number) => Array.from({ length: n }, (_, i) => ({ address: `10.64.${i >> 8}.${i & 255}`, port, weight: 1, state: 'Ready' as const }));
  const before = ownerPlan('web', [service({ realServers: rs(1500, 8080) })]);
  publish(h.api, before);
  await h.start();
  try {
    const { slicePlan } = await import('../../api/plan-slice.ts');
    const after = slicePlan(ownerPlan('web', [service({ realServers: rs(1500, 9090) })], { generation: 2 }));
    assert.is(after.length, 2);
    h.api.apply(PLAN_SLICES, after[0] as unknown as KubeObject); // the controller has written slice 0 of 2
    const firstRv = h.api.peek<KubeObject>(PLAN_SLICES, undefined, after[0]!.metadata.name)!.metadata.resourceVersion!;
    await h.clock.advance(2_000);
    const mid = h.report()!;
    assert.equal(mid.frozen, [], 'a rewrite in progress is not reported frozen');
    assert.is(BigInt(mid.syncedResourceVersion), BigInt(firstRv) - 1n, 'synced just below the rewrite: the controller keeps waiting');
    assert.ok(h.view().every((l) => l.includes(':8080 ')), 'the last good plan stays programmed');
    h.api.apply(PLAN_SLICES, after[1] as unknown as KubeObject);
    await h.clock.advance(2_000);
    const done = h.report()!;
    assert.is(done.syncedResourceVersion, h.api.peek<KubeObject>(PLAN_SLICES, undefined, after[1]!.metadata.name)!.metadata.resourceVersion);
    assert.ok(h.view().length > 0 && h.view().every((l) => l.includes(':9090 ')), 'the new plan, whole');
  } finally { await h.close(); }
});

test('a plan with a field this agent does not know: frozen naming the field, kernel kept as programmed', async () => {
  const h = harness('n1');
  const web = ownerPlan('web', [service()]);
  publish(h.api, web);
  await h.start();
  try {
    const newer = ownerPlan('web', [service({ realServers: [] })], { generation: 2 });
    for (const s of (await import('../../api/plan-slice.ts')).slicePlan(newer)) {
      (s.services[0] as unknown as Record<string, unknown>).sessionAffinity = 'Cookie';
      h.api.apply(PLAN_SLICES, s as unknown as KubeObject);
    }
    await h.clock.advance(2_000);
    assert.equal(h.view(), [`TCP/${VIP}:80 -> 10.244.1.5:8080 w=1`], 'the last good plan stays programmed');
    const f = h.report()!.frozen;
    assert.equal(f.map((x) => [x.uid, x.virtualServer]), [['uid-web', 'default/web']]);
    assert.match(f[0]!.message, /services\[0\]\.sessionAffinity: unknown field/);
    assert.match(f[0]!.message, /keeping the last good plan \(generation 1\)/);
  } finally { await h.close(); }
});

test('restart with an unusable plan: the owner record\'s services are held as they are; other owners\' go', async () => {
  const h = harness('n1');
  publish(h.api, ownerPlan('web', [service()]));
  publish(h.api, ownerPlan('old', [service({ vip: '203.0.113.30' })]));
  await h.start();
  await h.stop();
  // While the agent is down: web's slices get a value it does not know; old is deleted.
  for (const s of h.api.all<KubeObject & { services: Array<{ scheduler: { name: string } }> }>(PLAN_SLICES)) {
    if (s.metadata.name.startsWith('uid-web')) { s.services[0]!.scheduler.name = 'twos'; h.api.apply(PLAN_SLICES, s); }
  }
  unpublish(h.api, ownerPlan('old', []));
  await h.start();
  try {
    await h.clock.advance(2_000);
    assert.equal(h.view(), [`TCP/${VIP}:80 -> 10.244.1.5:8080 w=1`], 'web held, old removed');
    assert.ok(h.cmd.host.ns('host').links.get('lvs0')?.addrs.some((a) => a.address === VIP), 'held VIP stays bound');
    const f = h.report()!.frozen;
    assert.equal(f.map((x) => x.virtualServer), ['default/web']);
    assert.match(f[0]!.message, /unknown value "twos".*1 recorded service\(s\) held as the kernel has them/);
  } finally { await h.close(); }
});

test('mass removal: every slice gone is held and reported frozen, and happens after 60 s of the same plan', async () => {
  const h = harness('n1');
  const plans = Array.from({ length: 12 }, (_, i) => ownerPlan(`vs${String(i).padStart(2, '0')}`, [service({ vip: `203.0.113.${100 + i}` })]));
  for (const p of plans) publish(h.api, p);
  await h.start();
  try {
    assert.is(h.view().length, 12);
    for (const p of plans) unpublish(h.api, p); // e.g. the CRD and with it every slice deleted
    await h.clock.advance(2_000);
    assert.is(h.view().length, 12, 'held');
    const r = h.report()!;
    assert.is(r.frozen.length, 12);
    assert.is(r.frozen[0]!.message, 'mass removal of 12 of 12 services held until the same plan is seen for 60 s');
    await h.clock.advance(50_000);
    assert.is(h.view().length, 12, 'still held before the window ends');
    await h.clock.advance(10_000);
    assert.equal([h.view(), h.report()!.frozen], [[], []], 'removed once confirmed');
  } finally { await h.close(); }
});

test('a removal below the threshold goes at once; an owner deleted is removed', async () => {
  const h = harness('n1');
  const plans = Array.from({ length: 12 }, (_, i) => ownerPlan(`vs${String(i).padStart(2, '0')}`, [service({ vip: `203.0.113.${100 + i}` })]));
  for (const p of plans) publish(h.api, p);
  await h.start();
  try {
    unpublish(h.api, plans[0]!);
    await h.clock.advance(2_000);
    assert.is(h.view().length, 11);
    assert.equal(h.report()!.frozen, []);
  } finally { await h.close(); }
});

test('a plan-slice relist that fails (CRD gone: 404) keeps what was programmed', async () => {
  const h = harness('n1');
  publish(h.api, ownerPlan('web', [service()]));
  await h.start();
  try {
    h.api.compact();
    for (let i = 0; i < 20; i++) h.api.failNext('list', new KubeApiError('list planslices', 404, 'the server could not find the requested resource', { reason: 'NotFound' }), 'planslices');
    h.api.closeWatches();
    await h.clock.advance(90_000);
    assert.equal(h.view(), [`TCP/${VIP}:80 -> 10.244.1.5:8080 w=1`]);
    assert.equal(h.report()!.frozen, []);
  } finally { await h.close(); }
});

test('the CRD deleted on a small cluster: its slices\' deletions, then 404s — held for as long as the plans cannot be listed', async () => {
  const h = harness('n1');
  const plans = [ownerPlan('web', [service()]), ownerPlan('api', [service({ vip: '203.0.113.90' })])];
  for (const p of plans) publish(h.api, p);
  await h.start();
  try {
    assert.is(h.view().length, 2);
    // What the apiserver does when the CRD goes: every object is deleted (watch events), then the
    // resource itself is gone, so every list is a 404.
    for (const p of plans) unpublish(h.api, p);
    const gone = (op: 'list' | 'watch') => new KubeApiError(`${op} planslices`, 404, 'the server could not find the requested resource', { reason: 'NotFound' });
    for (let i = 0; i < 100; i++) { h.api.failNext('watch', gone('watch'), 'planslices'); h.api.failNext('list', gone('list'), 'planslices'); }
    h.api.closeWatches();
    await h.clock.advance(2_000);
    assert.is(h.view().length, 2, 'removing everything is held, however few services');
    await h.clock.advance(600_000);
    assert.is(h.view().length, 2, 'still held ten minutes later: a failing list never confirms a removal');
    assert.match(h.report()!.frozen[0]!.message, 'held while the plans cannot be listed');
  } finally { await h.close(); }
});

test('report conflicts: a stale write (409) is re-read and retried', async () => {
  const h = harness('n1');
  h.api.apply(AGENT_REPORTS, otherReport('n1', [])); // left by an earlier run, stale content
  publish(h.api, ownerPlan('web', [service()]));
  h.api.failNext('replace', new KubeApiError('replace agentreports', 409, 'the object has been modified', { reason: 'Conflict' }), 'agentreports');
  await h.start();
  try {
    assert.is(h.report()!.syncedResourceVersion, h.api.all(PLAN_SLICES)[0]!.metadata.resourceVersion);
    assert.equal([h.api.count('create', 'agentreports'), h.api.count('replace', 'agentreports')], [0, 1]);
  } finally { await h.close(); }
});

test.run();
