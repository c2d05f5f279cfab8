// Order independence and output ordering: the plan is a function of the set of input objects,
// never of the order a watch delivered them in. Also an (untimed) scale smoke test and a check
// that resolveOne reads only its own Service and slices.
import type { V1EndpointSlice, V1Node, V1Service } from '@kubernetes/client-node';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Plan } from '../../api/plan.ts';
import { buildIndex, compareAddresses, resolve, resolveOne } from '../../api/resolve/index.ts';
import type { ResolveInput, VirtualServerLike } from '../../api/resolve/types.ts';
import { draining, endpoint, endpointSlice, node, rng, service, shuffled, virtualServer } from '../lib/fixtures.ts';

function scenario(): ResolveInput {
  const vss: VirtualServerLike[] = [
    virtualServer('web', { addresses: ['203.0.113.10', '2001:db8::10'], ports: [{ name: 'http', port: 80 }, { name: 'dns', port: 53, protocol: 'UDP' }], backends: { service: { name: 'web' } } }, { created: '2025-01-02T00:00:00Z' }),
    virtualServer('web-dup', { addresses: ['203.0.113.10'], ports: [{ name: 'http', port: 80 }, { name: 'alt', port: 8080 }], backends: { service: { name: 'web' } } }, { created: '2025-01-02T00:00:00Z' }),
    virtualServer('old', { addresses: ['2001:DB8:0::10'], ports: [{ name: 'http', port: 80 }], backends: { static: [{ address: '2001:db8:1::1' }] } }, { namespace: 'other', created: '2024-01-01T00:00:00Z' }),
    virtualServer('dr', { addresses: ['203.0.113.20'], ports: [{ name: 'http', port: 80 }], forwarding: 'DR', directors: { nodeSelector: { role: 'lb' } }, backends: { service: { name: 'web' } } }),
    virtualServer('tun', { addresses: ['203.0.113.30'], ports: [{ name: 'http', port: 80 }], forwarding: 'TUN', scheduler: { name: 'mh', flags: ['mh-port', 'mh-fallback'] }, backends: { static: [{ address: '192.168.0.3', weight: 0 }, { address: 'fd00::9' }, { address: '172.16.0.10' }, { address: '172.16.0.9', weight: 3 }] } }),
    virtualServer('bad', { addresses: ['nope'], ports: [{ name: 'http', port: 80 }], backends: { static: [{ address: '172.16.0.3' }] } }),
    virtualServer('ghost', { addresses: ['203.0.113.40'], ports: [{ name: 'http', port: 80 }], backends: { service: { name: 'missing' } } }, { namespace: 'a' }),
    virtualServer('ghost', { addresses: ['203.0.113.41'], ports: [{ name: 'http', port: 80 }], backends: { service: { name: 'missing' } } }, { namespace: 'a-b' }),
  ];
  const services: V1Service[] = [
    service('web', [{ name: 'http', port: 80 }, { name: 'dns', port: 53, protocol: 'UDP' }, { name: 'dns-tcp', port: 53 }, { name: 'alt', port: 8080 }]),
    service('web', [{ name: 'http', port: 80 }], { namespace: 'other' }),
  ];
  const ports = [{ name: 'http', port: 8080 }, { name: 'dns', port: 5353, protocol: 'UDP' }, { name: 'dns-tcp', port: 5353 }, { name: 'alt', port: 8080 }];
  const slices: V1EndpointSlice[] = [
    endpointSlice('web', [endpoint('10.0.0.10', { node: 'n1', pod: 'a' }), draining('10.0.0.2', { node: 'n2', pod: 'b' }), endpoint('10.0.0.9', { node: 'n3', pod: 'c' }), endpoint('10.0.0.3', { ready: false })], { ports }),
    endpointSlice('web', [endpoint('10.0.0.2', { node: 'n2', pod: 'b2' }), draining('10.0.0.10', { node: 'n1', pod: 'a-old' }), draining('10.0.0.11', { node: 'n3', pod: 'x' }), draining('10.0.0.11', { node: 'n2', pod: 'y' })], { ports }),
    endpointSlice('web', [endpoint('fd00::10', { node: 'n1', pod: 'a' }), endpoint('fd00::2', { node: 'n2', pod: 'b' })], { ports, addressType: 'IPv6' }),
    endpointSlice('web', [endpoint('10.0.0.50')], { ports: [{ name: 'http', port: 80 }] }),
    endpointSlice('web', [endpoint('10.9.9.9')], { ports, namespace: 'other' }),
  ];
  const nodes: V1Node[] = [
    node('n3', ['192.168.0.3', 'fd00::3']), node('n1', ['192.168.0.1'], { role: 'lb' }), node('n2', ['192.168.0.2', '172.16.0.9'], { role: 'lb' }),
  ];
  return { virtualServers: vss, services, endpointSlices: slices, nodes, admission: { unrestricted: true } };
}

/** Shuffles every input list, and the lists inside the objects whose order carries no meaning. */
function shuffleInput(input: ResolveInput, seed: number): ResolveInput {
  const r = rng(seed);
  const c = structuredClone(input) as { -readonly [K in keyof ResolveInput]: ResolveInput[K] extends readonly (infer T)[] ? T[] : never };
  for (const s of c.endpointSlices) { s.endpoints = shuffled(s.endpoints ?? [], r); s.ports = shuffled(s.ports ?? [], r); }
  for (const s of c.services) if (s.spec?.ports) s.spec.ports = shuffled(s.spec.ports, r);
  for (const n of c.nodes) if (n.status?.addresses) n.status.addresses = shuffled(n.status.addresses, r);
  return {
    virtualServers: shuffled(c.virtualServers, r), services: shuffled(c.services, r),
    endpointSlices: shuffled(c.endpointSlices, r), nodes: shuffled(c.nodes, r), admission: { unrestricted: true },
  };
}

