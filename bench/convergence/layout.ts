// Pure: the convergence benchmark's cluster of N Service-backed NAT VirtualServers, shared by the
// host (which creates the objects) and the guest (which changes slices and reads the kernel).
// Service i: headless (the test apiserver's cluster-IP range is a /24, too small for 5,000), one
// port "http" 80 -> 8080; its EndpointSlice holds 3 endpoints of which the third, the "spare", is
// the one the benchmark removes and adds back. VirtualServer i: NAT, rr, VIP:port below.
//
// Addresses stay inside the VM: VIPs in documentation ranges (25 ports per VIP, so 5,000 services
// use 200 VIPs), pod addresses in 10.244.0.0/16 behind the guest's cni0 bridge (the kernel accepts
// only routable unicast destinations).
export const NS = 'bench';
export const PORTS_PER_VIP = 25;
export const FIRST_PORT = 1000;
export const TARGET_PORT = 8080;
export const ENDPOINTS = 3;
export const POD_CIDR_GATEWAY = '10.244.0.1/16';
const VIP_BLOCKS = ['198.51.100', '203.0.113'] as const;
export const MAX_SERVICES = VIP_BLOCKS.length * 254 * PORTS_PER_VIP;

export const name = (i: number) => `svc-${i}`;

export function vipOf(i: number): { vip: string; port: number } {
  if (!Number.isInteger(i) || i < 0 || i >= MAX_SERVICES) throw new Error(`service index ${i}: must be 0..${MAX_SERVICES - 1}`);
  const v = Math.floor(i / PORTS_PER_VIP);
  const block = VIP_BLOCKS[Math.floor(v / 254)]!;
  return { vip: `${block}.${(v % 254) + 1}`, port: FIRST_PORT + (i % PORTS_PER_VIP) };
}

/** Endpoint j of service i, from 10.244.1.0 upwards (10.244.0.0/24 holds the gateway). */
export function podIp(i: number, j: number): string {
  const n = 256 + i * ENDPOINTS + j;
  return `10.244.${n >> 8}.${n & 255}`;
}

export function serviceManifest(i: number): Record<string, unknown> {
  return {
    apiVersion: 'v1', kind: 'Service',
    metadata: { name: name(i), namespace: NS },
    spec: { clusterIP: 'None', selector: { app: name(i) }, ports: [{ name: 'http', port: 80, targetPort: TARGET_PORT, protocol: 'TCP' }] },
  };
}

/** The endpoints of service i: all three, or without the spare (the last). */
export function sliceEndpoints(i: number, withSpare: boolean, node: string): Array<Record<string, unknown>> {
  const n = withSpare ? ENDPOINTS : ENDPOINTS - 1;
  return Array.from({ length: n }, (_, j) => ({
    addresses: [podIp(i, j)],
    conditions: { ready: true, serving: true, terminating: false },
    nodeName: node,
    targetRef: { kind: 'Pod', namespace: NS, name: `${name(i)}-${j}` },
  }));
}

/** The slice as the EndpointSlice controller keeps it (fixed name, so the guest can patch it). */
export function sliceManifest(i: number, node: string): Record<string, unknown> {
  return {
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
    metadata: {
      name: `${name(i)}-abcde`, namespace: NS,
      labels: { 'kubernetes.io/service-name': name(i), 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' },
    },
    addressType: 'IPv4',
    ports: [{ name: 'http', port: TARGET_PORT, protocol: 'TCP' }],
    endpoints: sliceEndpoints(i, true, node),
  };
}

export const sliceName = (i: number) => `${name(i)}-abcde`;

export function virtualServerManifest(i: number): Record<string, unknown> {
  const { vip, port } = vipOf(i);
  return {
    apiVersion: 'lvs.dev/v1alpha1', kind: 'VirtualServer',
    metadata: { name: name(i), namespace: NS },
    spec: {
      addresses: [vip], ports: [{ name: 'http', port, protocol: 'TCP' }], forwarding: 'NAT',
      scheduler: { name: 'rr' }, backends: { service: { name: name(i) } },
    },
  };
}

/** Percentile by nearest rank (p in 0..100) of values sorted ascending. */
export function percentile(sorted: readonly number[], p: number): number {
  if (!sorted.length) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}
