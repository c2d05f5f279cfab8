// The agent refuses on its own to adopt a VIP that is assigned on another device of the node or
// carries IPVS services it did not create (kube-proxy's kube-ipvs0, keepalived): the pure decision,
// then end states — the foreign services in the fake kernel exactly as found, lvs0 without the VIP,
// the plan entry reported — with the real director code over the in-memory namespace model.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { PlanService } from '../../api/plan.ts';
import { createLvsDevice } from '../../dataplane/agent/lvs-device.ts';
import { reportFor } from '../../dataplane/cluster/report.ts';
import { FakeIpvsKernel } from '../../dataplane/ipvs/testing/fake.ts';
import type { IpvsService, IpvsServiceState } from '../../dataplane/ipvs/types.ts';
import { FakeKernel } from '../../dataplane/realserver/testing/fake-netns.ts';
import { adoptedKeys, refusedVips, withRefusals } from '../../dataplane/sync/adoption.ts';
import { desiredState } from '../../dataplane/sync/desired.ts';
import { createSyncer, type SyncerOptions, type VipBinder } from '../../dataplane/sync/sync.ts';
import { ManualClock, captureLog, planService, rs } from '../lib/sync-fixtures.ts';

const test = suite('sync: VIPs the agent refuses to adopt');
const DNS = '10.96.0.10';
const WEB = 'TCP/203.0.113.10:80';
const CLAIM = `TCP/${DNS}:9999`;

const svc = (address: string, port: number, protocol: IpvsService['protocol'] = 'TCP'): IpvsService =>
  ({ family: 4, protocol, address, port, scheduler: 'rr', flags: 0, timeout: 0, netmask: '255.255.255.255' });
const state = (address: string, port: number, protocol: IpvsService['protocol'] = 'TCP'): IpvsServiceState => ({ service: svc(address, port, protocol), destinations: [] });

/** kube-proxy's service for kube-dns: UDP ClusterIP:53 → a CoreDNS pod. */
async function kubeDns(k: FakeIpvsKernel): Promise<void> {
  await k.addService(svc(DNS, 53, 'UDP'));
  await k.addDestination(svc(DNS, 53, 'UDP'), { family: 4, address: '10.244.1.7', port: 53, forward: 'masq', weight: 1, upperThreshold: 0, lowerThreshold: 0 });
}

const claim = (over: Partial<PlanService> = {}) => planService({ vip: DNS, port: 9999, owner: { namespace: 'evil', name: 'dns', generation: 1 }, ...over });

function binder(bound: Set<string>, elsewhere: Map<string, string[]>): VipBinder {
  return { list: async () => [...bound], set: async (want) => { bound.clear(); for (const v of want) bound.add(v); }, elsewhere: () => elsewhere };
}

function syncer(kernel: FakeIpvsKernel, plan: () => PlanService[], over: Partial<SyncerOptions> = {}) {
  return createSyncer({ kernel, node: 'node-a', plan, log: captureLog().log, clock: new ManualClock(), ...over });
}

test('decision: an address on another device is refused, naming the device', () => {
  const r = refusedVips({ wanted: [DNS, '203.0.113.10'], ours: new Set(), elsewhere: new Map([[DNS, ['kube-ipvs0']]]), kernel: [] });
  assert.equal([...r.keys()], [DNS]);
  assert.equal(r.get(DNS), { vip: DNS, ours: false, message: `VIP ${DNS} is already assigned to kube-ipvs0 on this node; not adopted` });
});

test('decision: foreign IPVS services refuse a VIP not ours; our own services never refuse ours', () => {
  const kernel = [state(DNS, 53, 'UDP'), state('203.0.113.10', 80)];
  const r = refusedVips({ wanted: [DNS, '203.0.113.10'], ours: new Set(['203.0.113.10']), elsewhere: new Map(), kernel });
  assert.equal([...r.keys()], [DNS]);
  assert.match(r.get(DNS)!.message, `VIP ${DNS} already has IPVS services this agent did not create (UDP/${DNS}:53); not adopted`);
  const many = Array.from({ length: 6 }, (_, i) => state(DNS, 100 + i));
  assert.match(refusedVips({ wanted: [DNS], ours: new Set(), elsewhere: new Map(), kernel: many }).get(DNS)!.message, /TCP\/10\.96\.0\.10:103 and 2 more\)/);
});

test('decision: an address of ours seen on another device too is frozen (ours), never refused as foreign', () => {
  const r = refusedVips({ wanted: ['203.0.113.10'], ours: new Set(['203.0.113.10']), elsewhere: new Map([['203.0.113.10', ['eth0', 'lo']]]), kernel: [state('203.0.113.10', 80)] });
  assert.equal(r.get('203.0.113.10'), { vip: '203.0.113.10', ours: true, message: 'VIP 203.0.113.10 is also assigned to eth0, lo on this node; its services are left as they are' });
});

