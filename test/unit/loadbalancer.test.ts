// LoadBalancer Services: allocation (pure) and the controller's end states against the fake API —
// an owned VirtualServer per Service, status.loadBalancer.ingress with ipMode Proxy once it won its
// services, release on delete, exhaustion reported, and a name taken by a user's VirtualServer.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { buildPools } from '../../api/pool.ts';
import { ReservedAddresses } from '../../api/resolve/index.ts';
import { Controller } from '../../operator/controller.ts';
import { allocate, chooseAddresses, desiredVirtualServer, familiesOf, ingressOf, requestedAddresses, type ServiceObject } from '../../operator/loadbalancer.ts';
import { FakeKubeApi } from '../../kube/testing/fake.ts';
import { ENDPOINT_SLICES, EVENTS, NODES, SERVICES, VIP_POOLS, VIRTUAL_SERVERS, type VirtualServerObject } from '../../kube/types.ts';
import { node, slice, until, vs } from './controller-fixtures.ts';

const test = suite('LoadBalancer Services');

const lbService = (name: string, extra: Partial<ServiceObject['spec']> = {}, annotations: Record<string, string> = {}): ServiceObject => ({
  apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'team-a', annotations },
  spec: { type: 'LoadBalancer', loadBalancerClass: 'lvs.dev/ipvs', ports: [{ name: 'http', port: 80, protocol: 'TCP' }], ...extra },
});

const pool = (addresses: string[], autoAssign = true) => ({
  apiVersion: 'lvs.dev/v1alpha1', kind: 'VIPPool', metadata: { name: 'lb', creationTimestamp: '2024-01-01T00:00:00Z' },
  spec: { addresses, allocation: { namespaces: ['team-a'], autoAssign } },
});

test('allocation: lowest free address, skipping used, reserved and .0/.255; exhaustion names the pools', () => {
  const pools = buildPools([pool(['203.0.113.0/30', '2001:db8::/126'])]);
  const reserved = new ReservedAddresses();
  reserved.set('node/n1', [{ address: '203.0.113.2', why: 'node' }]);
  const base = { pools, namespace: 'team-a', namespaceLabels: {}, reserved };
  assert.equal(allocate({ ...base, families: [4], used: new Set() }), ['203.0.113.1']);
  assert.equal(allocate({ ...base, families: [4, 6], used: new Set(['203.0.113.1']) }), ['203.0.113.3', '2001:db8::']);
  assert.equal(allocate({ ...base, families: [4], used: new Set(['203.0.113.1', '203.0.113.3']) }), { error: 'the autoAssign VIPPools admitting namespace team-a (lb) have no free IPv4 address' });
  assert.equal(allocate({ ...base, namespace: 'team-b', families: [4], used: new Set() }), { error: 'no VIPPool with allocation.autoAssign admits namespace team-b' });
  assert.equal(allocate({ ...base, pools: buildPools([pool(['203.0.113.0/30'], false)]), families: [4], used: new Set() }), { error: 'no VIPPool with allocation.autoAssign admits namespace team-a' });
});

test('what the Service asks for: annotation over loadBalancerIP, field-named errors, families by policy', () => {
  assert.equal(requestedAddresses(lbService('a', { loadBalancerIP: '203.0.113.9' })), ['203.0.113.9']);
  assert.equal(requestedAddresses(lbService('a', { loadBalancerIP: '203.0.113.9' }, { 'lvs.dev/address': '203.0.113.7, 2001:DB8::7' })), ['203.0.113.7', '2001:db8::7']);
  assert.equal(requestedAddresses(lbService('a', {}, { 'lvs.dev/address': 'nope' })), { error: 'metadata.annotations[lvs.dev/address]: "nope" is not an IP address' });
  assert.is(requestedAddresses(lbService('a')), undefined);
  assert.equal(familiesOf(lbService('a', { ipFamilies: ['IPv6', 'IPv4'], ipFamilyPolicy: 'RequireDualStack' })), [6, 4]);
  assert.equal(familiesOf(lbService('a', { ipFamilies: ['IPv6', 'IPv4'], ipFamilyPolicy: 'SingleStack' })), [6]);
});

