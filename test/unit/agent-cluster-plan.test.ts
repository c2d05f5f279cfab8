import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { VirtualServerObject } from '../../kube/types.ts';
import { localRealServers, nodeReport, planFromVirtualServer, sameReport, syncFailures } from '../../dataplane/agent/cluster-plan.ts';

const test = suite('agent: plan from VirtualServer status');

function vs(over: { spec?: Record<string, unknown>; status?: VirtualServerObject['status'] } = {}): VirtualServerObject {
  return {
    apiVersion: 'lvs.dev/v1alpha1', kind: 'VirtualServer',
    metadata: { name: 'web', namespace: 'default', generation: 3, creationTimestamp: '2026-01-01T00:00:00Z' },
    spec: {
      addresses: ['203.0.113.10', '2001:db8::10'],
      ports: [{ name: 'http', port: 80, protocol: 'TCP' }, { name: 'dns', port: 53, protocol: 'UDP' }],
      forwarding: 'DR', scheduler: { name: 'rr' },
      backends: { service: { name: 'web' } },
      ...over.spec,
    },
    status: {
      observedGeneration: 3,
      directors: ['node-a'],
      services: ['TCP/203.0.113.10:80', 'TCP/[2001:db8::10]:80', 'UDP/203.0.113.10:53'],
      realServers: [
        { port: 'dns', address: '10.244.1.5', targetPort: 53, weight: 1, state: 'Ready', node: 'node-b' },
        { port: 'http', address: '10.244.1.5', targetPort: 80, weight: 1, state: 'Ready', node: 'node-b', pod: { namespace: 'default', name: 'web-1' } },
        { port: 'http', address: '10.244.2.7', targetPort: 80, weight: 1, state: 'Ready', node: 'node-c' },
        { port: 'http', address: '10.244.2.8', targetPort: 80, weight: 0, state: 'Draining', node: 'node-c' },
        { port: 'http', address: 'fd00::7', targetPort: 80, weight: 1, state: 'Ready', node: 'node-c' },
      ],
      nodes: [{ name: 'node-b', observedGeneration: 3, preparedRealServers: ['10.244.1.5'] }],
      ...over.status,
    },
  };
}

test('only the keys the VirtualServer won, with the real servers of their port and family', () => {
  const plan = planFromVirtualServer(vs());
  assert.equal(plan.map((s) => s.key).sort(), ['TCP/203.0.113.10:80', 'TCP/[2001:db8::10]:80', 'UDP/203.0.113.10:53'], 'UDP on the IPv6 VIP was lost: absent');
  const v4 = plan.find((s) => s.key === 'TCP/203.0.113.10:80')!;
  assert.equal(v4.realServers.map((r) => r.address), ['10.244.1.5', '10.244.2.7', '10.244.2.8']);
  assert.equal(plan.find((s) => s.key === 'TCP/[2001:db8::10]:80')!.realServers.map((r) => r.address), ['fd00::7']);
  assert.equal([v4.forwarding, v4.scheduler.name, v4.directors, v4.owner.generation], ['DR', 'rr', ['node-a'], 3]);
});

test('a DR/TUN real server gets weight > 0 only once its node reports it prepared', () => {
  const v4 = planFromVirtualServer(vs()).find((s) => s.key === 'TCP/203.0.113.10:80')!;
  assert.equal(v4.realServers.map((r) => [r.address, r.weight]), [['10.244.1.5', 1], ['10.244.2.7', 0], ['10.244.2.8', 0]]);
  const prepared = vs({ status: { ...vs().status, nodes: [{ name: 'node-b', preparedRealServers: ['10.244.1.5'] }, { name: 'node-c', preparedRealServers: ['10.244.2.7'] }] } });
  assert.equal(planFromVirtualServer(prepared).find((s) => s.key === 'TCP/203.0.113.10:80')!.realServers.map((r) => r.weight), [1, 1, 0]);
  const nat = planFromVirtualServer(vs({ spec: { forwarding: 'NAT' } })).find((s) => s.key === 'TCP/203.0.113.10:80')!;
  assert.equal(nat.realServers.map((r) => r.weight), [1, 1, 0], 'NAT needs no preparation');
  const noPrep = planFromVirtualServer(vs({ spec: { realServers: { prepare: false } } })).find((s) => s.key === 'TCP/203.0.113.10:80')!;
  assert.equal(noPrep.realServers.map((r) => r.weight), [1, 1, 0], 'prepare: false trusts the operator to have prepared them');
});

test('no status or an invalid spec: nothing to program', () => {
  const bare = vs();
  delete bare.status;
  assert.equal(planFromVirtualServer(bare), []);
  assert.equal(planFromVirtualServer(vs({ status: { services: [] } })), [], 'won nothing (conflict lost everywhere)');
  assert.equal(planFromVirtualServer(vs({ spec: { addresses: ['not-an-ip'] } })), []);
});