test('decision: addresses unknown (lvs0 could not be listed): new VIPs wait, ours go on', () => {
  const r = refusedVips({ wanted: [DNS, '203.0.113.10'], ours: new Set(['203.0.113.10']), elsewhere: undefined, kernel: [] });
  assert.equal([...r.keys()], [DNS]);
  assert.match(r.get(DNS)!.message, /could not be read/);
});

test('withRefusals: refused services leave desired state, their keys become problems; ours are frozen as found', () => {
  const want = desiredState([planService(), claim()], 'node-a');
  const kernel = [state('203.0.113.10', 80), state('203.0.113.10', 81)];
  const refusals = refusedVips({ wanted: want.ownedVips, ours: new Set(['203.0.113.10']), elsewhere: new Map([[DNS, ['kube-ipvs0']], ['203.0.113.10', ['eth0']]]), kernel });
  const out = withRefusals(want, refusals, kernel);
  assert.equal(out.services, []);
  assert.equal(out.ownedVips, ['203.0.113.10'], 'ours stays owned (not retired); the foreign one is not owned');
  assert.equal(out.frozen, [WEB, 'TCP/203.0.113.10:81']);
  assert.equal(out.problems.map((p) => `${p.key} ${p.field}`), [CLAIM + ' vip', WEB + ' vip']);
});

test('end state: a plan VIP on kube-ipvs0 with kube-proxy\'s UDP :53 is not adopted; the legitimate VIP is', async () => {
  const kernel = new FakeIpvsKernel();
  await kubeDns(kernel);
  const before = JSON.stringify(kernel.snapshot());
  const bound = new Set<string>();
  // The plan even claims kube-proxy's own key with other real servers.
  const plan = [planService(), claim(), claim({ protocol: 'UDP', port: 53, realServers: [rs('192.0.2.66', 53)] })];
  const r = await syncer(kernel, () => plan, { vips: binder(bound, new Map([[DNS, ['kube-ipvs0']]])) }).sync();
  assert.is(r.kind, 'ok');
  assert.equal(kernel.snapshot().filter((s) => s.service.address === DNS).map((s) => JSON.stringify(s)), [JSON.stringify(JSON.parse(before)[0])], 'kube-proxy\'s service untouched');
  assert.equal(kernel.snapshot().map((s) => `${s.service.protocol}/${s.service.address}:${s.service.port}`), [WEB, `UDP/${DNS}:53`]);
  assert.equal([...bound], ['203.0.113.10']);
  assert.equal(r.problems.map((p) => p.key), [CLAIM, `UDP/${DNS}:53`]);
  assert.match(r.problems[0]!.message, 'is already assigned to kube-ipvs0 on this node; not adopted');
  assert.equal(r.refused?.map((x) => x.vip), [DNS]);
});

test('end state: foreign services without an address elsewhere (ipvsadm by hand) are not adopted, again and again', async () => {
  const kernel = new FakeIpvsKernel();
  await kubeDns(kernel);
  const bound = new Set<string>();
  const s = syncer(kernel, () => [claim()], { vips: binder(bound, new Map()) });
  for (let i = 0; i < 2; i++) {
    const r = await s.sync();
    assert.equal([r.kind, r.ops, [...bound]], ['ok', 0, []]);
    assert.match(r.problems[0]!.message, `already has IPVS services this agent did not create (UDP/${DNS}:53)`);
  }
  assert.is(kernel.snapshot().length, 1);
});

test('restart: our own VIP on lvs0 with our services stays owned — no refusal, no operation', async () => {
  const kernel = new FakeIpvsKernel();
  const bound = new Set<string>();
  const plan = () => [planService()];
  await syncer(kernel, plan, { vips: binder(bound, new Map()) }).sync();
  const mutations = kernel.mutations;
  const r = await syncer(kernel, plan, { vips: binder(bound, new Map()) }).sync();
  assert.equal([r.kind, r.ops, r.refused, r.problems, kernel.mutations, [...bound]], ['ok', 0, undefined, [], mutations, ['203.0.113.10']]);
  // lvs0 lost meanwhile, the VIP only in the owner record: still ours, bound again.
  bound.clear();
  const r2 = await syncer(kernel, plan, { vips: binder(bound, new Map()), retiringVips: ['203.0.113.10'] }).sync();
  assert.equal([r2.refused, [...bound]], [undefined, ['203.0.113.10']]);
});

