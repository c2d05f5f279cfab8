// Reconcile of one VirtualServer key: resolve it (incrementally, against the index and its VIP
// neighbours), publish its plan as PlanSlices (only the slices that differ), judge Programmed
// from the agents' reports, and write the status only when the stored one differs. A key whose
// VirtualServer is gone gets its slices deleted (and so does a predecessor's uid under the same
// name). The status write is conditional on the resourceVersion we computed from; on 409 we read
// the object again, publish and recompute from the fresh copy and retry, so a concurrent spec
// change is never overwritten with a status computed from the old spec. When the key was marked
// again while its slices were written, the status is left to the next run (a bounded number of
// times in a row), so the newer plan is not published behind a status write.
import type { Logger } from 'pino';
import type { Clock } from '../kube/clock.ts';
import type { KubeApi } from '../kube/api.ts';
import { isConflict, isNotFound } from '../kube/errors.ts';
import type { EventSink } from '../kube/events.ts';
import { healthStatus, healthTransitions } from './health-status.ts';
import { splitKey, VIRTUAL_SERVERS, type VirtualServerObject, type VirtualServerStatus } from '../kube/types.ts';
import { judgeProgrammed, type ReportView } from './programmed.ts';
import { changeTime, desiredSlices, leftoverOps, publicationOf, sliceOps, stampChangeTime, type Publication, type SliceOp } from './publish.ts';
import { performSliceOps } from './publisher.ts';
import type { ReconcileResult } from './queue.ts';
import type { PublishedSlices } from './slices.ts';
import { computeStatus, eventTransitions, statusPatch, statusUpToDate } from './status.ts';
import type { World } from './world.ts';

export interface ReconcileDeps {
  api: KubeApi;
  world: World;
  /** The informer cache. */
  getVs(key: string): VirtualServerObject | undefined;
  /** Published slices (informer cache plus our unseen writes). */
  slices: PublishedSlices;
  reports: ReportView;
  clock: Clock;
  logger: Logger;
  events: EventSink;
  /** Leader check, made right before every write. */
  canWrite(): boolean;
  onStatusWrite?(key: string): void;
  onSliceWrite?(op: SliceOp['op']): void;
  /** Conflict retries before giving up to the queue's backoff. */
  maxConflictRetries?: number;
  /**
   * Asked once the plan is published: true when a newer state of this VirtualServer is already
   * waiting (an event marked it while this run was in flight), so the status write and its Events
   * are left to that run and its plan is published without waiting behind them. The caller bounds
   * how many runs in a row may leave the status so.
   */
  superseded?(): boolean;
  /** Told when each step ends (trace.ts), for the worker's slow-reconcile log. */
  trace?: { step(name: string): void };
}

type Published = { ok: true; pub: Publication | undefined; resolution: ReturnType<World['resolve']> } | { ok: false; err: unknown };

/** Publishes vs's plan (or keeps the published one when its spec is invalid); deletes other uids' slices. */
async function publish(key: string, vs: VirtualServerObject, deps: ReconcileDeps, signal?: AbortSignal): Promise<Published> {
  const { services, resolution } = deps.world.resolvePlan(vs);
  deps.trace?.step('resolve');
  const uid = vs.metadata.uid;
  const stored = deps.slices.current(key);
  const mine = stored.filter((s) => s.owner.uid === uid);
  const desired = uid === undefined ? undefined
    : desiredSlices({ namespace: vs.metadata.namespace ?? '', name: vs.metadata.name, uid, generation: vs.metadata.generation ?? 0 }, resolution.reasons, resolution.directors, services);
  const written = desired ? sliceOps(desired, mine) : [];
  const created = Date.parse(vs.metadata.creationTimestamp ?? '');
  const at = written.length ? changeTime(deps.world.changeTriggerTime(key), mine, deps.clock.wallNow(), Number.isFinite(created) ? created : undefined) : 0;
  const ops = [...stampChangeTime(written, at), ...leftoverOps(stored, uid)];
  if (ops.length) {
    const done = await performSliceOps(key, ops, { api: deps.api, slices: deps.slices, canWrite: deps.canWrite, ...(deps.onSliceWrite ? { onWrite: deps.onSliceWrite } : {}) }, signal);
    deps.trace?.step('slices');
    if (!done.ok) return done;
    deps.logger.debug({ vs: key, op: 'publish', writes: done.writes }, 'plan slices written');
  }
  return { ok: true, pub: publicationOf(deps.slices.current(key).filter((s) => s.owner.uid === uid)), resolution };
}