test('local real servers: this node\'s addresses with every VIP and method they serve (IPv4)', () => {
  const m = localRealServers([vs()], 'node-c');
  assert.equal([...m.entries()], [['10.244.2.7', [{ mode: 'DR', vip: '203.0.113.10' }]], ['10.244.2.8', [{ mode: 'DR', vip: '203.0.113.10' }]]]);
  assert.equal(localRealServers([vs({ spec: { forwarding: 'NAT' } })], 'node-c').size, 0);
  assert.equal(localRealServers([vs()], 'node-a').size, 0);
});

test('node report: director programmed or failing, prepared real servers, nothing for bystanders', () => {
  const ok = { failedKeys: new Set<string>(), errors: new Map<string, string>(), prepared: ['10.244.2.7', '10.9.9.9'] };
  assert.equal(nodeReport(vs(), 'node-a', ok), { name: 'node-a', observedGeneration: 3, director: true, programmed: true, preparedRealServers: [], message: '' });
  assert.equal(nodeReport(vs(), 'node-c', ok), { name: 'node-c', observedGeneration: 3, director: false, programmed: true, preparedRealServers: ['10.244.2.7'], message: '' });
  assert.is(nodeReport(vs(), 'node-z', ok), undefined);
  const bad = nodeReport(vs(), 'node-a', { ...ok, failedKeys: new Set(['UDP/203.0.113.10:53']), errors: new Map([['UDP/203.0.113.10:53', 'EINVAL']]) });
  assert.equal([bad?.programmed, bad?.message], [false, 'UDP/203.0.113.10:53: EINVAL']);
  assert.ok(sameReport(nodeReport(vs(), 'node-a', ok), { ...nodeReport(vs(), 'node-a', ok)!, lastUpdateTime: '2026-01-01T00:00:00Z' }));
  assert.not.ok(sameReport(nodeReport(vs(), 'node-a', ok), bad));
});

test('node report: a failed step of no one service fails every VirtualServer the node directs, named', () => {
  const ok = { failedKeys: new Set<string>(), errors: new Map<string, string>(), prepared: [] };
  const eperm = Object.assign(new Error('EPERM: dump'), { code: 'EPERM' });
  const dump = syncFailures({ kind: 'retry', after: 1000, errors: [{ op: 'dump', error: eperm }], ops: 0, draining: 0, problems: [] });
  assert.equal([...dump.failedKeys], []);
  const r = nodeReport(vs(), 'node-a', { ...ok, ...dump });
  assert.equal([r?.programmed, r?.message], [false, 'kernel read-back failed: EPERM: dump']);
  const bind = syncFailures({ kind: 'retry', after: 1000, errors: [
    { op: 'bindVip', vip: '203.0.113.10', error: new Error('ip -batch - failed') }, { op: 'bindVip', vip: '2001:db8::10', error: new Error('ip -batch - failed') },
  ], ops: 2, draining: 0, problems: [] });
  assert.equal(nodeReport(vs(), 'node-a', { ...ok, ...bind })?.message, 'binding VIPs on lvs0 failed: ip -batch - failed', 'once, not per VIP');
  assert.is(nodeReport(vs(), 'node-c', { ...ok, ...dump })?.programmed, true, 'not a director: its sync does not speak for this VirtualServer');
  const op = syncFailures({ kind: 'retry', after: 1000, errors: [{ op: 'addDestination', key: 'UDP/203.0.113.10:53', dest: '10.244.1.5:53', error: new Error('EINVAL') }], ops: 1, draining: 0, problems: [] });
  assert.equal(nodeReport(vs(), 'node-a', { ...ok, ...op })?.message, 'UDP/203.0.113.10:53: netlink addDestination 10.244.1.5:53 failed: EINVAL');
  assert.equal(syncFailures({ kind: 'ok', ops: 0, draining: 0, problems: [] }).nodeErrors, []);
});

test('node report: a real server that could not be prepared fails the VirtualServers it serves', () => {
  const state = { failedKeys: new Set<string>(), errors: new Map<string, string>(), prepared: ['10.244.2.8'] };
  const r = nodeReport(vs(), 'node-c', { ...state, prepErrors: [{ addresses: ['10.244.2.7'], message: 'pid 42: sysctl: permission denied' }] });
  assert.equal([r?.programmed, r?.message], [false, 'real-server preparation failed: pid 42: sysctl: permission denied']);
  assert.is(nodeReport(vs(), 'node-c', { ...state, prepErrors: [{ addresses: ['10.9.9.9'], message: 'elsewhere' }] })?.programmed, true, 'another VirtualServer\'s pod');
  assert.is(nodeReport(vs(), 'node-c', { ...state, prepErrors: [{ message: 'pass failed' }] })?.programmed, false, 'the whole pass failed');
});

test.run();
