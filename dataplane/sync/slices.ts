// The rolling verifier's state between syncs (sync.ts; the pure parts are in verify.ts): where the
// cursor is, when the next tick's slice is due, what is left of the current one, and what reading
// a service costs (the slices' budget, VERIFY_DUTY).
import type { Logger } from 'pino';
import type { IpvsServiceKey, IpvsServiceState } from '../ipvs/types.ts';
import type { SyncSummary } from './syncer-types.ts';
import { VERIFY_CHUNK, verifyBudget, verifySlice, verifySliceSize, withSlice } from './verify.ts';

/** A verify slice as a partial sync took it: its keys not changed, in walk order, and the cursor before it. */
export interface SliceTaken { order: string[]; before: string | undefined }

/** Fewest slice services a read must have to count for the measured cost per service. */
const MEASURE_MIN = 8;

export class VerifySlices {
  #cursor: string | undefined;
  #nextAt = -Infinity;
  /** Services of the current tick's slice not read yet (read VERIFY_CHUNK per sync). */
  #left = 0;
  /** Wall time per slice service read (ms, a moving average). */
  #msPerService: number | undefined;
  #capped = false;
  /** A due slice was left to the next sync, behind a change (sync.ts partialScope). */
  deferred = false;

  readonly verify: { intervalMs: number; tickMs: number };
  readonly log: Logger;

  constructor(verify: { intervalMs: number; tickMs: number }, log: Logger) {
    this.verify = verify;
    this.log = log;
  }

  /** The tick came, or the tick's slice is being read chunk by chunk. */
  due(now: number): boolean {
    return this.#left > 0 || now >= this.#nextAt;
  }

  /** A failed sync: the rest of the tick's slice goes (the retry reads everything back). */
  drop(): void {
    this.#left = 0;
  }

  /** A full read-back verified every service: the next slice is one tick away. */
  verifiedAll(now: number): void {
    this.#nextAt = now + this.verify.tickMs;
    this.#left = 0;
  }

  /**
   * `changed` with the next chunk of the tick's slice (a new slice when `due` and none is left),
   * in key order; undefined when there is no slice to read (no desired service, or not due).
   */
  take(desired: readonly IpvsServiceState[], changed: ReadonlyMap<string, IpvsServiceKey>, now: number, summary: SyncSummary, due: boolean): { keys: Map<string, IpvsServiceKey>; slice: SliceTaken } | undefined {
    if (due && this.#left <= 0) this.#left = this.#size(desired.length);
    const slice = due ? verifySlice(desired, this.#cursor, Math.min(this.#left, VERIFY_CHUNK)) : undefined;
    if (!slice?.keys.size) { this.#left = 0; return undefined; }
    const taken: SliceTaken = { order: slice.order.filter((k) => !changed.has(k)), before: this.#cursor };
    this.#cursor = slice.cursor;
    this.#left = Math.max(0, this.#left - slice.keys.size);
    // The rest of the tick's slice is the next sync's, at once (a change marked meanwhile goes
    // between the two); the tick's rhythm moves when its last chunk is read.
    if (this.#left > 0) summary.followUp = 'verify';
    else {
      // Due times keep their rhythm when a slice comes late (deferred behind a change), so a pass
      // still takes one interval; a slice late by more than half a tick starts a new rhythm, and
      // one read early (a sync with nothing changed) never pushes the next beyond a tick from now.
      const tick = this.verify.tickMs;
      this.#nextAt = Math.min(now + tick, Math.max(this.#nextAt + tick, now + tick / 2));
    }
    this.deferred = false;
    summary.verified = slice.keys.size;
    return { keys: withSlice(changed, slice.keys), slice: taken };
  }

  /**
   * After the read: the slice's keys a partial sync did not read (it stopped for a change,
   * verify.ts readBack) go back — out of this sync's `keys`, the cursor after the last one read,
   * the next sync reads them at once — and the time the read took counts for the budget.
   */
  read(slice: SliceTaken, sliceRead: number, ms: number, keys: Map<string, IpvsServiceKey>, summary: SyncSummary): void {
    if (sliceRead >= MEASURE_MIN && ms >= 0) {
      const per = ms / sliceRead;
      this.#msPerService = this.#msPerService === undefined ? per : 0.7 * this.#msPerService + 0.3 * per;
    }
    const unread = slice.order.length - sliceRead;
    if (unread <= 0) return;
    for (const k of slice.order.slice(sliceRead)) keys.delete(k);
    this.#cursor = sliceRead > 0 ? slice.order[sliceRead - 1] : slice.before;
    this.#left += unread;
    summary.verified = (summary.verified ?? 0) - unread;
    summary.followUp = 'verify';
  }

  /** The next tick's slice: the even share of the table (verifySliceSize), within the measured budget. */
  #size(n: number): number {
    const { tickMs, intervalMs } = this.verify;
    const even = verifySliceSize(n, tickMs, intervalMs), budget = verifyBudget(tickMs, this.#msPerService);
    const size = Math.min(even, budget);
    if ((budget < even) !== this.#capped) {
      this.#capped = budget < even;
      const passS = Math.round((Math.ceil(n / Math.max(1, size)) * tickMs) / 1000);
      this.log.info({ op: 'verify', services: n, slice: size, msPerService: Number(this.#msPerService?.toFixed(2)), passS }, this.#capped
        ? 'verify slices kept to their share of the agent\'s time: a pass over the table takes longer than the resync interval'
        : 'verify slices back to the resync interval');
    }
    return size;
  }
}