/** One Event per real server that went out of or back into rotation on a director. */
async function healthEvents(regarding: VirtualServerObject, prev: VirtualServerStatus['health'], next: VirtualServerStatus['health'], events: EventSink): Promise<void> {
  const t = healthTransitions(prev, next);
  for (const e of t.down) await events.record(regarding, { type: 'Warning', reason: 'RealServerDown', action: 'HealthCheck', note: `${e.address}:${e.port} out of rotation on node ${e.node}: ${e.message}` });
  for (const e of t.up) await events.record(regarding, { type: 'Normal', reason: 'RealServerUp', action: 'HealthCheck', note: `${e.address}:${e.port} back in rotation on node ${e.node}` });
}

export async function reconcile(key: string, deps: ReconcileDeps, signal?: AbortSignal): Promise<ReconcileResult> {
  const { namespace, name } = splitKey(key);
  const log = deps.logger.child({ vs: key, op: 'reconcile' });
  let vs = deps.getVs(key);
  if (!vs) {
    const ops = leftoverOps(deps.slices.current(key), undefined);
    if (ops.length === 0) return { kind: 'done' };
    const done = await performSliceOps(key, ops, { api: deps.api, slices: deps.slices, canWrite: deps.canWrite, ...(deps.onSliceWrite ? { onWrite: deps.onSliceWrite } : {}) }, signal);
    return done.ok ? { kind: 'done' } : { kind: 'error', err: done.err };
  }
  const retries = deps.maxConflictRetries ?? 3;
  for (let attempt = 0; vs; attempt++) {
    // Being deleted: finalizers are not ours; the slices go once the object is gone.
    if (vs.metadata.deletionTimestamp) return { kind: 'done' };
    const published = await publish(key, vs, deps, signal);
    if (!published.ok) return { kind: 'error', err: published.err };
    // The data path first: under a slow API server a status write and its Events took 4 s after
    // a 6 s slice write (the cluster tier's rolling update, 2026-12-06), and the pod's termination,
    // marked meanwhile, waited for both before its plan was published.
    if (deps.superseded?.()) {
      log.debug('newer state waiting: status left to the next run');
      return { kind: 'done' };
    }
    const generation = vs.metadata.generation ?? 0;
    const programmed = judgeProgrammed(published.pub, vs.metadata.uid ?? '', generation, deps.reports);
    const desired = computeStatus(vs, published.resolution, published.pub, programmed, deps.clock.wallNow(), healthStatus(vs, deps.reports), deps.reports);
    if (statusUpToDate(vs.status, desired)) return { kind: 'done' };
    if (!deps.canWrite()) return { kind: 'error', err: new Error('not the leader: status write withheld') };
    try {
      const patch = { metadata: { resourceVersion: vs.metadata.resourceVersion }, status: statusPatch(vs.status, desired) };
      const written = await deps.api.patchStatus<VirtualServerObject>(VIRTUAL_SERVERS, namespace, name, patch, signal);
      deps.trace?.step('status');
      deps.onStatusWrite?.(key);
      log.debug({ rv: written.metadata?.resourceVersion }, 'status written');
      for (const t of eventTransitions(vs.status?.conditions, desired.conditions ?? [])) {
        await deps.events.record(written?.metadata ? written : vs, {
          type: t.eventType, reason: t.to.reason, action: 'Reconcile',
          note: `${t.type}=${t.to.status}: ${t.to.message}`,
        });
      }
      await healthEvents(written?.metadata ? written : vs, vs.status?.health, desired.health, deps.events);
      deps.trace?.step('events');
      return { kind: 'done' };
    } catch (err) {
      deps.trace?.step('status');
      if (isNotFound(err)) return { kind: 'done' };
      if (!isConflict(err) || attempt >= retries) return { kind: 'error', err };
      log.debug({ attempt }, 'status write conflicted; re-reading');
    }
    try {
      vs = await deps.api.get<VirtualServerObject>(VIRTUAL_SERVERS, namespace, name, signal);
      deps.trace?.step('reread');
    } catch (err) {
      return isNotFound(err) ? { kind: 'done' } : { kind: 'error', err };
    }
  }
  return { kind: 'done' };
}
