// Resolver rules for static backends, address families, per-service options (scheduler,
// persistence, tunnel, NAT return path, real-server preparation) and directors.
import { suite } from 'uvu';
import { endpoint, endpointSlice, node, service, virtualServer } from '../lib/fixtures.ts';
import { type Case, ps, rs, runCase } from '../lib/resolve-cases.ts';
import type { VirtualServerSpec } from '../../api/generated/index.ts';

const web = (spec: Partial<VirtualServerSpec> = {}) => virtualServer('web', {
  addresses: ['203.0.113.10'], ports: [{ name: 'http', port: 80 }],
  backends: { static: [{ address: '172.16.0.3' }] }, ...spec,
});
const K80 = 'TCP/203.0.113.10:80';

const cases: Case[] = [
  {
    name: 'static NAT: weight default 1, weight 0 is Draining, node found by node address, IPv6 canonicalized',
    vs: [web({
      addresses: ['203.0.113.10', '2001:db8::10'],
      backends: { static: [{ address: '172.16.0.3', weight: 2 }, { address: '192.168.0.1' }, { address: '172.16.0.4', weight: 0 }, { address: 'FD00:0:0::1' }] },
    })],
    want: [
      ps({ key: K80, realServers: [rs('172.16.0.3', 80, { weight: 2 }), rs('172.16.0.4', 80, { weight: 0, state: 'Draining' }), rs('192.168.0.1', 80, { node: 'n1' })] }),
      ps({ key: 'TCP/[2001:db8::10]:80', vip: '2001:db8::10', family: 6, realServers: [rs('fd00::1', 80, { node: 'n1' })] }),
    ],
    realServers: {
      'default/web': [
        { portName: 'http', ...rs('172.16.0.3', 80, { weight: 2 }) },
        { portName: 'http', ...rs('172.16.0.4', 80, { weight: 0, state: 'Draining' }) },
        { portName: 'http', ...rs('192.168.0.1', 80, { node: 'n1' }) },
        { portName: 'http', ...rs('fd00::1', 80, { node: 'n1' }) },
      ],
    },
  },
  {
    name: 'static NAT ports: static port, else targetPort, else the virtual port',
    vs: [
      web({ backends: { static: [{ address: '172.16.0.3', port: 8000 }, { address: '172.16.0.4' }] } }),
      virtualServer('multi', {
        addresses: ['203.0.113.11'], ports: [{ name: 'http', port: 80, targetPort: 8080 }, { name: 'https', port: 443 }],
        backends: { static: [{ address: '172.16.0.5' }] },
      }),
    ],
    want: [
      ps({ key: K80, realServers: [rs('172.16.0.3', 8000), rs('172.16.0.4', 80)] }),
      ps({ key: 'TCP/203.0.113.11:443', owner: { namespace: 'default', name: 'multi', generation: 1 }, vip: '203.0.113.11', portName: 'https', port: 443, realServers: [rs('172.16.0.5', 443)] }),
      ps({ key: 'TCP/203.0.113.11:80', owner: { namespace: 'default', name: 'multi', generation: 1 }, vip: '203.0.113.11', realServers: [rs('172.16.0.5', 8080)] }),
    ],
  },
  {
    name: 'static DR: real server port is the virtual port; prepare defaults to true and can be turned off',
    vs: [
      web({ forwarding: 'DR', ports: [{ name: 'http', port: 80 }, { name: 'https', port: 443 }] }),
      virtualServer('noprep', { addresses: ['203.0.113.11'], ports: [{ name: 'http', port: 80 }], forwarding: 'DR', realServers: { prepare: false }, backends: { static: [{ address: '192.168.0.2' }] } }),
    ],
    want: [
      ps({ key: 'TCP/203.0.113.10:443', forwarding: 'DR', prepareRealServers: true, portName: 'https', port: 443, realServers: [rs('172.16.0.3', 443)] }, ['natReturnPath']),
      ps({ key: K80, forwarding: 'DR', prepareRealServers: true, realServers: [rs('172.16.0.3', 80)] }, ['natReturnPath']),
      ps({ key: 'TCP/203.0.113.11:80', owner: { namespace: 'default', name: 'noprep', generation: 1 }, vip: '203.0.113.11', forwarding: 'DR', realServers: [rs('192.168.0.2', 80, { node: 'n2' })] }, ['natReturnPath']),
    ],
  },
  {
    name: 'family: NAT and DR exclude real servers of a family no VIP has (AddressFamilyMismatch); dual stack pairs families',
    vs: [
      web({ backends: { static: [{ address: '172.16.0.3' }, { address: '2001:db8:1::3' }] } }),
      virtualServer('dr', { addresses: ['2001:db8::11'], ports: [{ name: 'http', port: 80 }], forwarding: 'DR', backends: { static: [{ address: '172.16.0.3' }] } }),
      virtualServer('dual', { addresses: ['203.0.113.12', '2001:db8::12'], ports: [{ name: 'http', port: 80 }], backends: { static: [{ address: '172.16.0.3' }, { address: '2001:db8:1::3' }] } }),
    ],
    want: [
      ps({ key: K80, realServers: [rs('172.16.0.3', 80)] }),
      ps({ key: 'TCP/203.0.113.12:80', owner: { namespace: 'default', name: 'dual', generation: 1 }, vip: '203.0.113.12', realServers: [rs('172.16.0.3', 80)] }),
      ps({ key: 'TCP/[2001:db8::11]:80', owner: { namespace: 'default', name: 'dr', generation: 1 }, vip: '2001:db8::11', family: 6, forwarding: 'DR', prepareRealServers: true }, ['natReturnPath']),
      ps({ key: 'TCP/[2001:db8::12]:80', owner: { namespace: 'default', name: 'dual', generation: 1 }, vip: '2001:db8::12', family: 6, realServers: [rs('2001:db8:1::3', 80)] }),
    ],
    reasons: {
      'default/web': [{
        type: 'AddressFamilyMismatch', field: 'spec.backends.static[1].address',
        message: "real server 2001:db8:1::3 is IPv6 but no VIP is; NAT needs the VIP's family (only TUN mixes families), so it is excluded",
      }],
      'default/dr': [
        {
          type: 'AddressFamilyMismatch', field: 'spec.backends.static[0].address',
          message: "real server 172.16.0.3 is IPv4 but no VIP is; DR needs the VIP's family (only TUN mixes families), so it is excluded",
        },
        { type: 'NoReadyEndpoints', field: 'spec.backends', message: 'no Ready real server for port http' },
      ],
    },
  },
  {
    name: 'TUN mixes families: every real server serves every VIP; tunnel defaults to ipip',
    vs: [web({ forwarding: 'TUN', backends: { static: [{ address: '2001:db8:1::3' }, { address: '172.16.0.3' }] } })],
    want: [ps({ key: K80, forwarding: 'TUN', tunnel: { type: 'ipip' }, prepareRealServers: true, realServers: [rs('172.16.0.3', 80), rs('2001:db8:1::3', 80)] }, ['natReturnPath'])],
  },
  {
    name: 'TUN tunnel options: gue port and checksums become kernel flags; ipip carries no checksum',
    vs: [
      web({ forwarding: 'TUN', tunnel: { type: 'gue', port: 5555, checksum: 'RemoteChecksum' } }),
      virtualServer('gre', { addresses: ['203.0.113.11'], ports: [{ name: 'http', port: 80 }], forwarding: 'TUN', tunnel: { type: 'gre', checksum: 'Checksum' }, backends: { static: [{ address: '172.16.0.3' }] } }),
      virtualServer('ipip', { addresses: ['203.0.113.12'], ports: [{ name: 'http', port: 80 }], forwarding: 'TUN', tunnel: { checksum: 'Checksum' }, backends: { static: [{ address: '172.16.0.3' }] } }),
    ],
    want: [
      ps({ key: K80, forwarding: 'TUN', tunnel: { type: 'gue', port: 5555, flags: ['remcsum'] }, prepareRealServers: true, realServers: [rs('172.16.0.3', 80)] }, ['natReturnPath']),
      ps({ key: 'TCP/203.0.113.11:80', owner: { namespace: 'default', name: 'gre', generation: 1 }, vip: '203.0.113.11', forwarding: 'TUN', tunnel: { type: 'gre', flags: ['csum'] }, prepareRealServers: true, realServers: [rs('172.16.0.3', 80)] }, ['natReturnPath']),
      ps({ key: 'TCP/203.0.113.12:80', owner: { namespace: 'default', name: 'ipip', generation: 1 }, vip: '203.0.113.12', forwarding: 'TUN', tunnel: { type: 'ipip' }, prepareRealServers: true, realServers: [rs('172.16.0.3', 80)] }, ['natReturnPath']),
    ],
  },
  {
    name: 'options that belong to another forwarding method are ignored: tunnel with NAT, nat with DR, realServers with NAT',
    vs: [
      web({ tunnel: { type: 'gue', port: 5555 }, realServers: { prepare: true }, nat: { returnPath: 'SNAT' } }),
      virtualServer('dr', { addresses: ['203.0.113.11'], ports: [{ name: 'http', port: 80 }], forwarding: 'DR', nat: { returnPath: 'SNAT' }, backends: { static: [{ address: '172.16.0.3' }] } }),
    ],
    want: [
      ps({ key: K80, natReturnPath: 'SNAT', realServers: [rs('172.16.0.3', 80)] }),
      ps({ key: 'TCP/203.0.113.11:80', owner: { namespace: 'default', name: 'dr', generation: 1 }, vip: '203.0.113.11', forwarding: 'DR', prepareRealServers: true, realServers: [rs('172.16.0.3', 80)] }, ['natReturnPath']),
    ],
  },
  {
    name: 'scheduler and flags (sorted); persistence netmask defaults per family and explicit values',
    vs: [
      web({ addresses: ['203.0.113.10', '2001:db8::10'], scheduler: { name: 'sh', flags: ['sh-port', 'sh-fallback'] }, persistence: { timeoutSeconds: 300 }, backends: { static: [{ address: '172.16.0.3' }, { address: '2001:db8:1::3' }] } }),
      virtualServer('p', {
        addresses: ['203.0.113.11', '2001:db8::11'], ports: [{ name: 'http', port: 80 }], scheduler: { name: 'rr' },
        persistence: { timeoutSeconds: 60, netmask: '255.255.255.0', ipv6PrefixLength: 64 }, backends: { static: [{ address: '172.16.0.3' }, { address: '2001:db8:1::3' }] },
      }),
    ],
    want: [
      ps({ key: K80, scheduler: { name: 'sh', flags: ['sh-fallback', 'sh-port'] }, persistence: { timeoutSeconds: 300, netmask: '255.255.255.255' }, realServers: [rs('172.16.0.3', 80)] }),
      ps({ key: 'TCP/203.0.113.11:80', owner: { namespace: 'default', name: 'p', generation: 1 }, vip: '203.0.113.11', scheduler: { name: 'rr', flags: [] }, persistence: { timeoutSeconds: 60, netmask: '255.255.255.0' }, realServers: [rs('172.16.0.3', 80)] }),
      ps({ key: 'TCP/[2001:db8::10]:80', vip: '2001:db8::10', family: 6, scheduler: { name: 'sh', flags: ['sh-fallback', 'sh-port'] }, persistence: { timeoutSeconds: 300, netmask: '128' }, realServers: [rs('2001:db8:1::3', 80)] }),
      ps({ key: 'TCP/[2001:db8::11]:80', owner: { namespace: 'default', name: 'p', generation: 1 }, vip: '2001:db8::11', family: 6, scheduler: { name: 'rr', flags: [] }, persistence: { timeoutSeconds: 60, netmask: '64' }, realServers: [rs('2001:db8:1::3', 80)] }),
    ],
  },
  {
    name: 'directors: nodeSelector picks matching nodes; no match is NoDirectors (services kept, no directors)',
    vs: [
      web({ directors: { nodeSelector: { 'lvs.dev/director': 'true' } } }),
      virtualServer('none', { addresses: ['203.0.113.11'], ports: [{ name: 'http', port: 80 }], directors: { nodeSelector: { 'lvs.dev/director': 'yes' } }, backends: { static: [{ address: '172.16.0.3' }] } }),
    ],
    want: [
      ps({ key: K80, directors: ['n1'], realServers: [rs('172.16.0.3', 80)] }),
      ps({ key: 'TCP/203.0.113.11:80', owner: { namespace: 'default', name: 'none', generation: 1 }, vip: '203.0.113.11', directors: [], realServers: [rs('172.16.0.3', 80)] }),
    ],
    reasons: { 'default/none': [{ type: 'NoDirectors', field: 'spec.directors.nodeSelector', message: 'no node matches spec.directors.nodeSelector' }] },
  },
  {
    name: 'directors: a cluster without nodes is NoDirectors on spec.directors',
    vs: [web()],
    nodes: [],
    want: [ps({ key: K80, directors: [], realServers: [rs('172.16.0.3', 80)] })],
    reasons: { 'default/web': [{ type: 'NoDirectors', field: 'spec.directors', message: 'the cluster has no nodes' }] },
  },
  {
    name: 'directors are sorted by name whatever the node order; node addresses locate static real servers',
    vs: [web({ backends: { static: [{ address: '10.1.0.3' }] } })],
    nodes: [node('c', ['10.1.0.3']), node('a'), node('b', ['10.1.0.3'])],
    want: [ps({ key: K80, directors: ['a', 'b', 'c'], realServers: [rs('10.1.0.3', 80, { node: 'b' })] })],
  },
  {
    name: 'a VirtualServer may share a Service with another and a VIP on another port',
    vs: [web(), virtualServer('api', { addresses: ['203.0.113.10'], ports: [{ name: 'http', port: 8080 }], backends: { service: { name: 'api' } } })],
    services: [service('api', [{ name: 'http', port: 8080 }])],
    slices: [endpointSlice('api', [endpoint('10.0.0.1')])],
    want: [
      ps({ key: K80, realServers: [rs('172.16.0.3', 80)] }),
      ps({ key: 'TCP/203.0.113.10:8080', owner: { namespace: 'default', name: 'api', generation: 1 }, port: 8080, realServers: [rs('10.0.0.1', 8080)] }),
    ],
  },
];

const test = suite('resolve: static backends, families, options, directors');
for (const c of cases) test(c.name, () => runCase(c));
test.run();
