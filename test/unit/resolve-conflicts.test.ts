// Conflicts: several VirtualServers claiming one (VIP, protocol, port). The oldest wins, then
// namespace/name; the loser keeps its other keys; only valid VirtualServers take part. Also the
// incremental pieces (buildIndex, resolveOne, arbitrate, assemble) agree with resolve().
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Reason } from '../../api/plan.ts';
import { arbitrate, assemble, buildIndex, resolve, resolveOne } from '../../api/resolve/index.ts';
import type { VirtualServerSpec } from '../../api/generated/index.ts';
import type { VirtualServerLike } from '../../api/resolve/types.ts';
import { node, virtualServer } from '../lib/fixtures.ts';

const NODES = [node('n1')];
const spec = (addresses: string[], ports: VirtualServerSpec['ports'], rs = '172.16.0.3'): VirtualServerSpec =>
  ({ addresses, ports, backends: { static: [{ address: rs }] } });
const run = (vss: VirtualServerLike[]) => resolve({ virtualServers: vss, services: [], endpointSlices: [], nodes: NODES, admission: { unrestricted: true } });
const owners = (vss: VirtualServerLike[]) => run(vss).services.map((s) => `${s.key} ${s.owner.namespace}/${s.owner.name}`);

const test = suite('resolve: conflicts');

test('the oldest VirtualServer wins a key; the younger loses only that key and keeps its other ports', () => {
  const older = virtualServer('zeta', spec(['203.0.113.10'], [{ name: 'http', port: 80 }]), { created: '2025-01-01T00:00:00Z' });
  const younger = virtualServer('alpha', spec(['203.0.113.10'], [{ name: 'http', port: 80 }, { name: 'https', port: 443 }], '172.16.0.4'), { created: '2025-01-02T00:00:00Z' });
  const plan = run([younger, older]);
  assert.equal(plan.services.map((s) => `${s.key} ${s.owner.name}`), ['TCP/203.0.113.10:443 alpha', 'TCP/203.0.113.10:80 zeta']);
  const alpha = plan.virtualServers.get('default/alpha');
  assert.equal(alpha?.services, ['TCP/203.0.113.10:443']);
  assert.equal(alpha?.realServers, [{ portName: 'https', address: '172.16.0.4', port: 443, weight: 1, state: 'Ready' }]);
  assert.equal(alpha?.reasons, [{
    type: 'Conflict', field: 'spec.addresses[0]',
    message: 'TCP/203.0.113.10:80 is already claimed by VirtualServer default/zeta (it is older); this VirtualServer does not program it',
  }] satisfies Reason[]);
  const zeta = plan.virtualServers.get('default/zeta');
  assert.equal(zeta?.services, ['TCP/203.0.113.10:80']);
  assert.equal(zeta?.reasons, []);
});

test('same age: namespace, then name decides (compared as a pair, not as one "ns/name" string)', () => {
  const s = spec(['203.0.113.10'], [{ name: 'http', port: 80 }]);
  assert.equal(owners([virtualServer('beta', s), virtualServer('alpha', s)]), ['TCP/203.0.113.10:80 default/alpha']);
  // As strings "a-b/x" < "a/x", but namespace "a" sorts before "a-b".
  const plan = run([virtualServer('x', s, { namespace: 'a-b' }), virtualServer('x', s, { namespace: 'a' })]);
  assert.equal(plan.services.map((x) => x.owner.namespace), ['a']);
  assert.equal(plan.virtualServers.get('a-b/x')?.reasons, [{
    type: 'Conflict', field: 'spec.addresses[0]',
    message: 'TCP/203.0.113.10:80 is already claimed by VirtualServer a/x (it was created at the same time and sorts first by namespace/name); this VirtualServer does not program it',
  }]);
  assert.equal([...plan.virtualServers.keys()], ['a/x', 'a-b/x'], 'resolutions iterate in (namespace, name) order');
});

test('age beats name; a missing creationTimestamp counts as youngest', () => {
  const s = spec(['203.0.113.10'], [{ name: 'http', port: 80 }]);
  const young = virtualServer('aaa', s, { created: '2025-06-01T00:00:00Z' });
  const old = virtualServer('zzz', s, { created: '2024-06-01T00:00:00Z' });
  assert.equal(owners([young, old]), ['TCP/203.0.113.10:80 default/zzz']);
  const unknown = { ...virtualServer('000', s), metadata: { name: '000', namespace: 'default' } };
  assert.equal(owners([unknown, young]), ['TCP/203.0.113.10:80 default/aaa']);
});

