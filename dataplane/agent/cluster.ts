// lvs-agent run: the agent in a cluster. Watch events only mark work; two loops do it — the IPVS
// sync loop (director role) and a real-server pass (prepare local DR/TUN pods and hosts, and the
// node's return path for pods that serve a VIP it directs: ./return-path.ts) — and
// after either, each VirtualServer this node takes part in gets this node's report in
// status.nodes (server-side apply, one field manager per node, written only when it changed).
// While the API server is unreachable nothing is torn down: the informers keep their last state
// and the kernel keeps serving it.
import { release } from 'node:os';
import type { Logger } from 'pino';
import type { PlanService } from '../../api/plan.ts';
import { realClock, type Clock, type Timer } from '../../kube/clock.ts';
import type { KubeApi } from '../../kube/api.ts';
import { Informer } from '../../kube/informer.ts';
import { objectKey, PODS, VIRTUAL_SERVERS, type KubeObject, type NodeReport, type VirtualServerObject } from '../../kube/types.ts';
import type { NetnsTarget, Runner } from '../exec.ts';
import { describeTarget } from '../exec.ts';
import type { IpvsKernel } from '../ipvs/types.ts';
import { syncRealServer } from '../realserver/prepare.ts';
import type { RealServerVip } from '../realserver/plan.ts';
import { createSyncLoop, type SyncLoop } from '../sync/loop.ts';
import type { SyncResult } from '../sync/sync.ts';
import { localRealServers, nodeReport, planFromVirtualServer, sameReport, syncFailures, type PrepError } from './cluster-plan.ts';
import { createLvsDevice } from './lvs-device.ts';
import { createNetnsFinder, type NetnsFinder } from './netns.ts';
import { syncReturnPath } from './return-path.ts';

export interface ClusterAgentOptions {
  api: KubeApi;
  node: string;
  kernel: IpvsKernel;
  run: Runner;
  log: Logger;
  clock?: Clock;
  finder?: NetnsFinder;
  /** Periodic full resync of the kernel (undoes outside edits). Default 30 s. */
  resyncIntervalMs?: number;
  drainTimeoutMs?: number;
  /** Called with the plan after every sync (e.g. to record owners for `lvs-agent show`). */
  onPlan?: (services: PlanService[]) => void;
  /** How soon a real-server pass that left errors is tried again. Default 5 s. */
  realServerRetryMs?: number;
  /** Where the return-path record lives (see ./return-path.ts); default under /run/lvs-agent. */
  returnPathRecord?: string;
}

export interface ClusterAgent {
  run(signal: AbortSignal): Promise<void>;
  /** The plan the sync loop programs now (this node's share is picked by the syncer). */
  plan(): PlanService[];
}

interface RealServerState {
  /** Addresses prepared in their namespace (verified by read-back). */
  prepared: Set<string>;
  /** Namespaces we prepared, with what they hold, to undo when no longer needed. */
  byTarget: Map<string, { target: NetnsTarget; vips: RealServerVip[] }>;
  errors: PrepError[];
}

