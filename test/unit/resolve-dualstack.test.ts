// Dual-stack Service-backed VirtualServers from the resolver to the real-server agent: one IPv4
// and one IPv6 VIP served from the same EndpointSlices (one slice per address family, as the
// EndpointSlice controller writes them for a dual-stack Service), for NAT, DR and TUN. Each VIP
// takes only its own family's endpoints, and a dual-stack pod is prepared for both VIPs.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { resolve } from '../../api/resolve/index.ts';
import { localRealServers } from '../../dataplane/cluster/realservers.ts';
import { endpoint, endpointSlice, service, virtualServer } from '../lib/fixtures.ts';
import { NODES } from '../lib/resolve-cases.ts';

const test = suite('resolve: dual-stack Services');
const VIPS = ['203.0.113.10', '2001:db8::10'];
const svcWeb = service('web', [{ name: 'http', port: 80 }]);
// Pods web-a (n2) and web-b (n1), each with an IPv4 and an IPv6 address.
const slices = [
  endpointSlice('web', [endpoint('10.0.0.9', { node: 'n2', pod: 'web-a' }), endpoint('10.0.0.10', { node: 'n1', pod: 'web-b' })], { ports: [{ name: 'http', port: 80 }] }),
  endpointSlice('web', [endpoint('fd00:10::9', { node: 'n2', pod: 'web-a' }), endpoint('fd00:10::a', { node: 'n1', pod: 'web-b' })], { ports: [{ name: 'http', port: 80 }] }),
];

function planFor(forwarding: 'NAT' | 'DR' | 'TUN') {
  const vs = virtualServer('web', {
    addresses: VIPS, ports: [{ name: 'http', port: 80 }], forwarding,
    backends: { service: { name: 'web' } }, realServers: { prepare: forwarding !== 'NAT' },
  });
  return resolve({ virtualServers: [vs], services: [svcWeb], endpointSlices: slices, nodes: NODES, admission: { unrestricted: true } });
}

for (const forwarding of ['NAT', 'DR', 'TUN'] as const) {
  test(`${forwarding}: each VIP gets exactly its family's endpoints of the same slices`, () => {
    const plan = planFor(forwarding);
    assert.equal(plan.services.map((s) => [s.vip, s.family, s.forwarding, s.realServers.map((r) => `${r.address} ${r.node} ${r.pod?.name}`)]), [
      ['203.0.113.10', 4, forwarding, ['10.0.0.9 n2 web-a', '10.0.0.10 n1 web-b']],
      ['2001:db8::10', 6, forwarding, ['fd00:10::9 n2 web-a', 'fd00:10::a n1 web-b']],
    ]);
    assert.equal(plan.virtualServers.get('default/web')!.reasons, []);
  });
}

for (const forwarding of ['DR', 'TUN'] as const) {
  test(`${forwarding}: node n2 prepares web-a's IPv4 address for the IPv4 VIP and its IPv6 address for the IPv6 VIP`, () => {
    const plan = planFor(forwarding);
    const local = localRealServers([{ owner: { uid: 'uid-web', virtualServer: 'default/web' }, services: plan.services }], 'n2');
    assert.equal(Object.fromEntries([...local].map(([address, l]) => [address, l.vips])), {
      '10.0.0.9': [{ mode: forwarding, vip: '203.0.113.10' }],
      'fd00:10::9': [{ mode: forwarding, vip: '2001:db8::10' }],
    });
  });
}

test.run();