test('three claimants: every loser names the winner; sharing a VIP on another port or protocol is fine', () => {
  const s = spec(['203.0.113.10'], [{ name: 'http', port: 80 }]);
  const plan = run([
    virtualServer('c', s, { created: '2025-01-03T00:00:00Z' }),
    virtualServer('b', s, { created: '2025-01-02T00:00:00Z' }),
    virtualServer('a', s, { created: '2025-01-01T00:00:00Z' }),
    virtualServer('udp', spec(['203.0.113.10'], [{ name: 'http', port: 80, protocol: 'UDP' }]), { created: '2025-01-04T00:00:00Z' }),
    virtualServer('other', spec(['203.0.113.10'], [{ name: 'http', port: 8080 }]), { created: '2025-01-04T00:00:00Z' }),
  ]);
  assert.equal(plan.services.map((x) => `${x.key} ${x.owner.name}`), ['TCP/203.0.113.10:80 a', 'TCP/203.0.113.10:8080 other', 'UDP/203.0.113.10:80 udp']);
  for (const loser of ['b', 'c']) {
    assert.equal(plan.virtualServers.get(`default/${loser}`)?.reasons.map((r) => [r.type, r.message.includes('default/a ')]), [['Conflict', true]]);
    assert.equal(plan.virtualServers.get(`default/${loser}`)?.services, []);
    assert.equal(plan.virtualServers.get(`default/${loser}`)?.realServers, [], 'a loser of every key resolves no real servers');
  }
  for (const ok of ['a', 'udp', 'other']) assert.equal(plan.virtualServers.get(`default/${ok}`)?.reasons, [], ok);
});

test('a conflict is detected whatever the spelling of the IPv6 VIP; the field names the VIP', () => {
  const plan = run([
    virtualServer('a', spec(['2001:db8::1'], [{ name: 'http', port: 80 }], '2001:db8:1::3'), { created: '2025-01-01T00:00:00Z' }),
    virtualServer('b', spec(['203.0.113.9', '2001:DB8:0:0::1'], [{ name: 'http', port: 80 }], '2001:db8:1::4'), { created: '2025-01-02T00:00:00Z' }),
  ]);
  assert.equal(plan.services.map((x) => `${x.key} ${x.owner.name}`), ['TCP/203.0.113.9:80 b', 'TCP/[2001:db8::1]:80 a']);
  // b's IPv4 VIP has no IPv4 real server, and it lost the IPv6 key that had one.
  assert.equal(plan.virtualServers.get('default/b')?.reasons.map((r) => [r.type, r.field]), [
    ['Conflict', 'spec.addresses[1]'], ['NoReadyEndpoints', 'spec.backends'],
  ]);
});

test('only valid VirtualServers take part: an older invalid claimant neither wins nor causes a Conflict', () => {
  const invalid = virtualServer('old', { ...spec(['203.0.113.10'], [{ name: 'http', port: 80 }]), scheduler: { name: 'nope' } } as unknown as VirtualServerSpec, { created: '2020-01-01T00:00:00Z' });
  const valid = virtualServer('new', spec(['203.0.113.10'], [{ name: 'http', port: 80 }]), { created: '2025-01-01T00:00:00Z' });
  const plan = run([invalid, valid]);
  assert.equal(plan.services.map((x) => x.owner.name), ['new']);
  assert.equal(plan.virtualServers.get('default/new')?.reasons, []);
  assert.equal(plan.virtualServers.get('default/old')?.reasons.map((r) => r.type), ['InvalidSpec']);
});

test('a loser does not report NoReadyEndpoints for a key it does not own', () => {
  const plan = run([
    virtualServer('a', spec(['203.0.113.10'], [{ name: 'http', port: 80 }]), { created: '2025-01-01T00:00:00Z' }),
    virtualServer('b', { addresses: ['203.0.113.10'], ports: [{ name: 'http', port: 80 }], backends: { static: [{ address: '172.16.0.5', weight: 0 }] } }, { created: '2025-01-02T00:00:00Z' }),
  ]);
  assert.equal(plan.virtualServers.get('default/b')?.reasons.map((r) => r.type), ['Conflict']);
});

test('incremental pieces: resolveOne + arbitrate + assemble give the same plan as resolve', () => {
  const vss = [
    virtualServer('a', spec(['203.0.113.10'], [{ name: 'http', port: 80 }]), { created: '2025-01-01T00:00:00Z' }),
    virtualServer('b', spec(['203.0.113.10'], [{ name: 'http', port: 80 }, { name: 'x', port: 81 }]), { created: '2025-01-02T00:00:00Z' }),
    virtualServer('c', spec(['203.0.113.11'], [{ name: 'http', port: 80 }])),
  ];
  const index = buildIndex({ services: [], endpointSlices: [], nodes: NODES, admission: { unrestricted: true } });
  const candidates = vss.map((vs) => resolveOne(vs, index));
  assert.equal(assemble(candidates), run(vss));
  const { winners, losses } = arbitrate(candidates);
  assert.equal(winners.get('TCP/203.0.113.10:80')?.ref.name, 'a');
  assert.equal([...losses.keys()], ['default/b']);
  assert.equal(losses.get('default/b')?.map((l) => [l.key, l.winner.ref.name]), [['TCP/203.0.113.10:80', 'a']]);
  // Arbitrating only the claimants of the contested key decides it the same way.
  const subset = arbitrate([candidates[1]!, candidates[0]!]);
  assert.equal(subset.winners.get('TCP/203.0.113.10:80')?.ref.name, 'a');
});

test.run();
