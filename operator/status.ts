// From a VirtualServer's resolution, its published plan and the agents' reports to its status:
// pure functions only. The controller compares the result with the stored status and writes only
// when they differ, so everything here must be deterministic (sorted lists, no timestamps unless
// a condition really transitions). The status stays small whatever the plan's size: counts, a
// bounded list of directors and of nodes not programmed; the plan itself is in PlanSlices.
import type { Reason, ReasonType, VirtualServerResolution } from '../api/plan.ts';
import type { Condition, LegacyAgentStatus, VirtualServerObject, VirtualServerStatus } from '../kube/types.ts';
import type { ConditionValue, ProgrammedSummary, ReportView } from './programmed.ts';
import { announcersOf } from './announce-status.ts';
import type { Publication } from './publish.ts';

export const CONDITION_TYPES = ['Ready', 'Programmed', 'Conflict', 'InvalidSpec', 'BackendsResolved'] as const;
export type ConditionType = (typeof CONDITION_TYPES)[number];

/** CRD bound on status.directors (crds/virtualserver.yaml); directorCount counts them all. */
export const MAX_STATUS_DIRECTORS = 16;
const MAX_MESSAGE = 32768;

/** Status fields the controller owns: a field it no longer sets is removed (null in the patch). */
const OWNED: Array<keyof VirtualServerStatus> = [
  'observedGeneration', 'conditions', 'services', 'claims', 'readyRealServers', 'realServerCount', 'directors', 'directorCount',
  'plan', 'unprogrammedNodes', 'programmedNodes', 'health', 'announcers',
];
/** Fields of earlier versions (real servers, agents' entries), removed when met. */
const LEGACY = ['realServers', 'nodes'] as const;

type StoredStatus = VirtualServerStatus & LegacyAgentStatus;

/** Reasons that keep a VirtualServer from serving, in the order Ready reports them. */
const NOT_READY: ReasonType[] = [
  'InvalidSpec', 'AddressReserved', 'AddressNotAllowed', 'ForwardingNotAllowed', 'Conflict', 'RealServerNotAllowed',
  'ServiceNotFound', 'ServicePortNotFound', 'NoDirectors', 'NoReadyEndpoints',
];
/** Reasons meaning some backends could not be resolved or used. */
const UNRESOLVED: ReasonType[] = ['ServiceNotFound', 'ServicePortNotFound', 'PortRemapNotSupported', 'AddressFamilyMismatch', 'RealServerNotAllowed'];

type Desired = ConditionValue;

function describe(reasons: Reason[]): string {
  const text = reasons.map((r) => (r.field ? `${r.field}: ${r.message}` : r.message)).join('; ');
  return text.length > MAX_MESSAGE ? `${text.slice(0, MAX_MESSAGE - 3)}...` : text;
}

function ofTypes(reasons: Reason[], types: ReasonType[]): Reason[] {
  return reasons.filter((r) => types.includes(r.type));
}

/** The first type of `order` present among reasons, with all reasons of that type. */
function firstOf(reasons: Reason[], order: ReasonType[]): { type: ReasonType; reasons: Reason[] } | undefined {
  for (const t of order) {
    const hit = reasons.filter((r) => r.type === t);
    if (hit.length) return { type: t, reasons: hit };
  }
  return undefined;
}

/** Counts distinct addresses with at least one Ready entry (a pod serving two ports counts once). */
export function readyCount(res: VirtualServerResolution): number {
  return new Set(res.realServers.filter((r) => r.state === 'Ready').map((r) => r.address)).size;
}

/** Condition statuses, reasons and messages (no times) for a resolution and its Programmed value. */
export function desiredConditions(res: VirtualServerResolution, programmed: ConditionValue): Desired[] {
  const reasons = res.reasons;
  const invalid = ofTypes(reasons, ['InvalidSpec']);
  const conflict = ofTypes(reasons, ['Conflict']);
  const unresolved = firstOf(reasons, UNRESOLVED);
  const blocking = firstOf(reasons, NOT_READY);
  const ready = readyCount(res);
  const out: Desired[] = [];
  out.push(blocking
    ? { type: 'Ready', status: 'False', reason: blocking.type, message: describe(blocking.reasons) }
    : { type: 'Ready', status: 'True', reason: 'Resolved', message: `${ready} ready real server(s) on ${res.services.length} virtual service(s), ${res.directors.length} director(s)` });
  out.push({ ...programmed, type: 'Programmed' });
  out.push(conflict.length
    ? { type: 'Conflict', status: 'True', reason: 'AddressInUse', message: describe(conflict) }
    : { type: 'Conflict', status: 'False', reason: 'NoConflict', message: 'no other VirtualServer claims the same (VIP, protocol, port)' });
  out.push(invalid.length
    ? { type: 'InvalidSpec', status: 'True', reason: 'InvalidSpec', message: describe(invalid) }
    : { type: 'InvalidSpec', status: 'False', reason: 'Valid', message: 'spec is valid' });
  if (invalid.length) {
    out.push({ type: 'BackendsResolved', status: 'False', reason: 'InvalidSpec', message: 'spec is invalid; backends were not resolved' });
  } else if (unresolved) {
    out.push({ type: 'BackendsResolved', status: 'False', reason: unresolved.type, message: describe(ofTypes(reasons, UNRESOLVED)) });
  } else {
    out.push({ type: 'BackendsResolved', status: 'True', reason: 'Resolved', message: `${res.realServers.length} real server entries, ${ready} ready` });
  }
  return out;
}

