// One sync: plan → desired (pure) → read the kernel back → diff (pure) → apply → a typed result
// that tells the loop when to come back (MetalLB style: the result, not an exception, decides
// retries). Kernel state is re-read, never remembered, so outside edits are undone and a fresh
// agent over an already-programmed kernel performs no operation at all.
//
// Adoption: a full sync also decides (adoption.ts) which wanted VIPs it must not adopt — assigned
// on another device of the node (lvs0's binder reads them in the same `ip -j addr` call as lvs0),
// or carrying IPVS services of someone else — and leaves them and their services exactly as found.
// While any VIP is refused, every sync is full, so nothing partial ever touches one.
//
// Full or partial read-back: a full sync dumps every service (one service dump plus a destination
// dump per service). When the kernel offers readService() and fullResyncIntervalMs is set, a sync
// within that interval of the last full one, after a clean sync, with the same owned VIPs and
// frozen keys, reads back only the services whose desired state changed since then or that are
// draining (partial.ts) — a change costs in proportion to its size, not to the table. The first
// sync, the first one after any error, the periodic one, and, without the verifier, one that finds
// no desired change at all (asked for as a repair) are full.
//
// Verify slices (verify.ts, with opts.verify): a partial sync at least verify.tickMs after the last
// slice also reads back the next verify slice of the desired services and diffs it with the
// changed ones, so an outside edit to a desired service is repaired within verify.intervalMs plus
// one tick without a full read-back; a sync with no desired change is a partial sync of the next
// slice alone (a verify tick), due or not. The director (lvs0, sysctls, our nft tables) is checked
// by a partial sync once per verify interval (checkDirector). What neither sees — services someone
// else added on an owned VIP, adoption refusals — is left to the full sync, which then comes
// every fullResyncIntervalMs (the sync loop makes that 10× the verify interval). A change that
// meets a due slice, full read-back or director check is synced first, alone, and the result's
// followUp asks the loop for the left work in the next sync. A slice is read VERIFY_CHUNK services
// per sync (followUp 'verify' for the rest), so a change marked while one is read waits for one
// chunk, not the whole slice. Without opts.verify an
// outside edit is undone at the latest one fullResyncIntervalMs later. What the syncer remembers
// between syncs: when each destination started draining, the VIPs it used to direct (their
// services must still be drained and removed), the desired state of its last clean sync, the
// verify cursor, and its consecutive failures.
import type { Logger } from 'pino';
import { realClock, type Clock } from '../../kube/clock.ts';
import type { PlanService } from '../../api/plan.ts';
import type { ListDelta } from '../delta-list.ts';
import type { IpvsKernel, IpvsServiceKey, IpvsServiceState } from '../ipvs/types.ts';
import { refusedVips, withRefusals, type Refusal } from './adoption.ts';
import { applyOps } from './apply.ts';
import { desiredState, type DesiredMemo, type DesiredState, type Problem } from './desired.ts';
import { diff, type SyncOpKind } from './diff.ts';
import { byString, canonicalAddress, ipvsServiceKey } from './keys.ts';
import { advanceView, changedIn, changedServices, mergeDraining, scopeOf, serviceIdentity, viewOf, type SyncedView } from './partial.ts';
import { VERIFY_CHUNK, verifySlice, verifySliceSize, withSlice } from './verify.ts';
import { asError, codeOf, elsewhereOf, knownBound, listBound, reconcileVips, type VipBinder } from './vips.ts';

export type { Clock, VipBinder };

