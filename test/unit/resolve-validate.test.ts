// Defensive validation: specs the CRD would reject (stored before a CRD change, or written around
// it) become InvalidSpec reasons naming the field, the VirtualServer contributes no services,
// and the resolver never throws, whatever the shape of the object.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { resolve } from '../../api/resolve/index.ts';
import type { VirtualServerSpec } from '../../api/generated/index.ts';
import type { VirtualServerLike } from '../../api/resolve/types.ts';
import { NS, node, virtualServer } from '../lib/fixtures.ts';

const base = (): VirtualServerSpec => ({
  addresses: ['203.0.113.10'],
  ports: [{ name: 'http', port: 80 }],
  backends: { static: [{ address: '172.16.0.3' }] },
});
const svcBackend = { service: { name: 'web' } };

type Bad = [name: string, spec: unknown, want: Array<[field: string, message: RegExp]>];
const at = (field: string, message: RegExp): [string, RegExp] => [field, message];
const spec = (over: Record<string, unknown>) => ({ ...base(), ...over });

const cases: Bad[] = [
  ['spec missing', undefined, [at('spec', /missing/)]],
  ['spec not an object', 'nope', [at('spec', /not an object/)]],
  ['no addresses', spec({ addresses: [] }), [at('spec.addresses', /1 to 16/)]],
  ['addresses not a list', spec({ addresses: '203.0.113.10' }), [at('spec.addresses', /1 to 16/)]],
  ['17 addresses', spec({ addresses: Array.from({ length: 17 }, (_, i) => `203.0.113.${i + 1}`) }), [at('spec.addresses', /1 to 16/)]],
  ['unparsable address', spec({ addresses: ['203.0.113.300'] }), [at('spec.addresses[0]', /not an IPv4 or IPv6 address/)]],
  ['address with prefix', spec({ addresses: ['203.0.113.10/32'] }), [at('spec.addresses[0]', /not an IPv4/)]],
  ['address with leading zero', spec({ addresses: ['203.0.113.010'] }), [at('spec.addresses[0]', /not an IPv4/)]],
  ['IPv6 with zone', spec({ addresses: ['fe80::1%eth0'] }), [at('spec.addresses[0]', /not an IPv4/)]],
  ['IPv6 with two ::', spec({ addresses: ['2001::db8::1'] }), [at('spec.addresses[0]', /not an IPv4/)]],
  ['address not a string', spec({ addresses: [42] }), [at('spec.addresses[0]', /not an IPv4/)]],
  ['unspecified VIP', spec({ addresses: ['0.0.0.0', '::'] }), [at('spec.addresses[0]', /unspecified/), at('spec.addresses[1]', /unspecified/)]],
  ['loopback VIP', spec({ addresses: ['127.0.0.5', '::1'] }), [at('spec.addresses[0]', /loopback/), at('spec.addresses[1]', /loopback/)]],
  ['multicast VIP', spec({ addresses: ['224.0.0.1', 'ff02::1', '255.255.255.255'] }), [at('spec.addresses[0]', /multicast/), at('spec.addresses[1]', /multicast/), at('spec.addresses[2]', /broadcast/)]],
  ['link-local VIP', spec({ addresses: ['169.254.1.1', 'fe80::1'] }), [at('spec.addresses[0]', /link-local/), at('spec.addresses[1]', /link-local/)]],
  ['IPv4-mapped VIP', spec({ addresses: ['::ffff:203.0.113.10'] }), [at('spec.addresses[0]', /IPv4-mapped/)]],
  ['same VIP twice in two spellings', spec({ addresses: ['2001:db8::1', '2001:DB8:0:0::1'] }), [at('spec.addresses[1]', /2001:db8::1 is listed twice/)]],
  ['no ports', spec({ ports: [] }), [at('spec.ports', /1 to 64/)]],
  ['port entry null', spec({ ports: [null] }), [at('spec.ports[0]', /not an object/)]],
  ['port name missing', spec({ ports: [{ port: 80 }] }), [at('spec.ports[0].name', /required/)]],
  ['port name twice', spec({ ports: [{ name: 'a', port: 80 }, { name: 'a', port: 81 }] }), [at('spec.ports[1].name', /used twice/)]],
  ['port 0', spec({ ports: [{ name: 'a', port: 0 }] }), [at('spec.ports[0].port', /1 to 65535/)]],
  ['port 65536', spec({ ports: [{ name: 'a', port: 65536 }] }), [at('spec.ports[0].port', /1 to 65535/)]],
  ['port as a string', spec({ ports: [{ name: 'a', port: '80' }] }), [at('spec.ports[0].port', /1 to 65535/)]],
  ['port not an integer', spec({ ports: [{ name: 'a', port: 80.5 }] }), [at('spec.ports[0].port', /1 to 65535/)]],
  ['unknown protocol', spec({ ports: [{ name: 'a', port: 80, protocol: 'ICMP' }] }), [at('spec.ports[0].protocol', /unknown protocol "ICMP"/)]],
  ['same port and protocol twice', spec({ ports: [{ name: 'a', port: 80 }, { name: 'b', port: 80, protocol: 'TCP' }] }), [at('spec.ports[1]', /TCP\/80 is listed twice/)]],
  ['targetPort with DR', spec({ forwarding: 'DR', ports: [{ name: 'a', port: 80, targetPort: 8080 }] }), [at('spec.ports[0].targetPort', /DR forwarding cannot remap ports/)]],
  ['targetPort with TUN', spec({ forwarding: 'TUN', ports: [{ name: 'a', port: 80, targetPort: 8080 }] }), [at('spec.ports[0].targetPort', /TUN forwarding cannot remap ports/)]],
  ['targetPort with a Service backend', spec({ ports: [{ name: 'a', port: 80, targetPort: 8080 }], backends: svcBackend }), [at('spec.ports[0].targetPort', /static backends only/)]],
  ['targetPort out of range', spec({ ports: [{ name: 'a', port: 80, targetPort: 0 }] }), [at('spec.ports[0].targetPort', /1 to 65535/)]],
  ['unknown forwarding', spec({ forwarding: 'MASQ' }), [at('spec.forwarding', /unknown forwarding method "MASQ"/)]],
  ['unknown tunnel type', spec({ forwarding: 'TUN', tunnel: { type: 'vxlan' } }), [at('spec.tunnel.type', /unknown tunnel type "vxlan"/)]],
  ['gue without port', spec({ forwarding: 'TUN', tunnel: { type: 'gue' } }), [at('spec.tunnel.port', /needs a UDP port/)]],
  ['ipip with port', spec({ forwarding: 'TUN', tunnel: { type: 'ipip', port: 5555 } }), [at('spec.tunnel.port', /gue only, not ipip/)]],
  ['RemoteChecksum with gre', spec({ forwarding: 'TUN', tunnel: { type: 'gre', checksum: 'RemoteChecksum' } }), [at('spec.tunnel.checksum', /gue only/)]],
  ['unknown checksum', spec({ forwarding: 'TUN', tunnel: { checksum: 'Yes' } }), [at('spec.tunnel.checksum', /unknown checksum "Yes"/)]],
  ['tunnel not an object', spec({ forwarding: 'TUN', tunnel: 'ipip' }), [at('spec.tunnel', /not an object/)]],
  ['unknown returnPath', spec({ nat: { returnPath: 'Masquerade' } }), [at('spec.nat.returnPath', /unknown returnPath "Masquerade"/)]],
  ['unknown scheduler', spec({ scheduler: { name: 'fancy' } }), [at('spec.scheduler.name', /unknown scheduler "fancy"/)]],
  ['sh flag with wrr', spec({ scheduler: { name: 'wrr', flags: ['sh-port'] } }), [at('spec.scheduler.flags[0]', /does not apply to scheduler wrr/)]],
  ['mh flag with sh', spec({ scheduler: { name: 'sh', flags: ['sh-port', 'mh-port'] } }), [at('spec.scheduler.flags[1]', /does not apply to scheduler sh/)]],
  ['flag with the default scheduler', spec({ scheduler: { flags: ['mh-fallback'] } }), [at('spec.scheduler.flags[0]', /does not apply to scheduler wlc/)]],
  ['flag twice', spec({ scheduler: { name: 'mh', flags: ['mh-port', 'mh-port'] } }), [at('spec.scheduler.flags[1]', /listed twice/)]],
  ['unknown flag', spec({ scheduler: { name: 'mh', flags: ['ops'] } }), [at('spec.scheduler.flags[0]', /unknown scheduler flag "ops"/)]],
  ['flags not a list', spec({ scheduler: { name: 'sh', flags: 'sh-port' } }), [at('spec.scheduler.flags', /not a list/)]],
  ['persistence without timeout', spec({ persistence: {} }), [at('spec.persistence.timeoutSeconds', /1 to 2678400/)]],
  ['persistence timeout too long', spec({ persistence: { timeoutSeconds: 2678401 } }), [at('spec.persistence.timeoutSeconds', /1 to 2678400/)]],
  ['non-contiguous netmask', spec({ persistence: { timeoutSeconds: 60, netmask: '255.0.255.0' } }), [at('spec.persistence.netmask', /not a contiguous/)]],
  ['zero netmask', spec({ persistence: { timeoutSeconds: 60, netmask: '0.0.0.0' } }), [at('spec.persistence.netmask', /not a contiguous/)]],
  ['IPv6 prefix 0', spec({ persistence: { timeoutSeconds: 60, ipv6PrefixLength: 0 } }), [at('spec.persistence.ipv6PrefixLength', /1 to 128/)]],
  ['IPv6 prefix 129', spec({ persistence: { timeoutSeconds: 60, ipv6PrefixLength: 129 } }), [at('spec.persistence.ipv6PrefixLength', /1 to 128/)]],
  ['no backends', spec({ backends: undefined }), [at('spec.backends', /exactly one of service or static/)]],
  ['empty backends', spec({ backends: {} }), [at('spec.backends', /exactly one/)]],
  ['both backends', spec({ backends: { ...svcBackend, static: [{ address: '172.16.0.3' }] } }), [at('spec.backends', /exactly one/)]],
  ['Service name empty', spec({ backends: { service: { name: '' } } }), [at('spec.backends.service.name', /required/)]],
  ['mapping of an unknown port', spec({ backends: { service: { name: 'web', ports: [{ name: 'https', servicePort: 443 }] } } }), [at('spec.backends.service.ports[0].name', /not the name of a spec.ports entry/)]],
  ['port mapped twice', spec({ backends: { service: { name: 'web', ports: [{ name: 'http', servicePort: 80 }, { name: 'http', servicePort: 'web' }] } } }), [at('spec.backends.service.ports[1].name', /mapped twice/)]],
  ['servicePort 0', spec({ backends: { service: { name: 'web', ports: [{ name: 'http', servicePort: 0 }] } } }), [at('spec.backends.service.ports[0].servicePort', /name or a number/)]],
  ['servicePort empty', spec({ backends: { service: { name: 'web', ports: [{ name: 'http', servicePort: '' }] } } }), [at('spec.backends.service.ports[0].servicePort', /name or a number/)]],
  ['static empty', spec({ backends: { static: [] } }), [at('spec.backends.static', /1 to 1024/)]],
  ['static not a list', spec({ backends: { static: { address: '172.16.0.3' } } }), [at('spec.backends.static', /1 to 1024/)]],
  ['static bad address', spec({ backends: { static: [{ address: 'host.example' }, { address: '127.0.0.1' }] } }), [at('spec.backends.static[0].address', /not an IPv4/), at('spec.backends.static[1].address', /loopback/)]],
  ['static address twice, two spellings', spec({ backends: { static: [{ address: 'fd00::3' }, { address: 'FD00:0::3', port: 81 }] } }), [at('spec.backends.static[1].address', /fd00::3 is listed twice/)]],
  ['static address is a VIP', spec({ backends: { static: [{ address: '203.0.113.10' }] } }), [at('spec.backends.static[0].address', /cannot be its own real server/)]],
  ['static port with DR', spec({ forwarding: 'DR', backends: { static: [{ address: '172.16.0.3', port: 8080 }] } }), [at('spec.backends.static[0].port', /DR forwarding cannot remap/)]],
  ['static port with two virtual ports', spec({ ports: [{ name: 'a', port: 80 }, { name: 'b', port: 81 }], backends: { static: [{ address: '172.16.0.3', port: 8080 }] } }), [at('spec.backends.static[0].port', /exactly one spec.ports entry/)]],
  ['static port and targetPort', spec({ ports: [{ name: 'a', port: 80, targetPort: 8000 }], backends: { static: [{ address: '172.16.0.3', port: 8080 }] } }), [at('spec.backends.static[0].port', /one place/)]],
  ['static weight too big', spec({ backends: { static: [{ address: '172.16.0.3', weight: 65536 }] } }), [at('spec.backends.static[0].weight', /0 to 65535/)]],
  ['static weight negative', spec({ backends: { static: [{ address: '172.16.0.3', weight: -1 }] } }), [at('spec.backends.static[0].weight', /0 to 65535/)]],
  ['nodeSelector with a number', spec({ directors: { nodeSelector: { role: 1 } } }), [at('spec.directors.nodeSelector', /string values/)]],
  ['prepare not a boolean', spec({ forwarding: 'DR', realServers: { prepare: 'yes' } }), [at('spec.realServers.prepare', /true or false/)]],
  ['several problems at once, sorted by field', spec({ addresses: ['x'], ports: [{ name: 'a', port: 0 }], scheduler: { name: 'nope' } }),
    [at('spec.addresses[0]', /not an IPv4/), at('spec.ports[0].port', /1 to 65535/), at('spec.scheduler.name', /unknown scheduler/)]],
];

