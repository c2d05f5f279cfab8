// Event -> keys mapping: which VirtualServers a Service, EndpointSlice, Node or VirtualServer
// change marks, and the incremental resolution with conflicts across VIPs.
import { openPool } from '../lib/pools.ts';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { VirtualServerObject } from '../../kube/types.ts';
import { World } from '../../operator/world.ts';
import { node, service, serviceVs, slice, staticVs, vs } from './controller-fixtures.ts';

const test = suite('controller: world');

function world(objs: VirtualServerObject[]) {
  const byKey = new Map<string, VirtualServerObject>();
  const w = new World((k) => byKey.get(k));
  w.poolChanged(openPool(), false);
  const put = (o: VirtualServerObject) => {
    o.metadata.creationTimestamp ??= `2025-01-01T00:00:0${byKey.size}Z`;
    o.metadata.generation ??= 1;
    const k = `${o.metadata.namespace}/${o.metadata.name}`;
    byKey.set(k, o);
    return w.virtualServerChanged(k, o).sort();
  };
  for (const o of objs) put(o);
  lookups.set(w, byKey);
  return { w, put, byKey };
}

const lookups = new WeakMap<World, Map<string, VirtualServerObject>>();
const byKeyOf = (w: World, k: string): VirtualServerObject => lookups.get(w)!.get(k)!;

test('a Service or its EndpointSlices mark exactly the VirtualServers that reference it', () => {
  const { w } = world([serviceVs('a', 'web', '203.0.113.1'), serviceVs('b', 'web', '203.0.113.2'), serviceVs('c', 'api', '203.0.113.3'), vs('d', { addresses: ['203.0.113.4'], ports: [], backends: { service: { name: 'web' } } }, 'other')]);
  assert.equal(w.serviceChanged(service('web'), false).sort(), ['default/a', 'default/b']);
  assert.equal(w.serviceChanged(service('web', 'other'), false), ['other/d']);
  assert.equal(w.endpointSliceChanged(slice('api-1', 'api', []), false), ['default/c']);
  assert.equal(w.serviceChanged(service('nobody'), true), []);
  // A slice relabelled to another Service marks the users of both.
  const moved = slice('api-1', 'web', []);
  assert.equal(w.endpointSliceChanged(moved, false).sort(), ['default/a', 'default/b', 'default/c']);
  assert.is(w.index.slices.get('default/api'), undefined);
  assert.is(w.index.slices.get('default/web')?.length, 1);
  assert.equal(w.endpointSliceChanged(moved, true).sort(), ['default/a', 'default/b']);
  assert.is(w.index.slices.get('default/web'), undefined);
});

test('a VirtualServer change marks itself and those sharing a VIP (in any spelling), before and after', () => {
  const { put } = world([staticVs('x', ['10.1.0.1'], '2001:db8::1'), staticVs('y', ['10.1.0.2'], '203.0.113.9'), staticVs('z', ['10.1.0.3'], '203.0.113.50')]);
  assert.equal(put(staticVs('w', ['10.1.0.4'], '2001:DB8:0::1')), ['default/w', 'default/x']);
  // w moves from x's VIP to y's: both old and new neighbours are marked.
  assert.equal(put(staticVs('w', ['10.1.0.4'], '203.0.113.9')), ['default/w', 'default/x', 'default/y']);
});

test('admission inputs mark what they can change: pools everything, a cluster IP or ServiceCIDR the VIPs it covers, a namespace its own', () => {
  const { w } = world([staticVs('a', ['198.51.100.1'], '203.0.113.1'), staticVs('b', ['198.51.100.2'], '203.0.113.2'), vs('c', { addresses: ['203.0.113.3'], ports: [], backends: { static: [] } }, 'team')]);
  assert.equal(w.poolChanged(openPool('second', ['192.0.2.0/25']), false).sort(), ['default/a', 'default/b', 'team/c']);
  assert.equal(w.poolChanged(openPool('second', ['192.0.2.0/25']), false), [], 'an unchanged pool marks nothing');
  // A Service whose cluster IP is b's VIP makes it reserved: b, and only b.
  const clash = { ...service('dns', 'kube-system'), spec: { clusterIP: '203.0.113.2' } };
  assert.equal(w.serviceChanged(clash, false), ['default/b']);
  assert.match(w.resolve(byKeyOf(w, 'default/b')).reasons.map((r) => r.message).join(), /cluster IP of Service kube-system\/dns/);
  assert.equal(w.serviceChanged(clash, true), ['default/b']);
  assert.equal(w.serviceCIDRChanged({ metadata: { name: 'extra' }, spec: { cidrs: ['203.0.113.0/30'] } } as never, false).length, 3, 'a range marks every VirtualServer');
  assert.equal(w.namespaceChanged({ metadata: { name: 'team', labels: { a: 'b' } } }, false), ['team/c']);
  assert.equal(w.namespaceChanged({ metadata: { name: 'team', labels: { a: 'b' } } }, false), [], 'same labels');
});

