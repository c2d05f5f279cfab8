// Who may use which address: VIPPools (deny by default), reserved addresses, static real-server
// CIDRs, host preparation, pool directors, overlapping pools, and the holder keeping its claim.
// Each case is an attack or a grant from issue 13, resolved by the pure resolver.
import type { V1EndpointSlice, V1Node, V1Service } from '@kubernetes/client-node';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Reason } from '../../api/plan.ts';
import { buildPools, type VIPPoolLike } from '../../api/pool.ts';
import { resolve } from '../../api/resolve/index.ts';
import type { NamespaceLike, VirtualServerLike } from '../../api/resolve/types.ts';
import { endpoint, endpointSlice, node, service, virtualServer } from '../lib/fixtures.ts';

const test = suite('resolve: admission by VIPPools');

function pool(name: string, spec: NonNullable<VIPPoolLike['spec']>, created = '2024-01-01T00:00:00Z'): VIPPoolLike {
  return { metadata: { name, creationTimestamp: created }, spec };
}

const teamA = pool('team-a', { addresses: ['203.0.113.0/28', '198.51.100.10-198.51.100.20'], allocation: { namespaces: ['team-a'] } });
const nodes: V1Node[] = [node('n1', ['192.0.2.1'], { 'lvs.dev/director': 'true' }), node('n2', ['192.0.2.2'])];
nodes[0]!.spec = { podCIDRs: ['10.244.0.0/24'] };

interface Input {
  vss: VirtualServerLike[];
  pools?: VIPPoolLike[];
  namespaces?: NamespaceLike[];
  services?: V1Service[];
  slices?: V1EndpointSlice[];
  serviceCIDRs?: Array<{ metadata: { name: string }; spec: { cidrs: string[] } }>;
}

function run(i: Input) {
  return resolve({
    virtualServers: i.vss, services: i.services ?? [], endpointSlices: i.slices ?? [], nodes,
    admission: { pools: i.pools ?? [teamA], namespaces: i.namespaces ?? [], serviceCIDRs: i.serviceCIDRs ?? [] },
  });
}

const nat = (name: string, addresses: string[], namespace = 'team-a', extra: Record<string, unknown> = {}) =>
  virtualServer(name, { addresses, ports: [{ name: 'http', port: 80 }], backends: { service: { name: 'web' } }, ...extra } as never, { namespace });

const reasonsOf = (plan: ReturnType<typeof run>, id: string): Reason[] => plan.virtualServers.get(id)?.reasons ?? [];
const types = (rs: Reason[]) => rs.map((r) => r.type);

test('deny by default: without any pool no address is served', () => {
  const plan = run({ vss: [nat('web', ['203.0.113.5'])], pools: [] });
  assert.equal(plan.services, []);
  const r = reasonsOf(plan, 'team-a/web').find((x) => x.type === 'AddressNotAllowed');
  assert.equal(r, { type: 'AddressNotAllowed', field: 'spec.addresses[0]', message: '203.0.113.5 is in no VIPPool; an admin must grant it to namespace team-a' });
});

test('a pool admits only its namespaces: team-b cannot use team-a\'s range; team-a can, CIDR and range alike', () => {
  const plan = run({ vss: [nat('web', ['203.0.113.5'], 'team-b'), nat('web', ['203.0.113.6', '198.51.100.20'])] });
  assert.equal(plan.services.map((s) => s.key), ['TCP/198.51.100.20:80', 'TCP/203.0.113.6:80']);
  assert.equal(plan.services.map((s) => s.owner.namespace), ['team-a', 'team-a']);
  assert.match(reasonsOf(plan, 'team-b/web').find((x) => x.type === 'AddressNotAllowed')?.message ?? '', /VIPPool team-a does not admit namespace team-b/);
  const outside = run({ vss: [nat('web', ['198.51.100.21'])] });
  assert.equal(outside.services, [], 'one past the end of the range');
});

test('namespaceSelector admits by the namespace\'s labels; unknown namespaces carry their name label', () => {
  const p = pool('shared', { addresses: ['203.0.113.0/28'], allocation: { namespaceSelector: { matchExpressions: [{ key: 'tier', operator: 'In', values: ['web'] }] } } });
  const byName = pool('by-name', { addresses: ['198.51.100.0/24'], allocation: { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'ops' } } } });
  const plan = run({
    vss: [nat('web', ['203.0.113.1'], 'shop'), nat('web', ['203.0.113.2'], 'batch'), nat('web', ['198.51.100.1'], 'ops')],
    pools: [p, byName], namespaces: [{ metadata: { name: 'shop', labels: { tier: 'web' } } }, { metadata: { name: 'batch', labels: { tier: 'batch' } } }],
  });
  assert.equal(plan.services.map((s) => `${s.owner.namespace} ${s.vip}`), ['ops 198.51.100.1', 'shop 203.0.113.1']);
});

