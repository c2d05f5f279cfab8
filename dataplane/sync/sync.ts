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
// draining (partial.ts) — a change costs in proportion to its size, not to the table. A sync whose
// only scope change is new owned VIPs lists the services without destinations instead of a full
// read-back (a listing sync, listing.ts); with the verifier, so does the periodic one. The first
// sync, the first one after any error or refusal, a scope change other than new VIPs, and, without
// the verifier, the periodic one and one that finds no desired change at all (asked for as a
// repair) are full.
//
// Verify slices (verify.ts, with opts.verify): a partial sync at least verify.tickMs after the last
// slice also reads back the next verify slice of the desired services and diffs it with the
// changed ones, so an outside edit to a desired service is repaired within verify.intervalMs plus
// one tick without a full read-back; a sync with no desired change is a partial sync of the next
// slice alone (a verify tick), due or not. The director (lvs0, sysctls, our nft tables) is checked
// once per verify interval, beside the syncs: a partial sync starts the check and goes on, a later
// sync takes its outcome (checkDirector, director-check.ts). What neither sees — services someone
// else added on an owned VIP, desired ones deleted by hand, adoption refusals — is left to the
// periodic listing (or full) sync, every fullResyncIntervalMs (the sync loop makes that 10× the
// verify interval). A change that meets a due slice or periodic listing is synced first, alone,
// and the result's followUp asks the loop for the left work in the next sync. A slice is read
// VERIFY_CHUNK services per sync (followUp 'verify' for the rest), VERIFY_BATCH at a time: a
// change marked while one is read (opts.pending) stops it after the batch being read. Without
// opts.verify an outside edit is undone at the latest one fullResyncIntervalMs later. What the
// syncer remembers between syncs: when each destination started draining, the VIPs it used to
// direct (their services must still be drained and removed), the desired state of its last clean
// sync, the verify cursor, and its consecutive failures.
import { realClock, type Clock } from '../../kube/clock.ts';
import type { IpvsServiceKey, IpvsServiceState } from '../ipvs/types.ts';
import { refusedVips, withRefusals, type Refusal } from './adoption.ts';
import { applyOps } from './apply.ts';
import { desiredState, type DesiredMemo, type DesiredState, type Problem } from './desired.ts';
import { diff } from './diff.ts';
import { byString, canonicalAddress, ipvsServiceKey } from './keys.ts';
import { advanceView, changedSince, mergeDraining, scopeOf, serviceIdentity, viewOf, type SyncedView } from './partial.ts';
import { addedVips, listingReads } from './listing.ts';
import { createDirectorCheck, type DirectorCheckOutcome } from './director-check.ts';
import { readBack } from './verify.ts';
import { VerifySlices, type SliceTaken } from './slices.ts';
import { asError, codeOf, elsewhereOf, knownBound, listBound, reconcileVips, troubledVips, type VipBinder } from './vips.ts';

import { nodeLogger, type SyncError, type SyncerOptions, type SyncResult, type Syncer, type SyncSummary } from './syncer-types.ts';

export type { Clock, VipBinder };
export type { SyncError, SyncerOptions, SyncResult, Syncer };


