// Object builders for the controller's tests (unit tier, against FakeKubeApi).
import type { KubeObject, NodeObject, VirtualServerObject } from '../../kube/types.ts';

export function vs(name: string, spec: Record<string, unknown>, namespace = 'default'): VirtualServerObject {
  return { apiVersion: 'lvs.dev/v1alpha1', kind: 'VirtualServer', metadata: { name, namespace }, spec };
}

export function serviceVs(name: string, service: string, vip = '203.0.113.10', port = 80): VirtualServerObject {
  return vs(name, { addresses: [vip], ports: [{ name: 'http', port, protocol: 'TCP' }], backends: { service: { name: service } } });
}

export function staticVs(name: string, addresses: string[], vip = '203.0.113.20', extra: Record<string, unknown> = {}): VirtualServerObject {
  return vs(name, {
    addresses: [vip], ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }],
    backends: { static: addresses.map((address) => ({ address })) }, ...extra,
  });
}

export function service(name: string, namespace = 'default'): KubeObject & { spec: unknown } {
  return {
    apiVersion: 'v1', kind: 'Service', metadata: { name, namespace },
    spec: { ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }] },
  };
}

export interface Ep {
  ip: string;
  pod: string;
  node?: string;
  ready?: boolean;
  serving?: boolean;
  terminating?: boolean;
}

export function slice(name: string, svc: string, eps: Ep[], namespace = 'default'): KubeObject & Record<string, unknown> {
  return {
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
    metadata: { name, namespace, labels: { 'kubernetes.io/service-name': svc } },
    addressType: 'IPv4',
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    endpoints: eps.map((e) => ({
      addresses: [e.ip],
      conditions: { ready: e.ready ?? true, serving: e.serving ?? e.ready ?? true, terminating: e.terminating ?? false },
      nodeName: e.node ?? 'node-a',
      targetRef: { kind: 'Pod', namespace, name: e.pod },
    })),
  };
}

export function node(name: string, labels: Record<string, string> = {}, address = '192.0.2.1'): NodeObject {
  return {
    apiVersion: 'v1', kind: 'Node', metadata: { name, labels },
    status: { addresses: [{ type: 'InternalIP', address }], conditions: [{ type: 'Ready', status: 'True' }] },
  };
}

/** Polls until check() holds (real time; the fake API answers at once). */
export async function until(check: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
