// Gating and this node's report, as pure functions: weights follow other nodes' reports; the
// report lists every failure where the controller will look for it.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { gateServices, localRealServers, preparedByNode, preparedEntries, realServersUnaffected, sliceOutsidePass } from '../../dataplane/cluster/realservers.ts';
import { reportFor, syncFailures } from '../../dataplane/cluster/report.ts';
import type { SyncResult } from '../../dataplane/sync/sync.ts';
import { planServices } from '../../api/plan-slice.ts';
import { otherReport, ownerPlan, service } from '../lib/plan-fixtures.ts';

const test = suite('cluster: gating and report');
const WEB = { uid: 'uid-web', virtualServer: 'default/web' };
const DR = service({
  forwarding: 'DR', prepareRealServers: true, port: 80,
  realServers: [
    { address: '10.244.2.7', port: 80, weight: 2, state: 'Ready', node: 'n2' },
    { address: '10.244.3.1', port: 80, weight: 1, state: 'Ready', node: 'n3' },
    { address: '192.0.2.3', port: 80, weight: 1, state: 'Ready' },
  ],
});
const weights = (s: ReturnType<typeof gateServices>) => s[0]!.realServers.map((r) => `${r.address}=${r.weight}`);

test('gating: weight 0 until the real server\'s node lists (address, VIP, method); no node, NAT or prepare:false not gated', () => {
  const services = planServices(ownerPlan('web', [DR]));
  const gates = preparedByNode([otherReport('n2', [{ address: '10.244.2.7', vip: '203.0.113.10', forwarding: 'DR' }]), otherReport('n3', [{ address: '10.244.3.1', vip: '203.0.113.10', forwarding: 'TUN' }])], new Map());
  assert.equal(weights(gateServices(services, gates)), ['10.244.2.7=2', '10.244.3.1=0', '192.0.2.3=1'], 'n3 prepared it for TUN, not DR');
  assert.equal(weights(gateServices(services, new Map())), ['10.244.2.7=0', '10.244.3.1=0', '192.0.2.3=1']);
  assert.equal(weights(gateServices(planServices(ownerPlan('web', [{ ...DR, forwarding: 'NAT' }])), new Map())), ['10.244.2.7=2', '10.244.3.1=1', '192.0.2.3=1']);
  assert.equal(weights(gateServices(planServices(ownerPlan('web', [{ ...DR, prepareRealServers: false }])), new Map())), ['10.244.2.7=2', '10.244.3.1=1', '192.0.2.3=1']);
});

test('gating returns the same object while the same real servers are gated (a sync rebuilds only new objects), a new one when a gate opens', () => {
  const services = planServices(ownerPlan('web', [DR]));
  const n2 = preparedByNode([otherReport('n2', [{ address: '10.244.2.7', vip: '203.0.113.10', forwarding: 'DR' }])], new Map());
  const closed = gateServices(services, new Map())[0]!;
  assert.ok(gateServices(services, new Map())[0] === closed, 'same gates: same object');
  const opened = gateServices(services, n2)[0]!;
  assert.ok(opened !== closed);
  assert.equal(weights([opened]), ['10.244.2.7=2', '10.244.3.1=0', '192.0.2.3=1']);
  assert.ok(gateServices(services, n2)[0] === opened, 'the same again');
  const all = preparedByNode([otherReport('n3', [{ address: '10.244.3.1', vip: '203.0.113.10', forwarding: 'DR' }])], n2);
  assert.ok(gateServices(services, all)[0] === services[0], 'every gate open: the plan entry itself');
});

test('gates: a report that disappears or cannot be read keeps what it said last', () => {
  const before = preparedByNode([otherReport('n2', [{ address: '10.244.2.7', vip: '203.0.113.10', forwarding: 'DR' }])], new Map());
  const broken = { ...otherReport('n2', []), node: 'n9' }; // node != name: unreadable
  assert.equal([...preparedByNode([broken], before).get('n2')!], ['10.244.2.7|203.0.113.10|DR']);
  assert.equal([...preparedByNode([], before).get('n2')!], ['10.244.2.7|203.0.113.10|DR']);
  assert.equal([...preparedByNode([otherReport('n2', [])], before).get('n2')!], [], 'a report saying less is believed');
});

