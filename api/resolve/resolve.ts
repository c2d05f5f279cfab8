// The whole resolve: VirtualServers + Services + EndpointSlices + Nodes -> Plan. Pure and
// deterministic: the plan depends on the input objects, never on their order.
import type { Plan, PlanService, VirtualServerResolution } from '../plan.ts';
import { refKey } from '../plan.ts';
import { resolveOne } from './candidate.ts';
import { arbitrate, compareClaimants, finalize } from './conflicts.ts';
import { buildIndex } from './lookup.ts';
import { cmp, compareRefs } from './order.ts';
import type { Candidate, ResolveInput } from './types.ts';

export function resolve(input: ResolveInput): Plan {
  const index = buildIndex(input);
  // An object without a name cannot be addressed (nor get a status): there is nothing to resolve.
  const candidates = input.virtualServers.filter((vs) => typeof vs?.metadata?.name === 'string' && vs.metadata.name !== '').map((vs) => resolveOne(vs, index));
  return assemble(candidates);
}

/** Arbitrates conflicts between resolved candidates and builds the sorted plan. */
export function assemble(candidates: readonly Candidate[]): Plan {
  const unique = dedupe(candidates);
  const { losses } = arbitrate(unique);
  const services: PlanService[] = [];
  const virtualServers = new Map<string, VirtualServerResolution>();
  for (const c of [...unique].sort((a, b) => compareRefs(a.ref, b.ref))) {
    const id = refKey(c.ref);
    const done = finalize(c, losses.get(id));
    services.push(...done.services);
    virtualServers.set(id, done.resolution);
  }
  services.sort((a, b) => cmp(a.key, b.key));
  return { services, virtualServers };
}

/**
 * The same namespace/name twice (a caller merging two listings) keeps one deterministically:
 * the higher generation, then the older object, so input order never decides.
 */
function dedupe(candidates: readonly Candidate[]): Candidate[] {
  const byRef = new Map<string, Candidate>();
  for (const c of candidates) {
    const id = refKey(c.ref);
    const prev = byRef.get(id);
    if (!prev || c.ref.generation > prev.ref.generation || (c.ref.generation === prev.ref.generation && compareClaimants(c, prev) < 0)) {
      byRef.set(id, c);
    }
  }
  return [...byRef.values()];
}
