// Total orders used for every sorted list in the plan. Plain code-unit comparison, never
// localeCompare: the plan must sort the same way on every machine and locale.
import type { ObjectRef, PlanRealServer, Reason } from '../plan.ts';
import { parseIp } from '../ip.ts';

/** A metav1.Time as ms since the epoch (RFC 3339 text from raw JSON, Date from the typed client); +Infinity when absent or unparsable. */
export function timestampMs(t: unknown): number {
  const ms = t instanceof Date ? t.getTime() : typeof t === 'string' ? Date.parse(t) : NaN;
  return Number.isFinite(ms) ? ms : Infinity;
}

export function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function compareRefs(a: ObjectRef, b: ObjectRef): number {
  return cmp(a.namespace, b.namespace) || cmp(a.name, b.name);
}

/** Addresses in numeric order, IPv4 before IPv6 (10.0.0.9 before 10.0.0.10). */
export function compareAddresses(a: string, b: string): number {
  if (a === b) return 0;
  return cmp(parseIp(a)?.sortKey ?? `~${a}`, parseIp(b)?.sortKey ?? `~${b}`);
}

/** Real servers carry a precomputed address sort key while the resolver works on them. */
export interface Sortable {
  sortKey: string;
  rs: PlanRealServer;
}

export function compareSortable(a: Sortable, b: Sortable): number {
  return cmp(a.sortKey, b.sortKey) || a.rs.port - b.rs.port;
}

export function compareReasons(a: Reason, b: Reason): number {
  return cmp(a.type, b.type) || cmp(a.field ?? '', b.field ?? '') || cmp(a.message, b.message);
}

/** Sorted, without exact duplicates (the same problem found for several VIPs is said once). */
export function sortReasons(reasons: Reason[]): Reason[] {
  const sorted = [...reasons].sort(compareReasons);
  return sorted.filter((r, i) => i === 0 || compareReasons(sorted[i - 1] as Reason, r) !== 0);
}