test('reserved whatever the pools say: node addresses, pod CIDRs, cluster IPs, service CIDRs, the API server', () => {
  const wide = pool('wide', { addresses: ['192.0.2.0/24', '10.0.0.0/8', '203.0.113.0/24'], allocation: { namespaces: ['team-a'] } });
  const dns: V1Service = { ...service('kube-dns', [{ name: 'dns', port: 53 }], { namespace: 'kube-system' }), spec: { clusterIP: '10.96.0.10', ports: [{ name: 'dns', port: 53 }] } };
  const api = endpointSlice('kubernetes', [endpoint('203.0.113.99')], { namespace: 'default' });
  const plan = run({
    vss: [
      nat('node', ['192.0.2.1']), nat('pods', ['10.244.0.77']), nat('dns', ['10.96.0.10'], 'team-a', { ports: [{ name: 'x', port: 9999 }] }),
      nat('svc-range', ['10.97.1.1']), nat('apiserver', ['203.0.113.99']), nat('fine', ['203.0.113.5']),
    ],
    pools: [wide], services: [dns], slices: [api], serviceCIDRs: [{ metadata: { name: 'kubernetes' }, spec: { cidrs: ['10.96.0.0/12'] } }],
  });
  assert.equal(plan.services.map((s) => s.key), ['TCP/203.0.113.5:80']);
  const msg = (id: string) => reasonsOf(plan, `team-a/${id}`).find((x) => x.type === 'AddressReserved')?.message;
  assert.is(msg('node'), '192.0.2.1 is reserved: it is the InternalIP of node n1; it is not programmed');
  assert.is(msg('pods'), '10.244.0.77 is reserved: it is in pod CIDR 10.244.0.0/24 of node n1; it is not programmed');
  assert.is(msg('dns'), '10.96.0.10 is reserved: it is the cluster IP of Service kube-system/kube-dns; it is not programmed');
  assert.match(msg('svc-range') ?? '', /in service CIDR 10\.96\.0\.0\/12 \(ServiceCIDR kubernetes\)/);
  assert.match(msg('apiserver') ?? '', /an address of the Kubernetes API server/);
});

test('externalIPs, which any namespace user writes, cannot take a pooled VIP from its team; outside pools they still reserve', () => {
  // The attack: team-b lists team-a's VIP in its own Service's spec.externalIPs to get it withdrawn.
  const squat: V1Service = { ...service('squat', [{ name: 'http', port: 80 }], { namespace: 'team-b' }), spec: { clusterIP: '10.96.0.50', externalIPs: ['203.0.113.5', '192.0.2.200'], ports: [{ name: 'http', port: 80 }] } };
  const wide = pool('wide', { addresses: ['203.0.113.0/28'], allocation: { namespaces: ['team-a'] } });
  const plan = run({ vss: [nat('web', ['203.0.113.5']), nat('other', ['192.0.2.200'])], pools: [wide], services: [squat] });
  assert.equal(plan.services.map((s) => s.key), ['TCP/203.0.113.5:80']);
  assert.equal(types(reasonsOf(plan, 'team-a/web')).filter((t) => t === 'AddressReserved'), []);
  assert.is(reasonsOf(plan, 'team-a/other').find((x) => x.type === 'AddressReserved')?.message,
    '192.0.2.200 is reserved: it is an external IP of Service team-b/squat; it is not programmed');
  // A cluster IP inside a pool stays reserved: the API server allocated it, no tenant chose it.
  const dns: V1Service = { ...service('kube-dns', [{ name: 'dns', port: 53 }], { namespace: 'kube-system' }), spec: { clusterIP: '203.0.113.9', ports: [{ name: 'dns', port: 53 }] } };
  const both = run({ vss: [nat('dns', ['203.0.113.9'])], pools: [wide], services: [dns] });
  assert.equal(both.services, []);
});

