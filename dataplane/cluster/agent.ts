// lvs-agent run: the agent in a cluster. It programs exactly the plans the controller published
// (PlanSlices, ./plan-book.ts) and never re-resolves a spec; it gates DR/TUN real servers on the
// AgentReports of their nodes (./realservers.ts) and writes its own node's report (./report.ts).
// Watch events only mark work; two loops do it — the IPVS sync loop (director role) and a
// real-server pass (./realserver-pass.ts) — and after either, the node's report is written when
// its content changed.
// Doubt freezes, never tears down: an unusable plan keeps the owner's last good one (or, after a
// restart, holds its recorded kernel services); a mass removal waits for confirmation
// (./guard.ts); while the API server is unreachable, or a list fails (403, or 404 with the CRD
// gone), the informers keep their last state (kube/informer.ts swaps its cache only on a
// successful list) and the kernel keeps serving it.
import { dirname, join } from 'node:path';
import { release } from 'node:os';
import type { Logger } from 'pino';
import { compareResourceVersions } from '../../api/agent-report.ts';
import type { PlanService } from '../../api/plan.ts';
import type { ListDelta } from '../delta-list.ts';
import type { KubeApi } from '../../kube/api.ts';
import { realClock, type Clock, type Timer } from '../../kube/clock.ts';
import { Informer } from '../../kube/informer.ts';
import { AGENT_REPORTS, PLAN_SLICES, type KubeObject } from '../../kube/types.ts';
import type { Runner } from '../exec.ts';
import type { IpvsKernel } from '../ipvs/types.ts';
import { createLvsDevice } from '../agent/lvs-device.ts';
import { announcePolicy } from '../announce/decide.ts';
import { createNetnsFinder, type NetnsFinder } from '../agent/netns.ts';
import { readOwnerRecord, recordedVips, writeOwnerRecord, type OwnerRecord } from '../agent/show.ts';
import { parseServiceKey } from '../sync/keys.ts';
import { createSyncLoop, type SyncLoop, type SyncMetrics } from '../sync/loop.ts';
import type { SyncResult } from '../sync/sync.ts';
import { DEFAULT_REMOVAL_GUARD, guardRemovals, type PendingRemoval, type RemovalGuardOptions } from './guard.ts';
import { adoptedKeys } from '../sync/adoption.ts';
import { clusterOwnerRecord, recordedOwners, sameKeyOwners, sameOwners } from './owner-record.ts';
import { PlanBookIndex } from './plan-book-index.ts';
import { belowRewrites, bookHeld, bookServices, canonicalKey, ownerServices, type KeyOwner, type PlanBook, type RecordedOwner } from './plan-book.ts';
import { createAgentHealth, type AgentHealth } from '../health/agent-health.ts';
import type { Checker } from '../health/check.ts';
import { healthFileOf, healthRecord, writeHealthRecord } from '../health/record.ts';
import { createRealServerPass } from './realserver-pass.ts';
import { BookList, MappedList } from './plan-list.ts';
import { gateService, localRealServers, preparedByNode, preparedEntries, realServersUnaffected, sliceOutsidePass, wantedEntries, type LocalRealServer } from './realservers.ts';
import { createReportWriter } from './report-writer.ts';
import type { Member } from '../announce/election.ts';
import { startClusterHa, type ClusterHa, type ClusterHaSettings } from './ha.ts';
import { watchNodeYielding } from './yielding.ts';
import { reportFor, type PrepError } from './report.ts';
import { ProgrammingLatency } from './programming-latency.ts';
import { nodeLogger } from '../sync/syncer-types.ts';

