// Health checks in a VirtualServer's status, from the directors' AgentReports (pure): how many
// real servers are out of rotation across its directors, the first MAX_STATUS_UNHEALTHY of them,
// and the transitions between two statuses (for Events). Only for a VirtualServer with
// spec.healthCheck. A report lists at most 100 down real servers over all VirtualServers of its
// node (api/agent-report.ts); beyond that, entries of this VirtualServer may be missing here.
import type { UnhealthyEntry, VirtualServerObject, VirtualServerStatus } from '../kube/types.ts';
import type { ReportView } from './programmed.ts';

/** CRD bound on status.health.unhealthy (crds/virtualserver.yaml). */
export const MAX_STATUS_UNHEALTHY = 16;

const entryKey = (e: UnhealthyEntry) => `${e.node}|${e.address}|${String(e.port).padStart(5, '0')}`;

export function healthStatus(vs: VirtualServerObject, reports: Pick<ReportView, 'exceptions'>): VirtualServerStatus['health'] {
  if (!(vs.spec as { healthCheck?: unknown } | undefined)?.healthCheck) return undefined;
  const entries: UnhealthyEntry[] = [];
  for (const [node, e] of reports.exceptions(vs.metadata.uid ?? '')) {
    for (const u of e.unhealthy ?? []) entries.push({ node, address: u.address, port: u.port, message: u.message, ...(u.since ? { since: u.since } : {}) });
  }
  entries.sort((a, b) => (entryKey(a) < entryKey(b) ? -1 : entryKey(a) > entryKey(b) ? 1 : 0));
  return { down: entries.length, unhealthy: entries.slice(0, MAX_STATUS_UNHEALTHY) };
}

/** Real servers that went out of (down) or back into (up) rotation between two statuses. */
export function healthTransitions(prev: VirtualServerStatus['health'], next: VirtualServerStatus['health']): { down: UnhealthyEntry[]; up: UnhealthyEntry[] } {
  const before = new Map((prev?.unhealthy ?? []).map((e) => [entryKey(e), e]));
  const after = new Map((next?.unhealthy ?? []).map((e) => [entryKey(e), e]));
  // A list cut at its bound says nothing of the entries beyond it: only a complete list shows "up".
  const complete = (h: VirtualServerStatus['health']) => (h?.down ?? 0) <= MAX_STATUS_UNHEALTHY;
  return {
    down: [...after].filter(([k]) => !before.has(k)).map(([, e]) => e),
    up: complete(next) ? [...before].filter(([k]) => !after.has(k)).map(([, e]) => e) : [],
  };
}
