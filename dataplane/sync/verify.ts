// Pure: the verify slice — the rolling verifier's share of one sync. Between the rare full
// read-backs (sync.ts), outside edits to desired services (a destination deleted or re-weighted,
// a scheduler or flag changed by hand) are found by reading back a bounded slice of the desired
// services per verify tick, taken from a cursor that walks the desired service keys in sorted
// order and wraps at the end. The slice is diffed with the changed services in the same partial
// sync, so a mismatch is repaired by that sync.
//
// Size: clamp(ceil(N · tickMs / intervalMs), VERIFY_SLICE_FLOOR, VERIFY_SLICE_CAP), at most N.
// With one slice per tick, one pass over N keys takes ceil(N / size) ticks ≤ intervalMs / tickMs
// ticks, i.e. at most intervalMs — as long as the cap is not reached (N ≤ CAP · intervalMs / tickMs,
// 49,152 services at 30 s / 5 s); beyond it a pass takes ceil(N / CAP) ticks. Bound: an outside edit
// to a desired service's destinations or flags is repaired within intervalMs plus one tick (the
// edit may land just behind the cursor). A service added to the desired set behind the cursor is
// read by the sync that adds it and verified again by the next pass. A slice larger than
// VERIFY_CHUNK is read VERIFY_CHUNK services per sync, the syncs back to back (sync.ts).
import type { IpvsServiceKey, IpvsServiceState } from '../ipvs/types.ts';
import { byString } from './keys.ts';
import { desiredKeyOf, serviceIdentity } from './partial.ts';

/** Fewest services a slice reads (small tables are covered in a few ticks). */
export const VERIFY_SLICE_FLOOR = 16;
/** Most services a slice reads: bounds one tick's cost. */
export const VERIFY_SLICE_CAP = 8_192;
/**
 * Most services one sync reads of a slice: a larger slice is read in chunks by syncs back to back
 * (the loop's follow-up), and a change marked meanwhile is synced between two chunks, so it waits
 * for one chunk at most, not for the whole slice. Measured at 10,000 services under TCG
 * (convergence benchmark, 2026-12-06): slices of 1,667 services held a change up to 4-8 s, every
 * 5 s tick, while the controller published its plan within 0.3 s (p99). Chunks of 64 (run 10)
 * did not clearly shorten the changes' tail in the agent (p90 0.71 s against 0.79-0.95 s with
 * 256, max 2.1 s against 1.9 s) and slowed programming 10,000 from empty to 504 s (274-322 s
 * with 256): four times the syncs, each with its own fixed cost.
 */
export const VERIFY_CHUNK = 256;

/**
 * A chunk is read VERIFY_BATCH services at a time, the changed services first; between two batches
 * the sync stops reading the slice when a change waits (the sync loop's mark), and the next sync,
 * right after, reads the change and then goes on with the slice where this one stopped. So a change
 * waits for one batch of a slice, not a chunk (a chunk of 256 took 0.3-0.7 s under TCG at 10,000,
 * bench/RESULTS.md run 17); one batch is always read, so verification goes on under any churn.
 * 8, not 32: at 10,000 services under TCG the agent measured ~10 ms of wall time per service read
 * (its `op: verify` line), so a batch of 32 held a waiting change ~0.3 s; the changes that
 * overlapped a slice had a p99 of 554-803 ms against 183-208 ms for the others (runs 25 and 27).
 */
export const VERIFY_BATCH = 8;

/**
 * The share of the agent's time the slices may take, measured: a slice per tick reads at most
 * VERIFY_DUTY · tickMs / (the measured wall time per service read), at least VERIFY_SLICE_FLOOR.
 * Where reading a service is cheap (a native host: tens of µs) this changes nothing; where it is
 * not, a pass over the table takes longer than intervalMs instead of the verifier taking the
 * agent's CPU from changes. At 10,000 services under TCG (bench/RESULTS.md run 18) the even share
 * of 1,667 services per 5 s tick kept the agent 65-100% busy; the profile puts a read at roughly
 * 1.5 ms of wall time (an estimate), for which a tick reads ~670 and a pass takes ~75 s. The agent
 * logs the figures it uses (op 'verify'). The repair bound is then one such pass plus a tick.
 */
export const VERIFY_DUTY = 0.2;