export interface ClusterAgentOptions {
  api: KubeApi;
  node: string;
  kernel: IpvsKernel;
  run: Runner;
  log: Logger;
  clock?: Clock;
  finder?: NetnsFinder;
  /**
   * Every desired service is read back once per this period, in verify slices (../sync/verify.ts),
   * which undoes outside edits to them; the full read-back comes every 10 × this. Default 30 s.
   */
  resyncIntervalMs?: number;
  /** Least time between the starts of two syncs for changes (the loop's minIntervalMs; `run --min-sync-interval-ms`). Default 0. */
  minSyncIntervalMs?: number;
  drainTimeoutMs?: number;
  /** Sync and network-programming metrics (../agent/metrics.ts createAgentMetrics). */
  metrics?: SyncMetrics & { programmed(seconds: readonly number[]): void };
  /** How soon a real-server pass that left errors or unfound addresses is tried again. Default 5 s. */
  realServerRetryMs?: number;
  /** Where the return-path record lives (see ../agent/return-path.ts); default under /run/lvs-agent. */
  returnPathRecord?: string;
  /** The owner record (../agent/show.ts): read at start, written after each sync. None when absent. */
  stateFile?: string;
  /** Mass-removal confirmation (./guard.ts); defaults DEFAULT_REMOVAL_GUARD. */
  removalGuard?: Partial<RemovalGuardOptions>;
  /** Health-check probes (default: real TCP/HTTP from this network namespace). */
  checker?: Checker;
  /** Director election among this cluster's agents (./ha.ts); without it a VIP of several directors stays silent. */
  ha?: ClusterHaSettings;
  /** How often announced VIPs are announced again (gratuitous ARP / NA) while the election runs. Default 10 s. */
  announceRefreshMs?: number;
}

export interface ClusterAgent {
  run(signal: AbortSignal): Promise<void>;
  /**
   * The plan the sync loop programs now, gated (this node's share is picked by the syncer). Read
   * it at once: the list is rewritten in place two syncs later (../delta-list.ts).
   */
  plan(): PlanService[];
  /** Health checks of this node's checked services (for /metrics). */
  readonly health: AgentHealth;
  /** VIPs this node answers ARP/NDP for now, and the director members it sees (for /metrics). */
  announcing(): { announced: string[]; members: Member[] };
  /** Service key → VirtualServer ("namespace/name") of the services this node directs, the removal guard's held ones included (for /metrics). */
  owned(): ReadonlyMap<string, string>;
  /**
   * A sync of the published plans has finished since this process started (/readyz): the node is
   * programmed from what the apiserver holds, not only from what the kernel kept. Stays true
   * while the apiserver is away (the programmed state is kept, not doubted).
   */
  synced(): boolean;
}

/** What one sync reads: decided together, reported together once that sync finished. */
interface Snapshot {
  /** The newest plan-slice change the informer had applied when the plan was read (see sliceRv). */
  rv: string;
  services: PlanService[];
  /** Where `services` differs from the last snapshot's, when known (the syncer's planDelta). */
  servicesDelta: ListDelta<PlanService> | undefined;
  /** Canonical keys held without a plan entry (book and guard). */
  held: string[];
  keyOwners: ReadonlyMap<string, KeyOwner>;
  frozen: Array<{ owner: KeyOwner; message: string }>;
}

interface RealServerState {
  prepared: Set<string>;
  errors: PrepError[];
  local: Map<string, LocalRealServer>;
  /** Mass removal of preparations held (owners, message). */
  frozen: Array<{ owner: KeyOwner; message: string }>;
  /** preparedKey → what was wanted by the last pass (the guard's baseline). */
  wanted: Map<string, { address: string; vip: LocalRealServer['vips'][number]; owners: KeyOwner[] }>;
  /** The VIPs of `wanted` (plan slices without them and without DR/TUN are no work for the pass). */
  wantedVips: ReadonlySet<string>;
  pending?: PendingRemoval;
}

function recordedAsOwners(recorded: ReadonlyMap<string, RecordedOwner>): Map<string, KeyOwner> {
  return new Map([...recorded].map(([k, r]) => [canonicalKey(k), { uid: r.uid ?? `unrecorded:${r.virtualServer}`, virtualServer: r.virtualServer }]));
}