test('the owned VirtualServer: ports by name, annotations for method and scheduler, owner reference; ingress only for won VIPs', () => {
  const svc = { ...lbService('web', {}, { 'lvs.dev/forwarding': 'DR', 'lvs.dev/scheduler': 'rr', 'lvs.dev/persistence-timeout': '300' }), metadata: { name: 'web', namespace: 'team-a', uid: 'u1', annotations: { 'lvs.dev/forwarding': 'DR', 'lvs.dev/scheduler': 'rr', 'lvs.dev/persistence-timeout': '300' } } };
  const v = desiredVirtualServer(svc, ['203.0.113.1']);
  assert.is(v.metadata.name, 'lb-web');
  assert.equal(v.spec, {
    addresses: ['203.0.113.1'], ports: [{ name: 'http', port: 80, protocol: 'TCP' }], forwarding: 'DR',
    backends: { service: { name: 'web', ports: [{ name: 'http', servicePort: 80 }] } }, scheduler: { name: 'rr' }, persistence: { timeoutSeconds: 300 },
  });
  assert.equal((v.metadata as { ownerReferences?: unknown }).ownerReferences, [{ apiVersion: 'v1', kind: 'Service', name: 'web', uid: 'u1', controller: true }]);
  assert.equal(ingressOf({ ...v, spec: { ...v.spec, addresses: ['203.0.113.1', '2001:db8::1'] }, status: { services: ['TCP/[2001:db8::1]:80'] } }), [{ ip: '2001:db8::1', ipMode: 'Proxy' }]);
  assert.equal(ingressOf(v), [], 'nothing won yet: no ingress');
});

test('dual-stack choice: one address per family, sticky per family, RequireDualStack needs both, PreferDualStack falls back; requests checked against the families', () => {
  const dual = (policy: string, families = ['IPv4', 'IPv6'], annotations: Record<string, string> = {}) => lbService('d', { ipFamilies: families, ipFamilyPolicy: policy }, annotations);
  const fresh: Record<number, string[]> = { 4: ['203.0.113.1', '203.0.113.2'], 6: ['2001:db8::1'] };
  const calls: string[] = [];
  const from = (pool: Record<number, string[]>) => (family: 4 | 6) => {
    calls.push(`IPv${family}`);
    return pool[family]?.[0] ?? { error: `no free IPv${family} address` };
  };
  assert.equal(chooseAddresses(dual('RequireDualStack', ['IPv6', 'IPv4']), [], from(fresh)), { addresses: ['2001:db8::1', '203.0.113.1'] }, 'primary family first');
  // Turned dual-stack: the IPv4 address it had is kept, only IPv6 is allocated.
  calls.length = 0;
  assert.equal(chooseAddresses(dual('RequireDualStack'), ['203.0.113.9'], from(fresh)), { addresses: ['203.0.113.9', '2001:db8::1'] });
  assert.equal(calls, ['IPv6']);
  // Back to single stack: the IPv6 address is let go, the IPv4 one kept.
  assert.equal(chooseAddresses(dual('SingleStack'), ['203.0.113.9', '2001:db8::1'], from(fresh)), { addresses: ['203.0.113.9'] });
  const v4only = { 4: ['203.0.113.1'] };
  assert.equal(chooseAddresses(dual('RequireDualStack'), [], from(v4only)), { error: 'no free IPv6 address' });
  assert.equal(chooseAddresses(dual('PreferDualStack'), [], from(v4only)), { addresses: ['203.0.113.1'], partial: 'PreferDualStack: served in IPv4 only: no free IPv6 address' });
  assert.equal(chooseAddresses(dual('PreferDualStack', ['IPv6', 'IPv4']), [], from(v4only)), { error: 'no free IPv6 address' }, 'the primary family is never optional');
  // Requests: every address of a family the Service has; RequireDualStack needs one of each.
  const ann = (v: string) => ({ 'lvs.dev/address': v });
  assert.equal(chooseAddresses(dual('RequireDualStack', ['IPv4', 'IPv6'], ann('2001:db8::7, 203.0.113.7')), [], from(fresh)), { addresses: ['2001:db8::7', '203.0.113.7'] });
  assert.equal(chooseAddresses(dual('RequireDualStack', ['IPv4', 'IPv6'], ann('203.0.113.7')), [], from(fresh)), { error: 'metadata.annotations[lvs.dev/address]: spec.ipFamilyPolicy is RequireDualStack, and no [IPv6] address is requested' });
  assert.equal(chooseAddresses(dual('PreferDualStack', ['IPv4', 'IPv6'], ann('203.0.113.7')), [], from(fresh)), { addresses: ['203.0.113.7'] });
  assert.equal(chooseAddresses(lbService('s', { ipFamilies: ['IPv4'], ipFamilyPolicy: 'SingleStack', loadBalancerIP: '2001:db8::7' }), [], from(fresh)),
    { error: 'spec.loadBalancerIP: 2001:db8::7 is IPv6, but the Service is served in [IPv4] (spec.ipFamilies, spec.ipFamilyPolicy)' });
});

