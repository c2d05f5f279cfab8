// Pure: a synthetic cluster for the controller benchmark, shaped like a real one and deterministic.
//
// Always 10,000 Services with 10 endpoints each (100,000 endpoints, one EndpointSlice per Service,
// 50 namespaces, 20% of Services with a second port, 2% of endpoints terminating-but-serving) and
// 100 nodes, 10 of them labelled as directors. On top of that N VirtualServers:
//   - 95% Service-backed, spread evenly over the Services; 5% static (4 outside hosts each);
//   - every 10th shares the VIP of the one before it on another port (VIP neighbours, which the
//     incremental path must arbitrate against), and one in 1,000 claims a (VIP, port) an older one
//     already holds (a Conflict);
//   - 10% DR (VIP port = endpoint port), the rest NAT; schedulers rr/wrr/lc/sh; 10% persistent.
// Addresses: VIPs in 198.18.0.0/15, pods in 10.0.0.0/8, nodes in 10.250.0.0/16, outside hosts in
// 100.64.0.0/10. This is data only: nothing is ever sent to them.
import type { V1EndpointSlice, V1Node, V1Service } from '@kubernetes/client-node';
import type { VirtualServerObject } from '../../kube/types.ts';

export const SERVICES = 10_000;
export const ENDPOINTS_PER_SERVICE = 10;
export const NODES = 100;
export const NAMESPACES = 50;
export const DIRECTOR_LABEL = 'lvs.dev/director';

export interface Cluster {
  virtualServers: VirtualServerObject[];
  services: V1Service[];
  endpointSlices: V1EndpointSlice[];
  nodes: V1Node[];
}

const nsOf = (svc: number) => `ns-${svc % NAMESPACES}`;
const nodeName = (n: number) => `node-${n}`;
const hasHttps = (svc: number) => svc % 5 === 0;

function vip(i: number): string {
  const n = i + 1;
  return `198.${18 + (n >>> 16)}.${(n >>> 8) & 255}.${n & 255}`;
}

/** Endpoint j of Service i at a generation (a replaced pod gets a new address). */
export function podAddress(svc: number, j: number, generation = 0): string {
  const n = (generation * SERVICES + svc) * ENDPOINTS_PER_SERVICE + j + 1;
  return `10.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

export function serviceObject(i: number): V1Service {
  const ports = [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }];
  if (hasHttps(i)) ports.push({ name: 'https', port: 443, targetPort: 8443, protocol: 'TCP' });
  return { apiVersion: 'v1', kind: 'Service', metadata: { name: `svc-${i}`, namespace: nsOf(i), resourceVersion: '1' }, spec: { type: 'ClusterIP', ports } };
}

/** The Service's one slice; `generations[j]` picks the address of endpoint j. */
export function sliceObject(i: number, generations: readonly number[] = [], resourceVersion = '1'): V1EndpointSlice {
  const ports = [{ name: 'http', port: 8080, protocol: 'TCP' }];
  if (hasHttps(i)) ports.push({ name: 'https', port: 8443, protocol: 'TCP' });
  const endpoints = [];
  for (let j = 0; j < ENDPOINTS_PER_SERVICE; j++) {
    const draining = (i * ENDPOINTS_PER_SERVICE + j) % 50 === 7;
    endpoints.push({
      addresses: [podAddress(i, j, generations[j] ?? 0)],
      conditions: draining ? { ready: false, serving: true, terminating: true } : { ready: true, serving: true, terminating: false },
      nodeName: nodeName((i * 7 + j * 13) % NODES),
      targetRef: { kind: 'Pod', namespace: nsOf(i), name: `svc-${i}-pod-${j}-${generations[j] ?? 0}` },
    });
  }
  return {
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', addressType: 'IPv4',
    metadata: { name: `svc-${i}-abcde`, namespace: nsOf(i), resourceVersion, labels: { 'kubernetes.io/service-name': `svc-${i}` } },
    ports, endpoints,
  };
}

function nodeObject(n: number): V1Node {
  const labels: Record<string, string> = { 'kubernetes.io/hostname': nodeName(n), 'topology.kubernetes.io/zone': `zone-${n % 3}` };
  if (n % 10 === 0) labels[DIRECTOR_LABEL] = 'true';
  return {
    apiVersion: 'v1', kind: 'Node',
    metadata: { name: nodeName(n), labels, resourceVersion: '1' },
    status: { addresses: [{ type: 'InternalIP', address: `10.250.${n >> 8}.${n & 255}` }, { type: 'Hostname', address: nodeName(n) }] },
  };
}

const SCHEDULERS = ['rr', 'wrr', 'lc', 'sh'] as const;

/** Service behind VirtualServer k of n (spread evenly over all Services). */
export function backingService(k: number, n: number): number {
  return Math.floor((k * SERVICES) / n);
}

export function isStatic(k: number): boolean {
  return k % 20 === 19;
}

function virtualServerObject(k: number, n: number): VirtualServerObject {
  const svc = backingService(k, n);
  const sharesVip = k % 10 === 1;
  const conflicts = k % 1000 === 999;
  const dr = k % 10 === 3;
  // A VIP neighbour listens on 8080 on the VIP of k-1; a conflicting one claims k-1's own port.
  const address = sharesVip || conflicts ? vip(k - 1) : vip(k);
  const ports: Array<{ name: string; port: number; protocol: string }> = [];
  if (sharesVip || dr) ports.push({ name: 'http', port: 8080, protocol: 'TCP' });
  else {
    ports.push({ name: 'http', port: 80, protocol: 'TCP' });
    if (hasHttps(svc) && !isStatic(k)) ports.push({ name: 'https', port: 443, protocol: 'TCP' });
  }
  const spec: Record<string, unknown> = {
    addresses: [address],
    ports,
    forwarding: dr ? 'DR' : 'NAT',
    scheduler: { name: SCHEDULERS[k % SCHEDULERS.length] },
    directors: { nodeSelector: { [DIRECTOR_LABEL]: 'true' } },
    backends: isStatic(k)
      ? { static: [0, 1, 2, 3].map((j) => ({ address: `100.64.${(k >> 6) & 255}.${((k & 63) << 2) + j}`, port: 8080, weight: j === 3 ? 2 : 1 })) }
      : { service: { name: `svc-${svc}` } },
  };
  if (k % 10 === 5) spec.persistence = { timeoutSeconds: 300 };
  return {
    apiVersion: 'lvs.dev/v1alpha1', kind: 'VirtualServer',
    metadata: {
      name: `vs-${k}`, namespace: nsOf(svc), generation: 1, resourceVersion: '1', uid: `uid-${k}`,
      // Strictly increasing: the older VirtualServer wins a conflict.
      creationTimestamp: new Date(Date.UTC(2025, 0, 1) + k * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z'),
    },
    spec,
  } as VirtualServerObject;
}

export function cluster(virtualServers: number): Cluster {
  const services: V1Service[] = [], endpointSlices: V1EndpointSlice[] = [], nodes: V1Node[] = [];
  for (let i = 0; i < SERVICES; i++) {
    services.push(serviceObject(i));
    endpointSlices.push(sliceObject(i));
  }
  for (let n = 0; n < NODES; n++) nodes.push(nodeObject(n));
  const vss: VirtualServerObject[] = [];
  for (let k = 0; k < virtualServers; k++) vss.push(virtualServerObject(k, virtualServers));
  return { virtualServers: vss, services, endpointSlices, nodes };
}
