// The one place PlanSlices are written: performs the ops operator/publish.ts decided, in order,
// each conditional on the resourceVersion it was decided from, and records every accepted write
// in the PublishedSlices view. The first failure stops the sequence and is returned: the work
// queue retries the VirtualServer after its backoff, deciding again from the view (a 409 means
// someone changed a slice meanwhile; the informer will have the newer copy by then).
import type { KubeApi } from '../kube/api.ts';
import { isNotFound } from '../kube/errors.ts';
import { PLAN_SLICES } from '../kube/types.ts';
import type { PlanSliceObject } from '../api/plan-slice.ts';
import { publishedSlice, type SliceOp } from './publish.ts';
import type { PublishedSlices } from './slices.ts';

export interface PublisherDeps {
  api: KubeApi;
  slices: PublishedSlices;
  /** Leader check, made right before every write. */
  canWrite(): boolean;
  onWrite?(op: SliceOp['op']): void;
}

export type PublishResult = { ok: true; writes: number } | { ok: false; err: unknown };

export async function performSliceOps(owner: string, ops: readonly SliceOp[], deps: PublisherDeps, signal?: AbortSignal): Promise<PublishResult> {
  let writes = 0;
  for (const op of ops) {
    if (!deps.canWrite()) return { ok: false, err: new Error('not the leader: PlanSlice write withheld') };
    try {
      if (op.op === 'create') deps.slices.wrote(publishedSlice(await deps.api.create<PlanSliceObject>(PLAN_SLICES, undefined, op.slice, signal)));
      else if (op.op === 'replace') deps.slices.wrote(publishedSlice(await deps.api.replace<PlanSliceObject>(PLAN_SLICES, undefined, op.slice.metadata.name, op.slice, signal)));
      else {
        await deps.api.delete(PLAN_SLICES, undefined, op.name, op.resourceVersion ? { resourceVersion: op.resourceVersion } : {}, signal);
        deps.slices.deleted(owner, op.name);
      }
    } catch (err) {
      // Deleting what is already gone succeeded; anything else is retried by the queue.
      if (op.op === 'delete' && isNotFound(err)) { deps.slices.deleted(owner, op.name); continue; }
      return { ok: false, err };
    }
    writes++;
    deps.onWrite?.(op.op);
  }
  return { ok: true, writes };
}