test('nodes: heartbeats mark nothing; label flips mark selector users; address moves mark static users', () => {
  const sel = { directors: { nodeSelector: { role: 'lb' } } };
  const { w } = world([
    staticVs('all', ['198.51.100.1'], '203.0.113.1'),
    staticVs('lb', ['198.51.100.2'], '203.0.113.2', sel),
    staticVs('host', ['192.0.2.9'], '203.0.113.3', sel),
  ]);
  assert.equal(w.nodeChanged('n1', node('n1', {}, '192.0.2.1')).sort(), ['default/all'], 'a new node directs every selector-less VirtualServer');
  const beat = node('n1', {}, '192.0.2.1');
  beat.status!.conditions = [{ type: 'Ready', status: 'False' }];
  assert.equal(w.nodeChanged('n1', beat), []);
  assert.equal(w.nodeChanged('n1', node('n1', { role: 'lb' }, '192.0.2.1')).sort(), ['default/host', 'default/lb']);
  assert.equal(w.nodeChanged('n1', node('n1', { role: 'lb', zone: 'z1' }, '192.0.2.1')), [], 'an unrelated label');
  assert.equal(w.nodeChanged('n1', node('n1', { role: 'lb', zone: 'z1' }, '192.0.2.9')), ['default/host'], 'host backend now on n1');
  assert.equal(w.nodeChanged('n1', undefined).sort(), ['default/all', 'default/host', 'default/lb']);
});

test('resolve arbitrates against VIP neighbours only: the older one wins, the later is in conflict', () => {
  const { w, byKey } = world([staticVs('old', ['10.1.0.1'], '203.0.113.7'), staticVs('new', ['10.1.0.2'], '203.0.113.7'), staticVs('elsewhere', ['10.1.0.3'], '203.0.113.8')]);
  w.nodeChanged('n1', node('n1'));
  const lost = w.resolve(byKey.get('default/new')!);
  assert.equal(lost.reasons.map((r) => r.type), ['Conflict']);
  assert.equal(lost.services, []);
  assert.equal(w.resolve(byKey.get('default/old')!).reasons, []);
  assert.equal(w.resolve(byKey.get('default/old')!).services, ['TCP/203.0.113.7:80']);
  w.virtualServerChanged('default/old', undefined);
  byKey.delete('default/old');
  assert.equal(w.resolve(byKey.get('default/new')!).reasons, [], 'the conflict ends with the older one');
});

test('a claims-only change marks neighbours only when it can change their outcome', () => {
  const port = (n: number) => ({ ports: [{ name: 'http', port: n, protocol: 'TCP', targetPort: 8080 }] });
  const { w, byKey } = world([staticVs('a', ['10.1.0.1'], '203.0.113.7'), staticVs('b', ['10.1.0.2'], '203.0.113.7', port(81)), staticVs('c', ['10.1.0.3'], '203.0.113.7', port(82))]);
  const claims = (o: VirtualServerObject, ...keys: Array<[string, string]>): VirtualServerObject => ({ ...o, status: { claims: keys.map(([service, since]) => ({ service, since })) } });
  const put = (k: string, o: VirtualServerObject) => {
    const old = byKey.get(`default/${k}`)!;
    byKey.set(`default/${k}`, o);
    return w.claimsChanged(`default/${k}`, old, o).sort();
  };
  const t1 = '2025-01-02T00:00:00Z';
  // The first status write records what a won: nobody else holds it, nobody is marked.
  assert.equal(put('a', claims(byKeyOf(w, 'default/a'), ['TCP/203.0.113.7:80', t1])), []);
  // b also holds port 80 (two decisions raced): a's later write with another since marks a and b.
  put('b', claims(byKeyOf(w, 'default/b'), ['TCP/203.0.113.7:80', '2025-01-03T00:00:00Z'], ['TCP/203.0.113.7:81', t1]));
  assert.equal(put('a', claims(byKeyOf(w, 'default/a'), ['TCP/203.0.113.7:80', '2025-01-01T00:00:00Z'])), ['default/a', 'default/b']);
  // An unchanged since on a key b holds marks nothing; a released key marks every neighbour.
  assert.equal(put('a', claims(byKeyOf(w, 'default/a'), ['TCP/203.0.113.7:80', '2025-01-01T00:00:00Z'])), []);
  assert.equal(put('a', claims(byKeyOf(w, 'default/a'))), ['default/a', 'default/b', 'default/c']);
  // The index still follows held VIPs: a VIP held only in claims makes neighbours there.
  assert.equal(put('c', claims(byKeyOf(w, 'default/c'), ['TCP/198.51.100.77:82', t1])), []);
  assert.equal(w.virtualServerChanged('default/x', staticVs('x', ['10.1.0.9'], '198.51.100.77')).sort(), ['default/c', 'default/x']);
});

test.run();
