// Publishing one VirtualServer's plan as PlanSlices (api/plan-slice.ts): pure decisions only.
// operator/publisher.ts performs them. The slices of a VirtualServer are named after its uid, so
// a VirtualServer deleted and created again under the same name never shares slices with its
// predecessor: those are the predecessor's leftovers and are deleted.
import { createHash } from 'node:crypto';
import type { PlanService, Reason } from '../api/plan.ts';
import { annotatedTime, CHANGE_TIME_ANNOTATION, sliceContent, slicePlan, type OwnerPlan, type PlanOwner, type PlanSliceObject } from '../api/plan-slice.ts';
import { compareResourceVersions } from '../api/agent-report.ts';

/**
 * A stored PlanSlice as the controller keeps it: everything it reads of one (name,
 * resourceVersion, change time, owner, revision, index, count, directors, the keys of its service
 * entries) and, instead of the service entries themselves, the SHA-256 of the slice's content
 * (sliceContent), which is all that deciding whether to rewrite it needs.
 */
export interface PublishedSlice {
  metadata: { name: string; resourceVersion?: string; annotations?: Record<string, string> };
  owner: PlanOwner;
  revision: string;
  index: number;
  count: number;
  directors: string[];
  serviceKeys: string[];
  /** base64 SHA-256 of sliceContent(). */
  content: string;
}

export function contentHash(s: PlanSliceObject): string {
  return createHash('sha256').update(sliceContent(s)).digest('base64');
}

/** The compact form of a slice read from the API (a watch event, a list item, a write's response). */
export function publishedSlice(s: PlanSliceObject): PublishedSlice {
  const changed = s.metadata?.annotations?.[CHANGE_TIME_ANNOTATION];
  return {
    metadata: {
      name: s.metadata?.name,
      ...(s.metadata?.resourceVersion !== undefined ? { resourceVersion: s.metadata.resourceVersion } : {}),
      ...(changed !== undefined ? { annotations: { [CHANGE_TIME_ANNOTATION]: changed } } : {}),
    },
    owner: s.owner, revision: s.revision, index: s.index, count: s.count, directors: s.directors,
    serviceKeys: Array.isArray(s.services) ? s.services.map((x) => x?.key) : [],
    content: contentHash(s),
  };
}

/** The plan a VirtualServer's resolution publishes: the services it won, its directors. */
export function ownerPlan(owner: PlanOwner, directors: readonly string[], won: readonly PlanService[]): OwnerPlan {
  return {
    owner: { ...owner },
    directors: [...directors],
    // Owner and directors are per slice, not per service entry.
    services: won.map(({ owner: _owner, directors: _directors, ...entry }) => entry),
  };
}

/**
 * An InvalidSpec resolution publishes nothing: the slices already published stay as they are, so
 * a bad edit never takes away what agents programmed (the status names the bad field).
 * Every other resolution publishes, even with no service (a VirtualServer that lost all its keys
 * to a Conflict publishes an empty plan, and agents remove what they programmed for it).
 */
export function keepsPublished(reasons: readonly Reason[]): boolean {
  return reasons.some((r) => r.type === 'InvalidSpec');
}

export type SliceOp =
  | { op: 'create'; slice: PlanSliceObject }
  /** slice.metadata.resourceVersion is the stored one: a concurrent change makes the PUT fail (409). */
  | { op: 'replace'; slice: PlanSliceObject }
  | { op: 'delete'; name: string; resourceVersion?: string };

/**
 * The writes that make `stored` (the slices of one owner uid) exactly `desired`: create or replace
 * the slices whose content differs, in index order, then delete the slices desired does not name
 * (the higher indexes of a plan that shrank). Unchanged slices are not written.
 */