export function createClusterAgent(opts: ClusterAgentOptions): ClusterAgent {
  const clock = opts.clock ?? realClock;
  const log = opts.log.child({ node: opts.node });
  const vsInformer = new Informer<VirtualServerObject>({ api: opts.api, resource: VIRTUAL_SERVERS, clock, logger: log });
  const podInformer = new Informer<KubeObject>({ api: opts.api, resource: PODS, clock, logger: log, fieldSelector: `spec.nodeName=${opts.node}` });
  const finder = opts.finder ?? createNetnsFinder(opts.run, log);
  const rs: RealServerState = { prepared: new Set(), byTarget: new Map(), errors: [] };
  let lastSync: SyncResult | undefined;
  /** The generation of each VirtualServer the running sync read its plan from, and the last finished one. */
  let planning = new Map<string, number>();
  let synced = new Map<string, number>();
  const written = new Map<string, NodeReport | null>();
  const plan = () => vsInformer.list().flatMap(planFromVirtualServer);
  const syncPlan = () => {
    const list = vsInformer.list();
    planning = new Map(list.map((vs) => [objectKey(vs), vs.status?.observedGeneration ?? 0]));
    return list.flatMap(planFromVirtualServer);
  };

  const loop: SyncLoop = createSyncLoop({
    kernel: opts.kernel, node: opts.node, plan: syncPlan, log, clock,
    vips: createLvsDevice({ run: opts.run, node: opts.node, plan, logger: log, kernelRelease: release() }),
    resyncIntervalMs: opts.resyncIntervalMs ?? 30_000,
    ...(opts.drainTimeoutMs !== undefined ? { drainTimeoutMs: opts.drainTimeoutMs } : {}),
    onResult: (r) => { lastSync = r; synced = planning; opts.onPlan?.(plan()); void report(); },
  });

  let rsDirty = true;
  let rsRunning: Promise<void> | undefined;
  /**
   * No report before the first real-server pass: until then rs.prepared is empty, and reporting
   * that would gate this node's DR/TUN pods to weight 0 (planFromVirtualServer) although they are
   * still prepared from before a restart: connections refused until the pass reports them again.
   */
  let rsPassDone = false;
  /** A pass that left errors is tried again after rsRetryMs even when nothing else changes. */
  let rsRetry: Timer | undefined;
  let stopping = false;
  const rsRetryMs = opts.realServerRetryMs ?? 5_000;
  function markRealServers(): void {
    if (stopping) return;
    rsRetry?.cancel();
    rsRetry = undefined;
    rsDirty = true;
    rsRunning ??= (async () => {
      while (rsDirty) {
        rsDirty = false;
        await prepareLocal().catch((err) => { rs.errors = [{ message: (err as Error).message ?? String(err) }]; log.error({ op: 'realserver', err }, 'real-server pass failed'); });
        rsPassDone = true;
        await report();
      }
    })().finally(() => {
      rsRunning = undefined;
      if (rs.errors.length > 0 && !stopping) rsRetry = clock.setTimer(markRealServers, rsRetryMs);
    });
  }

  async function prepareLocal(): Promise<void> {
    const want = localRealServers(vsInformer.list(), opts.node);
    const where = await finder.find([...want.keys()]);
    const desired = new Map<string, { target: NetnsTarget; vips: RealServerVip[]; addresses: string[] }>();
    for (const [address, vips] of want) {
      const target = where.get(address);
      if (!target) continue; // not (yet) on this node: the pod may still be starting
      const k = describeTarget(target);
      const d = desired.get(k) ?? { target, vips: [], addresses: [] };
      for (const v of vips) if (!d.vips.some((x) => x.vip === v.vip && x.mode === v.mode)) d.vips.push(v);
      d.addresses.push(address);
      desired.set(k, d);
    }
    const prepared = new Set<string>();
    const errors: PrepError[] = [];
    for (const [k, d] of desired) {
      // The search may be a while ago (or cached): a pod gone and its pid reused would have us
      // prepare — and later clean up — some other namespace. Re-check right before preparing.
      const present = await finder.confirm(d.target, d.addresses);
      if (present.length === 0) {
        // Search again next pass. A pid that lost them may name another process's namespace now:
        // never undo anything there (what we added went away with the old process's namespace).
        if (d.target.kind === 'pid') rs.byTarget.delete(k);
        rsDirty = true;
        continue;
      }
      d.addresses = present;
      try {
        await syncRealServer({ run: opts.run, logger: log }, d.target, d.vips);
        rs.byTarget.set(k, { target: d.target, vips: d.vips });
        for (const a of d.addresses) prepared.add(a);
      } catch (err) {
        for (const a of d.addresses) finder.forget(a);
        errors.push({ addresses: d.addresses, message: `${k}: ${(err as Error).message}` });
      }
    }
    // Pods serving a VIP this node directs answer from an address local to the node: their
    // uplinks must accept it (./return-path.ts) before they count as prepared.
    const directed = new Set(plan().filter((s) => s.directors.includes(opts.node)).map((s) => s.vip));
    const returning = [...desired.values()].filter((d) => d.target.kind !== 'host' && d.vips.some((v) => directed.has(v.vip)) && d.addresses.some((a) => prepared.has(a)));
    try {
      await syncReturnPath({ run: opts.run, log, ...(opts.returnPathRecord ? { recordPath: opts.returnPathRecord } : {}) }, returning.map((d) => d.target));
    } catch (err) {
      for (const d of returning) for (const a of d.addresses) prepared.delete(a);
      errors.push({ addresses: returning.flatMap((d) => d.addresses), message: `return path: ${(err as Error).message}` });
    }
    for (const [k, was] of rs.byTarget) {
      if (desired.has(k)) continue;
      // No longer a real server of ours: take back exactly what we added (gone namespaces are fine).
      await syncRealServer({ run: opts.run, logger: log }, was.target, []).catch(() => undefined);
      rs.byTarget.delete(k);
    }
    rs.prepared = prepared;
    rs.errors = errors;
  }

  async function report(): Promise<void> {
    if (!rsPassDone) return; // the pass reports when it is done
    const state = { ...syncFailures(lastSync), prepared: [...rs.prepared], prepErrors: rs.errors };
    const present = vsInformer.list();
    // What we last wrote, only for VirtualServers that still exist (one entry each, at most).
    const keys = new Set(present.map(objectKey));
    for (const k of written.keys()) if (!keys.has(k)) written.delete(k);
    for (const vs of present) {
      const key = objectKey(vs);
      // Only a finished sync of this very generation speaks for it; the next sync reports it.
      if (synced.get(key) !== (vs.status?.observedGeneration ?? 0)) continue;
      const r = nodeReport(vs, opts.node, state);
      const stored = vs.status?.nodes?.find((n) => n.name === opts.node);
      if (sameReport(r, stored) || (written.has(key) && sameReport(r, written.get(key) ?? undefined))) continue;
      if (!r && !stored) continue;
      const body = {
        apiVersion: 'lvs.dev/v1alpha1', kind: 'VirtualServer',
        metadata: { name: vs.metadata.name, namespace: vs.metadata.namespace },
        // An empty list gives up this manager's entry (server-side apply removes what we no longer send).
        status: { nodes: r ? [{ ...r, lastUpdateTime: new Date(clock.wallNow()).toISOString().replace(/\.\d+Z$/, 'Z') }] : [] },
      };
      try {
        await opts.api.applyStatus(VIRTUAL_SERVERS, vs.metadata.namespace, vs.metadata.name, body, `lvs-agent/${opts.node}`);
        written.set(key, r ?? null);
      } catch (err) {
        log.warn({ op: 'report', vs: key, err: String(err) }, 'status report failed; will retry');
        written.delete(key);
      }
    }
  }

  // Any change marks both loops; they are coalesced and rate-limited, and a pass that finds
  // nothing to do writes nothing (our own status reports coming back settle after one round).
  const mark = () => { loop.markDirty(); markRealServers(); };
  const onVs = { onAdd: mark, onUpdate: mark, onDelete: mark };
  vsInformer.addHandlers(onVs);
  podInformer.addHandlers({ onAdd: markRealServers, onUpdate: markRealServers, onDelete: markRealServers });

  return {
    plan,
    async run(signal) {
      const informers = [vsInformer.run(signal), podInformer.run(signal)];
      await vsInformer.whenSynced();
      log.info({ op: 'start', virtualServers: vsInformer.size }, 'VirtualServers synced; programming');
      loop.start();
      markRealServers();
      await new Promise<void>((r) => signal.addEventListener('abort', () => r(), { once: true }));
      // Leaving rules and real-server preparation in place: a restart must not drop connections.
      stopping = true;
      rsRetry?.cancel();
      await loop.stop();
      await rsRunning;
      await Promise.all(informers);
    },
  };
}
