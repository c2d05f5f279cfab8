// Reconcile of one VirtualServer key: resolve it (incrementally, against the index and its VIP
// neighbours), compute the status it should have, and write it only when the stored status
// differs. The write is conditional on the resourceVersion we computed from; on 409 we read the
// object again, recompute from the fresh copy and retry, so a concurrent spec change is never
// overwritten with a status computed from the old spec.
import type { Logger } from 'pino';
import type { Clock } from '../kube/clock.ts';
import type { KubeApi } from '../kube/api.ts';
import { isConflict, isNotFound } from '../kube/errors.ts';
import type { EventSink } from '../kube/events.ts';
import { splitKey, VIRTUAL_SERVERS, type VirtualServerObject } from '../kube/types.ts';
import type { ReconcileResult } from './queue.ts';
import { computeStatus, eventTransitions, statusUpToDate } from './status.ts';
import type { World } from './world.ts';

export interface ReconcileDeps {
  api: KubeApi;
  world: World;
  /** The informer cache. */
  getVs(key: string): VirtualServerObject | undefined;
  clock: Clock;
  logger: Logger;
  events: EventSink;
  /** Leader check, made right before every write. */
  canWrite(): boolean;
  onStatusWrite?(key: string): void;
  /** Conflict retries before giving up to the queue's backoff. */
  maxConflictRetries?: number;
}

export async function reconcile(key: string, deps: ReconcileDeps, signal?: AbortSignal): Promise<ReconcileResult> {
  const { namespace, name } = splitKey(key);
  const log = deps.logger.child({ vs: key, op: 'reconcile' });
  let vs = deps.getVs(key);
  const retries = deps.maxConflictRetries ?? 3;
  for (let attempt = 0; vs; attempt++) {
    // Being deleted: finalizers are not ours, and a status write now would only race the delete.
    if (vs.metadata.deletionTimestamp) return { kind: 'done' };
    const resolution = deps.world.resolve(vs);
    const desired = computeStatus(vs, resolution, deps.clock.wallNow());
    if (statusUpToDate(vs.status, desired)) return { kind: 'done' };
    if (!deps.canWrite()) return { kind: 'error', err: new Error('not the leader: status write withheld') };
    try {
      const patch = { metadata: { resourceVersion: vs.metadata.resourceVersion }, status: desired };
      const written = await deps.api.patchStatus<VirtualServerObject>(VIRTUAL_SERVERS, namespace, name, patch, signal);
      deps.onStatusWrite?.(key);
      log.debug({ rv: written.metadata?.resourceVersion }, 'status written');
      for (const t of eventTransitions(vs.status?.conditions, desired.conditions ?? [])) {
        await deps.events.record(written?.metadata ? written : vs, {
          type: t.eventType, reason: t.to.reason, action: 'Reconcile',
          note: `${t.type}=${t.to.status}: ${t.to.message}`,
        });
      }
      return { kind: 'done' };
    } catch (err) {
      if (isNotFound(err)) return { kind: 'done' };
      if (!isConflict(err) || attempt >= retries) return { kind: 'error', err };
      log.debug({ attempt }, 'status write conflicted; re-reading');
    }
    try {
      vs = await deps.api.get<VirtualServerObject>(VIRTUAL_SERVERS, namespace, name, signal);
    } catch (err) {
      return isNotFound(err) ? { kind: 'done' } : { kind: 'error', err };
    }
  }
  return { kind: 'done' };
}
