// The network-programming latency, as kube-proxy's network_programming_duration_seconds: from the
// change behind a PlanSlice revision (its lvs.dev/change-time annotation: the EndpointSlice's
// last-change-trigger-time, or when the controller resolved the plan) to the end of the first
// sync that programmed it. Wall clocks of two machines: skew shows up here (negative values count
// as 0). Pure bookkeeping; the agent feeds it slice events and sync boundaries.
//
// A slice revision is pending until a sync that read it ends without a retry; a retry puts it back,
// so a failure's time is in the figure. A slice whose plan is frozen (unusable, so not programmed)
// stays pending until a sync programs a later revision of it. Several revisions of one slice
// before a sync count once, from the earliest change (that is how long the oldest waited). The
// agent feeds only changes after its first list: what that list holds is not measured.
import { annotatedTime, CHANGE_TIME_ANNOTATION, OWNER_UID_LABEL } from '../../api/plan-slice.ts';

interface SliceMeta { name: string; labels?: Record<string, string>; annotations?: unknown }

interface Pending { changedAt: number; uid: string | undefined }

export class ProgrammingLatency {
  #pending = new Map<string, Pending>();
  #inFlight = new Map<string, Pending>();

  /** A slice was added or changed. Slices without a change time are not measured. */
  seen(meta: SliceMeta): void {
    const changedAt = annotatedTime(meta, CHANGE_TIME_ANNOTATION);
    if (changedAt === undefined) return;
    const had = this.#pending.get(meta.name);
    this.#pending.set(meta.name, { changedAt: Math.min(changedAt, had?.changedAt ?? Infinity), uid: meta.labels?.[OWNER_UID_LABEL] });
  }

  /** A deleted slice has nothing left to program. */
  deleted(name: string): void {
    this.#pending.delete(name);
    this.#inFlight.delete(name);
  }

  /** A sync reads the plan now: what is pending and not frozen rides on it. */
  syncStarts(frozenUids: ReadonlySet<string>): void {
    for (const [name, p] of this.#pending) {
      if (p.uid !== undefined && frozenUids.has(p.uid)) continue;
      this.#pending.delete(name);
      this.#inFlight.set(name, p);
    }
  }

  /** The sync ended: programmed → the latencies in seconds; not → back to pending. */
  syncEnded(programmed: boolean, wallNow: number): number[] {
    const out: number[] = [];
    for (const [name, p] of this.#inFlight) {
      if (programmed) { out.push(Math.max(0, wallNow - p.changedAt) / 1000); continue; }
      const newer = this.#pending.get(name);
      this.#pending.set(name, { changedAt: Math.min(p.changedAt, newer?.changedAt ?? Infinity), uid: newer?.uid ?? p.uid });
    }
    this.#inFlight.clear();
    return out;
  }

  /** Slices waiting to be programmed (pending and in the running sync). */
  get waiting(): number {
    return this.#pending.size + this.#inFlight.size;
  }
}
