// The plan the controller published for one VirtualServer, read back as an agent reads it: its
// PlanSlices (labelled with the VirtualServer's uid) parsed strictly and assembled into one plan
// of one revision (api/plan-slice.ts). For tests and benchmarks, with any client: the caller
// lists the objects (a KubeApi, the guest's plain HTTPS client, a fake).
import { assemblePlan, OWNER_UID_LABEL, parsePlanSlice, type OwnerPlan, type Parsed, type PlanSliceObject } from '../../api/plan-slice.ts';
import type { PlanRealServer } from '../../api/plan.ts';
import { PLAN_SLICES, resourcePath } from '../../kube/types.ts';

/** The label selector of one VirtualServer's slices. */
export const ownerSelector = (uid: string) => `${OWNER_UID_LABEL}=${uid}`;

/** GET path listing one VirtualServer's slices (for clients that take a path). */
export function planSlicesPath(uid: string): string {
  return `${resourcePath(PLAN_SLICES)}?labelSelector=${encodeURIComponent(ownerSelector(uid))}`;
}

/** The listed objects that belong to uid, each parsed strictly; the first unreadable one is the error. */
export function slicesOf(items: readonly unknown[], uid: string): Parsed<PlanSliceObject[]> {
  const out: PlanSliceObject[] = [];
  for (const item of items) {
    if ((item as { metadata?: { labels?: Record<string, string> } }).metadata?.labels?.[OWNER_UID_LABEL] !== uid) continue;
    const p = parsePlanSlice(item);
    if (!p.ok) return p;
    out.push(p.value);
  }
  return { ok: true, value: out };
}

/** One VirtualServer's plan from listed PlanSlices (which may include other VirtualServers'). */
export function publishedPlan(items: readonly unknown[], uid: string): Parsed<OwnerPlan> {
  const slices = slicesOf(items, uid);
  return slices.ok ? assemblePlan(slices.value) : slices;
}

/** The plan's real servers with the port name of their service, in plan order (what status.realServers was). */
export function planRealServers(plan: OwnerPlan): Array<PlanRealServer & { portName: string; key: string }> {
  return plan.services.flatMap((s) => s.realServers.map((r) => ({ ...r, portName: s.portName, key: s.key })));
}

/** Lists and assembles, throwing with the reason when the plan cannot be used. */
export async function fetchPlan(list: (labelSelector: string) => Promise<{ items: readonly unknown[] }>, uid: string): Promise<OwnerPlan> {
  const got = publishedPlan((await list(ownerSelector(uid))).items, uid);
  if (!got.ok) throw new Error(`published plan of ${uid}: ${got.field}: ${got.message}`);
  return got.value;
}