test('forwarding methods are the pool\'s to allow', () => {
  const natOnly = pool('nat-only', { addresses: ['203.0.113.0/28'], allocation: { namespaces: ['team-a'] }, forwarding: ['NAT'] });
  const plan = run({ vss: [nat('web', ['203.0.113.5'], 'team-a', { forwarding: 'DR' })], pools: [natOnly] });
  assert.equal(plan.services, []);
  assert.equal(reasonsOf(plan, 'team-a/web').filter((r) => r.type === 'ForwardingNotAllowed'),
    [{ type: 'ForwardingNotAllowed', field: 'spec.forwarding', message: 'VIPPool nat-only (for 203.0.113.5) allows NAT forwarding, not DR' }]);
});

test('static real servers only inside the pool\'s staticRealServers (default: none) — no open relay', () => {
  const statics = (addrs: string[]) => virtualServer('relay', { addresses: ['203.0.113.5'], ports: [{ name: 'http', port: 80 }], backends: { static: addrs.map((address) => ({ address })) } } as never, { namespace: 'team-a' });
  const none = run({ vss: [statics(['8.8.8.8'])] });
  assert.equal(none.services[0]?.realServers, []);
  assert.equal(reasonsOf(none, 'team-a/relay').filter((r) => r.type === 'RealServerNotAllowed'),
    [{ type: 'RealServerNotAllowed', field: 'spec.backends.static[0].address', message: '8.8.8.8 is not in VIPPool team-a\'s staticRealServers; it is not used' }]);
  const granted = pool('team-a', { ...teamA.spec, staticRealServers: ['192.0.2.128/25'] });
  const some = run({ vss: [statics(['192.0.2.130', '8.8.8.8'])], pools: [granted] });
  assert.equal(some.services[0]?.realServers.map((r) => r.address), ['192.0.2.130']);
});

test('Service endpoints: pods of the namespace are used; anything else needs staticRealServers', () => {
  const eps = endpointSlice('web', [endpoint('10.244.0.5', { pod: 'web-1', podNamespace: 'team-a' }), endpoint('10.244.0.6', { pod: 'x', podNamespace: 'other' }), endpoint('8.8.4.4', { pod: false })], { namespace: 'team-a', ports: [{ name: 'http', port: 80 }] });
  const plan = run({ vss: [nat('web', ['203.0.113.5'])], services: [service('web', [{ name: 'http', port: 80 }], { namespace: 'team-a' })], slices: [eps] });
  assert.equal(plan.services[0]?.realServers.map((r) => r.address), ['10.244.0.5']);
  const refused = reasonsOf(plan, 'team-a/web').filter((r) => r.type === 'RealServerNotAllowed').map((r) => r.message);
  assert.equal(refused.length, 2);
  assert.match(refused.join('\n'), /endpoint 8\.8\.4\.4 is not a pod of namespace team-a/);
  assert.match(refused.join('\n'), /endpoint 10\.244\.0\.6 is not a pod of namespace team-a/);
});

