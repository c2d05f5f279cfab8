// A Service as large as the one that used to cross etcd's request limit in VirtualServer status:
// 10,000 endpoints × 2 ports, in EndpointSlices of 100 endpoints as the EndpointSlice controller
// writes them (its default maxEndpointsPerSlice). The endpoints are addresses only (no pods: NAT
// real servers need no preparation), all on this node.
import type { Kube } from '../../../../lab/guest/kube.ts';
import { SERVICES, SLICES, type ServicePort } from '../../../../lab/guest/objects.ts';

export const BIG = { name: 'big', endpoints: 10_000, perSlice: 100 } as const;
export const BIG_PORTS: readonly ServicePort[] = [{ name: 'a', port: 80, targetPort: 8080 }, { name: 'b', port: 81, targetPort: 8081 }];

/** 10.250.0.1 .. : 250 addresses per /24, so none ends in .0 or .255. */
export function bigAddress(i: number): string {
  return `10.250.${Math.floor(i / 250)}.${(i % 250) + 1}`;
}

export async function createBigService(kube: Kube, ns: string, node: string): Promise<void> {
  const svc = await kube.create<{ metadata: { uid: string } }>(SERVICES, ns, {
    apiVersion: 'v1', kind: 'Service', metadata: { name: BIG.name, namespace: ns },
    spec: { selector: { app: BIG.name }, ports: BIG_PORTS.map((p) => ({ name: p.name, port: p.port, targetPort: p.targetPort, protocol: 'TCP' })) },
  });
  const writes: Promise<unknown>[] = [];
  for (let s = 0; s * BIG.perSlice < BIG.endpoints; s++) {
    const endpoints = [];
    for (let i = s * BIG.perSlice; i < Math.min(BIG.endpoints, (s + 1) * BIG.perSlice); i++) {
      endpoints.push({ addresses: [bigAddress(i)], conditions: { ready: true, serving: true, terminating: false }, nodeName: node });
    }
    writes.push(kube.create(SLICES, ns, {
      apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
      metadata: {
        name: `${BIG.name}-${s}`, namespace: ns,
        labels: { 'kubernetes.io/service-name': BIG.name, 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' },
        ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name: BIG.name, uid: svc.metadata.uid, controller: true, blockOwnerDeletion: true }],
      },
      addressType: 'IPv4',
      ports: BIG_PORTS.map((p) => ({ name: p.name, port: p.targetPort, protocol: 'TCP' })),
      endpoints,
    }));
    // A few requests in flight at a time: the apiserver is across qemu's user network.
    if (writes.length >= 8) await Promise.all(writes.splice(0));
  }
  await Promise.all(writes);
}