/** Services a slice may read under VERIFY_DUTY, given the measured wall time per service (ms). */
export function verifyBudget(tickMs: number, msPerService: number | undefined): number {
  if (msPerService === undefined || !(msPerService > 0)) return Infinity;
  return Math.max(VERIFY_SLICE_FLOOR, Math.floor((VERIFY_DUTY * tickMs) / msPerService));
}

/** Services one verify slice reads back: N spread over intervalMs / tickMs ticks (see the header). */
export function verifySliceSize(n: number, tickMs: number, intervalMs: number): number {
  if (n <= 0) return 0;
  const even = Math.ceil((n * tickMs) / Math.max(1, intervalMs));
  return Math.min(n, Math.max(VERIFY_SLICE_FLOOR, Math.min(VERIFY_SLICE_CAP, even)));
}

export interface VerifySlice {
  /** Service key → kernel identity, sorted by key. */
  keys: Map<string, IpvsServiceKey>;
  /** The same keys in the order the cursor walks them (a slice that wraps starts at the end). */
  order: string[];
  /** The cursor for the next slice: the last key read (the next slice starts after it). */
  cursor: string | undefined;
}

/**
 * The `size` desired services after `cursor` (undefined: from the first), wrapping to the first
 * at the end. `desired` is sorted by service key (DesiredState.services is); O(size + log N).
 */
export function verifySlice(desired: readonly IpvsServiceState[], cursor: string | undefined, size: number): VerifySlice {
  const n = desired.length;
  const keys = new Map<string, IpvsServiceKey>();
  if (n === 0 || size <= 0) return { keys, order: [], cursor: undefined };
  let i = cursor === undefined ? 0 : firstAfter(desired, cursor);
  let last: string | undefined;
  for (let taken = 0; taken < Math.min(size, n); taken++) {
    if (i >= n) i = 0;
    const s = desired[i++]!;
    last = desiredKeyOf(s);
    keys.set(last, serviceIdentity(s.service));
  }
  return { keys: sortedByKey(keys), order: [...keys.keys()], cursor: last };
}

/**
 * Reads back `keys` (in key order, as `keys` is): the keys not in `slice` at once, then those in
 * `slice` in its order, VERIFY_BATCH at a time, stopping before a batch (not the first) when
 * `stop()` says so. Returns what was read, how many of `slice` (a prefix) were, and how long
 * reading them took on `now`.
 */
export async function readBack<S>(read: (k: IpvsServiceKey) => Promise<S | undefined>, keys: ReadonlyMap<string, IpvsServiceKey>, slice: readonly string[], stop?: () => boolean, now: () => number = () => 0): Promise<{ states: Map<string, S>; sliceRead: number; sliceMs: number }> {
  const inSlice = new Set(slice);
  const got = new Map<string, S | undefined>();
  const readInto = (ks: readonly string[]) => Promise.all(ks.map(async (k) => { got.set(k, await read(keys.get(k)!)); }));
  await readInto([...keys.keys()].filter((k) => !inSlice.has(k)));
  let sliceRead = 0;
  const t0 = now();
  while (sliceRead < slice.length && !(sliceRead > 0 && stop?.())) {
    const batch = slice.slice(sliceRead, sliceRead + VERIFY_BATCH);
    await readInto(batch);
    sliceRead += batch.length;
  }
  const states = new Map<string, S>();
  for (const k of keys.keys()) { const st = got.get(k); if (st !== undefined) states.set(k, st); }
  return { states, sliceRead, sliceMs: now() - t0 };
}

/** `a` and `b` together, sorted by key (a partial sync reads and diffs in key order). */
export function withSlice(a: ReadonlyMap<string, IpvsServiceKey>, b: ReadonlyMap<string, IpvsServiceKey>): Map<string, IpvsServiceKey> {
  return sortedByKey(new Map([...a, ...b]));
}

/** Index of the first service whose key sorts after `key` (binary search). */
function firstAfter(desired: readonly IpvsServiceState[], key: string): number {
  let lo = 0, hi = desired.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (byString(desiredKeyOf(desired[mid]!), key) <= 0) lo = mid + 1; else hi = mid;
  }
  return lo;
}

function sortedByKey(m: Map<string, IpvsServiceKey>): Map<string, IpvsServiceKey> {
  return new Map([...m.entries()].sort(([x], [y]) => byString(x, y)));
}