test('local real servers and the prepared list: this node\'s IPv4 DR/TUN addresses, each VIP and method', () => {
  const local = localRealServers([{ owner: WEB, services: planServices(ownerPlan('web', [DR, { ...DR, key: 'TCP/203.0.113.10:443', port: 443 }])) }], 'n2');
  assert.equal([...local], [['10.244.2.7', { vips: [{ mode: 'DR', vip: '203.0.113.10' }], owners: [WEB] }]]);
  assert.equal(preparedEntries(['10.244.2.7', '10.9.9.9'], local), [{ address: '10.244.2.7', vip: '203.0.113.10', forwarding: 'DR' }]);
});

test('local real servers over IPv6: DR and TUN of an IPv6 VIP; an IPv6 VIP over an IPv4 pod is TUN with encap 4; IPv4 over IPv6 is left out', () => {
  const V6 = '2001:db8:100::10';
  const rs = (address: string) => ({ address, port: 80, weight: 1, state: 'Ready' as const, node: 'n2' });
  const dr6 = service({ vip: V6, family: 6, forwarding: 'DR', prepareRealServers: true, realServers: [rs('fd00::7')] });
  const tun6 = service({ vip: V6, family: 6, forwarding: 'TUN', prepareRealServers: true, port: 81, realServers: [rs('fd00::7'), rs('10.244.2.7')] });
  const tun4 = service({ forwarding: 'TUN', prepareRealServers: true, port: 82, realServers: [rs('fd00::8')] });
  const local = localRealServers([{ owner: WEB, services: planServices(ownerPlan('web', [dr6, tun6, tun4])) }], 'n2');
  assert.equal(Object.fromEntries([...local].map(([a, l]) => [a, l.vips])), {
    'fd00::7': [{ mode: 'DR', vip: V6 }, { mode: 'TUN', vip: V6 }],
    '10.244.2.7': [{ mode: 'TUN', vip: V6, encap: 4 }],
  });
  assert.equal(preparedEntries(['10.244.2.7'], local), [{ address: '10.244.2.7', vip: V6, forwarding: 'TUN' }]);
});

const eperm = Object.assign(new Error('EPERM: dump'), { code: 'EPERM' });
const base = { syncedResourceVersion: '42', keyOwners: new Map([['TCP/203.0.113.10:80', WEB]]), frozen: [], prepared: [], prepErrors: [], addressOwners: new Map() };

test('report: a step of no one service is a node error, named; nothing failing is invented', () => {
  const r = reportFor('n1', { ...base, sync: { kind: 'retry', after: 1000, errors: [{ op: 'dump', error: eperm }], ops: 0, draining: 0, problems: [] } });
  assert.equal([r.syncedResourceVersion, r.nodeErrors, r.failing], ['42', ['kernel read-back failed: EPERM: dump'], []]);
  const lvs0 = syncFailures({ kind: 'retry', after: 1, errors: [{ op: 'listVips', error: new Error('ip: EPERM') }, { op: 'bindVip', vip: 'a', error: new Error('x') }, { op: 'bindVip', vip: 'b', error: new Error('x') }], ops: 0, draining: 0, problems: [] });
  assert.equal(lvs0.nodeErrors, ['director setup (lvs0, sysctls, nft) failed: ip: EPERM', 'binding VIPs on lvs0 failed: x'], 'each step once');
});

test('report: failed services and preparations fail their owners, naming key and step; frozen listed', () => {
  const sync: SyncResult = { kind: 'retry', after: 1, errors: [{ op: 'addDestination', key: 'TCP/203.0.113.10:80', dest: '10.0.0.1:80', error: new Error('EINVAL') }], ops: 1, draining: 0, problems: [{ key: 'TCP/203.0.113.10:80', field: 'scheduler.flags[0]', message: 'bad' }] };
  const api = { uid: 'uid-api', virtualServer: 'default/api' };
  const r = reportFor('n1', {
    ...base, sync, frozen: [{ owner: api, message: 'plan unusable: x' }],
    prepErrors: [{ addresses: ['10.244.2.7'], message: 'netns:pod: sysctl failed' }],
    addressOwners: new Map([['10.244.2.7', [api]]]),
  });
  assert.equal(r.failing, [
    { uid: 'uid-api', virtualServer: 'default/api', message: 'real-server preparation failed: netns:pod: sysctl failed' },
    { uid: 'uid-web', virtualServer: 'default/web', message: 'TCP/203.0.113.10:80: netlink addDestination 10.0.0.1:80 failed: EINVAL; scheduler.flags[0]: bad' },
  ]);
  assert.equal([r.failingCount, r.frozen, r.frozenCount], [2, [{ uid: 'uid-api', virtualServer: 'default/api', message: 'plan unusable: x' }], 1]);
});

