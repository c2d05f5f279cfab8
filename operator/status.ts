// From a VirtualServer's resolution to its status: pure functions only. The controller compares
// the result with the stored status and writes only when they differ, so everything here must be
// deterministic (sorted lists, no timestamps unless a condition really transitions).
import type { Reason, ReasonType, VirtualServerResolution } from '../api/plan.ts';
import type { Condition, NodeReport, StatusRealServer, VirtualServerObject, VirtualServerStatus } from '../kube/types.ts';

export const CONDITION_TYPES = ['Ready', 'Programmed', 'Conflict', 'InvalidSpec', 'BackendsResolved'] as const;
export type ConditionType = (typeof CONDITION_TYPES)[number];

/** CRD bounds (crds/virtualserver.yaml): a longer list would be rejected with 422. */
export const MAX_STATUS_REAL_SERVERS = 16384;
export const MAX_STATUS_DIRECTORS = 5000;
const MAX_MESSAGE = 32768;

/** Reasons that keep a VirtualServer from serving, in the order Ready reports them. */
const NOT_READY: ReasonType[] = ['InvalidSpec', 'Conflict', 'ServiceNotFound', 'ServicePortNotFound', 'NoDirectors', 'NoReadyEndpoints'];
/** Reasons meaning some backends could not be resolved or used. */
const UNRESOLVED: ReasonType[] = ['ServiceNotFound', 'ServicePortNotFound', 'PortRemapNotSupported', 'AddressFamilyMismatch'];

type Desired = Omit<Condition, 'lastTransitionTime' | 'observedGeneration'>;

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

/**
 * Programmed, from the agents' own reports in status.nodes: True once every director reports the
 * current generation programmed, False when one (a director, or the node of DR/TUN real servers it
 * could not prepare) reports that generation failing — the message names the node and the failing
 * step — and Unknown while a director has not reported the current generation yet.
 */
export function programmedCondition(res: VirtualServerResolution, nodes: readonly NodeReport[] | undefined, generation: number): Desired {
  if (res.directors.length === 0 || res.services.length === 0) {
    return { type: 'Programmed', status: 'False', reason: 'NothingToProgram', message: res.directors.length === 0 ? 'no director nodes' : 'no virtual service to program' };
  }
  const byNode = new Map((nodes ?? []).map((n) => [n.name, n] as const));
  const failing: string[] = [];
  const waiting: string[] = [];
  for (const d of res.directors) {
    const r = byNode.get(d);
    if (!r || r.observedGeneration !== generation) waiting.push(d);
    else if (!r.programmed) failing.push(`node ${d}: ${r.message || 'not programmed'}`);
  }
  for (const r of nodes ?? []) {
    if (!res.directors.includes(r.name) && r.observedGeneration === generation && r.programmed === false) failing.push(`node ${r.name}: ${r.message || 'not programmed'}`);
  }
  if (failing.length) return { type: 'Programmed', status: 'False', reason: 'ProgrammingFailed', message: describe(failing.map((message) => ({ type: 'InvalidSpec', message }))) };
  if (waiting.length) {
    return { type: 'Programmed', status: 'Unknown', reason: 'AwaitingAgents', message: `waiting for ${waiting.length} of ${res.directors.length} director(s) to report generation ${generation}: ${waiting.slice(0, 10).join(', ')}${waiting.length > 10 ? ', ...' : ''}` };
  }
  return { type: 'Programmed', status: 'True', reason: 'Programmed', message: `${res.directors.length} director(s) programmed generation ${generation}` };
}

/** Condition statuses, reasons and messages (no times) for a resolution. */
export function desiredConditions(res: VirtualServerResolution, nodes?: readonly NodeReport[], generation = res.ref.generation): Desired[] {
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
  out.push(programmedCondition(res, nodes, generation));
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

function statusRealServers(res: VirtualServerResolution): StatusRealServer[] {
  return res.realServers.slice(0, MAX_STATUS_REAL_SERVERS).map((r) => {
    const s: StatusRealServer = { port: r.portName, address: r.address, targetPort: r.port, weight: r.weight, state: r.state };
    if (r.node !== undefined) s.node = r.node;
    if (r.pod) s.pod = { namespace: r.pod.namespace, name: r.pod.name };
    return s;
  });
}

/** The full status the controller wants for vs, given its resolution, at time now. */
export function computeStatus(vs: VirtualServerObject, res: VirtualServerResolution, now: number): VirtualServerStatus {
  const generation = vs.metadata.generation ?? 0;
  return {
    observedGeneration: generation,
    conditions: withTransitions(desiredConditions(res, vs.status?.nodes, generation), vs.status?.conditions, generation, now),
    directors: res.directors.slice(0, MAX_STATUS_DIRECTORS),
    realServers: statusRealServers(res),
    readyRealServers: readyCount(res),
    services: [...res.services],
  };
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

/** True when the stored status already says everything `desired` says (fields we own only). */
export function statusUpToDate(stored: VirtualServerStatus | undefined, desired: VirtualServerStatus): boolean {
  const s = stored ?? {};
  return (Object.keys(desired) as Array<keyof VirtualServerStatus>).every((k) => jsonEqual(s[k], desired[k]));
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
