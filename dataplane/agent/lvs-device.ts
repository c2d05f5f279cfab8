// The director's host side as one VipBinder: lvs0 holds exactly the VIPs the syncer says are
// bound, and every call also brings the sysctls and our nft tables (SNAT return path, ARP
// silence) in line with the current plan. The set of global addresses on lvs0 is the ownership
// record: an agent that restarts reads it back and knows which kernel services are its own.
import { release } from 'node:os';
import type { Logger } from 'pino';
import type { PlanService } from '../../api/plan.ts';
import { directorSpecFromPlan, normalizeSpec, type DirectorSpec, type DirectorVip } from '../director/plan.ts';
import { announceQuick, answeredNow, observeDirector, ownedAddresses, syncDirector, teardownDirector, type DirectorReport } from '../director/setup.ts';
import { applyQuickBind, planQuickBind } from '../director/quick-bind.ts';
import { forgetOriginals, readOriginals, recordOriginals } from '../director/sysctl-record.ts';
import { inNetns, type NetnsTarget, type Runner } from '../exec.ts';
import { parseServiceKey } from '../sync/keys.ts';
import type { VipBinder } from '../sync/sync.ts';

export interface LvsDeviceOptions {
  run: Runner;
  node: string;
  plan: () => readonly PlanService[];
  /**
   * Service keys held as the kernel has them, without a plan entry (the syncer's `held`): an SNAT
   * rule such a service already has is kept, as the agent cannot tell whether it needs one.
   */
  held?: () => readonly string[];
  logger?: Logger;
  target?: NetnsTarget;
  kernelRelease?: string;
  /** Answer ARP/NDP for this VIP and announce it (default: never; clients reach VIPs by routes to the directors). */
  announce?: (vip: string) => boolean;
  /** Devices to announce on (default: each VIP's uplinks, see ../director/announce.ts). */
  interfaces?: readonly string[];
  /** Devices to announce one VIP on (the plan's), before `interfaces`. */
  interfacesFor?: (vip: string) => readonly string[] | undefined;
  onReport?: (r: DirectorReport) => void;
  /**
   * Where the sysctls' values from before the agent changed them are kept (../director/
   * sysctl-record.ts); release() puts them back. Unset: nothing is recorded or restored.
   */
  sysctlRecord?: string;
  /** The kernel's IPVS connection sync runs on this director: its sysctls come with the others. */
  connectionSync?: boolean;
}

/**
 * The director spec for exactly `bound` VIPs: SNAT only for VIPs that are bound.
 *
 * `before`: the VIPs as the last spec had them (or as the kernel showed them answered). A bound
 * VIP that no plan service names any more (its services are held while they drain) keeps the
 * announcement it had: the clients of the draining connections must go on resolving it, or their
 * connections end when their neighbour entry expires. A VIP some plan service still names follows
 * the plan (another director may own it now).
 */
export function specFor(opts: Pick<LvsDeviceOptions, 'node' | 'plan' | 'held' | 'kernelRelease' | 'announce' | 'interfaces' | 'interfacesFor' | 'connectionSync'>, bound: readonly string[], before: readonly DirectorVip[] = []): DirectorSpec {
  const services = opts.plan();
  const fromPlan = directorSpecFromPlan({ services: [...services], virtualServers: new Map() }, opts.node, opts.kernelRelease ?? release(), opts.announce);
  const planned = new Set(services.map((s) => s.vip));
  const had = new Map(before.map((v) => [v.address, v]));
  const set = new Set(bound);
  const keepSnat = (opts.held?.() ?? []).flatMap((key) => {
    const k = parseServiceKey(key);
    return k && set.has(k.vip) ? [{ family: k.family, protocol: k.protocol, vip: k.vip, port: k.port }] : [];
  });
  return {
    ...fromPlan,
    vips: bound.map((address): DirectorVip => {
      const kept = planned.has(address) ? undefined : had.get(address);
      if (kept) return { address, announce: kept.announce, ...(kept.interfaces ? { interfaces: [...kept.interfaces] } : {}) };
      const interfaces = opts.interfacesFor?.(address);
      return { address, announce: opts.announce?.(address) ?? false, ...(interfaces ? { interfaces: [...interfaces] } : {}) };
    }),
    snat: fromPlan.snat.filter((r) => set.has(r.vip)),
    ...(keepSnat.length > 0 ? { keepSnat } : {}),
    ...(opts.interfaces ? { interfaces: [...opts.interfaces] } : {}),
    ...(opts.connectionSync ? { connectionSync: true } : {}),
  };
}