export interface SyncerOptions {
  kernel: IpvsKernel;
  node: string;
  /** The current plan (the services of every VirtualServer; only this node's are used). */
  plan: () => readonly PlanService[];
  log: Logger;
  /**
   * Service keys to leave exactly as the kernel has them, their VIPs still owned, though the plan
   * has no entry for them (desiredState's `held`). Called right after plan(), in the same turn,
   * so both describe one snapshot.
   */
  held?: () => readonly string[];
  /**
   * Called right after plan(): where that plan differs from `from`, an earlier plan, when the
   * source knows (the cluster agent does); desiredState then looks only there.
   */
  planDelta?: () => ListDelta<PlanService> | undefined;
  /** Drain deadlines and backoff are measured on clock.now(), the monotonic timeline. */
  clock?: Clock;
  /** When given, owned VIPs are bound on it after their services exist and unbound once retired. */
  vips?: VipBinder;
  /** Longest wait for a removed TCP/SCTP destination's connections to end. Default 5 min. */
  drainTimeoutMs?: number;
  /** How often connection counters are re-read while something drains. Default 5 s. */
  drainPollMs?: number;
  /** Retry delay after failures: initialMs · 2^(n-1), capped at maxMs. Default 1 s .. 60 s. */
  backoff?: { initialMs?: number; maxMs?: number };
  /**
   * Longest time between full read-backs; syncs in between read back only what changed (needs
   * kernel.readService). Default 0: every sync is full. The sync loop passes its resync interval.
   */
  fullResyncIntervalMs?: number;
  /**
   * Rolling verification between full read-backs (verify.ts; needs kernel.readService and
   * fullResyncIntervalMs): every desired service is read back once per intervalMs, in verify
   * slices of at most one per tickMs. The sync loop passes its resync interval and verify tick.
   */
  verify?: { intervalMs: number; tickMs: number };
  /**
   * VIPs this node owned or was still retiring before this process (the owner record): their
   * services are retired — drained, then removed — unless the plan wants them again, even when
   * lvs0 no longer lists them (deleted by hand, or a one-shot apply that exited mid-drain).
   */
  retiringVips?: readonly string[];
}

export interface SyncError {
  op: SyncOpKind | 'plan' | 'dump' | 'listVips' | 'bindVip' | 'unbindVip';
  /** Service key, when the error concerns one. */
  key?: string;
  dest?: string;
  vip?: string;
  code?: string;
  error: Error;
}

interface SyncSummary {
  /** Operations the diff asked for. */
  ops: number;
  /** Destinations still draining after this sync. */
  draining: number;
  /** Plan entries that could not be turned into kernel state (not retried: the plan must change). */
  problems: Problem[];
  /** Services read back: 'full' (everything), or how many (a partial sync, its verify slice included). */
  read?: 'full' | number;
  /** Services of a verify slice among those read back by a partial sync (verify.ts). */
  verified?: number;
  /** VIPs still being retired after this sync (services of ours left on them): for the owner record. */
  retiring?: string[];
  /** Wanted VIPs this sync refused to adopt or froze (adoption.ts); their plan keys are in problems. */
  refused?: Refusal[];
  /**
   * The desired state was patched from the last sync's, not rebuilt (desired.ts): plan entries
   * compared (only where planDelta said the plan changed, when it did) and services changed.
   */
  patched?: { compared: number; changed: number };
  /** This sync left a due full read-back, verify slice or director check to the next one, which the loop runs at once. */
  followUp?: 'full' | 'verify' | 'director';
}

export type SyncResult =
  | ({ kind: 'ok' } & SyncSummary)
  | ({ kind: 'retry'; after: number; errors: SyncError[] } & SyncSummary)
  | ({ kind: 'drainPending'; after: number } & SyncSummary);

export interface Syncer {
  sync(): Promise<SyncResult>;
  /** The next sync checks the director (lvs0, sysctls, nft tables) whatever the verifier's schedule. */
  checkDirectorNext(): void;
}