const test = suite('resolve: defensive validation');

for (const [name, s, want] of cases) {
  test(`InvalidSpec: ${name}`, () => {
    const vs = { ...virtualServer('bad', base()), spec: s } as VirtualServerLike;
    const plan = resolve({ virtualServers: [vs], services: [], endpointSlices: [], nodes: [node('n1')], admission: { unrestricted: true } });
    assert.equal(plan.services, [], 'an invalid VirtualServer contributes no services');
    const res = plan.virtualServers.get(`${NS}/bad`);
    assert.ok(res, 'it still has a resolution');
    assert.equal(res.services, []);
    assert.equal(res.realServers, []);
    assert.equal(res.reasons.map((r) => [r.type, r.field]), want.map(([f]) => ['InvalidSpec', f]));
    res.reasons.forEach((r, i) => assert.match(r.message, (want[i] as [string, RegExp])[1]));
  });
}

test('the base spec of the table is valid (so each case fails for its own reason)', () => {
  const plan = resolve({ virtualServers: [virtualServer('bad', base())], services: [], endpointSlices: [], nodes: [node('n1')], admission: { unrestricted: true } });
  assert.equal(plan.virtualServers.get(`${NS}/bad`)?.reasons, []);
  assert.equal(plan.services.map((s) => s.key), ['TCP/203.0.113.10:80']);
});