/** RFC 3339 with second precision, as metav1.Time serialises. */
export function rfc3339(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/**
 * Conditions with lastTransitionTime carried over from `previous` when the status of that type
 * did not change, and set to now when it did (or the type is new).
 */
export function withTransitions(desired: Desired[], previous: Condition[] | undefined, generation: number, now: number): Condition[] {
  const prev = new Map((previous ?? []).map((c) => [c.type, c] as const));
  return desired.map((d) => {
    const p = prev.get(d.type);
    const lastTransitionTime = p && p.status === d.status && p.lastTransitionTime ? p.lastTransitionTime : rfc3339(now);
    return { type: d.type, status: d.status, reason: d.reason, message: d.message, lastTransitionTime, observedGeneration: generation };
  });
}

/**
 * The full status the controller wants for vs at time now: what its resolution says of the spec
 * (services won, real-server counts, conditions), what is published (plan, directors: for an
 * InvalidSpec the plan kept from before) and how far the agents programmed it.
 */
export function computeStatus(vs: VirtualServerObject, res: VirtualServerResolution, pub: Publication | undefined, programmed: ProgrammedSummary, now: number, health?: VirtualServerStatus['health'], reports?: Pick<ReportView, 'get'>): VirtualServerStatus {
  const generation = vs.metadata.generation ?? 0;
  const directors = pub?.directors ?? res.directors;
  const st: VirtualServerStatus = {
    observedGeneration: generation,
    conditions: withTransitions(desiredConditions(res, programmed.condition), vs.status?.conditions, generation, now),
    services: [...res.services],
    // An invalid spec keeps its published plan, and with it what it holds.
    claims: res.reasons.some((r) => r.type === 'InvalidSpec') ? [...(vs.status?.claims ?? [])] : claimsOf(res.services, vs.status?.claims, now),
    readyRealServers: readyCount(res),
    realServerCount: new Set(res.realServers.map((r) => r.address)).size,
    directors: directors.slice(0, MAX_STATUS_DIRECTORS),
    directorCount: directors.length,
    unprogrammedNodes: programmed.nodes,
    programmedNodes: programmed.programmedNodes,
  };
  if (pub) st.plan = { revision: pub.revision, slices: pub.slices, generation: pub.generation };
  if (health) st.health = health;
  const announcers = reports ? announcersOf(st.services ?? [], directors, reports) : undefined;
  if (announcers) st.announcers = announcers;
  return st;
}

/** The keys held now, each with the time it was first held (kept from before, or now). */
export function claimsOf(services: readonly string[], previous: ReadonlyArray<{ service?: string; since?: string }> | undefined, now: number): Array<{ service: string; since: string }> {
  const before = new Map((Array.isArray(previous) ? previous : []).map((c) => [c?.service, c?.since] as const));
  return services.map((service) => {
    const since = before.get(service);
    return { service, since: typeof since === 'string' && Number.isFinite(Date.parse(since)) ? since : rfc3339(now) };
  });
}

/** Deep equality of JSON values, independent of object key order. */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const bb = b as unknown[];
    return a.length === bb.length && a.every((x, i) => jsonEqual(x, bb[i]));
  }
  const ka = Object.keys(a).filter((k) => (a as Record<string, unknown>)[k] !== undefined);
  const kb = Object.keys(b).filter((k) => (b as Record<string, unknown>)[k] !== undefined);
  return ka.length === kb.length && ka.every((k) => jsonEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

/** True when the stored status already says exactly what `desired` says in the fields we own. */
export function statusUpToDate(stored: StoredStatus | undefined, desired: VirtualServerStatus): boolean {
  const s = stored ?? {};
  return OWNED.every((k) => jsonEqual(s[k], desired[k])) && LEGACY.every((k) => s[k] === undefined);
}

/** The merge patch making a stored status `desired`: owned fields set, or removed (null) when unset; legacy fields removed. */
export function statusPatch(stored: StoredStatus | undefined, desired: VirtualServerStatus): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of OWNED) {
    if (desired[k] !== undefined) out[k] = desired[k];
    else if (stored?.[k] !== undefined) out[k] = null;
  }
  for (const k of LEGACY) if (stored?.[k] !== undefined) out[k] = null;
  return out;
}

export interface Transition {
  type: string;
  from: Condition | undefined;
  to: Condition;
  /** Warning for problems, Normal for recoveries. */
  eventType: 'Normal' | 'Warning';
}

/** A condition value that is a problem worth a Warning event. */
function isProblem(c: Condition): boolean {
  return (c.type === 'Conflict' && c.status === 'True') || (c.type === 'InvalidSpec' && c.status === 'True')
    || (c.type === 'BackendsResolved' && c.status === 'False');
}

/**
 * Condition changes worth a Kubernetes Event: every status change into a problem (Warning), a
 * recovery from a problem (Normal), and Ready changing (Normal when it becomes True). First
 * appearances of healthy values (Conflict=False on creation) are not news.
 */
export function eventTransitions(previous: Condition[] | undefined, next: Condition[]): Transition[] {
  const prev = new Map((previous ?? []).map((c) => [c.type, c] as const));
  const out: Transition[] = [];
  for (const c of next) {
    const p = prev.get(c.type);
    if (p && p.status === c.status) continue;
    if (isProblem(c)) out.push({ type: c.type, from: p, to: c, eventType: 'Warning' });
    else if (p && isProblem(p)) out.push({ type: c.type, from: p, to: c, eventType: 'Normal' });
    else if (c.type === 'Ready' && (c.status === 'True' || p)) out.push({ type: c.type, from: p, to: c, eventType: c.status === 'True' ? 'Normal' : 'Warning' });
  }
  return out;
}
