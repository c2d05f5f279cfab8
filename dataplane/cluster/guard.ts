// Pure: mass removals need confirmation. When a plan would take away more than `fraction` of
// what this node programmed (and at least `minimum` entries) — every slice deleted with their
// CRD, a relist that comes back sharply smaller, a controller bug — the entries to remove are
// held as they are, and the removal happens only once the very same desired set has been seen
// continuously for `confirmMs` (monotonic clock). Any change of the desired set restarts the wait;
// a removal below the threshold goes ahead at once and forgets any wait. Removing everything is
// always a mass removal, however few entries there are (the CRD deleted on a small cluster), and
// while the plan source is failing (`sourceOk` false: a list refused, the CRD gone) the wait does
// not run at all: doubt holds, it never counts as confirmation.
import { createHash } from 'node:crypto';
import { byString } from '../sync/keys.ts';

export interface RemovalGuardOptions {
  /** Share of the programmed entries above which a removal must be confirmed. Default 0.25. */
  fraction: number;
  /** Removals smaller than this never need confirmation. Default 10. */
  minimum: number;
  /** How long the same desired set must be seen before a mass removal happens. Default 60 s. */
  confirmMs: number;
}

export const DEFAULT_REMOVAL_GUARD: RemovalGuardOptions = { fraction: 0.25, minimum: 10, confirmMs: 60_000 };

/** A mass removal waiting for confirmation: the desired set seen, and since when. */
export interface PendingRemoval { signature: string; since: number }

export interface GuardDecision {
  /** Entries to keep as they are although the desired set lacks them (sorted). */
  held: string[];
  pending?: PendingRemoval;
  /** For reports, when something is held: "mass removal of K of N services held until …". */
  message?: string;
  /** When the held removal goes ahead if nothing changes (monotonic ms). */
  releaseAt?: number;
}

function signature(desired: ReadonlySet<string>): string {
  return createHash('sha256').update([...desired].sort(byString).join('\n')).digest('hex');
}

/** `what` names the entries in the message ("services", "real-server preparations"). */
export function guardRemovals(
  programmed: ReadonlySet<string>, desired: ReadonlySet<string>, pending: PendingRemoval | undefined,
  now: number, o: RemovalGuardOptions, what = 'services', sourceOk = true,
): GuardDecision {
  const removed = [...programmed].filter((k) => !desired.has(k)).sort(byString);
  const everything = removed.length > 0 && removed.length === programmed.size;
  if (!everything && (removed.length < o.minimum || removed.length <= o.fraction * programmed.size)) return { held: [] };
  const sig = signature(desired);
  const since = pending?.signature === sig && sourceOk ? pending.since : now;
  if (now - since >= o.confirmMs) return { held: [] };
  return {
    held: removed,
    pending: { signature: sig, since },
    message: `mass removal of ${removed.length} of ${programmed.size} ${what} held ${sourceOk ? `until the same plan is seen for ${Math.round(o.confirmMs / 1000)} s` : 'while the plans cannot be listed'}`,
    releaseAt: since + o.confirmMs,
  };
}
