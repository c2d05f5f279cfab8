// Arbitration between VirtualServers that claim the same (VIP, protocol, port). The holder keeps:
// a VirtualServer whose status records the key (status.claims, written by the controller, never
// by tenants) wins against every newcomer, however old the newcomer's object is, so editing an
// old VirtualServer cannot take another team's VIP. Among claimants that do not hold it the
// oldest creationTimestamp wins, then namespace/name. A pure function of the claimants, never of
// watch order, so the kernel rule cannot flap between owners when the controller restarts or
// relists. An invalid VirtualServer claims only what it holds (its published plan is kept).
import type { ObjectRef, PlanRealServer, PlanService, Reason, VirtualServerResolution } from '../plan.ts';
import { refKey } from '../plan.ts';
import { compareRefs, sortReasons } from './order.ts';
import type { Candidate, Claimant } from './types.ts';

/** Negative when `a` wins `key` over `b` (without a key: by age, for de-duplication). */
export function compareClaimants(a: Claimant, b: Claimant, key?: string): number {
  const ha = key === undefined ? undefined : a.held.get(key);
  const hb = key === undefined ? undefined : b.held.get(key);
  if ((ha === undefined) !== (hb === undefined)) return ha !== undefined ? -1 : 1;
  if (ha !== undefined && hb !== undefined && ha !== hb) return ha < hb ? -1 : 1;
  if (a.created !== b.created) return a.created < b.created ? -1 : 1;
  return compareRefs(a.ref, b.ref);
}

const claimedKeys = (c: Candidate): string[] => (c.keeps.length ? [...c.services.map((s) => s.key), ...c.keeps] : c.services.map((s) => s.key));

export interface Loss {
  key: string;
  winner: Claimant;
}

export interface Arbitration {
  /** Service key -> the claimant that owns it. */
  winners: Map<string, Claimant>;
  /** namespace/name of a loser -> the keys it lost (in key order) and to whom. */
  losses: Map<string, Loss[]>;
}

/**
 * Decides every contested key among the given candidates. For an incremental update it is
 * enough to pass the candidates claiming the keys that changed: a key's outcome depends only on
 * its own claimants.
 */
export function arbitrate(candidates: Iterable<Candidate>): Arbitration {
  const winners = new Map<string, Claimant>();
  for (const c of candidates) {
    for (const key of claimedKeys(c)) {
      const cur = winners.get(key);
      if (!cur || compareClaimants(c, cur, key) < 0) winners.set(key, c);
    }
  }
  const losses = new Map<string, Loss[]>();
  for (const c of candidates) {
    for (const s of c.services) {
      const winner = winners.get(s.key);
      if (!winner || winner === c) continue;
      const id = refKey(c.ref);
      const list = losses.get(id);
      if (list) list.push({ key: s.key, winner });
      else losses.set(id, [{ key: s.key, winner }]);
    }
  }
  return { winners, losses };
}

function conflictReason(c: Candidate, loss: Loss): Reason {
  const w = loss.winner;
  const since = w.held.get(loss.key);
  const why = since !== undefined
    ? `it holds it${Number.isFinite(since) ? ` since ${new Date(since).toISOString().replace(/\.\d{3}Z$/, 'Z')}` : ''} and the holder keeps it`
    : w.created < c.created ? 'it is older' : 'it was created at the same time and sorts first by namespace/name';
  const r: Reason = {
    type: 'Conflict',
    message: `${loss.key} is already claimed by VirtualServer ${refKey(w.ref)} (${why}); this VirtualServer does not program it`,
  };
  const field = c.keyFields.get(loss.key);
  if (field) r.field = field;
  return r;
}

/** NoReadyEndpoints for won services whose backends resolved but hold no Ready real server. */
function noReadyReason(c: Candidate, won: PlanService[]): Reason | undefined {
  const ports = new Map<string, { total: number; lacking: number; families: Set<number> }>();
  for (const s of won) {
    if (c.unresolvedPorts.has(s.portName)) continue;
    const e = ports.get(s.portName) ?? { total: 0, lacking: 0, families: new Set<number>() };
    e.total += 1;
    if (!s.realServers.some((rs) => rs.state === 'Ready')) { e.lacking += 1; e.families.add(s.family); }
    ports.set(s.portName, e);
  }
  const items: string[] = [];
  for (const [port, e] of ports) {
    if (e.lacking === 0) continue;
    // Dual-stack: say which family is without real servers when the other one has some.
    items.push(e.lacking === e.total ? port : `${port} (IPv${[...e.families].sort().join('/IPv')} VIPs)`);
  }
  if (items.length === 0) return undefined;
  return { type: 'NoReadyEndpoints', field: 'spec.backends', message: `no Ready real server for port ${items.sort().join(', ')}` };
}

/** The real servers of the ports and families this candidate won, sorted (portName, address, port). */
function resolutionRealServers(c: Candidate, won: PlanService[]): Array<PlanRealServer & { portName: string }> {
  const families = new Map<string, Set<4 | 6>>();
  for (const s of won) {
    const f = families.get(s.portName);
    if (f) f.add(s.family);
    else families.set(s.portName, new Set([s.family]));
  }
  const out: Array<PlanRealServer & { portName: string }> = [];
  for (const portName of [...families.keys()].sort()) {
    const byFamily = c.realServersByPort.get(portName);
    const lists = new Set<PlanRealServer[]>();
    for (const f of [4, 6] as const) {
      const list = families.get(portName)?.has(f) ? byFamily?.get(f) : undefined;
      if (list) lists.add(list);
    }
    // Distinct lists are family-pure (see Candidate.realServersByPort): IPv4 then IPv6 is sorted.
    for (const list of lists) for (const rs of list) out.push({ ...rs, portName });
  }
  return out;
}

/** Applies the arbitration to one candidate: the services it keeps and its resolution. */
export function finalize(c: Candidate, losses: readonly Loss[] | undefined): { services: PlanService[]; resolution: VirtualServerResolution } {
  const lost = new Set((losses ?? []).map((l) => l.key));
  const won = lost.size ? c.services.filter((s) => !lost.has(s.key)) : c.services;
  const reasons = [...c.reasons, ...(losses ?? []).map((l) => conflictReason(c, l))];
  const noReady = noReadyReason(c, won);
  if (noReady) reasons.push(noReady);
  const ref: ObjectRef & { generation: number } = { ...c.ref };
  return {
    services: won,
    resolution: {
      ref,
      services: won.map((s) => s.key),
      realServers: resolutionRealServers(c, won),
      directors: [...c.directors],
      reasons: sortReasons(reasons),
    },
  };
}