test('our VIP appearing on eth0 freezes it: no edit, no removal, stays bound, reported', async () => {
  const kernel = new FakeIpvsKernel();
  const bound = new Set<string>();
  const elsewhere = new Map<string, string[]>();
  const cur = { plan: [planService()] };
  const s = syncer(kernel, () => cur.plan, { vips: binder(bound, elsewhere) });
  await s.sync();
  const before = JSON.stringify(kernel.snapshot());
  elsewhere.set('203.0.113.10', ['eth0']);
  cur.plan = [planService({ scheduler: { name: 'rr', flags: [] } })];
  const r = await s.sync();
  assert.equal([r.ops, JSON.stringify(kernel.snapshot()), [...bound]], [0, before, ['203.0.113.10']]);
  assert.match(r.problems[0]!.message, 'also assigned to eth0');
  elsewhere.clear();
  await s.sync();
  assert.is(kernel.snapshot()[0]!.service.scheduler, 'rr', 'address gone from eth0: the plan applies again');
});

test('no partial sync touches a refused VIP: a changed plan entry for it still creates nothing', async () => {
  const kernel = new FakeIpvsKernel();
  await kubeDns(kernel);
  const cur = { plan: [planService(), claim()] };
  const s = syncer(kernel, () => cur.plan, { vips: binder(new Set(), new Map([[DNS, ['kube-ipvs0']]])), fullResyncIntervalMs: 3_600_000 });
  await s.sync();
  cur.plan = [planService(), claim({ scheduler: { name: 'rr', flags: [] } })];
  const r = await s.sync();
  assert.is(r.read, 'full');
  assert.equal(kernel.snapshot().map((x) => x.service.port), [80, 53]);
});

test('with lvs0 on the in-memory namespace: kube-ipvs0\'s and lo\'s addresses are refused, read in the same ip call', async () => {
  const k = new FakeKernel();
  const ns = k.ns('/run/netns/director');
  ns.addLink('kube-ipvs0', 'dummy').addrs.push({ address: DNS, prefixLen: 32, scope: 'global', label: 'kube-ipvs0' });
  ns.links.get('lo')!.addrs.push({ address: '198.51.100.7', prefixLen: 32, scope: 'global', label: 'lo' });
  const kernel = new FakeIpvsKernel();
  await kubeDns(kernel);
  const plan = [planService(), claim(), planService({ vip: '198.51.100.7', owner: { namespace: 'x', name: 'lo', generation: 1 } })];
  const vips = createLvsDevice({ run: k.runner(), node: 'node-a', plan: () => plan, target: { kind: 'named', name: 'director' }, kernelRelease: '6.1.0-56-amd64' });
  const s = syncer(kernel, () => plan, { vips });
  const r = await s.sync();
  assert.equal(ns.links.get('lvs0')!.addrs.map((a) => a.address), ['203.0.113.10']);
  assert.equal(ns.links.get('kube-ipvs0')!.addrs.map((a) => a.address), [DNS]);
  assert.equal(r.refused?.map((x) => x.message), [
    `VIP ${DNS} is already assigned to kube-ipvs0 on this node; not adopted`,
    'VIP 198.51.100.7 is already assigned to lo on this node; not adopted',
  ]);
  assert.equal(kernel.snapshot().map((x) => `${x.service.protocol}/${x.service.address}:${x.service.port}`), [WEB, `UDP/${DNS}:53`]);
  // Steady state: one address read per sync, as before this check existed — of every link now.
  const reads = () => k.calls.filter((c) => c.includes('addr') && c.includes('show'));
  const n = reads().length;
  assert.equal([(await s.sync()).ops, reads().slice(n).map((c) => c.includes('dev'))], [0, [false]]);
});

test('report and record: the refused plan entry fails its VirtualServer; its keys are not recorded as ours', async () => {
  const kernel = new FakeIpvsKernel();
  await kubeDns(kernel);
  const r = await syncer(kernel, () => [planService(), claim()], { vips: binder(new Set(), new Map([[DNS, ['kube-ipvs0']]])) }).sync();
  const owners = new Map([[WEB, { uid: 'u-web', virtualServer: 'default/web' }], [CLAIM, { uid: 'u-evil', virtualServer: 'evil/dns' }]]);
  const report = reportFor('node-a', { syncedResourceVersion: '5', sync: r, keyOwners: owners, frozen: [], prepared: [], prepErrors: [], addressOwners: new Map() });
  assert.equal(report.failing, [{ uid: 'u-evil', virtualServer: 'evil/dns', message: `${CLAIM}: vip: VIP ${DNS} is already assigned to kube-ipvs0 on this node; not adopted` }]);
  assert.equal([...adoptedKeys(owners, r.refused).keys()], [WEB]);
});

test.run();