export function createSyncer(opts: SyncerOptions): Syncer {
  const clock = opts.clock ?? realClock;
  const drainTimeoutMs = opts.drainTimeoutMs ?? 300_000;
  const drainPollMs = opts.drainPollMs ?? 5_000;
  const initialMs = opts.backoff?.initialMs ?? 1_000;
  const maxMs = opts.backoff?.maxMs ?? 60_000;
  const log = nodeLogger(opts.log, opts.node);
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
  /** The rolling verifier's cursor, due times and budget (slices.ts). */
  const slices = opts.verify ? new VerifySlices(opts.verify, log) : undefined;
  /** When the partial syncs next start a director check (lvs0, its sysctls, our nft tables). */
  let nextDirectorAt = -Infinity;
  /** Counts the syncs that bind or unbind VIPs: a director check listed before the last one is stale. */
  let bindEpoch = 0;
  const check = opts.vips ? createDirectorCheck(opts.vips, checked) : undefined;
  /** A due full read-back was left to the next sync, behind a change (partialScope; a slice: slices.deferred). */
  let fullDeferred = false;

  function retry(errors: SyncError[], summary: SyncSummary): SyncResult {
    // A failed sync leaves nothing behind: the retry, after its backoff, reads everything back.
    delete summary.followUp;
    failures++;
    view = undefined;
    slices?.drop();
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
    const scoped = partialScope(planned, scope, now, summary);
    let listed: string[] | undefined;
    if (scoped) {
      const errors: SyncError[] = [];
      const director = checkDirector(now, errors);
      if (errors.length > 0) return retry(errors, summary);
      if (director === 'ok') {
        return await partialSync(planned, scoped.keys, summary, now, scope, undefined, scoped.slice);
      }
      delete summary.verified; delete summary.followUp;
      listed = director.bound;
    } else {
      const listing = await listingSync(planned, scope, now, summary);
      if (listing?.result) return listing.result;
      listed = listing?.listed;
    }
    summary.read = 'full';
    fullDeferred = false;
    if (slices) slices.deferred = false;
    const errors: SyncError[] = [];
    // Ours before this sync: what the last sync accepted, what is being retired, what lvs0 holds.
    const ours = new Set([...lastOwned, ...retiring]);
    // Between two director checks, after a sync that succeeded, lvs0 as the binder last left it
    // stands for a listing (which re-applies the whole director): a full sync for a new owned VIP
    // (every VirtualServer with a VIP of its own) then reads no node state back; at 10,000 VIPs
    // under emulation that read-back took 8.6-14.2 s (lab/results/director-scale-2026-12-06.txt).
    const known = listed || failures > 0 ? undefined : knownUntilDirectorCheck(now);
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
    const troubled = troubledVips(outcome.failures);
    // A refused VIP is never bound (one of ours that is frozen stays bound if it is).
    bindEpoch++;
    await reconcileVips(opts.vips, log, { want: want.ownedVips.filter((v) => !refusals.has(v)), bound, retired: d.retiredVips, troubled }, errors);
    for (const v of d.retiredVips) if (!troubled.has(v)) retiring.delete(v);
    summary.retiring = [...retiring].sort(byString);

    if (errors.length > 0) return retry(errors, summary);
    failures = 0;
    view = viewOf(want.services, draining, new Map(kernelState.map((k) => [ipvsServiceKey(k.service), serviceIdentity(k.service)])), scope);
    lastFullAt = now;
    // A full read-back verified every service and the director: the next slice is one tick away.
    if (opts.verify) { slices!.verifiedAll(now); if (!known) nextDirectorAt = now + opts.verify.intervalMs; }
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
   * ones, plus a verify slice when one is due (its size goes into summary.verified).
   */
  function partialScope(planned: DesiredState, scope: string, now: number, summary: SyncSummary): { keys: Map<string, IpvsServiceKey>; slice?: SliceTaken } | undefined {
    const fullDue = now - lastFullAt >= fullIntervalMs;
    if (!view || !opts.kernel.readService || (fullDue && (!opts.verify || fullDeferred || fullIntervalMs <= 0))) return undefined;
    if (view.scope !== scope || retiring.size > 0 || refusedLast) return undefined;
    const desired = planned.services;
    const changed = changedSince(view, planned, draining);
    // Two requests per service read one by one, against one per service in a dump.
    if (!changed || changed.size * 2 > Math.max(64, desired.length)) return undefined;
    // The change first: a periodic full read-back or a verify slice that is due when a change
    // arrives is the next sync's (the loop runs it right after this one), once; a change that
    // comes with that next sync rides with it. So a change waits behind neither, unless it lands
    // while one runs.
    const sliceDue = slices?.due(now) ?? false;
    if (changed.size > 0 && (fullDue || (sliceDue && !slices!.deferred))) {
      if (fullDue) fullDeferred = true; else slices!.deferred = true;
      summary.followUp = fullDue ? 'full' : 'verify';
      return { keys: changed };
    }
    if (fullDue) return undefined;
    // A slice when one is due; and with the verifier, a sync with nothing changed and nothing
    // draining (asked for by something else than a change of desired state: a manifest written
    // again as it was, an event that did not move this node's plan) reads the next slice at once
    // instead of everything: the verifier's bound covers the repair it may have been asked for.
    const taken = slices?.take(desired, changed, now, summary, sliceDue || changed.size === 0);
    // Without the verifier (or with no desired service), such a sync reads everything back, as a repair.
    return taken ?? (changed.size === 0 ? undefined : { keys: changed });
  }

  /**
   * With the verifier, the director is checked once per verify interval, not only by the rare full
   * sync: lvs0, its sysctls and our nft tables are a few processes to read whatever the number of
   * services (the IPVS dump is what a full sync pays for). Listing lvs0 re-applies the director's
   * sysctls and tables for the VIPs on it (the binder's list()), so an outside edit there is
   * undone, or fails a sync (reported as the director step that failed), within the interval.
   * The check runs beside the syncs (director-check.ts): a partial sync that finds one due starts
   * it and goes on; a later sync takes the outcome. A failure fails that sync; lvs0 not holding
   * exactly the VIPs the last sync left bound (one removed or added by hand) makes it full, going on
   * from the check's listing — unless a sync bound or unbound VIPs after the listing was asked
   * for: that listing says nothing about lvs0 now, and the next check is one interval away.
   */
  function checkDirector(now: number, errors: SyncError[]): 'ok' | { bound: string[] } {
    const o = check?.take();
    if (o) {
      errors.push(...o.errors);
      if (lvs0NotAsLeft(o)) return { bound: o.bound };
    }
    if (errors.length === 0 && opts.verify && now >= nextDirectorAt && check?.start(bindEpoch)) {
      nextDirectorAt = now + opts.verify.intervalMs;
      log.debug({ op: 'directorCheck', phase: 'start' }, 'director check started');
    }
    return 'ok';
  }

  /**
   * A check's outcome arrived: ask the owner (the sync loop) for a sync when it has something to
   * act on — a failure, lvs0 not as left, or another check asked for meanwhile (checkDirectorNext).
   */
  function checked(o: DirectorCheckOutcome): void {
    log.debug({ op: 'directorCheck', phase: 'done', errors: o.errors.length, bound: o.bound?.length }, 'director check done');
    if (o.errors.length > 0 || lvs0NotAsLeft(o) || clock.now() >= nextDirectorAt) opts.onDirectorChecked?.();
  }

  /** A check listed lvs0 (after the last binding) not holding exactly the VIPs the last sync left bound. */
  function lvs0NotAsLeft(o: DirectorCheckOutcome): o is DirectorCheckOutcome & { bound: string[] } {
    return o.bound !== undefined && o.epoch === bindEpoch && !asLastOwned(o.bound);
  }

  /**
   * The listing sync (listing.ts) instead of a full one when the scope only adds owned VIPs, or,
   * with the verifier, for the periodic full read-back: lvs0 as the full sync would take it, the
   * services listed without destinations, the adoption check on that list, then a partial sync of
   * the changed services, the extras on owned VIPs and the desired services not listed, which binds
   * the new VIPs. Undefined, or `listed` (lvs0 as read, for the full sync to go on from), when this
   * sync must be full after all: lvs0 is not as the last sync left it, a VIP is refused, or too much to read.
   */
  async function listingSync(planned: DesiredState, scope: string, now: number, summary: SyncSummary): Promise<{ result?: SyncResult; listed?: string[] } | undefined> {
    const kernel = opts.kernel;
    if (!view || !kernel.readService || !kernel.services || failures > 0 || retiring.size > 0 || refusedLast || fullIntervalMs <= 0) return undefined;
    const periodic = now - lastFullAt >= fullIntervalMs;
    const grows = addedVips(lastOwned, view.scope, planned.ownedVips, scope) !== undefined;
    // Periodic: only with the verifier (it reads the destinations the listing does not).
    if (periodic ? !opts.verify || (view.scope !== scope && !grows) : !grows) return undefined;
    const errors: SyncError[] = [];
    const known = knownUntilDirectorCheck(now);
    const bound = known ?? await listBound(opts.vips, errors);
    if (!bound) return { result: retry(errors, summary) };
    const listed = known ? undefined : bound;
    if (listed && opts.verify) nextDirectorAt = now + opts.verify.intervalMs;
    if (opts.vips && !asLastOwned(bound)) return { listed };
    let services;
    try {
      services = await kernel.services({ stats: false });
    } catch (err) {
      return { result: retry([{ op: 'dump', error: asError(err), ...codeOf(err) }], summary) };
    }
    const refusals = refusedVips({ wanted: planned.ownedVips, ours: lastOwned, elsewhere: elsewhereOf(opts.vips, bound), kernel: services.map((service) => ({ service })) });
    const reads = refusals.size > 0 ? undefined : listingReads(view, planned, draining, services);
    if (!reads) return { listed };
    summary.listed = services.length;
    const result = await partialSync(planned, reads.keys, summary, now, scope, { present: reads.present, bound });
    if (result.kind !== 'retry' && periodic) { lastFullAt = now; fullDeferred = false; }
    return { result };
  }

  /**
   * Read back, diff and apply only `changed`. VIPs are left alone (the owned set is unchanged),
   * except in a listing sync (`vips`): then only the `present` keys are read back, and the new
   * owned VIPs are bound once their services exist.
   */
  async function partialSync(want: DesiredState, changed: Map<string, IpvsServiceKey>, summary: SyncSummary, now: number, scope: string, vips?: { present: ReadonlySet<string>; bound: string[] }, slice?: SliceTaken): Promise<SyncResult> {
    summary.read = vips ? vips.present.size : changed.size;
    const read = opts.kernel.readService!.bind(opts.kernel);
    let kernelState: IpvsServiceState[];
    try {
      const present = vips ? new Map([...changed].filter(([key]) => vips.present.has(key))) : changed;
      const got = await readBack(read, present, slice?.order ?? [], opts.pending, () => clock.now());
      // A slice that stopped for a change gives its unread keys back: they leave `changed`.
      if (slice) { slices!.read(slice, got.sliceRead, got.sliceMs, changed, summary); summary.read = changed.size; }
      kernelState = [...got.states.values()];
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
    if (vips) {
      bindEpoch++;
      await reconcileVips(opts.vips, log, { want: want.ownedVips, bound: vips.bound, retired: [], troubled: troubledVips(outcome.failures) }, errors);
    }
    if (errors.length > 0) return retry(errors, summary);
    failures = 0;
    if (vips && want.ownedVips.length > lastOwned.size) { summary.newVips = want.ownedVips.length - lastOwned.size; lastOwned = new Set(want.ownedVips); }
    view = advanceView(view!, desired, changed, draining, scope, want.services);
    if (d.ops.length > 0) log.info({ ops: d.ops.length, draining: draining.size, read: changed.size }, 'kernel synced (partial)');
    let deadline = Infinity;
    for (const since of draining.values()) deadline = Math.min(deadline, since + drainTimeoutMs);
    if (deadline !== Infinity) return { kind: 'drainPending', after: Math.max(1, Math.min(drainPollMs, deadline - now)), ...summary };
    return { kind: 'ok', ...summary };
  }

  /**
   * lvs0 as the binder last left it, between two director checks (with the verifier; undefined when
   * a check is due or the binder does not know): syncs then read no node state back for it.
   */
  function knownUntilDirectorCheck(now: number): string[] | undefined {
    return !opts.verify || now >= nextDirectorAt ? undefined : knownBound(opts.vips);
  }

  /** A listing of lvs0 holds exactly the VIPs the last sync owned. */
  function asLastOwned(bound: readonly string[]): boolean {
    return bound.length === lastOwned.size && bound.every((v) => lastOwned.has(v));
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
    directorChecked: () => check?.settled() ?? Promise.resolve(),
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