test('an invalid VirtualServer does not hide a valid one, and garbage never throws', () => {
  const garbage: unknown[] = [
    {}, { metadata: { name: 'm' } }, { metadata: { name: 'n', namespace: NS }, spec: { addresses: null, ports: 'x', backends: { static: 'x' } } },
    { metadata: { name: 'o', namespace: NS }, spec: { addresses: [{}], ports: [[]], backends: { service: 'web' }, scheduler: [], persistence: 5, directors: 'all', tunnel: null, forwarding: 'TUN' } },
    { metadata: { name: 'p', namespace: NS, creationTimestamp: 'not a date' }, spec: { ...base(), backends: { service: { name: 'web', ports: 'x' } } } },
  ];
  const vss = [...garbage as VirtualServerLike[], virtualServer('good', base())];
  const plan = resolve({ virtualServers: vss, services: [], endpointSlices: [], nodes: [node('n1')], admission: { unrestricted: true } });
  assert.equal(plan.services.map((s) => `${s.owner.name} ${s.key}`), ['good TCP/203.0.113.10:80']);
  assert.equal([...plan.virtualServers.keys()], ['/m', 'default/good', 'default/n', 'default/o', 'default/p'], 'objects without a name are skipped');
  for (const id of ['/m', 'default/n', 'default/o', 'default/p']) {
    const reasons = plan.virtualServers.get(id)?.reasons ?? [];
    assert.ok(reasons.length > 0 && reasons.every((r) => r.type === 'InvalidSpec' && r.field?.startsWith('spec')), id);
  }
});

