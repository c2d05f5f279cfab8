// Resolver rules for Service backends: port mapping, EndpointSlice selection, endpoint
// conditions, de-duplication, DR/TUN port remapping, and the reasons when something is missing.
import { suite } from 'uvu';
import { draining, endpoint, endpointSlice, service, virtualServer } from '../lib/fixtures.ts';
import { type Case, ps, rs, runCase } from '../lib/resolve-cases.ts';

const web = (spec: Partial<Parameters<typeof virtualServer>[1]> = {}) => virtualServer('web', {
  addresses: ['203.0.113.10'], ports: [{ name: 'http', port: 80 }], backends: { service: { name: 'web' } }, ...spec,
});
const svcWeb = service('web', [{ name: 'http', port: 80, targetPort: 8080 }]);

const cases: Case[] = [
  {
    name: 'NAT defaults: one service per VIP x port, endpoints with node and pod, numeric address order',
    vs: [web()],
    services: [svcWeb],
    slices: [endpointSlice('web', [endpoint('10.0.0.10', { node: 'n2', pod: 'web-b' }), endpoint('10.0.0.9', { ready: true, node: 'n1', pod: 'web-a' })])],
    want: [{
      key: 'TCP/203.0.113.10:80',
      owner: { namespace: 'default', name: 'web', generation: 1 },
      portName: 'http', vip: '203.0.113.10', family: 4, protocol: 'TCP', port: 80,
      forwarding: 'NAT', natReturnPath: 'Gateway', scheduler: { name: 'wlc', flags: [] }, prepareRealServers: false,
      realServers: [
        { address: '10.0.0.9', port: 8080, weight: 1, state: 'Ready', node: 'n1', pod: { namespace: 'default', name: 'web-a' } },
        { address: '10.0.0.10', port: 8080, weight: 1, state: 'Ready', node: 'n2', pod: { namespace: 'default', name: 'web-b' } },
      ],
      directors: ['n1', 'n2'],
    }],
    realServers: {
      'default/web': [
        { portName: 'http', address: '10.0.0.9', port: 8080, weight: 1, state: 'Ready', node: 'n1', pod: { namespace: 'default', name: 'web-a' } },
        { portName: 'http', address: '10.0.0.10', port: 8080, weight: 1, state: 'Ready', node: 'n2', pod: { namespace: 'default', name: 'web-b' } },
      ],
    },
  },
  {
    name: 'dual stack: each VIP takes the slices of its own family; FQDN slices are ignored; keys sorted',
    vs: [web({ addresses: ['2001:DB8:0::10', '203.0.113.10'], ports: [{ name: 'http', port: 80 }, { name: 'dns', port: 53, protocol: 'UDP' }] })],
    services: [service('web', [{ name: 'http', port: 80 }, { name: 'dns', port: 53, protocol: 'UDP' }])],
    slices: [
      endpointSlice('web', [endpoint('10.0.0.1')], { ports: [{ name: 'http', port: 8080 }, { name: 'dns', port: 5353, protocol: 'UDP' }] }),
      endpointSlice('web', [endpoint('fd00:10::0:1')], { ports: [{ name: 'http', port: 8080 }, { name: 'dns', port: 5353, protocol: 'UDP' }] }),
      endpointSlice('web', [endpoint('web-0.example.com')], { addressType: 'FQDN' }),
    ],
    want: [
      ps({ key: 'TCP/203.0.113.10:80', realServers: [rs('10.0.0.1', 8080)] }),
      ps({ key: 'TCP/[2001:db8::10]:80', vip: '2001:db8::10', family: 6, realServers: [rs('fd00:10::1', 8080)] }),
      ps({ key: 'UDP/203.0.113.10:53', portName: 'dns', protocol: 'UDP', port: 53, realServers: [rs('10.0.0.1', 5353)] }),
      ps({ key: 'UDP/[2001:db8::10]:53', portName: 'dns', protocol: 'UDP', port: 53, vip: '2001:db8::10', family: 6, realServers: [rs('fd00:10::1', 5353)] }),
    ],
    realServers: {
      'default/web': [
        { portName: 'dns', ...rs('10.0.0.1', 5353) }, { portName: 'dns', ...rs('fd00:10::1', 5353) },
        { portName: 'http', ...rs('10.0.0.1', 8080) }, { portName: 'http', ...rs('fd00:10::1', 8080) },
      ],
    },
  },
  {
    name: 'endpoint conditions: ready unset or true is Ready; serving+terminating is Draining (weight 0); the rest excluded',
    vs: [web()],
    services: [svcWeb],
    slices: [endpointSlice('web', [
      endpoint('10.0.0.1'),
      endpoint('10.0.0.2', { ready: true, serving: true, terminating: false }),
      draining('10.0.0.3'),
      endpoint('10.0.0.4', { ready: false, serving: true, terminating: false }),
      endpoint('10.0.0.5', { ready: false, serving: false, terminating: true }),
      endpoint('10.0.0.6', { ready: false }),
    ])],
    want: [ps({ key: 'TCP/203.0.113.10:80', realServers: [rs('10.0.0.1', 8080), rs('10.0.0.2', 8080), rs('10.0.0.3', 8080, { weight: 0, state: 'Draining' })] })],
  },
  {
    name: 'the same endpoint in two slices is listed once, preferring the Ready copy',
    vs: [web()],
    services: [svcWeb],
    slices: [
      endpointSlice('web', [draining('10.0.0.1', { node: 'n1', pod: 'old' }), endpoint('10.0.0.2')]),
      endpointSlice('web', [endpoint('10.0.0.1', { node: 'n2', pod: 'new' }), draining('10.0.0.2')]),
    ],
    want: [ps({ key: 'TCP/203.0.113.10:80', realServers: [rs('10.0.0.1', 8080, { node: 'n2', pod: { namespace: 'default', name: 'new' } }), rs('10.0.0.2', 8080)] })],
  },
  {
    name: 'only Draining endpoints: kept at weight 0, and NoReadyEndpoints',
    vs: [web()],
    services: [svcWeb],
    slices: [endpointSlice('web', [draining('10.0.0.1')])],
    want: [ps({ key: 'TCP/203.0.113.10:80', realServers: [rs('10.0.0.1', 8080, { weight: 0, state: 'Draining' })] })],
    reasons: { 'default/web': [{ type: 'NoReadyEndpoints', field: 'spec.backends', message: 'no Ready real server for port http' }] },
  },
  {
    name: 'port mapping: explicit by name and by number; default by name before number; slice port chosen by the Service port name',
    vs: [web({
      ports: [{ name: 'http', port: 80 }, { name: 'https', port: 443 }, { name: 'admin', port: 9000 }, { name: 'metrics', port: 9100 }],
      backends: { service: { name: 'web', ports: [{ name: 'http', servicePort: 'web' }, { name: 'https', servicePort: 8443 }] } },
    })],
    services: [service('web', [
      { name: 'web', port: 8000 }, { name: 'tls', port: 8443 }, { name: 'admin', port: 9999 }, { name: 'other', port: 9000 }, { name: 'prom', port: 9100 },
    ])],
    slices: [endpointSlice('web', [endpoint('10.0.0.1')], {
      ports: [{ name: 'web', port: 1080 }, { name: 'tls', port: 1443 }, { name: 'admin', port: 1999 }, { name: 'other', port: 1900 }, { name: 'prom', port: 1910 }],
    })],
    want: [
      ps({ key: 'TCP/203.0.113.10:443', portName: 'https', port: 443, realServers: [rs('10.0.0.1', 1443)] }),
      ps({ key: 'TCP/203.0.113.10:80', realServers: [rs('10.0.0.1', 1080)] }),
      ps({ key: 'TCP/203.0.113.10:9000', portName: 'admin', port: 9000, realServers: [rs('10.0.0.1', 1999)] }),
      ps({ key: 'TCP/203.0.113.10:9100', portName: 'metrics', port: 9100, realServers: [rs('10.0.0.1', 1910)] }),
    ],
  },
  {
    name: 'port mapping by number respects the protocol (53/TCP and 53/UDP); unnamed Service port matches the unnamed slice port',
    vs: [web({ ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] }), virtualServer('single', {
      addresses: ['203.0.113.11'], ports: [{ name: 'http', port: 80 }], backends: { service: { name: 'single' } },
    })],
    services: [
      service('web', [{ name: 'dns-tcp', port: 53, protocol: 'TCP' }, { name: 'dns-udp', port: 53, protocol: 'UDP' }]),
      service('single', [{ port: 80 }]),
    ],
    slices: [
      endpointSlice('web', [endpoint('10.0.0.1')], { ports: [{ name: 'dns-tcp', port: 5300 }, { name: 'dns-udp', port: 5301, protocol: 'UDP' }] }),
      endpointSlice('single', [endpoint('10.0.1.1')], { ports: [{ port: 8080 }] }),
    ],
    want: [
      ps({ key: 'TCP/203.0.113.11:80', owner: { namespace: 'default', name: 'single', generation: 1 }, vip: '203.0.113.11', realServers: [rs('10.0.1.1', 8080)] }),
      ps({ key: 'UDP/203.0.113.10:53', portName: 'dns', protocol: 'UDP', port: 53, realServers: [rs('10.0.0.1', 5301)] }),
    ],
  },
  {
    name: 'ServiceNotFound: the Service must be in the VirtualServer namespace; services stay, without real servers',
    vs: [web()],
    services: [service('web', [{ name: 'http', port: 80 }], { namespace: 'other' })],
    slices: [endpointSlice('web', [endpoint('10.0.0.1')], { namespace: 'other' })],
    want: [ps({ key: 'TCP/203.0.113.10:80' })],
    reasons: { 'default/web': [{ type: 'ServiceNotFound', field: 'spec.backends.service.name', message: 'Service default/web not found' }] },
  },
  {
    name: 'ServicePortNotFound for one port (protocol mismatch) while the other port resolves; explicit mapping names its field',
    vs: [web({ ports: [{ name: 'http', port: 80 }, { name: 'dns', port: 53, protocol: 'UDP' }] }), virtualServer('mapped', {
      addresses: ['203.0.113.11'], ports: [{ name: 'http', port: 80 }],
      backends: { service: { name: 'web', ports: [{ name: 'http', servicePort: 'nope' }] } },
    })],
    services: [service('web', [{ name: 'http', port: 80 }, { name: 'dns', port: 53, protocol: 'TCP' }])],
    slices: [endpointSlice('web', [endpoint('10.0.0.1')])],
    want: [
      ps({ key: 'TCP/203.0.113.10:80', realServers: [rs('10.0.0.1', 8080)] }),
      ps({ key: 'TCP/203.0.113.11:80', owner: { namespace: 'default', name: 'mapped', generation: 1 }, vip: '203.0.113.11' }),
      ps({ key: 'UDP/203.0.113.10:53', portName: 'dns', protocol: 'UDP', port: 53 }),
    ],
    reasons: {
      'default/web': [{
        type: 'ServicePortNotFound', field: 'spec.ports[1]',
        message: 'VirtualServer port dns (UDP/53): Service web has no UDP port named dns or numbered 53 (port dns/53 is TCP)',
      }],
      'default/mapped': [{
        type: 'ServicePortNotFound', field: 'spec.backends.service.ports[0].servicePort',
        message: 'VirtualServer port http (TCP/80): Service web has no TCP port named nope',
      }],
    },
  },
  {
    name: 'DR: endpoints must listen on the virtual port; others are excluded with PortRemapNotSupported',
    vs: [web({ forwarding: 'DR' })],
    services: [service('web', [{ name: 'http', port: 80 }])],
    slices: [
      endpointSlice('web', [endpoint('10.0.0.1', { node: 'n1', pod: 'a' })], { ports: [{ name: 'http', port: 80 }] }),
      endpointSlice('web', [endpoint('10.0.0.2')], { ports: [{ name: 'http', port: 8080 }] }),
    ],
    want: [ps({
      key: 'TCP/203.0.113.10:80', forwarding: 'DR', prepareRealServers: true,
      realServers: [rs('10.0.0.1', 80, { node: 'n1', pod: { namespace: 'default', name: 'a' } })],
    }, ['natReturnPath'])],
    reasons: {
      'default/web': [{
        type: 'PortRemapNotSupported', field: 'spec.ports[0]',
        message: 'DR forwarding cannot remap ports: endpoints of Service web port http listen on 8080, not on http (80); they are excluded',
      }],
    },
  },
  {
    name: 'TUN with a Service: all endpoints on another port are excluded, so NoReadyEndpoints as well',
    vs: [web({ forwarding: 'TUN' })],
    services: [svcWeb],
    slices: [endpointSlice('web', [endpoint('10.0.0.1')])],
    want: [ps({ key: 'TCP/203.0.113.10:80', forwarding: 'TUN', tunnel: { type: 'ipip' }, prepareRealServers: true }, ['natReturnPath'])],
    reasons: {
      'default/web': [
        { type: 'NoReadyEndpoints', field: 'spec.backends', message: 'no Ready real server for port http' },
        {
          type: 'PortRemapNotSupported', field: 'spec.ports[0]',
          message: 'TUN forwarding cannot remap ports: endpoints of Service web port http listen on 8080, not on http (80); they are excluded',
        },
      ],
    },
  },
  {
    name: 'dual stack with endpoints of one family only: NoReadyEndpoints names the family without any',
    vs: [web({ addresses: ['203.0.113.10', '2001:db8::10'] })],
    services: [svcWeb],
    slices: [endpointSlice('web', [endpoint('10.0.0.1')])],
    want: [
      ps({ key: 'TCP/203.0.113.10:80', realServers: [rs('10.0.0.1', 8080)] }),
      ps({ key: 'TCP/[2001:db8::10]:80', vip: '2001:db8::10', family: 6 }),
    ],
    reasons: { 'default/web': [{ type: 'NoReadyEndpoints', field: 'spec.backends', message: 'no Ready real server for port http (IPv6 VIPs)' }] },
  },
  {
    name: 'slices of another Service, unlabelled, without the port (name, protocol or number) are not used; pod only from a Pod targetRef',
    vs: [web()],
    services: [svcWeb],
    slices: [
      endpointSlice('api', [endpoint('10.0.9.1')]),
      { ...endpointSlice('web', [endpoint('10.0.9.2')]), metadata: { name: 'stray', namespace: 'default' } },
      endpointSlice('web', [endpoint('10.0.9.3')], { ports: [{ name: 'other', port: 8080 }] }),
      endpointSlice('web', [endpoint('10.0.9.4')], { ports: [{ name: 'http', port: 8080, protocol: 'UDP' }] }),
      endpointSlice('web', [endpoint('10.0.9.5')], { ports: [{ name: 'http' }] }),
      endpointSlice('web', [endpoint('10.0.0.1'), { addresses: ['10.0.0.2'], nodeName: 'n1', targetRef: { kind: 'Node', name: 'n1' } }]),
    ],
    want: [ps({ key: 'TCP/203.0.113.10:80', realServers: [rs('10.0.0.1', 8080), rs('10.0.0.2', 8080, { node: 'n1' })] })],
  },
];

const test = suite('resolve: Service backends');
for (const c of cases) test(c.name, () => runCase(c));
test.run();