test('realServersUnaffected: only NAT before and after, same VIPs and directors; anything else or anything unreadable runs the pass', () => {
  const slice = (services: unknown, directors: unknown = ['n1']) => ({ apiVersion: 'lvs.dev/v1alpha1', kind: 'PlanSlice', metadata: { name: 's' }, directors, services }) as never;
  const nat = (vip: string, rs: string) => ({ vip, forwarding: 'NAT', realServers: [{ address: rs }] });
  assert.ok(realServersUnaffected(slice([nat('203.0.113.1', 'a')]), slice([nat('203.0.113.1', 'b'), nat('203.0.113.1', 'c')])));
  assert.not.ok(realServersUnaffected(slice([nat('203.0.113.1', 'a')]), slice([nat('203.0.113.2', 'a')])), 'another VIP');
  assert.not.ok(realServersUnaffected(slice([nat('203.0.113.1', 'a')]), slice([nat('203.0.113.1', 'a')], ['n1', 'n2'])), 'other directors');
  assert.not.ok(realServersUnaffected(slice([nat('203.0.113.1', 'a')]), slice([{ ...nat('203.0.113.1', 'a'), forwarding: 'DR' }])), 'DR after');
  assert.not.ok(realServersUnaffected(slice([{ ...nat('203.0.113.1', 'a'), forwarding: 'TUN' }]), slice([nat('203.0.113.1', 'a')])), 'TUN before');
  assert.not.ok(realServersUnaffected(slice(undefined), slice([nat('203.0.113.1', 'a')])), 'unreadable');
  assert.not.ok(realServersUnaffected(slice([null]), slice([nat('203.0.113.1', 'a')])), 'unreadable entry');
});

test('sliceOutsidePass: a NAT slice added (the whole plan) or deleted, none of its VIPs a local real server\'s; anything else runs the pass', () => {
  const slice = (services: unknown, count = 1) => ({ apiVersion: 'lvs.dev/v1alpha1', kind: 'PlanSlice', metadata: { name: 's' }, directors: ['n1'], index: 0, count, services }) as never;
  const nat = (vip: string) => ({ vip, forwarding: 'NAT', realServers: [{ address: '10.0.0.1' }] });
  const none = new Set<string>(), local = new Set(['203.0.113.9']);
  assert.ok(sliceOutsidePass(slice([nat('203.0.113.1'), nat('203.0.113.2')]), none, 'add'));
  assert.ok(sliceOutsidePass(slice([nat('203.0.113.1')]), local, 'delete'));
  assert.not.ok(sliceOutsidePass(slice([nat('203.0.113.1'), nat('203.0.113.9')]), local, 'add'), 'the VIP of a local DR/TUN pod: its return path');
  assert.not.ok(sliceOutsidePass(slice([nat('203.0.113.9')]), local, 'delete'), 'the same, deleted');
  assert.not.ok(sliceOutsidePass(slice([{ ...nat('203.0.113.1'), forwarding: 'DR' }]), none, 'add'), 'DR');
  assert.not.ok(sliceOutsidePass(slice([{ ...nat('203.0.113.1'), forwarding: 'TUN' }]), none, 'delete'), 'TUN deleted');
  assert.not.ok(sliceOutsidePass(slice([nat('203.0.113.1')], 2), none, 'add'), 'one of several slices: it may complete a plan whose others are DR');
  assert.ok(sliceOutsidePass(slice([nat('203.0.113.1')], 2), none, 'delete'), 'deleted, it leaves at most an incomplete plan');
  assert.not.ok(sliceOutsidePass(slice(undefined), none, 'add'), 'unreadable');
  assert.not.ok(sliceOutsidePass(slice([null]), none, 'delete'), 'unreadable entry');
});

test('report: a yielding director says why; the CRD and the parser take it back; in service, no field', async () => {
  const { parseAgentReport } = await import('../../api/agent-report.ts');
  const ok = { kind: 'ok' as const, ops: 0, draining: 0, problems: [] };
  assert.not.ok('yielding' in reportFor('n1', { ...base, sync: ok }));
  const r = reportFor('n1', { ...base, sync: ok, yielding: 'cordoned (spec.unschedulable)' });
  assert.is(r.yielding, 'cordoned (spec.unschedulable)');
  const parsed = parseAgentReport(JSON.parse(JSON.stringify(r)));
  assert.ok(parsed.ok && parsed.value.yielding === 'cordoned (spec.unschedulable)');
});

test.run();