// ---------------------------------------------------------------------------------------------
function cluster(addresses: string[]): FakeKubeApi {
  const api = new FakeKubeApi();
  api.apply(VIP_POOLS, pool(addresses));
  api.apply(NODES, node('node-a', {}, '192.0.2.1'));
  return api;
}

function start(api: FakeKubeApi): Controller {
  const c = new Controller({ api, identity: 'c1', leaderElection: false, retryBackoff: { baseMs: 5, maxMs: 50 }, informerBackoff: { baseMs: 5, maxMs: 50 } });
  void c.start();
  return c;
}

const svcOf = (api: FakeKubeApi, name: string) => api.peek<ServiceObject>(SERVICES, 'team-a', name);
const vsOf = (api: FakeKubeApi, name: string) => api.peek<VirtualServerObject>(VIRTUAL_SERVERS, 'team-a', name);

test('controller: a Service gets an address, a VirtualServer it owns, and its ingress (ipMode Proxy) once served; delete releases', async () => {
  const api = cluster(['203.0.113.1-203.0.113.2']);
  api.apply(SERVICES, lbService('web'));
  api.apply(ENDPOINT_SLICES, slice('web-1', 'web', [{ ip: '10.244.1.5', pod: 'web-1' }], 'team-a'));
  const c = start(api);
  await until(() => svcOf(api, 'web')?.status?.loadBalancer?.ingress?.length === 1, 'ingress written');
  assert.equal(svcOf(api, 'web')!.status!.loadBalancer!.ingress, [{ ip: '203.0.113.1', ipMode: 'Proxy' }]);
  const owned = vsOf(api, 'lb-web')!;
  assert.equal(owned.spec?.addresses, ['203.0.113.1']);
  assert.equal(owned.status?.services, ['TCP/203.0.113.1:80']);
  // A second Service gets the next address; the first keeps its own (sticky).
  api.apply(SERVICES, lbService('api'));
  await until(() => svcOf(api, 'api')?.status?.loadBalancer?.ingress?.length === 1, 'second ingress');
  assert.equal(svcOf(api, 'api')!.status!.loadBalancer!.ingress, [{ ip: '203.0.113.2', ipMode: 'Proxy' }]);
  // A third finds the pool exhausted: condition and Event, no VirtualServer.
  api.apply(SERVICES, lbService('more'));
  await until(() => (svcOf(api, 'more')?.status?.conditions as Array<{ reason?: string }> | undefined)?.some((x) => x.reason === 'AllocationFailed') === true, 'exhaustion reported');
  assert.is(vsOf(api, 'lb-more'), undefined);
  // Deleting the first Service releases its address: the owned VirtualServer goes, and "more" gets it.
  api.remove(SERVICES, 'team-a', 'web');
  await until(() => vsOf(api, 'lb-web') === undefined, 'owned VirtualServer deleted');
  await until(() => svcOf(api, 'more')?.status?.loadBalancer?.ingress?.[0]?.ip === '203.0.113.1', 'released address reused');
  // Turned into a ClusterIP Service: no longer ours, ingress cleared.
  api.apply(SERVICES, { ...svcOf(api, 'api')!, spec: { ...svcOf(api, 'api')!.spec, type: 'ClusterIP' } });
  await until(() => vsOf(api, 'lb-api') === undefined && !svcOf(api, 'api')?.status?.loadBalancer?.ingress, 'released on type change');
  await c.stop();
});

test('controller: a user\'s VirtualServer named lb-<service> is never taken over; other classes are not ours', async () => {
  const api = cluster(['203.0.113.0/30']);
  api.apply(VIRTUAL_SERVERS, { ...vs('lb-web', { addresses: ['203.0.113.2'], ports: [{ name: 'http', port: 80 }], backends: { static: [{ address: '192.0.2.130' }] } }, 'team-a') });
  api.apply(SERVICES, lbService('web'));
  api.apply(SERVICES, lbService('metallb', { loadBalancerClass: 'metallb.io/metallb' }));
  const c = start(api);
  await until(() => c.idle() && api.count('create', 'events') > 0, 'event recorded');
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(vsOf(api, 'lb-web')!.spec?.addresses, ['203.0.113.2'], 'the user\'s object is untouched');
  assert.is(svcOf(api, 'web')!.status?.loadBalancer?.ingress, undefined);
  assert.is(vsOf(api, 'lb-metallb'), undefined);
  await c.stop();
});