test('DR to a node\'s own address prepares that host only with pool.prepareHosts and the node label', () => {
  const dr = virtualServer('host', { addresses: ['203.0.113.5'], ports: [{ name: 'http', port: 80 }], forwarding: 'DR', realServers: { prepare: true }, backends: { static: [{ address: '192.0.2.2' }] } } as never, { namespace: 'team-a' });
  const hostsAllowed = pool('team-a', { ...teamA.spec, staticRealServers: ['192.0.2.0/24'], realServers: { prepareHosts: true } });
  const noFlag = run({ vss: [dr], pools: [pool('team-a', { ...teamA.spec, staticRealServers: ['192.0.2.0/24'] })] });
  assert.equal(noFlag.services[0]?.realServers, []);
  assert.match(reasonsOf(noFlag, 'team-a/host').map((r) => r.message).join(), /node n2's address and VIPPool team-a does not allow preparing hosts/);
  const noLabel = run({ vss: [dr], pools: [hostsAllowed] });
  assert.match(reasonsOf(noLabel, 'team-a/host').map((r) => r.message).join(), /node is not labelled lvs\.dev\/real-server-host=true/);
  nodes[1]!.metadata!.labels = { 'lvs.dev/real-server-host': 'true' };
  try {
    const ok = run({ vss: [dr], pools: [hostsAllowed] });
    assert.equal(ok.services[0]?.realServers.map((r) => `${r.address} ${r.node}`), ['192.0.2.2 n2']);
  } finally { nodes[1]!.metadata!.labels = {}; }
});

test('the pool\'s directors, narrowed (never widened) by the VirtualServer\'s selector', () => {
  const directed = pool('team-a', { ...teamA.spec, directors: { nodeSelector: { 'lvs.dev/director': 'true' } } });
  assert.equal(run({ vss: [nat('web', ['203.0.113.5'])], pools: [directed] }).services[0]?.directors, ['n1']);
  const widen = run({ vss: [nat('web', ['203.0.113.5'], 'team-a', { directors: { nodeSelector: { 'lvs.dev/director': 'false' } } })], pools: [directed] });
  assert.equal(widen.services[0]?.directors, []);
  assert.ok(types(reasonsOf(widen, 'team-a/web')).includes('NoDirectors'));
});

test('overlapping pools: the older keeps its addresses, the newer grants nothing and names the field', () => {
  const newer = pool('newer', { addresses: ['192.0.2.0/24', '203.0.113.8/29'], allocation: { namespaces: ['team-b'] } }, '2025-01-01T00:00:00Z');
  const set = buildPools([newer, teamA]);
  assert.equal(set.pools.map((p) => p.name), ['team-a']);
  assert.equal(set.problems.get('newer'), [{ reason: 'Overlap', field: 'spec.addresses[1]', message: '203.0.113.8/29 overlaps 203.0.113.0/28 of VIPPool team-a (spec.addresses[0]), which is older and keeps its addresses; this pool grants nothing until the overlap is removed' }]);
  const plan = run({ vss: [nat('web', ['203.0.113.9'], 'team-b')], pools: [newer, teamA] });
  assert.equal(plan.services, []);
});

test('bad ranges make the pool unusable, naming the field', () => {
  const set = buildPools([pool('bad', { addresses: ['203.0.113.0/28', '198.51.100.20-198.51.100.10', '203.0.113.1/24'] })]);
  assert.equal(set.pools, []);
  assert.equal(set.problems.get('bad')?.map((p) => `${p.field}: ${p.message}`), [
    'spec.addresses[1]: 198.51.100.20-198.51.100.10: the first address is after the last',
    'spec.addresses[2]: 203.0.113.1/24 has host bits set (did you mean 203.0.113.0/24?)',
  ]);
});

test('the holder keeps: an older VirtualServer edited to claim a held VIP gets Conflict naming the holder', () => {
  const holder = { ...nat('holder', ['203.0.113.5'], 'team-a'), status: { claims: [{ service: 'TCP/203.0.113.5:80', since: '2025-06-01T00:00:00Z' }] } };
  (holder.metadata as unknown as { creationTimestamp: string }).creationTimestamp = '2025-05-01T00:00:00Z';
  const old = nat('old', ['203.0.113.5'], 'team-a');
  (old.metadata as unknown as { creationTimestamp: string }).creationTimestamp = '2020-01-01T00:00:00Z';
  const plan = run({ vss: [old, holder] });
  assert.equal(plan.services.map((s) => `${s.key} ${s.owner.name}`), ['TCP/203.0.113.5:80 holder']);
  assert.equal(reasonsOf(plan, 'team-a/old').find((r) => r.type === 'Conflict'), {
    type: 'Conflict', field: 'spec.addresses[0]',
    message: 'TCP/203.0.113.5:80 is already claimed by VirtualServer team-a/holder (it holds it since 2025-06-01T00:00:00Z and the holder keeps it); this VirtualServer does not program it',
  });
  // Without the claim on record, age decides as before.
  const fresh = run({ vss: [old, { ...holder, status: {} }] });
  assert.equal(fresh.services.map((s) => s.owner.name), ['old']);
});

test('an invalid holder keeps its claim: a newcomer cannot take the key while the holder\'s plan stays published', () => {
  const broken = virtualServer('holder', { addresses: ['203.0.113.5'], ports: [], backends: { service: { name: 'web' } } } as never, { namespace: 'team-a' });
  const held = { ...broken, status: { claims: [{ service: 'TCP/203.0.113.5:80', since: '2025-06-01T00:00:00Z' }] } };
  const newcomer = nat('new', ['203.0.113.5'], 'team-a');
  const plan = run({ vss: [held, newcomer] });
  assert.equal(plan.services, []);
  assert.ok(types(reasonsOf(plan, 'team-a/new')).includes('Conflict'));
  assert.ok(types(reasonsOf(plan, 'team-a/holder')).includes('InvalidSpec'));
});

test.run();
