// The director check beside the syncs. Listing lvs0 (the binder's list()) re-applies the director —
// lvs0, its sysctls, our nft tables — with a handful of ip/nft processes whatever the number of
// services, 0.5-1.6 s at 10,000 VIPs under emulation (bench/RESULTS.md, run 12). Run inside a sync,
// it made a change marked meanwhile wait for all of it; so a partial sync only starts the check and
// goes on, and a later sync takes the outcome (sync.ts checkDirector). The binder runs its
// operations one at a time (../agent/lvs-device.ts), so a check never overlaps a sync's own listing
// or binding; it may come before one, so each outcome carries the binding epoch it started in.
import type { SyncError } from './syncer-types.ts';
import { listBound, type VipBinder } from './vips.ts';

export interface DirectorCheckOutcome {
  /** lvs0 as listed, canonical and sorted; absent when the listing failed. */
  bound?: string[];
  /** The failed director step, as listBound reports it. */
  errors: SyncError[];
  /** The syncer's binding epoch when the listing was asked for (a later binding makes `bound` stale). */
  epoch: number;
}

export interface DirectorCheck {
  /** Start a check unless one runs; false when one does. */
  start(epoch: number): boolean;
  /** The outcome of the last check that finished, once; undefined while none is waiting. */
  take(): DirectorCheckOutcome | undefined;
  readonly running: boolean;
  /** Resolves when no check runs. */
  settled(): Promise<void>;
}

/** `done` is told of every outcome as it arrives (it stays for take()). */
export function createDirectorCheck(vips: VipBinder, done: (o: DirectorCheckOutcome) => void): DirectorCheck {
  let running: Promise<void> | undefined;
  let outcome: DirectorCheckOutcome | undefined;
  return {
    start(epoch) {
      if (running) return false;
      const errors: SyncError[] = [];
      // listBound never rejects: a failure is an entry in `errors`.
      running = listBound(vips, errors).then((bound) => {
        outcome = { ...(bound ? { bound } : {}), errors, epoch };
        running = undefined;
        done(outcome);
      });
      return true;
    },
    take() {
      const o = outcome;
      outcome = undefined;
      return o;
    },
    get running() {
      return running !== undefined;
    },
    async settled() {
      while (running) await running;
    },
  };
}
