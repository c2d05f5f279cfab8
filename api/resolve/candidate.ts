// resolveOne: one VirtualServer on its own, before arbitration against the others. Costs
// O(its own endpoints + VIPs x ports); everything else comes from the prebuilt index.
import type { PlanRealServer, PlanService, Reason } from '../plan.ts';
import type { PoolAnnounce } from '../pool.ts';
import { serviceKey } from '../plan.ts';
import { serviceBackends, servicePortFor, staticBackends, staticFamilyReasons } from './backends.ts';
import { admitRealServers, admitVips, type VipGrant } from './admit.ts';
import { nsName, type ResolveIndex } from './lookup.ts';
import { cmp, sortReasons, timestampMs } from './order.ts';
import type { Candidate, Claimant, NormalizedSpec, VirtualServerLike, Vip, VsPort } from './types.ts';
import { validateSpec } from './validate.ts';

export function claimantOf(vs: VirtualServerLike): Claimant {
  const m = vs.metadata ?? {};
  const generation = typeof m.generation === 'number' ? m.generation : 0;
  return {
    ref: { namespace: m.namespace ?? '', name: m.name ?? '', generation },
    created: timestampMs(m.creationTimestamp),
    held: heldOf(vs),
  };
}

/** status.claims as service key -> since in ms: what arbitration reads of a holder. */
export function heldOf(vs: VirtualServerLike): Map<string, number> {
  const out = new Map<string, number>();
  const claims = vs.status?.claims;
  if (!Array.isArray(claims)) return out;
  for (const c of claims) {
    if (typeof c?.service !== 'string') continue;
    out.set(c.service, timestampMs(c.since));
  }
  return out;
}

interface PortResult {
  byFamily: Map<4 | 6, PlanRealServer[]>;
  reasons: Reason[];
  unresolved: boolean;
}

function portBackends(spec: NormalizedSpec, port: VsPort, families: Set<4 | 6>, namespace: string, index: ResolveIndex): PortResult {
  const byFamily = new Map<4 | 6, PlanRealServer[]>();
  const b = spec.backends;
  if (b.kind === 'static') {
    // TUN serves every real server on every VIP: one list, shared by both families.
    const shared = spec.forwarding === 'TUN' ? staticBackends(index, b.entries, port, spec.forwarding, 4) : undefined;
    for (const f of families) byFamily.set(f, shared ?? staticBackends(index, b.entries, port, spec.forwarding, f));
    return { byFamily, reasons: [], unresolved: false };
  }
  const svc = index.services.get(nsName(namespace, b.name));
  if (!svc) return { byFamily, reasons: [], unresolved: true };
  const sp = servicePortFor(svc, port, spec);
  if ('reason' in sp) return { byFamily, reasons: [sp.reason], unresolved: true };
  const reasons: Reason[] = [];
  const target = { namespace, serviceName: b.name, servicePort: sp.servicePort };
  for (const f of families) {
    const got = serviceBackends(index, target, port, spec.forwarding, f);
    byFamily.set(f, got.realServers);
    reasons.push(...got.reasons);
  }
  return { byFamily, reasons, unresolved: false };
}

export function planService(claimant: Claimant, spec: NormalizedSpec, vip: Vip, port: VsPort, realServers: PlanRealServer[], directors: string[], announce?: PoolAnnounce): PlanService {
  const s: PlanService = {
    key: serviceKey(port.protocol, vip.address, port.port),
    owner: { ...claimant.ref },
    portName: port.name,
    vip: vip.address,
    family: vip.family,
    protocol: port.protocol,
    port: port.port,
    forwarding: spec.forwarding,
    scheduler: { name: spec.scheduler.name, flags: [...spec.scheduler.flags] },
    prepareRealServers: spec.prepareRealServers,
    realServers: [...realServers],
    directors: [...directors],
  };
  if (spec.tunnel) s.tunnel = { ...spec.tunnel, ...(spec.tunnel.flags ? { flags: [...spec.tunnel.flags] } : {}) };
  if (spec.natReturnPath) s.natReturnPath = spec.natReturnPath;
  if (announce?.mode === 'L2') s.announce = announce.interfaces ? { interfaces: [...announce.interfaces] } : {};
  if (spec.healthCheck) s.healthCheck = { ...spec.healthCheck, ...(spec.healthCheck.statuses ? { statuses: [...spec.healthCheck.statuses] } : {}) };
  if (spec.persistence) {
    const { timeoutSeconds, netmask4, netmask6 } = spec.persistence;
    s.persistence = { timeoutSeconds, netmask: vip.family === 4 ? netmask4 : netmask6 };
  }
  return s;
}