export function createSyncer(opts: SyncerOptions): Syncer {
  const clock = opts.clock ?? realClock;
  const drainTimeoutMs = opts.drainTimeoutMs ?? 300_000;
  const drainPollMs = opts.drainPollMs ?? 5_000;
  const initialMs = opts.backoff?.initialMs ?? 1_000;
  const maxMs = opts.backoff?.maxMs ?? 60_000;
  const log = opts.log.child({ node: opts.node });
  let draining = new Map<string, number>();
  const retiring = new Set<string>((opts.retiringVips ?? []).map(canonicalAddress));
  let lastOwned = new Set<string>();
  let failures = 0;
  const fullIntervalMs = opts.fullResyncIntervalMs ?? 0;
  /** Desired state of the last clean sync; undefined forces the next sync to be full. */
  let view: SyncedView | undefined;
  let lastFullAt = -Infinity;
  /** What one desiredState() keeps for the next (the sorted keys). */
  const memo: DesiredMemo = {};
  /** The last scopeOf() and the lists it was made of. */
  let scopeMemo: { ownedVips: readonly string[]; frozen: readonly string[]; scope: string } | undefined;
  let ownedMemo: { of: readonly string[]; set: ReadonlySet<string> } | undefined;
  /** The last full sync refused a VIP: partial syncs would not know to leave its services alone. */
  let refusedLast = '';
  /** The verify slice's cursor (the last key it read) and when the next slice is due. */
  let verifyCursor: string | undefined;
  let nextVerifyAt = -Infinity;
  /** Services of the current tick's slice not read yet (read VERIFY_CHUNK per sync, verify.ts). */
  let sliceLeft = 0;
  /** When the partial syncs next check the director (lvs0, its sysctls, our nft tables). */
  let nextDirectorAt = -Infinity;
  /**
   * A due full read-back, verify slice or director check was left to the next sync, behind a
   * change (partialScope, checkDirector); and what the last sync left (its followUp).
   */
  let fullDeferred = false, sliceDeferred = false, directorDeferred = false;
  let leftBehind: SyncSummary['followUp'];

  function retry(errors: SyncError[], summary: SyncSummary): SyncResult {
    // A failed sync leaves nothing behind: the retry, after its backoff, reads everything back.
    delete summary.followUp;
    failures++;
    view = undefined;
    sliceLeft = 0;
    const after = Math.min(maxMs, initialMs * 2 ** Math.min(failures - 1, 30));
    log.warn({ errors: errors.length, after, failures }, 'sync failed, retrying');
    return { kind: 'retry', after, errors, ...summary };
  }

  async function syncOnce(): Promise<SyncResult> {
    const summary: SyncSummary = { ops: 0, draining: draining.size, problems: [], retiring: [...retiring].sort(byString) };
    const now = clock.now();
    const planned = desiredState(opts.plan(), opts.node, opts.held?.() ?? [], memo, opts.planDelta?.());
    summary.problems = planned.problems;
    if (planned.delta) summary.patched = { compared: planned.delta.compared, changed: planned.delta.keys.length };
    for (const p of planned.problems) log.warn({ op: 'desired', service: p.key, field: p.field }, p.message);
    const scope = scopeOfPlanned(planned);
    const following = leftBehind;
    leftBehind = undefined;
    const scoped = partialScope(planned, scope, now, summary, following);
    let listed: string[] | undefined;
    if (scoped) {
      const errors: SyncError[] = [];
      const director = await checkDirector(now, errors, summary, scoped.changes);
      if (errors.length > 0) return retry(errors, summary);
      if (director === 'ok') {
        const r = await partialSync(planned, scoped.keys, summary, now, scope);
        leftBehind = r.followUp;
        return r;
      }
      delete summary.verified; delete summary.followUp;
      listed = director.bound;
    }
    summary.read = 'full';
    fullDeferred = false; sliceDeferred = false; directorDeferred = false;
    const errors: SyncError[] = [];
    // Ours before this sync: what the last sync accepted, what is being retired, what lvs0 holds.
    const ours = new Set([...lastOwned, ...retiring]);
    // Between two director checks, after a sync that succeeded, lvs0 as the binder last left it
    // stands for a listing (which re-applies the whole director): a full sync for a new owned VIP
    // (every VirtualServer with a VIP of its own) then reads no node state back; at 10,000 VIPs
    // under emulation that read-back took 8.6-14.2 s (lab/results/director-scale-2026-12-06.txt).
    const known = listed || failures > 0 || !opts.verify || now >= nextDirectorAt ? undefined : knownBound(opts.vips);
    const bound = listed ?? known ?? await listBound(opts.vips, errors);
    for (const v of bound ?? []) ours.add(v);

    let kernelState;
    try {
      kernelState = await opts.kernel.dump();
    } catch (err) {
      return retry([...errors, { op: 'dump', error: asError(err), ...codeOf(err) }], summary);
    }
    const refusals = refusedVips({ wanted: planned.ownedVips, ours, elsewhere: elsewhereOf(opts.vips, bound), kernel: kernelState });
    const want = withRefusals(planned, refusals, kernelState);
    noteRefusals(refusals, summary, want.problems);
    const owned = new Set(want.ownedVips);
    for (const v of lastOwned) if (!owned.has(v)) retiring.add(v);
    lastOwned = owned;
    for (const v of bound ?? []) if (!owned.has(v)) retiring.add(v);
    for (const v of owned) retiring.delete(v);
    const d = diff({
      desired: want.services, kernel: kernelState, ownedVips: want.ownedVips, retiringVips: retiring,
      frozen: want.frozen, draining, now, drainTimeoutMs,
    });
    summary.ops = d.ops.length;
    const outcome = await applyOps(d.ops, { kernel: opts.kernel, log: log, owners: want.owners });
    draining = d.draining;
    summary.draining = draining.size;
    for (const f of outcome.failures) {
      errors.push({ op: f.op.kind, key: f.op.key, ...('dest' in f.op ? { dest: f.op.dest } : {}), ...codeOf(f.error), error: f.error });
    }
    const troubled = new Set(outcome.failures.map((f) => canonicalAddress(f.op.service.address)));
    // A refused VIP is never bound (one of ours that is frozen stays bound if it is).
    await reconcileVips(opts.vips, log, { want: want.ownedVips.filter((v) => !refusals.has(v)), bound, retired: d.retiredVips, troubled }, errors);
    for (const v of d.retiredVips) if (!troubled.has(v)) retiring.delete(v);
    summary.retiring = [...retiring].sort(byString);

    if (errors.length > 0) return retry(errors, summary);
    failures = 0;
    view = viewOf(want.services, draining, new Map(kernelState.map((k) => [ipvsServiceKey(k.service), serviceIdentity(k.service)])), scope);
    lastFullAt = now;
    // A full read-back verified every service and the director: the next slice is one tick away.
    if (opts.verify) { nextVerifyAt = now + opts.verify.tickMs; sliceLeft = 0; if (!known) nextDirectorAt = now + opts.verify.intervalMs; }
    if (d.ops.length > 0) log.info({ ops: d.ops.length, draining: draining.size }, 'kernel synced');
    if (d.nextDeadline !== undefined) {
      const after = Math.max(1, Math.min(drainPollMs, d.nextDeadline - now));
      return { kind: 'drainPending', after, ...summary };
    }
    return { kind: 'ok', ...summary };
  }

  /** scopeOf(), again only when the owned VIPs or frozen keys are other lists (a patched state keeps them). */
  function scopeOfPlanned(p: DesiredState): string {
    if (scopeMemo?.ownedVips !== p.ownedVips || scopeMemo.frozen !== p.frozen) scopeMemo = { ownedVips: p.ownedVips, frozen: p.frozen, scope: scopeOf(p.ownedVips, p.frozen) };
    return scopeMemo.scope;
  }

  /** The owned VIPs as a set, again only for another list (a patched state keeps it). */
  function ownedSet(ownedVips: readonly string[]): ReadonlySet<string> {
    if (ownedMemo?.of !== ownedVips) ownedMemo = { of: ownedVips, set: new Set(ownedVips) };
    return ownedMemo.set;
  }

  /**
   * The services a partial sync would read, or undefined when this sync must be full: the changed
   * ones, plus a verify slice when one is due (its size goes into summary.verified); `changes`:
   * how many of them changed (or drain), the slice aside.
   */
  function partialScope(planned: DesiredState, scope: string, now: number, summary: SyncSummary, following: SyncSummary['followUp']): { keys: Map<string, IpvsServiceKey>; changes: number } | undefined {
    const fullDue = now - lastFullAt >= fullIntervalMs;
    if (!view || !opts.kernel.readService || (fullDue && (!opts.verify || fullDeferred || fullIntervalMs <= 0))) return undefined;
    if (view.scope !== scope || retiring.size > 0 || refusedLast) return undefined;
    const desired = planned.services;
    // Patched from the very services the view was made of: only the patch's keys can differ.
    const changed = planned.delta && planned.delta.from === view.desired
      ? changedIn(view, planned.delta.keys, desired, planned.index, draining)
      : changedServices(view, desired, draining);
    // Two requests per service read one by one, against one per service in a dump.
    if (!changed || changed.size * 2 > Math.max(64, desired.length)) return undefined;
    const changes = changed.size;
    // The change first: a periodic full read-back or a verify slice that is due when a change
    // arrives is the next sync's (the loop runs it right after this one), once; a change that
    // comes with that next sync rides with it. So a change waits behind neither, unless it lands
    // while one runs.
    // Due: the tick came, or the tick's slice is being read chunk by chunk.
    const sliceDue = opts.verify !== undefined && (sliceLeft > 0 || now >= nextVerifyAt);
    if (changed.size > 0 && (fullDue || (sliceDue && !sliceDeferred))) {
      if (fullDue) fullDeferred = true; else sliceDeferred = true;
      summary.followUp = fullDue ? 'full' : 'verify';
      return { keys: changed, changes };
    }
    if (fullDue) return undefined;
    // A slice when one is due; and with the verifier, a sync with nothing changed and nothing
    // draining (asked for by something else than a change of desired state: a manifest written
    // again as it was, an event that did not move this node's plan) reads the next slice at once
    // instead of everything: the verifier's bound covers the repair it may have been asked for.
    // (Not the follow-up of a director check left behind a change: that is all it is for.)
    const due = opts.verify && (sliceDue || (changed.size === 0 && following !== 'director'));
    if (due && sliceLeft <= 0) sliceLeft = verifySliceSize(desired.length, opts.verify!.tickMs, opts.verify!.intervalMs);
    const slice = due ? verifySlice(desired, verifyCursor, Math.min(sliceLeft, VERIFY_CHUNK)) : undefined;
    // Without the verifier (or with no desired service), such a sync reads everything back, as a repair.
    if (changed.size === 0 && !slice?.keys.size) return following === 'director' ? { keys: changed, changes } : undefined;
    if (!slice?.keys.size) { sliceLeft = 0; return { keys: changed, changes }; }
    verifyCursor = slice.cursor;
    sliceLeft = Math.max(0, sliceLeft - slice.keys.size);
    // The rest of the tick's slice is the next sync's, at once (a change marked meanwhile goes
    // between the two); the tick's rhythm moves when its last chunk is read.
    if (sliceLeft > 0) summary.followUp = 'verify';
    else {
      // Due times keep their rhythm when a slice comes late (deferred behind a change), so a pass
      // still takes one interval; a slice late by more than half a tick starts a new rhythm, and
      // one read early (a sync with nothing changed) never pushes the next beyond a tick from now.
      const tick = opts.verify!.tickMs;
      nextVerifyAt = Math.min(now + tick, Math.max(nextVerifyAt + tick, now + tick / 2));
    }
    sliceDeferred = false;
    summary.verified = slice.keys.size;
    return { keys: withSlice(changed, slice.keys), changes };
  }

  /**
   * With the verifier, the director is checked once per verify interval, not only by the rare full
   * sync: lvs0, its sysctls and our nft tables are a few processes to read whatever the number of
   * services (the IPVS dump is what a full sync pays for). Listing lvs0 re-applies the director's
   * sysctls and tables for the VIPs on it (the binder's list()), so an outside edit there is
   * undone, or fails the sync (reported as the director step that failed), within the interval.
   * The listing when lvs0 does not hold exactly the VIPs the last full sync left bound (one removed
   * or added by hand): the full sync that binds and retires them goes on from it.
   */
  async function checkDirector(now: number, errors: SyncError[], summary: SyncSummary, changes: number): Promise<'ok' | { bound: string[] }> {
    if (!opts.vips || !opts.verify || now < nextDirectorAt) return 'ok';
    // The change first, as for slices (listing lvs0 re-applies the director for every VIP on it):
    // a check due when a change arrives is the next sync's, once. A partial sync binds nothing.
    if (changes > 0 && !directorDeferred) {
      directorDeferred = true;
      summary.followUp ??= 'director';
      return 'ok';
    }
    directorDeferred = false;
    const bound = await listBound(opts.vips, errors);
    if (!bound) return 'ok';
    nextDirectorAt = now + opts.verify.intervalMs;
    // The full sync goes on from this listing: lvs0 is read once.
    return bound.length === lastOwned.size && bound.every((v) => lastOwned.has(v)) ? 'ok' : { bound };
  }

  /** Read back, diff and apply only `changed`; VIPs are left alone (the owned set is unchanged). */
  async function partialSync(want: DesiredState, changed: Map<string, IpvsServiceKey>, summary: SyncSummary, now: number, scope: string): Promise<SyncResult> {
    summary.read = changed.size;
    const read = opts.kernel.readService!.bind(opts.kernel);
    let kernelState: IpvsServiceState[];
    try {
      kernelState = (await Promise.all([...changed.values()].map((k) => read(k)))).filter((s) => s !== undefined);
    } catch (err) {
      return retry([{ op: 'dump', error: asError(err), ...codeOf(err) }], summary);
    }
    // In key order, as `changed` and want.services are.
    const desired = [...changed.keys()].flatMap((k) => { const i = want.index.get(k); return i === undefined ? [] : [want.services[i]!]; });
    // The diff looks up only the VIPs and keys of what was read back: those, not every owned VIP.
    const owned = ownedSet(want.ownedVips);
    const d = diff({
      desired, kernel: kernelState,
      ownedVips: kernelState.flatMap((s) => (s.service.fwmark ? [] : [canonicalAddress(s.service.address)])).filter((v) => owned.has(v)),
      frozen: want.frozen.filter((k) => changed.has(k)), draining, now, drainTimeoutMs,
    });
    summary.ops = d.ops.length;
    const outcome = await applyOps(d.ops, { kernel: opts.kernel, log: log, owners: want.owners });
    draining = mergeDraining(draining, new Set(changed.keys()), d.draining);
    summary.draining = draining.size;
    const errors: SyncError[] = outcome.failures.map((f) => ({
      op: f.op.kind, key: f.op.key, ...('dest' in f.op ? { dest: f.op.dest } : {}), ...codeOf(f.error), error: f.error,
    }));
    if (errors.length > 0) return retry(errors, summary);
    failures = 0;
    view = advanceView(view!, desired, changed, draining, scope, want.services);
    if (d.ops.length > 0) log.info({ ops: d.ops.length, draining: draining.size, read: changed.size }, 'kernel synced (partial)');
    let deadline = Infinity;
    for (const since of draining.values()) deadline = Math.min(deadline, since + drainTimeoutMs);
    if (deadline !== Infinity) return { kind: 'drainPending', after: Math.max(1, Math.min(drainPollMs, deadline - now)), ...summary };
    return { kind: 'ok', ...summary };
  }

  /** Refusals into the summary; logged when they change (a full sync repeats them every time). */
  function noteRefusals(refusals: ReadonlyMap<string, Refusal>, summary: SyncSummary, problems: Problem[]): void {
    summary.problems = problems;
    if (refusals.size === 0) { refusedLast = ''; return; }
    summary.refused = [...refusals.values()];
    const text = summary.refused.map((r) => r.message).join('\n');
    if (text !== refusedLast) for (const r of summary.refused) log.warn({ op: 'adopt', vip: r.vip, ours: r.ours }, r.message);
    refusedLast = text;
  }

  return {
    checkDirectorNext() {
      nextDirectorAt = -Infinity;
    },
    async sync() {
      try {
        return await syncOnce();
      } catch (err) {
        // Only a throwing plan source or binder bug gets here; treat it like a failed sync.
        return retry([{ op: 'plan', error: asError(err) }], { ops: 0, draining: draining.size, problems: [] });
      }
    },
  };
}