export function createClusterAgent(opts: ClusterAgentOptions): ClusterAgent {
  const clock = opts.clock ?? realClock;
  const log = nodeLogger(opts.log, opts.node);
  const guard = { ...DEFAULT_REMOVAL_GUARD, ...opts.removalGuard };
  /** The plan book, re-read per owner whose slices changed (./plan-book.ts). */
  const index = new PlanBookIndex(opts.node);
  // The informer keeps each slice as the book reads it, not the received object besides.
  const slices = new Informer<KubeObject>({ api: opts.api, resource: PLAN_SLICES, clock, logger: log, transform: (o) => index.cache.adopt(o) });
  const reports = new Informer<KubeObject>({ api: opts.api, resource: AGENT_REPORTS, clock, logger: log });
  // Only the election has a use for it (a lone director announces whatever its node's state).
  const nodeYielding = opts.ha ? watchNodeYielding({ api: opts.api, node: opts.node, clock, log, onChange: () => void report() }) : undefined;
  const writer = createReportWriter({ api: opts.api, node: opts.node, log, cached: () => reports.get(opts.node) });
  const pass = createRealServerPass({ run: opts.run, log, finder: opts.finder ?? createNetnsFinder(opts.run, log), ...(opts.returnPathRecord ? { returnPathRecord: opts.returnPathRecord } : {}) });

  let record: OwnerRecord | undefined = opts.stateFile ? readOwnerRecord(opts.stateFile) : undefined;
  let recorded = recordedOwners(record);
  let gates: ReadonlyMap<string, ReadonlySet<string>> = new Map();
  /** The services this node programmed or holds (the guard's baseline); a restart starts from the record. */
  let programmed: ReadonlyMap<string, KeyOwner> = recordedAsOwners(recorded);
  /** The index's directed-keys map `programmed` was taken from when nothing was held (never modified). */
  let programmedFrom: ReadonlyMap<string, KeyOwner> | undefined;
  let pending: PendingRemoval | undefined;
  /**
   * The resourceVersion of the newest slice event applied (watch events arrive in order; a list
   * yields its items): every slice change up to it was read. Not the informer's own position,
   * which bookmarks and every restart's list move on without any slice changing — reporting that
   * would rewrite every node's report each minute for nothing.
   */
  let sliceRv = '';
  let current: Snapshot | undefined;
  let synced: Snapshot | undefined;
  let lastSync: SyncResult | undefined;
  const rs: RealServerState = { prepared: new Set(), errors: [], local: new Map(), frozen: [], wanted: new Map(), wantedVips: new Set() };
  const timers: { release?: Timer; rsRelease?: Timer; rsRetry?: Timer; report?: Timer; health?: Timer; announce?: Timer } = {};
  let clusterHa: ClusterHa | undefined;
  let stopping = false;
  const latency = new ProgrammingLatency();
  /** owned()'s map, rebuilt only when a sync decided new key owners. */
  let ownedView: { of: ReadonlyMap<string, KeyOwner>; map: Map<string, string> } | undefined;
  const bookCache = index.cache;
  const bookList = new BookList();
  const gating = new MappedList(gateService);

  function readBook(): PlanBook {
    // The slices the informer's events named since the last read, not every slice (mark() notes them).
    return index.readNoted(() => slices.list(), recorded);
  }

  function at(name: 'release' | 'rsRelease' | 'rsRetry' | 'report', when: number | undefined, fn: () => void): void {
    timers[name]?.cancel();
    delete timers[name];
    if (when !== undefined && !stopping) timers[name] = clock.setTimer(fn, Math.max(0, when - clock.now()));
  }

  /** The plan of the sync starting now: book, gates and guard, one snapshot. */
  function decide(): Snapshot {
    const rv = sliceRv;
    const book = readBook();
    const directed = index.directedKeys();
    // A failing plan list (403, the CRD gone) is doubt: removals wait, and the wait does not run.
    // The very map the last sync programmed, with nothing held: no key came or went, nothing to guard.
    const g = directed === programmedFrom ? { held: [] } : guardRemovals(new Set(programmed.keys()), new Set(directed.keys()), pending, clock.now(), guard, 'services', !slices.failing);
    pending = g.pending;
    at('release', g.releaseAt, () => loop.markDirty());
    let keyOwners = directed;
    if (g.held.length > 0) {
      const withHeld = new Map(directed);
      for (const k of g.held) withHeld.set(k, programmed.get(k)!);
      keyOwners = withHeld;
    }
    programmed = keyOwners;
    programmedFrom = g.held.length > 0 ? undefined : directed;
    // A plan the controller is rewriting is incomplete, not wrong: its last good plan stays in the
    // kernel, and this node reports itself synced only below the rewrite's first slice, so the
    // controller shows it Waiting, not Frozen. Anything else unusable is reported frozen.
    const unusable = index.frozenOwners();
    latency.syncStarts(new Set(unusable.map((o) => o.uid)));
    const { synced: reportRv, frozenOwners } = belowRewrites(rv, unusable);
    const frozen = frozenOwners.map((o) => ({ owner: { uid: o.uid, virtualServer: o.virtualServer }, message: o.frozen! }));
    for (const k of g.held) frozen.push({ owner: keyOwners.get(k)!, message: g.message! });
    if (g.held.length > 0) log.warn({ op: 'guard', held: g.held.length, releaseAt: g.releaseAt }, g.message!);
    // In proportion to the change: the book's list patched where owners were re-read, gated and
    // health-applied again only there (./plan-list.ts).
    const gated = gating.map(bookList.update(book, index.takeChanges(), bookCache), gates);
    const services = health.apply(gated.list, gated.delta);
    // Only frozen owners hold keys without a plan entry (bookHeld over their part of the book).
    current = { rv: reportRv, services, servicesDelta: health.delta(), held: [...unusable.flatMap((o) => o.held).map(canonicalKey), ...g.held], keyOwners, frozen };
    return current;
  }

  // Health checks of this node's checked services (../health/): a flip syncs and reports.
  const health = createAgentHealth({
    node: opts.node, clock, log, ...(opts.checker ? { checker: opts.checker } : {}),
    onChange: () => { loop.markDirty(); void report(); writeHealth(); },
    // A reason changed without a flip: the record and the report follow (coalesced).
    onUpdate: () => { if (!timers.health) timers.health = clock.setTimer(() => { delete timers.health; writeHealth(); void report(); }, 250); },
  });
  const writeHealth = () => {
    if (!opts.stateFile) return;
    try { writeHealthRecord(healthFileOf(opts.stateFile), healthRecord(health.states(), new Date(clock.wallNow()))); } catch (err) { log.warn({ op: 'health', err: String(err) }, 'writing the health record failed'); }
  };

  const device = createLvsDevice({
    run: opts.run, node: opts.node, plan: () => current?.services ?? [], held: () => current?.held ?? [], logger: log, kernelRelease: release(),
    ...(opts.ha?.syncDaemon ? { connectionSync: true } : {}),
    // Beside the owner record (a hostPath in the chart): the node's own sysctl values, for release().
    ...(opts.stateFile ? { sysctlRecord: join(dirname(opts.stateFile), 'director-sysctls.json') } : {}),
    ...announcePolicy(() => current?.services ?? [], opts.node, (vip, directors) => clusterHa?.ha()?.active(vip, directors)),
  });
  const loop: SyncLoop = createSyncLoop({
    kernel: opts.kernel, node: opts.node, log, clock,
    // VIPs owned before a restart are retired unless wanted, even if lvs0 went meanwhile.
    retiringVips: recordedVips(record),
    plan: () => decide().services,
    held: () => current?.held ?? [],
    planDelta: () => current?.servicesDelta,
    vips: device,
    resyncIntervalMs: opts.resyncIntervalMs ?? 30_000,
    minIntervalMs: opts.minSyncIntervalMs ?? 0,
    ...(opts.drainTimeoutMs !== undefined ? { drainTimeoutMs: opts.drainTimeoutMs } : {}),
    ...(opts.metrics ? { metrics: opts.metrics } : {}),
    onResult: (r) => {
      const programmedNow = latency.syncEnded(r.kind !== 'retry', clock.wallNow());
      if (programmedNow.length) opts.metrics?.programmed(programmedNow);
      // One line per process: how a start went (after a restart, 0 operations is the norm).
      if (!lastSync) log.info({ op: 'firstSync', result: r.kind, ops: r.ops, services: current?.services.length ?? 0 }, 'first sync done');
      if (r.kind === 'ok') health.endSeed();
      lastSync = r; synced = current; saveRecord(); writeHealth(); void report();
    },
  });

  /** What the record on disk was made of: an equal map and the same retiring VIPs need no rebuild. */
  let saved: { keys: ReadonlyMap<string, KeyOwner>; retiring: string } | undefined;
  function saveRecord(): void {
    if (!opts.stateFile || !synced) return;
    const keys = adoptedKeys(synced.keyOwners, lastSync?.refused);
    const retiring = lastSync?.retiring ?? record?.retiringVips ?? [];
    const made = { keys, retiring: retiring.join() };
    if (saved && saved.retiring === made.retiring && sameKeyOwners(saved.keys, keys)) return;
    const next = clusterOwnerRecord(keys, new Date(clock.wallNow()), retiring);
    if (sameOwners(record, next)) { saved = made; return; }
    try {
      writeOwnerRecord(opts.stateFile, next);
      record = next;
      saved = made;
      recorded = recordedOwners(next);
    } catch (err) {
      log.warn({ op: 'record', err: String(err) }, 'writing the owner record failed');
    }
  }

  let rsDirty = true;
  let rsRunning: Promise<void> | undefined;
  /**
   * No report before the first real-server pass: until then rs.prepared is empty, and reporting
   * that would gate this node's DR/TUN pods to weight 0 on every director (./realservers.ts)
   * although they are still prepared from before a restart: connections refused until the pass
   * reports them again.
   */
  let rsPassDone = false;
  let rsIncomplete = false;
  /** Passes start with the loop, once plans and reports are read (events before only mark). */
  let started = false;
  const rsRetryMs = opts.realServerRetryMs ?? 5_000;
  function markRealServers(): void {
    if (stopping || !started) return;
    at('rsRetry', undefined, markRealServers);
    rsDirty = true;
    rsRunning ??= (async () => {
      while (rsDirty) {
        rsDirty = false;
        await realServerPass().catch((err) => { rs.errors = [{ message: (err as Error).message ?? String(err) }]; log.error({ op: 'realserver', err }, 'real-server pass failed'); });
        rsPassDone = true;
        await report();
      }
    })().finally(() => {
      rsRunning = undefined;
      // A pass that left errors, or wanted addresses not (yet) found, is tried again on its own.
      if (rs.errors.length > 0 || rsIncomplete) at('rsRetry', clock.now() + rsRetryMs, markRealServers);
    });
  }

  async function realServerPass(): Promise<void> {
    const book = readBook();
    const plans = [...book.owners.values()].flatMap((o) => (o.plan ? [{ owner: { uid: o.uid, virtualServer: o.virtualServer }, services: ownerServices(o.plan, bookCache) }] : []));
    const local = localRealServers(plans, opts.node);
    const wanted = wantedEntries(local);
    const g = guardRemovals(new Set(rs.wanted.keys()), new Set(wanted.keys()), rs.pending, clock.now(), guard, 'real-server preparations');
    rs.pending = g.pending;
    at('rsRelease', g.releaseAt, markRealServers);
    rs.frozen = [];
    for (const k of g.held) {
      const w = rs.wanted.get(k)!;
      wanted.set(k, w);
      const e = local.get(w.address) ?? { vips: [], owners: [] };
      if (!e.vips.some((x) => x.vip === w.vip.vip && x.mode === w.vip.mode)) e.vips.push(w.vip);
      local.set(w.address, e);
      for (const owner of w.owners) rs.frozen.push({ owner, message: g.message! });
    }
    rs.wanted = wanted;
    rs.wantedVips = new Set([...wanted.values()].map((w) => w.vip.vip));
    const directed = new Set(bookServices(book, bookCache).filter((s) => s.directors.includes(opts.node)).map((s) => s.vip));
    for (const k of bookHeld(book)) { const p = parseServiceKey(k); if (p) directed.add(p.vip); }
    const keepUnwanted = g.held.length > 0 || [...book.owners.values()].some((o) => o.frozen && !o.plan);
    const r = await pass.run({ local, directed, keepUnwanted });
    rs.prepared = r.prepared;
    rs.errors = r.errors;
    rs.local = local;
    rsIncomplete = r.incomplete;
  }

  /**
   * The election: a membership change flips announcements at once (the director's quick path, no
   * read-back), then the next sync checks the director (markDirector: lvs0 listed, which re-applies
   * the announcements as decided) and the report says who announces what.
   */
  function startElection(settings: ClusterHaSettings): Promise<ClusterHa> {
    const onChange = () => void device.reannounce(true)
      .catch((err) => log.error({ op: 'announce', err: String(err) }, 'quick announce failed'))
      .finally(() => { loop.markDirector(); void report(); });
    return startClusterHa({
      settings, node: opts.node, kernel: opts.kernel, log, clock, onChange,
      reports: () => reports.list(),
      // Data-path health: a director whose last sync failed gives its VIPs to the others.
      healthy: () => lastSync !== undefined && lastSync.kind !== 'retry',
      // A node being drained gives them away too, but keeps them if no one else can take them.
      ...(nodeYielding ? { yielding: nodeYielding.yielding } : {}),
    });
  }

  /**
   * Announced VIPs are announced again periodically (keepalived's garp_master_refresh): a neighbour
   * that followed another director (a partition, a restart elsewhere) comes back within the period.
   */
  function refreshAnnouncements(): void {
    if (stopping) return;
    timers.announce = clock.setTimer(() => {
      void device.reannounce(true).catch((err) => log.warn({ op: 'announce', err: String(err) }, 'periodic announce failed'));
      refreshAnnouncements();
    }, opts.announceRefreshMs ?? 10_000);
  }

  let reportRunning: Promise<void> | undefined;
  let reportAgain = false;
  /** Writes the node's report when its content changed; calls while one runs coalesce into one more. */
  function report(): Promise<void> {
    if (reportRunning) { reportAgain = true; return reportRunning; }
    reportRunning = (async () => {
      do { reportAgain = false; await writeReport(); } while (reportAgain);
    })().finally(() => { reportRunning = undefined; });
    return reportRunning;
  }

  async function writeReport(): Promise<void> {
    // Only a finished sync speaks for the plan; the pass reports when it is done (rsPassDone).
    if (!rsPassDone || !synced || stopping) return;
    const body = reportFor(opts.node, {
      syncedResourceVersion: synced.rv, sync: lastSync, keyOwners: synced.keyOwners,
      frozen: [...synced.frozen, ...rs.frozen], prepared: preparedEntries(rs.prepared, rs.local),
      prepErrors: rs.errors, addressOwners: new Map([...rs.local].map(([a, l]) => [a, l.owners])),
      health: { checked: health.checked(), down: health.down() },
      announced: device.announced(),
      ...(opts.ha ? { peer: { address: opts.ha.listen.address, port: opts.ha.listen.port } } : {}),
      ...(nodeYielding?.reason() ? { yielding: nodeYielding.reason() } : {}),
    });
    if (!(await writer.write(body))) at('report', clock.now() + rsRetryMs, () => void report());
  }

  /**
   * Gates follow the reports' prepared lists; a change there changes weights. Only the report that
   * changed is read; a deleted one keeps its entries (./realservers.ts preparedByNode).
   */
  function onReport(obj: KubeObject, deleted = false): void {
    clusterHa?.reportChanged(obj, deleted);
    if (obj.metadata.name === opts.node) {
      if (deleted) writer.forget();
      void report();
    }
    if (deleted) return;
    const next = preparedByNode([obj], gates);
    const node = obj.metadata.name;
    const was = gates.get(node), now = next.get(node);
    // Kept while equal (our own report comes back after every sync): gating is re-done where the
    // gates are new. No entry and an empty one gate alike (realservers.ts), so a node's first report
    // with nothing prepared does not remap the whole plan.
    if ((was?.size ?? 0) !== (now?.size ?? 0) || [...(now ?? [])].some((k) => !was!.has(k))) { gates = next; loop.markDirty(); }
  }

  // A plan change marks the sync loop, and the real-server pass unless it cannot matter to it; both
  // are coalesced and rate-limited, and a pass that finds nothing to do writes nothing (our own
  // report coming back changes no gate and writes nothing).
  const mark = (obj: KubeObject, deleted = false, old?: KubeObject) => {
    // The first list's slices were programmed by a previous process, or changed while none ran:
    // measuring them from their change time would count the restart (kube-proxy does not record
    // its initial sync either). Changes from then on, relists included, are measured.
    if (deleted) latency.deleted(obj.metadata.name); else if (slices.synced) latency.seen(obj.metadata);
    index.note(obj, deleted);
    const rv = obj.metadata.resourceVersion ?? '';
    if (compareResourceVersions(rv, sliceRv) !== -1) sliceRv = rv;
    loop.markDirty();
    // A NAT service's endpoints changing, or a NAT service coming or going, is no work for the pass,
    // which reads every plan.
    const outside = old ? realServersUnaffected(old, obj) : sliceOutsidePass(obj, rs.wantedVips, deleted ? 'delete' : 'add');
    if (!outside) markRealServers();
  };
  slices.addHandlers({ onAdd: (o) => mark(o), onUpdate: (old, o) => mark(o, false, old), onDelete: (o) => mark(o, true) });
  reports.addHandlers({ onAdd: (o) => onReport(o), onUpdate: (_old, o) => onReport(o), onDelete: (o) => onReport(o, true) });

  return {
    plan: () => current?.services ?? [],
    synced: () => lastSync !== undefined,
    health,
    announcing: () => ({ announced: device.announced(), members: clusterHa?.ha()?.members() ?? [] }),
    owned: () => {
      const owners = current?.keyOwners;
      if (!owners) return new Map();
      if (ownedView?.of !== owners) ownedView = { of: owners, map: new Map([...owners].map(([k, o]) => [k, o.virtualServer])) };
      return ownedView.map;
    },
    async run(signal) {
      const informers = [slices.run(signal), reports.run(signal), ...(nodeYielding ? [nodeYielding.run(signal)] : [])];
      const aborted = new Promise<void>((r) => signal.addEventListener('abort', () => r(), { once: true }));
      // Gates need the reports: programming before they are read would set prepared pods to 0.
      await Promise.race([Promise.all([slices.whenSynced(), reports.whenSynced()]), aborted]);
      if (!signal.aborted) {
        log.info({ op: 'start', planSlices: slices.size, agentReports: reports.size }, 'plans and reports synced; programming');
        // Checked real servers the kernel has in rotation stay there until checks say otherwise.
        try { health.seedFrom(await opts.kernel.dump()); } catch (err) { log.warn({ op: 'health', err: String(err) }, 'reading the kernel for health seeds failed: checked real servers start down'); }
        if (opts.ha) {
          const listen = `${opts.ha.listen.address}:${opts.ha.listen.port}`;
          clusterHa = await startElection(opts.ha).catch((err: unknown) => { throw new Error(`--peer-listen ${listen}: cannot take director heartbeats there (${String(err)})`); });
        }
        loop.start();
        started = true;
        markRealServers();
        // Only with the election: the refresh exists to move clients back after a partition between
        // directors heals; a lone director has no one to take its clients (and each announcement is
        // one process per VIP, which a node with thousands of VIPs should not pay every 10 s).
        if (opts.ha) refreshAnnouncements();
        await aborted;
      }
      // Leaving rules and real-server preparation in place: a restart must not drop connections.
      // Each step is timed and logged at the end: the stop runs against the kubelet's grace period.
      stopping = true;
      const took: Record<string, number> = {};
      const timed = async (step: string, p: () => Promise<unknown> | undefined) => { const t = clock.now(); await p(); took[step] = Math.round(clock.now() - t); };
      const busy = { sync: loop.running, realServerPass: rsRunning !== undefined, report: reportRunning !== undefined };
      await timed('election', () => clusterHa?.close());
      health.close();
      for (const t of Object.values(timers)) t?.cancel();
      await timed('sync', () => loop.stop());
      await timed('realServerPass', () => rsRunning);
      // Nothing of ours left to serve (no VIP bound): leave the node as it was found, so an
      // uninstall after the VirtualServers are gone leaves no lvs0 and the node's own sysctls.
      if (started) await timed('release', () => device.release().catch((err: unknown) => log.warn({ op: 'release', err: String(err) }, 'could not release the director role')));
      await timed('report', () => reportRunning);
      await timed('informers', () => Promise.all(informers));
      log.info({ op: 'stop', ms: took, busy }, 'agent work stopped');
    },
  };
}