test('controller: a RequireDualStack Service gets one address per family; made SingleStack it keeps its IPv4 one; PreferDualStack without an IPv6 pool is served in IPv4 and picks IPv6 up when a pool grants it', async () => {
  const api = cluster(['203.0.113.1-203.0.113.2', '2001:db8:1::10-2001:db8:1::11']);
  const dual = (name: string, policy: string) => lbService(name, { ipFamilies: ['IPv4', 'IPv6'], ipFamilyPolicy: policy });
  api.apply(SERVICES, dual('web', 'RequireDualStack'));
  api.apply(ENDPOINT_SLICES, slice('web-1', 'web', [{ ip: '10.244.1.5', pod: 'web-1' }], 'team-a'));
  api.apply(ENDPOINT_SLICES, { ...slice('web-2', 'web', [{ ip: 'fd00::5', pod: 'web-1' }], 'team-a'), addressType: 'IPv6' });
  const c = start(api);
  const ingress = (name: string) => svcOf(api, name)?.status?.loadBalancer?.ingress?.map((i) => i.ip);
  await until(() => ingress('web')?.length === 2, 'both families in the ingress');
  assert.equal(ingress('web'), ['203.0.113.1', '2001:db8:1::10']);
  assert.equal(vsOf(api, 'lb-web')!.spec?.addresses, ['203.0.113.1', '2001:db8:1::10']);
  assert.equal(vsOf(api, 'lb-web')!.status?.services, ['TCP/203.0.113.1:80', 'TCP/[2001:db8:1::10]:80']);
  const allocated = (name: string) => (svcOf(api, name)?.status?.conditions as Array<{ type: string; status: string; reason: string; message: string }> | undefined)?.find((x) => x.type === 'lvs.dev/AddressAllocated');
  assert.is(allocated('web')?.status, 'True');
  // SingleStack again: the IPv6 address goes, the IPv4 one stays.
  api.apply(SERVICES, { ...svcOf(api, 'web')!, spec: { ...svcOf(api, 'web')!.spec, ipFamilies: ['IPv4'], ipFamilyPolicy: 'SingleStack' } });
  await until(() => ingress('web')?.length === 1, 'IPv6 address released');
  assert.equal(ingress('web'), ['203.0.113.1']);
  // PreferDualStack in namespace team-b, whose pool has no IPv6 range: IPv4 alone, said so.
  api.apply(VIP_POOLS, { ...pool(['203.0.113.5']), metadata: { name: 'team-b', creationTimestamp: '2024-01-02T00:00:00Z' }, spec: { addresses: ['203.0.113.5'], allocation: { namespaces: ['team-b'], autoAssign: true } } });
  api.apply(SERVICES, { ...dual('api', 'PreferDualStack'), metadata: { name: 'api', namespace: 'team-b', annotations: {} } });
  const svcB = () => api.peek<ServiceObject>(SERVICES, 'team-b', 'api');
  const condB = () => (svcB()?.status?.conditions as Array<{ type: string; status: string; message: string }> | undefined)?.find((x) => x.type === 'lvs.dev/AddressAllocated');
  await until(() => condB()?.status === 'True', 'api served');
  assert.equal(svcB()!.status!.loadBalancer!.ingress, [{ ip: '203.0.113.5', ipMode: 'Proxy' }]);
  assert.match(condB()!.message, /PreferDualStack: served in IPv4 only: the autoAssign VIPPools admitting namespace team-b \(team-b\) have no free IPv6 address/);
  const reasons = (await api.list(EVENTS)).items.filter((e) => e.metadata.namespace === 'team-b').map((e) => (e as { reason?: string }).reason);
  assert.ok(reasons.includes('SingleStackFallback'), reasons.join(', '));
  // The pool gains an IPv6 range: the Service picks an IPv6 address up and keeps its IPv4 one.
  api.apply(VIP_POOLS, { ...pool([]), metadata: { name: 'team-b', creationTimestamp: '2024-01-02T00:00:00Z' }, spec: { addresses: ['203.0.113.5', '2001:db8:2::1'], allocation: { namespaces: ['team-b'], autoAssign: true } } });
  await until(() => api.peek<VirtualServerObject>(VIRTUAL_SERVERS, 'team-b', 'lb-api')?.spec?.addresses?.length === 2, 'IPv6 picked up');
  assert.equal(api.peek<VirtualServerObject>(VIRTUAL_SERVERS, 'team-b', 'lb-api')!.spec?.addresses, ['203.0.113.5', '2001:db8:2::1']);
  await c.stop();
});

test.run();