/** Everything, in iteration order, as one string: catches order differences deep-equality ignores (Map order). */
const serialize = (p: Plan) => JSON.stringify({ services: p.services, virtualServers: [...p.virtualServers] });

const test = suite('resolve: order independence and output order');

test('the scenario exercises conflicts, duplicates, draining, invalid and missing backends', () => {
  const plan = resolve(scenario());
  const types = new Set([...plan.virtualServers.values()].flatMap((r) => r.reasons.map((x) => x.type)));
  for (const t of ['Conflict', 'InvalidSpec', 'ServiceNotFound', 'PortRemapNotSupported']) assert.ok(types.has(t as never), t);
  const web80 = plan.services.find((s) => s.key === 'TCP/203.0.113.10:80');
  assert.equal(web80?.owner.name, 'web', 'same age: web beats web-dup by name');
  assert.equal(web80?.realServers.map((x) => `${x.address}:${x.port} ${x.state} ${x.pod?.name ?? '-'}`), [
    '10.0.0.2:8080 Ready b2', '10.0.0.9:8080 Ready c', '10.0.0.10:8080 Ready a', '10.0.0.11:8080 Draining y', '10.0.0.50:80 Ready -',
  ], 'duplicates across slices: Ready preferred, else the smaller node name');
  assert.equal(plan.services.find((s) => s.key === 'TCP/203.0.113.20:80')?.realServers.map((x) => x.address), ['10.0.0.50'], 'DR keeps only endpoints on the virtual port');
  assert.equal(plan.services.find((s) => s.key === 'TCP/[2001:db8::10]:80')?.owner.namespace, 'other', 'the older VirtualServer wins the IPv6 key');
});

test('every list in the plan is sorted', () => {
  const plan = resolve(scenario());
  const keys = plan.services.map((s) => s.key);
  assert.equal(keys, [...keys].sort());
  for (const s of plan.services) {
    const sorted = [...s.realServers].sort((a, b) => compareAddresses(a.address, b.address) || a.port - b.port);
    assert.equal(s.realServers, sorted, s.key);
    assert.equal(s.directors, [...s.directors].sort(), s.key);
  }
  const ids = [...plan.virtualServers.values()].map((r) => [r.ref.namespace, r.ref.name] as const);
  assert.equal(ids, [...ids].sort((a, b) => (a[0] === b[0] ? (a[1] < b[1] ? -1 : 1) : a[0] < b[0] ? -1 : 1)));
  for (const r of plan.virtualServers.values()) {
    assert.equal(r.services, [...r.services].sort());
    const rsSorted = [...r.realServers].sort((a, b) => (a.portName === b.portName ? compareAddresses(a.address, b.address) || a.port - b.port : a.portName < b.portName ? -1 : 1));
    assert.equal(r.realServers, rsSorted);
  }
});

test('shuffling every input list with several seeds gives the identical plan', () => {
  const input = scenario();
  const want = resolve(input);
  for (const seed of [1, 2, 3, 7, 42, 1234, 99991, 2 ** 31 - 1]) {
    const got = resolve(shuffleInput(input, seed));
    assert.equal(got, want, `seed ${seed}`);
    assert.is(serialize(got), serialize(want), `seed ${seed} (iteration order)`);
  }
});

test('resolve does not modify its input', () => {
  const input = scenario();
  const before = structuredClone(input);
  resolve(input);
  assert.equal(input, before);
});

function scaleInput(count: number, perService: number): ResolveInput {
  const vss: VirtualServerLike[] = [], services: V1Service[] = [], slices: V1EndpointSlice[] = [];
  for (let i = 0; i < count; i++) {
    const name = `svc-${i}`;
    vss.push(virtualServer(name, { addresses: [`198.18.${i >> 8}.${i & 255}`], ports: [{ name: 'http', port: 80 }], backends: { service: { name } } }));
    services.push(service(name, [{ name: 'http', port: 80 }]));
    const eps = Array.from({ length: perService }, (_, j) => endpoint(`10.${i >> 8}.${i & 255}.${j + 1}`, { node: `n${j % 3}`, pod: `${name}-${j}` }));
    slices.push(endpointSlice(name, eps));
  }
  return { virtualServers: vss, services, endpointSlices: slices, nodes: [node('n0'), node('n1'), node('n2')], admission: { unrestricted: true } };
}

test('scale smoke (untimed): 10,000 VirtualServers, 100,000 endpoints', () => {
  const plan = resolve(scaleInput(10_000, 10));
  assert.is(plan.services.length, 10_000);
  assert.is(plan.services.reduce((n, s) => n + s.realServers.length, 0), 100_000);
  assert.is(plan.virtualServers.size, 10_000);
  assert.ok([...plan.virtualServers.values()].every((r) => r.reasons.length === 0 && r.realServers.length === 10));
});

test('resolveOne reads only its own Service and slices', () => {
  const input = scaleInput(200, 3);
  const index = buildIndex(input);
  const poison = (what: string) => new Proxy([], { get: () => { throw new Error(`read ${what}`); } });
  for (const key of index.slices.keys()) if (key !== 'default/svc-7') index.slices.set(key, poison(key));
  for (const key of index.services.keys()) if (key !== 'default/svc-7') index.services.set(key, poison(key) as never);
  const mine = input.virtualServers.find((vs) => vs.metadata?.name === 'svc-7');
  const got = resolveOne(mine!, index);
  assert.equal(got.services.map((s) => s.realServers.length), [3]);
  assert.equal(got.services, resolve(input).services.filter((s) => s.owner.name === 'svc-7'));
});

test.run();