test('holes in Services, EndpointSlices and Nodes are skipped, not thrown on', () => {
  const vs = virtualServer('web', { addresses: ['203.0.113.10'], ports: [{ name: 'http', port: 80 }], backends: svcBackend });
  const holey = {
    virtualServers: [vs, null],
    services: [null, { metadata: { name: 'web', namespace: NS }, spec: { ports: [null, { name: 'http', port: 80 }] } }],
    endpointSlices: [null, {
      metadata: { name: 's', namespace: NS, labels: { 'kubernetes.io/service-name': 'web' } }, addressType: 'IPv4',
      ports: [null, { name: 'http', port: 8080 }], endpoints: [null, { addresses: ['10.0.0.1'] }, { addresses: [] }, { addresses: ['bogus'] }],
    }],
    nodes: [null, { metadata: { name: 'n1' }, status: { addresses: [null, { type: 'Hostname', address: 'n1' }] } }],
    admission: { unrestricted: true },
  } as unknown as Parameters<typeof resolve>[0];
  // Admission by pools reads the same lists (reserved addresses), plus pools and namespaces with holes.
  const pools = [null, { metadata: { name: 'p' }, spec: { addresses: [null, '203.0.113.0/24'], allocation: { namespaces: [null, NS] }, staticRealServers: [null] } }];
  const admitted = resolve({ ...holey, admission: { pools, namespaces: [null, { metadata: null }], serviceCIDRs: [null, { spec: { cidrs: [null] } }] } } as unknown as Parameters<typeof resolve>[0]);
  assert.equal(admitted.services, [], 'a pool with a bad entry grants nothing');
  const plan = resolve(holey);
  assert.equal(plan.services.map((s) => [s.key, s.realServers.map((r) => `${r.address}:${r.port}`), s.directors]), [
    ['TCP/203.0.113.10:80', ['10.0.0.1:8080'], ['n1']],
  ]);
});

test.run();