export function sliceOps(desired: readonly PlanSliceObject[], stored: readonly PublishedSlice[]): SliceOp[] {
  const byName = new Map(stored.map((s) => [s.metadata.name, s] as const));
  const ops: SliceOp[] = [];
  for (const want of [...desired].sort((a, b) => a.index - b.index)) {
    const have = byName.get(want.metadata.name);
    if (!have) ops.push({ op: 'create', slice: want });
    else if (have.content !== contentHash(want)) {
      ops.push({ op: 'replace', slice: { ...want, metadata: { ...want.metadata, resourceVersion: have.metadata.resourceVersion } } });
    }
  }
  const wanted = new Set(desired.map((s) => s.metadata.name));
  const extra = stored.filter((s) => !wanted.has(s.metadata.name)).sort((a, b) => a.index - b.index || (a.metadata.name < b.metadata.name ? -1 : 1));
  for (const s of extra) ops.push({ op: 'delete', name: s.metadata.name, ...(s.metadata.resourceVersion ? { resourceVersion: s.metadata.resourceVersion } : {}) });
  return ops;
}

/** Slices of every uid other than `uid` (all of them when undefined): a predecessor's, to delete. */
export function leftoverOps(stored: ReadonlyArray<Pick<PublishedSlice, 'metadata' | 'owner'>>, uid: string | undefined): SliceOp[] {
  return stored.filter((s) => s.owner.uid !== uid)
    .map((s) => ({ op: 'delete' as const, name: s.metadata.name, ...(s.metadata.resourceVersion ? { resourceVersion: s.metadata.resourceVersion } : {}) }));
}

/** What the status says of a published plan, and what Programmed is judged against. */
export interface Publication {
  revision: string;
  slices: number;
  /** The VirtualServer generation the plan was resolved from (older than the spec's when kept). */
  generation: number;
  directors: string[];
  /** Number of service entries (0: an empty plan, nothing to program). */
  services: number;
  /** The highest resourceVersion among the slices: an agent synced to it has read them all. */
  resourceVersion: string;
}

/** The publication the slices of one uid make up, or undefined when there are none. */
export function publicationOf(slices: readonly PublishedSlice[]): Publication | undefined {
  const first = [...slices].sort((a, b) => a.index - b.index)[0];
  if (!first) return undefined;
  let rv = '';
  for (const s of slices) {
    const v = s.metadata.resourceVersion ?? '';
    if (rv === '' || compareResourceVersions(v, rv) === 1) rv = v;
  }
  return {
    revision: first.revision, slices: first.count, generation: first.owner.generation, directors: first.directors,
    services: new Set(slices.flatMap((s) => s.serviceKeys)).size, resourceVersion: rv,
  };
}

/** The plan the controller wants published for a resolution (its slices), or undefined to keep what is. */
export function desiredSlices(owner: PlanOwner, reasons: readonly Reason[], directors: readonly string[], won: readonly PlanService[]): PlanSliceObject[] | undefined {
  return keepsPublished(reasons) ? undefined : slicePlan(ownerPlan(owner, directors, won));
}

/**
 * When the change behind this revision happened (epoch ms; CHANGE_TIME_ANNOTATION): the Service's
 * newest EndpointSlice trigger time when it is newer than the stored revision's change time and
 * than the VirtualServer's creation (so a VirtualServer edit long after the last Pod change, or a
 * new VirtualServer over a Service whose Pods last changed an hour ago, is not charged the time in
 * between), else now.
 */
export function changeTime(trigger: number | undefined, stored: ReadonlyArray<Pick<PublishedSlice, 'metadata'>>, now: number, createdAt?: number): number {
  let previous = createdAt ?? -Infinity;
  for (const s of stored) previous = Math.max(previous, annotatedTime(s.metadata, CHANGE_TIME_ANNOTATION) ?? -Infinity);
  return trigger !== undefined && trigger > previous && trigger <= now ? trigger : now;
}

/** The writes with the change time on every slice they create or replace (deletes carry none). */
export function stampChangeTime(ops: readonly SliceOp[], at: number): SliceOp[] {
  const value = new Date(at).toISOString();
  return ops.map((o) => (o.op === 'delete' ? o
    : { ...o, slice: { ...o.slice, metadata: { ...o.slice.metadata, annotations: { ...o.slice.metadata.annotations, [CHANGE_TIME_ANNOTATION]: value } } } }));
}
