// VIPPools for tests whose subject is not admission: one pool granting the documentation ranges
// to every namespace (an empty namespaceSelector matches all), every forwarding method, static
// real servers anywhere and host preparation. Tests of admission build their own pools.
import type { KubeObject } from '../../kube/types.ts';

export const OPEN_POOL_ADDRESSES = ['203.0.113.0/24', '198.51.100.0/24', '192.0.2.128/25', '2001:db8::/32'];

export function openPool(name = 'test-open', addresses = OPEN_POOL_ADDRESSES): KubeObject & { spec: Record<string, unknown> } {
  return {
    apiVersion: 'lvs.dev/v1alpha1', kind: 'VIPPool',
    metadata: { name, creationTimestamp: '2020-01-01T00:00:00Z' },
    spec: {
      addresses,
      allocation: { namespaceSelector: {}, autoAssign: true },
      forwarding: ['NAT', 'DR', 'TUN'],
      staticRealServers: ['0.0.0.0/0', '::/0'],
      realServers: { prepareHosts: true },
    },
  };
}