/**
 * What specOf() compares to reuse a spec: the plan as it was (the objects, and their director
 * fields), the VIPs bound, the held keys, and the spec's VIPs (its `before` for the next call).
 */
export interface SpecMemo {
  services: readonly PlanService[];
  bound: readonly string[];
  held: string;
  planned: ReadonlySet<string>;
  spec: DirectorSpec;
}

type SpecOptions = Parameters<typeof specFor>[0];

/**
 * The memo of specFor(), normalized: the last one again when nothing the spec depends on changed
 * (the plan's services are the same objects or alike in every field the director reads, the same
 * VIPs are bound, the held keys and `before` (the last spec's VIPs) are the same, and announce()
 * and interfacesFor() answer as they did), else a new one, the plan and held keys read once for
 * both. A director check at 10,000 services otherwise rebuilt, checked and sorted the whole spec
 * every time (bench/RESULTS.md run 25: the changes that overlapped a check had a p50 of 192 ms
 * against 57 ms; run 27, with this, 148 ms); comparing is a pass over the plan without parsing or
 * sorting.
 */
export function specOf(opts: SpecOptions, bound: readonly string[], before: readonly DirectorVip[], memo: SpecMemo | undefined): SpecMemo {
  const services = opts.plan();
  const heldKeys = opts.held?.() ?? [];
  const held = heldKeys.join('\n');
  if (memo && memo.spec.vips === before && sameList(memo.bound, bound) && memo.held === held
    && sameDirectorFields(memo.services, services) && sameAnswers(opts, memo)) return memo;
  const spec = normalizeSpec(specFor({ ...opts, plan: () => services, held: () => heldKeys }, bound, before));
  return { services: [...services], bound: [...bound], held, planned: new Set(services.map((s) => s.vip)), spec };
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** The fields directorSpecFromPlan() reads, alike in each service (the same objects, mostly). */
function sameDirectorFields(was: readonly PlanService[], now: readonly PlanService[]): boolean {
  if (was.length !== now.length) return false;
  for (let i = 0; i < now.length; i++) {
    const a = was[i]!, b = now[i]!;
    if (a === b) continue;
    if (a.vip !== b.vip || a.family !== b.family || a.protocol !== b.protocol || a.port !== b.port || a.forwarding !== b.forwarding
      || a.natReturnPath !== b.natReturnPath || !sameList(a.directors, b.directors)) return false;
  }
  return true;
}

/** announce() and interfacesFor() give each VIP the spec took from them what it has. */
function sameAnswers(opts: SpecOptions, memo: SpecMemo): boolean {
  return memo.spec.vips.every((v) => {
    // A bound VIP no plan service names keeps what `before` had (specFor): nothing was asked.
    // (Every VIP of the spec is a bound one: specFor maps `bound`.)
    if (!memo.planned.has(v.address)) return true;
    const interfaces = opts.interfacesFor?.(v.address);
    return (opts.announce?.(v.address) ?? false) === v.announce && sameList(v.interfaces ?? [], interfaces ?? []);
  });
}

export interface LvsDevice extends VipBinder {
  /**
   * Re-decide which bound VIPs are announced and change only that (../director/setup.ts
   * announceQuick): the failover path, milliseconds instead of a full sync. Nothing before the
   * first full sync. Runs one at a time with the syncs. `all`: send a gratuitous ARP / NA for
   * every announced VIP even when nothing changed here (the directors' membership changed: a
   * director that comes back may have kept answering, and clients may have followed it).
   */
  reannounce(all?: boolean): Promise<void>;
  /** The VIPs answered for ARP/NDP after the last sync or announce (sorted; empty before the first). */
  announced(): string[];
  /**
   * At exit: when no VIP is bound (nothing of ours serves on this node), remove lvs0 and put the
   * recorded sysctls back, so the node is as the agent found it; otherwise change nothing (a
   * restart must not drop connections). Returns whether it released.
   */
  release(): Promise<boolean>;
}

export function createLvsDevice(opts: LvsDeviceOptions): LvsDevice {
  const dirOpts = { run: opts.run, ...(opts.logger ? { logger: opts.logger } : {}), ...(opts.target ? { target: opts.target } : {}) };
  let bound: string[] | undefined;
  let elsewhere: ReadonlyMap<string, readonly string[]> | undefined;
  let last: Pick<DirectorReport, 'announced' | 'devices'> | undefined;
  /** The announced VIPs as last decided (sorted, joined): reannounce() acts only on a change. */
  let decided = '';
  const decide = (spec: DirectorSpec) => spec.vips.filter((v) => v.announce).map((v) => v.address).sort().join();
  let queue: Promise<unknown> = Promise.resolve();
  // One director change at a time: a quick announce must not interleave with a full sync.
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const p = queue.then(fn, fn);
    queue = p.catch(() => {});
    return p;
  };
  /** The VIPs of the last spec applied (specFor's `before`); at start, those the kernel answers for. */
  let vipsBefore: DirectorVip[] = [];
  /** The spec of the last full director sync, and the VIPs with a drop rule since (../director/quick-bind.ts). */
  let lastFull: { spec: DirectorSpec; quiet: Set<string>; quick: Set<string> } | undefined;
  let memo: SpecMemo | undefined;
  const fullSync = async (vips: string[]): Promise<string[]> => {
    memo = specOf(opts, vips, vipsBefore, memo);
    const spec = memo.spec;
    vipsBefore = spec.vips;
    lastFull = undefined; // unknown if this sync fails half-way
    const report = await syncDirector(dirOpts, spec);
    lastFull = { spec, quiet: new Set(spec.vips.filter((v) => !v.announce).map((v) => v.address)), quick: new Set() };
    if (opts.sysctlRecord) {
      try { recordOriginals(opts.sysctlRecord, report); } catch (err) { opts.logger?.warn({ op: 'sysctls', err: String(err) }, 'could not record the sysctls\' earlier values: they will not be restored'); }
    }
    decided = decide(spec);
    opts.onReport?.(report);
    bound = report.vips;
    elsewhere = report.elsewhere;
    last = report;
    return report.vips;
  };
  const apply = (vips: string[]): Promise<string[]> => serial(() => fullSync(vips));
  /**
   * Bind and unbind quiet VIPs without reading the node back (../director/quick-bind.ts); false
   * when the change needs a full director sync, or a quick step failed (the full sync repairs).
   */
  const quickBind = async (vips: string[]): Promise<boolean> => {
    if (!lastFull || !bound) return false;
    const q = planQuickBind({
      last: lastFull.spec, quiet: lastFull.quiet, bound, want: vips, before: vipsBefore, announce: opts.announce ?? (() => false), services: opts.plan(),
    });
    if ('full' in q) return false;
    try {
      await applyQuickBind(inNetns(opts.run, opts.target ?? { kind: 'host' }), q);
    } catch (err) {
      opts.logger?.warn({ op: 'quickBind', add: q.add.length, remove: q.remove.length, err: String(err) }, 'binding VIPs quickly failed; a full director sync follows');
      lastFull = undefined;
      return false;
    }
    for (const v of q.add) { lastFull.quiet.add(v); lastFull.quick.add(v); }
    const removed = new Set(q.remove);
    vipsBefore = [...vipsBefore.filter((v) => !removed.has(v.address)), ...q.add.map((address) => ({ address, announce: false }))];
    bound = [...vips];
    return true;
  };
  /**
   * A reannounce waiting its turn (behind a sync): later calls join it instead of queueing their
   * own. It decides when it runs, so it acts on the latest membership; under load a burst of
   * membership changes must not become a burst of nft and arping processes.
   */
  let waiting: { promise: Promise<void>; all: boolean } | undefined;
  const reannounce = (all = false): Promise<void> => {
    if (waiting) { waiting.all ||= all; return waiting.promise; }
    const w: { promise: Promise<void>; all: boolean } = { promise: Promise.resolve(), all };
    w.promise = serial(async () => {
      waiting = undefined;
      if (!last || !bound) return;
      const spec = specFor(opts, bound, vipsBefore);
      vipsBefore = spec.vips;
      const now = decide(spec);
      // Nothing changed and nothing to repeat: no process started (membership changes are frequent).
      if (now === decided && (!w.all || now === '')) return;
      // A VIP bound quickly has no devices to announce on in the last full sync's report: one
      // full sync finds its uplinks (and announces it).
      if (spec.vips.some((v) => v.announce && lastFull?.quick.has(v.address))) {
        await fullSync(bound);
        // The full sync announced what became announced; `all` asks for every announced VIP.
        if (w.all && last) last = { devices: last.devices, announced: await announceQuick(dirOpts, specFor(opts, bound, vipsBefore), last, true) };
        return;
      }
      last = { devices: last.devices, announced: await announceQuick(dirOpts, spec, last, w.all) };
      decided = decide(spec);
    });
    waiting = w;
    return w.promise;
  };
  return {
    reannounce,
    announced: () => (last?.announced ?? []).map((a) => a.address).sort(),
    // Reading lvs0 back also re-applies sysctls and nft tables for the VIPs found there, so an
    // outside change to them is undone on the next sync like an outside IPVS edit. The VIPs are
    // taken when its turn comes, not when asked: a set() queued in front of it (the director check
    // runs beside the syncs) must not be undone by a listing of the VIPs from before. `elsewhere`
    // keeps the last listing's until this one fails (a sync that reads it meanwhile sees no gap).
    async list() {
      if (bound === undefined) {
        // A restarted agent: what the kernel answers for now stands in for the last spec.
        const obs = await observeDirector(inNetns(opts.run, opts.target ?? { kind: 'host' }));
        bound = ownedAddresses(obs.device);
        const answered = new Set(answeredNow(obs));
        vipsBefore = bound.map((address) => ({ address, announce: answered.has(address) }));
      }
      try {
        return await serial(() => fullSync(bound!));
      } catch (err) {
        elsewhere = undefined; // unknown until a listing succeeds
        throw err;
      }
    },
    async set(vips) {
      if (!(await serial(() => quickBind(vips)))) await apply(vips);
    },
    // The other devices' addresses, read by list()'s director sync in the same `ip -j addr` call
    // that reads lvs0 (no extra read per sync).
    elsewhere: () => elsewhere,
    known: () => (bound ? [...bound] : undefined),
    release: () => serial(async () => {
      const obs = await observeDirector(inNetns(opts.run, opts.target ?? { kind: 'host' }));
      if (ownedAddresses(obs.device).length > 0) return false;
      const restore = opts.sysctlRecord ? readOriginals(opts.sysctlRecord) : {};
      const report = await teardownDirector(dirOpts, restore, obs);
      if (opts.sysctlRecord) forgetOriginals(opts.sysctlRecord);
      opts.logger?.info({ op: 'release', steps: report.steps.length, restored: Object.keys(restore) }, 'nothing of ours is left to serve: lvs0 removed, sysctls restored');
      return true;
    }),
  };
}
