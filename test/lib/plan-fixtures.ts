// The contract's objects for the cluster-mode tests: plans as the controller publishes them
// (api/plan-slice.ts) and reports as agents write them (api/agent-report.ts).
import type { PreparedRealServer } from '../../api/agent-report.ts';
import type { OwnerPlan, SliceService } from '../../api/plan-slice.ts';
import { serviceKey } from '../../api/plan.ts';
import type { KubeObject } from '../../kube/types.ts';

export const VIP = '203.0.113.10';
export const POD = '10.244.2.7';

export function service(over: Partial<SliceService> = {}): SliceService {
  const vip = over.vip ?? VIP;
  const port = over.port ?? 80;
  return {
    key: serviceKey(over.protocol ?? 'TCP', vip, port), portName: 'http', vip, family: 4, protocol: 'TCP', port,
    forwarding: 'NAT', scheduler: { name: 'rr', flags: [] }, prepareRealServers: false,
    realServers: [{ address: '10.244.1.5', port: 8080, weight: 1, state: 'Ready' }],
    ...over,
  };
}

/** One VirtualServer's plan; services sorted by key as the controller sorts them. */
export function ownerPlan(name: string, services: SliceService[], over: { directors?: string[]; generation?: number; uid?: string } = {}): OwnerPlan {
  return {
    owner: { namespace: 'default', name, uid: over.uid ?? `uid-${name}`, generation: over.generation ?? 1 },
    directors: over.directors ?? ['n1'],
    services: [...services].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)),
  };
}

/** Another node's report, as its agent would write it. */
export function otherReport(node: string, prepared: PreparedRealServer[]): KubeObject {
  return {
    apiVersion: 'lvs.dev/v1alpha1', kind: 'AgentReport', metadata: { name: node },
    node, syncedResourceVersion: '1', nodeErrors: [], failing: [], failingCount: 0, frozen: [], frozenCount: 0, prepared,
  } as unknown as KubeObject;
}