/** Resolves one VirtualServer against the index. Never throws: problems are reasons. */
export function resolveOne(vs: VirtualServerLike, index: ResolveIndex): Candidate {
  const claimant = claimantOf(vs);
  const empty = {
    services: [], directors: [], keyFields: new Map<string, string>(), unresolvedPorts: new Set<string>(), realServersByPort: new Map(),
  };
  const v = validateSpec(vs.spec);
  if (!v.ok) return { ...claimant, ...empty, keeps: [...claimant.held.keys()].sort(cmp), reasons: sortReasons(v.reasons) };
  const spec = v.spec;
  const namespace = claimant.ref.namespace;
  const admitted = admitVips(spec, namespace, index);
  const reasons: Reason[] = [...admitted.reasons];
  const directors = [...new Set(admitted.grants.flatMap((g) => g.directors))].sort(cmp);
  if (admitted.grants.length > 0 && directors.length === 0) reasons.push(noDirectors(spec, admitted.grants));
  const families = new Set(spec.vips.map((x) => x.family));
  if (spec.backends.kind === 'static') reasons.push(...staticFamilyReasons(spec.backends.entries, families, spec.forwarding));
  else if (!index.services.has(nsName(namespace, spec.backends.name))) {
    reasons.push({
      type: 'ServiceNotFound',
      field: 'spec.backends.service.name',
      message: `Service ${nsName(namespace, spec.backends.name)} not found`,
    });
  }
  const services: PlanService[] = [];
  const keyFields = new Map<string, string>();
  const unresolvedPorts = new Set<string>();
  const realServersByPort = new Map<string, Map<4 | 6, PlanRealServer[]>>();
  const refused = new Map<string, Reason>();
  for (const port of spec.ports) {
    const pb = portBackends(spec, port, families, namespace, index);
    reasons.push(...pb.reasons);
    if (pb.unresolved) unresolvedPorts.add(port.name);
    const byFamily = new Map<4 | 6, PlanRealServer[]>();
    realServersByPort.set(port.name, byFamily);
    for (const g of admitted.grants) {
      const rs = admitRealServers(g, pb.byFamily.get(g.vip.family) ?? [], spec, namespace, index, refused);
      // Status counts: the first admitted VIP of each family speaks for it (VIPs of one family in
      // different pools may keep different real servers; the plan services carry each one's own).
      if (!byFamily.has(g.vip.family)) byFamily.set(g.vip.family, rs);
      const s = planService(claimant, spec, g.vip, port, rs, g.directors, g.pool?.announce);
      services.push(s);
      keyFields.set(s.key, `spec.addresses[${g.vip.index}]`);
    }
  }
  reasons.push(...refused.values());
  services.sort((a, b) => cmp(a.key, b.key));
  return {
    ...claimant, services, keeps: [], reasons: sortReasons(reasons), directors, keyFields, unresolvedPorts, realServersByPort,
  };
}

function noDirectors(spec: NormalizedSpec, grants: readonly VipGrant[]): Reason {
  const pools = [...new Set(grants.flatMap((g) => (g.pool?.directors ? [g.pool.name] : [])))];
  if (pools.length > 0) {
    return {
      type: 'NoDirectors', field: spec.nodeSelector ? 'spec.directors.nodeSelector' : 'spec.addresses',
      message: `no node matches the directors of VIPPool ${pools.join(', ')}${spec.nodeSelector ? ' narrowed by spec.directors.nodeSelector' : ''}`,
    };
  }
  return {
    type: 'NoDirectors',
    field: spec.nodeSelector ? 'spec.directors.nodeSelector' : 'spec.directors',
    message: spec.nodeSelector ? 'no node matches spec.directors.nodeSelector' : 'the cluster has no nodes',
  };
}
