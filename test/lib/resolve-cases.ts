// Shared harness for the resolver's table-driven tests: a case is an input plus the exact plan
// services and reasons it must produce. Expected values are written out literally in the cases;
// the helpers here only fill the fields a case is not about.
import type { V1EndpointSlice, V1Node, V1Service } from '@kubernetes/client-node';
import * as assert from 'uvu/assert';
import type { PlanRealServer, PlanService, Reason } from '../../api/plan.ts';
import { resolve } from '../../api/resolve/index.ts';
import type { VirtualServerLike } from '../../api/resolve/types.ts';
import { node } from './fixtures.ts';

export const NODES: V1Node[] = [
  node('n2', ['192.168.0.2']),
  node('n1', ['192.168.0.1', 'fd00::1'], { 'lvs.dev/director': 'true' }),
];

export interface Case {
  name: string;
  vs: VirtualServerLike[];
  services?: V1Service[];
  slices?: V1EndpointSlice[];
  nodes?: V1Node[];
  /** Exact plan.services. */
  want: PlanService[];
  /** Exact reasons per namespace/name; a VirtualServer not listed must have none. */
  reasons?: Record<string, Reason[]>;
  /** Exact resolution.realServers per namespace/name, when the case is about them. */
  realServers?: Record<string, Array<PlanRealServer & { portName: string }>>;
}

/** A NAT PlanService of default/web for 203.0.113.10 TCP/80 "http"; `over` states the rest. */
export function ps(over: Partial<PlanService> & { key: string }, drop: Array<keyof PlanService> = []): PlanService {
  const s: PlanService = {
    owner: { namespace: 'default', name: 'web', generation: 1 },
    portName: 'http',
    vip: '203.0.113.10',
    family: 4,
    protocol: 'TCP',
    port: 80,
    forwarding: 'NAT',
    natReturnPath: 'Gateway',
    scheduler: { name: 'wlc', flags: [] },
    prepareRealServers: false,
    realServers: [],
    directors: ['n1', 'n2'],
    ...over,
  };
  for (const k of drop) delete s[k];
  return s;
}

export function rs(address: string, port: number, over: Partial<PlanRealServer> = {}): PlanRealServer {
  return { address, port, weight: 1, state: 'Ready', ...over };
}

export function runCase(c: Case): void {
  const plan = resolve({
    virtualServers: c.vs,
    services: c.services ?? [],
    endpointSlices: c.slices ?? [],
    nodes: c.nodes ?? NODES,
    // Resolution, not admission, is under test here (test/unit/resolve-admission.test.ts).
    admission: { unrestricted: true },
  });
  assert.equal(plan.services, c.want, 'plan.services');
  for (const [id, res] of plan.virtualServers) {
    assert.equal(res.reasons, c.reasons?.[id] ?? [], `reasons of ${id}`);
    const want = c.realServers?.[id];
    if (want) assert.equal(res.realServers, want, `realServers of ${id}`);
    assert.equal(res.services, plan.services.filter((s) => `${s.owner.namespace}/${s.owner.name}` === id).map((s) => s.key), `services of ${id}`);
  }
  for (const id of Object.keys(c.reasons ?? {})) assert.ok(plan.virtualServers.has(id), `${id} is in the plan`);
}
