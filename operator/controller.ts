// The controller: four informers feed the World (resolver index + reverse indexes), which maps
// every event to the VirtualServer keys it can affect; two more hold what it published
// (PlanSlices) and what the agents report (AgentReports). Keys go through the work queue to
// reconcile, which publishes the plan and writes the status. Only the leader runs reconciles;
// every replica keeps its caches warm, so a standby that takes over starts from synced caches.
import type { Logger } from 'pino';
import pino from 'pino';
import type { BackoffPolicy } from '../kube/backoff.ts';
import { realClock, type Clock } from '../kube/clock.ts';
import { startHttp } from '../kube/http.ts';
import type { KubeApi } from '../kube/api.ts';
import { EventRecorder } from '../kube/events.ts';
import { Informer } from '../kube/informer.ts';
import { parseAgentReport } from '../api/agent-report.ts';
import type { PlanSliceObject } from '../api/plan-slice.ts';
import { publishedSlice, type PublishedSlice } from './publish.ts';
import {
  AGENT_REPORTS, ENDPOINT_SLICES, NAMESPACES, NODES, objectKey, PLAN_SLICES, SERVICE_CIDRS, SERVICES, VIP_POOLS, VIRTUAL_SERVERS,
  type KubeObject, type NodeObject, type ResourceType, type VirtualServerObject,
} from '../kube/types.ts';
import { LeaderElector, type LeaderElectionConfig } from '../kube/leader.ts';
import { createMetrics, type Metrics } from './metrics.ts';
import { WorkQueue, type Lane, type ReconcileResult } from './queue.ts';
import { StepTrace } from './trace.ts';
import { reconcile } from './reconcile.ts';
import { keysToMark, Reports } from './reports.ts';
import { ownerKeyOf, PublishedSlices } from './slices.ts';
import { POOL_KEY_PREFIX, poolKey, reconcilePool, type PoolObject } from './pools.ts';
import { createLock, LB_KEY_PREFIX, lbKey, reconcileLoadBalancer } from './lb-reconcile.ts';
import { SERVICE_LABEL, servedHere, type ServiceObject } from './loadbalancer.ts';
import { jsonEqual } from './status.ts';
import { World } from './world.ts';

/** Runs in a row that may leave a key's status to the next run (a newer state waiting). */
const MAX_STATUS_DEFERRALS = 3;

export interface ControllerOptions {
  api: KubeApi;
  /** This replica's name in the Lease and in Events (the pod name in a cluster). */
  identity: string;
  clock?: Clock;
  logger?: Logger;
  random?: () => number;
  /** Concurrent reconciles (of different keys). */
  workers?: number;
  /** false: no election, this replica always writes (one replica, or tests). */
  leaderElection: LeaderElectionConfig | false;
  informerBackoff?: BackoffPolicy;
  retryBackoff?: BackoffPolicy;
  /** Serve /healthz, /readyz, /metrics on this port (0: any free port). */
  http?: { port: number; host?: string };
  /** Serve LoadBalancer Services without a loadBalancerClass too (this is the cluster's default load balancer). */
  defaultLoadBalancerClass?: boolean;
  defaultMetrics?: boolean;
  /** A reconcile that took longer (queue wait included) is logged with its steps (trace.ts); default 1000 ms. */
  slowReconcileMs?: number;
}

export class Controller {
  readonly queue: WorkQueue;
  readonly world: World;
  readonly metrics: Metrics;
  readonly virtualServers: Informer<VirtualServerObject>;
  /** PlanSlices in their compact form (publish.ts PublishedSlice: a content hash, not the entries). */
  readonly planSlices: Informer<PublishedSlice>;
  readonly agentReports: Informer<KubeObject>;
  readonly pools: Informer<PoolObject>;
  readonly services: Informer<ServiceObject>;
  readonly #lbLock = createLock();
  readonly #lbAllocations = new Map<string, string[]>();
  /** The slices as published (cache plus our unseen writes), by owner. */
  readonly published = new PublishedSlices();
  readonly reports = new Reports();
  /** uid -> namespace/name of every cached VirtualServer (to map a report's exceptions to keys). */
  readonly #uidKeys = new Map<string, string>();
  /** Keys whose last runs in a row left the status to the next one (#superseded), and how many. */
  readonly #statusDeferred = new Map<string, number>();
  readonly #informers: Informer<KubeObject>[];
  readonly #o: ControllerOptions;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #elector: LeaderElector | undefined;
  readonly #events: EventRecorder;
  readonly #stop = new AbortController();
  #running: Promise<unknown>[] = [];
  #lead: { abort: AbortController; workers: Promise<void>[] } | undefined;
  #http: { port: number; close(): Promise<void> } | undefined;
  /** Status writes accepted by the API server, per existing key (tests count them; pruned on delete). */
  readonly statusWrites = new Map<string, number>();

  constructor(opts: ControllerOptions) {
    this.#o = opts;
    this.#clock = opts.clock ?? realClock;
    this.#log = opts.logger ?? pino({ level: 'silent' });
    this.queue = new WorkQueue({ clock: this.#clock, ...(opts.retryBackoff ? { backoff: opts.retryBackoff } : {}), ...(opts.random ? { random: opts.random } : {}) });
    const informer = <T extends KubeObject>(resource: ResourceType, transform?: (o: KubeObject) => KubeObject) => new Informer<T>({
      api: opts.api, resource, clock: this.#clock, logger: this.#log, ...(transform ? { transform } : {}),
      ...(opts.informerBackoff ? { backoff: opts.informerBackoff } : {}), ...(opts.random ? { random: opts.random } : {}),
      onError: (op) => this.metrics.errors.inc({ op }),
    });
    this.virtualServers = informer<VirtualServerObject>(VIRTUAL_SERVERS);
    const services = informer<ServiceObject>(SERVICES), slices = informer(ENDPOINT_SLICES), nodes = informer<NodeObject>(NODES);
    this.planSlices = informer<PublishedSlice & KubeObject>(PLAN_SLICES, (o) => publishedSlice(o as unknown as PlanSliceObject) as PublishedSlice & KubeObject);
    this.agentReports = informer<KubeObject>(AGENT_REPORTS);
    this.pools = informer<PoolObject>(VIP_POOLS);
    this.services = services;
    const namespaces = informer(NAMESPACES), serviceCIDRs = informer(SERVICE_CIDRS);
    // Every informer must sync before the first reconcile: a VIPPool or Namespace list that has
    // not arrived yet would read as "nothing is granted" and withdraw every plan.
    this.#informers = [this.virtualServers, services, slices, nodes, this.planSlices, this.agentReports, this.pools, namespaces, serviceCIDRs] as Informer<KubeObject>[];
    this.world = new World((k) => this.virtualServers.get(k));
    this.metrics = createMetrics({ queueDepth: () => this.queue.length, conditions: () => this.#conditionCounts(), isLeader: () => this.isLeader() }, { defaultMetrics: opts.defaultMetrics ?? false });
    this.#events = new EventRecorder({
      api: opts.api, clock: this.#clock, logger: this.#log, controller: 'lvs.dev/operator', instance: opts.identity,
      onRecorded: (ev, ok) => { this.metrics.events.inc({ type: ev.type, outcome: ok ? 'ok' : 'failed' }); if (!ok) this.metrics.errors.inc({ op: 'event' }); },
    });
    this.#wire(services, slices, nodes);
    this.#wireAdmission(namespaces, serviceCIDRs);
    this.#wirePublished();
    if (opts.leaderElection) {
      this.#elector = new LeaderElector({
        ...opts.leaderElection, api: opts.api, clock: this.#clock, logger: this.#log, identity: opts.identity,
        ...(opts.random ? { random: opts.random } : {}),
        onStartedLeading: () => this.#startLeading(),
        onStoppedLeading: () => this.#stopLeading(),
        onError: () => this.metrics.errors.inc({ op: 'lease' }),
      });
    }
  }

  #mark(keys: string[], lane: Lane = 'change'): void {
    for (const k of keys) this.queue.add(k, lane);
  }

  #wire(services: Informer<KubeObject>, slices: Informer<KubeObject>, nodes: Informer<NodeObject>): void {
    const uid = (vs: VirtualServerObject, present: boolean) => {
      if (!vs.metadata.uid) return;
      if (present) this.#uidKeys.set(vs.metadata.uid, objectKey(vs)); else this.#uidKeys.delete(vs.metadata.uid);
    };
    // An owned VirtualServer's status decides its Service's ingress.
    const lbOf = (vs: VirtualServerObject, lane: Lane = 'change') => {
      const svc = vs.metadata.labels?.[SERVICE_LABEL];
      if (svc) this.queue.add(lbKey(vs.metadata.namespace ?? '', svc), lane);
    };
    // A deleted VirtualServer frees its addresses: Services still waiting for one try again.
    this.virtualServers.addHandlers({ onAdd: lbOf, onUpdate: (_, vs) => lbOf(vs, 'refresh'), onDelete: (vs) => { lbOf(vs); this.#markLoadBalancers(); } });
    this.virtualServers.addHandlers({
      onAdd: (vs) => { uid(vs, true); this.#mark(this.world.virtualServerChanged(objectKey(vs), vs)); },
      onUpdate: (old, vs) => {
        uid(vs, true);
        // Only status (ours, or someone overwriting it) changed: neighbours are unaffected unless
        // the claims changed (world.ts claimsChanged says which), and the key is looked at again
        // behind the changes (queue.ts lanes).
        const key = objectKey(vs);
        if (!jsonEqual(old.spec, vs.spec) || old.metadata.creationTimestamp !== vs.metadata.creationTimestamp) this.#mark(this.world.virtualServerChanged(key, vs));
        else if (!jsonEqual(old.status?.claims, vs.status?.claims)) this.#mark(this.world.claimsChanged(key, old, vs));
        this.queue.add(key, 'refresh');
      },
      onDelete: (vs) => {
        uid(vs, false);
        this.statusWrites.delete(objectKey(vs));
        this.#statusDeferred.delete(objectKey(vs));
        // The key is reconciled with no VirtualServer: its slices are deleted.
        this.#mark(this.world.virtualServerChanged(objectKey(vs), undefined));
      },
    });
    services.addHandlers({
      onAdd: (o) => this.#mark(this.world.serviceChanged(o, false)),
      onUpdate: (_, o) => this.#mark(this.world.serviceChanged(o, false)),
      onDelete: (o) => this.#mark(this.world.serviceChanged(o, true)),
    });
    const lb = (old: ServiceObject | undefined, svc: ServiceObject) => {
      const dc = this.#o.defaultLoadBalancerClass ?? false;
      if (servedHere(old, dc) || servedHere(svc, dc)) this.queue.add(lbKey(svc.metadata.namespace ?? '', svc.metadata.name));
    };
    services.addHandlers({ onAdd: (s) => lb(undefined, s), onUpdate: (old, s) => lb(old, s), onDelete: (s) => lb(s, s) });
    slices.addHandlers({
      onAdd: (o) => this.#mark(this.world.endpointSliceChanged(o, false)),
      onUpdate: (_, o) => this.#mark(this.world.endpointSliceChanged(o, false)),
      onDelete: (o) => this.#mark(this.world.endpointSliceChanged(o, true)),
    });
    const nodeChanged = (name: string, n: NodeObject | undefined) => {
      const keys = this.world.nodeChanged(name, n);
      if (keys.length) this.#log.debug({ node: name, op: 'map', marked: keys.length }, 'node change affects VirtualServers');
      this.#mark(keys);
    };
    nodes.addHandlers({
      onAdd: (n) => nodeChanged(n.metadata.name, n),
      onUpdate: (_, n) => nodeChanged(n.metadata.name, n),
      onDelete: (n) => nodeChanged(n.metadata.name, undefined),
    });
  }

  /** Pools, namespaces (their labels) and service CIDRs decide which VIPs are admitted. */
  #wireAdmission(namespaces: Informer<KubeObject>, serviceCIDRs: Informer<KubeObject>): void {
    const pool = (p: KubeObject, deleted: boolean) => {
      this.#mark(this.world.poolChanged(p, deleted));
      // An overlap settled or created changes other pools' status too; a Service left without an
      // address may get one now.
      for (const q of this.pools.list()) this.queue.add(poolKey(q.metadata.name));
      this.#markLoadBalancers();
    };
    this.pools.addHandlers({
      onAdd: (p) => pool(p, false),
      onUpdate: (old, p) => (jsonEqual(old.spec, p.spec) ? this.queue.add(poolKey(p.metadata.name), 'refresh') : pool(p, false)),
      onDelete: (p) => pool(p, true),
    });
    namespaces.addHandlers({
      onAdd: (n) => this.#mark(this.world.namespaceChanged(n, false)),
      onUpdate: (_, n) => this.#mark(this.world.namespaceChanged(n, false)),
      onDelete: (n) => this.#mark(this.world.namespaceChanged(n, true)),
    });
    serviceCIDRs.addHandlers({
      onAdd: (c) => this.#mark(this.world.serviceCIDRChanged(c, false)),
      onUpdate: (_, c) => this.#mark(this.world.serviceCIDRChanged(c, false)),
      onDelete: (c) => this.#mark(this.world.serviceCIDRChanged(c, true)),
    });
  }

  /**
   * A slice changed: its owner is reconciled unless the event only echoes our own write (someone
   * else's edit or deletion is repaired). A report changed: only the VirtualServers it can
   * affect are marked (reports.ts keysToMark says which, and what that costs).
   */
  #wirePublished(): void {
    const slice = (s: PublishedSlice, deleted: boolean) => {
      const owner = ownerKeyOf(s);
      if (!this.published.observe(s, deleted) && owner) this.queue.add(owner, 'refresh');
    };
    this.planSlices.addHandlers({ onAdd: (s) => slice(s, false), onUpdate: (_, s) => slice(s, false), onDelete: (s) => slice(s, true) });
    const plans = {
      ownersBetween: (lo: bigint, hi: bigint) => this.published.ownersBetween(lo, hi),
      owners: () => this.published.owners(),
      directors: (owner: string) => this.published.directors(owner),
      keyOfUid: (u: string) => this.#uidKeys.get(u),
    };
    const report = (node: string, obj: KubeObject | undefined) => {
      const parsed = obj ? parseAgentReport(obj) : undefined;
      if (parsed && !parsed.ok) {
        this.metrics.errors.inc({ op: 'report' });
        this.#log.warn({ node, op: 'report', field: parsed.field, err: parsed.message }, 'unreadable AgentReport: its node counts as not reporting');
      }
      // What the agents report changes status (Programmed, health), never a plan: a refresh.
      this.#mark(keysToMark(this.reports.set(node, parsed?.ok ? parsed.value : undefined), plans), 'refresh');
    };
    this.agentReports.addHandlers({
      onAdd: (r) => report(r.metadata.name, r), onUpdate: (_, r) => report(r.metadata.name, r), onDelete: (r) => report(r.metadata.name, undefined),
    });
  }

  isLeader(): boolean {
    return this.#elector ? this.#elector.isLeader() : this.#lead !== undefined;
  }

  synced(): boolean {
    return this.#informers.every((i) => i.synced);
  }

  /** Synced, nothing queued, nothing in flight (delayed retries aside). */
  idle(): boolean {
    return this.synced() && this.queue.isIdle();
  }

  get httpPort(): number | undefined {
    return this.#http?.port;
  }

  async start(): Promise<void> {
    const signal = this.#stop.signal;
    if (this.#o.http) {
      this.#http = await startHttp({ healthy: () => !signal.aborted, ready: () => this.synced(), registry: this.metrics.registry }, this.#o.http.port, this.#o.http.host);
    }
    this.#running = this.#informers.map((i) => i.run(signal));
    if (this.#elector) this.#running.push(this.#elector.run(signal));
    else this.#startLeading();
    this.#log.info({ op: 'start', identity: this.#o.identity }, 'controller started');
  }

  /** Graceful stop: finish in-flight reconciles, release the lease, stop watches, close HTTP. */
  async stop(): Promise<void> {
    this.#stop.abort();
    if (!this.#elector) await this.#stopLeading();
    await Promise.all(this.#running);
    this.queue.shutDown();
    await this.#http?.close();
    this.#log.info({ op: 'stop' }, 'controller stopped');
  }

  #startLeading(): void {
    const abort = new AbortController();
    const n = this.#o.workers ?? 4;
    this.#lead = { abort, workers: [] };
    const lead = this.#lead;
    const begin = Promise.all(this.#informers.map((i) => i.whenSynced()));
    for (let i = 0; i < n; i++) lead.workers.push(begin.then(() => this.#work(abort.signal)));
    // Everything is suspect after a change of leader: reconcile every VirtualServer once, and
    // every owner of a slice, so slices of VirtualServers that no longer exist (deleted while no
    // leader watched) are deleted.
    void begin.then(() => {
      if (abort.signal.aborted) return;
      for (const vs of this.virtualServers.list()) this.queue.add(objectKey(vs), 'refresh');
      for (const owner of this.published.owners()) this.queue.add(owner, 'refresh');
      for (const p of this.pools.list()) this.queue.add(poolKey(p.metadata.name), 'refresh');
      this.#markLoadBalancers();
    });
  }

  #markLoadBalancers(): void {
    const dc = this.#o.defaultLoadBalancerClass ?? false;
    for (const s of this.services.list()) if (servedHere(s, dc)) this.queue.add(lbKey(s.metadata.namespace ?? '', s.metadata.name), 'refresh');
  }

  async #stopLeading(): Promise<void> {
    const lead = this.#lead;
    if (!lead) return;
    lead.abort.abort();
    await Promise.all(lead.workers);
    this.#lead = undefined;
    this.queue.clear();
  }

  async #work(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const key = await this.queue.get(signal);
      if (key === undefined) return;
      const started = performance.now();
      const trace = new StepTrace(() => this.#clock.now());
      let result: ReconcileResult;
      try {
        const canWrite = () => this.isLeader() && !signal.aborted;
        result = key.startsWith(LB_KEY_PREFIX) ? await reconcileLoadBalancer(key, {
          api: this.#o.api, world: this.world, events: this.#events, defaultClass: this.#o.defaultLoadBalancerClass ?? false,
          getService: (k) => this.services.get(k), getVs: (k) => this.virtualServers.get(k), listVs: () => this.virtualServers.list(),
          canWrite, now: () => this.#clock.wallNow(), lock: this.#lbLock, allocations: this.#lbAllocations,
        }, signal) : key.startsWith(POOL_KEY_PREFIX) ? await reconcilePool(key.slice(POOL_KEY_PREFIX.length), {
          api: this.#o.api, world: this.world, getPool: (n) => this.pools.get(n), clock: this.#clock, canWrite: () => this.isLeader() && !signal.aborted,
        }, signal) : await reconcile(key, {
          api: this.#o.api, world: this.world, getVs: (k) => this.virtualServers.get(k), slices: this.published, reports: this.reports,
          clock: this.#clock, logger: this.#log, events: this.#events, canWrite: () => this.isLeader() && !signal.aborted,
          onStatusWrite: (k) => { this.metrics.statusWrites.inc(); this.statusWrites.set(k, (this.statusWrites.get(k) ?? 0) + 1); },
          onSliceWrite: (op) => this.metrics.sliceWrites.inc({ op }), trace, superseded: () => this.#superseded(key),
        }, signal);
      } catch (err) {
        result = { kind: 'error', err };
      }
      this.metrics.reconciles.inc({ result: result.kind });
      this.metrics.reconcileDuration.observe({ result: result.kind }, (performance.now() - started) / 1000);
      this.#traceSlow(key, trace, result);
      if (result.kind === 'error' && !signal.aborted) {
        this.metrics.errors.inc({ op: 'reconcile' });
        this.#log.warn({ vs: key, op: 'reconcile', err: String(result.err), failures: this.queue.failures(key) + 1 }, 'reconcile failed; retrying with backoff');
      }
      this.queue.finish(key, result);
    }
  }

  /**
   * reconcile.ts's superseded(): the key was marked again while in flight, and fewer than
   * MAX_STATUS_DEFERRALS runs in a row have left its status (so a VirtualServer whose endpoints
   * change faster than the API server answers still gets its status written).
   */
  #superseded(key: string): boolean {
    const n = this.#statusDeferred.get(key) ?? 0;
    if (!this.queue.markedAgain(key) || n >= MAX_STATUS_DEFERRALS) {
      this.#statusDeferred.delete(key);
      return false;
    }
    this.#statusDeferred.set(key, n + 1);
    return true;
  }

  /** Queue wait into the histogram; a reconcile slower than slowReconcileMs (wait included) logged by step. */
  #traceSlow(key: string, trace: StepTrace, result: ReconcileResult): void {
    const queuedMs = Math.round(this.queue.waited(key) ?? 0);
    this.metrics.queueWait.observe(queuedMs / 1000);
    const ms = trace.totalMs;
    if (ms + queuedMs < (this.#o.slowReconcileMs ?? 1000)) return;
    this.#log.info({ vs: key, op: 'reconcile', ms, queuedMs, steps: trace.steps, result: result.kind }, 'slow reconcile');
  }

  #conditionCounts(): Map<string, number> {
    const out = new Map<string, number>();
    for (const vs of this.virtualServers.list()) {
      for (const c of vs.status?.conditions ?? []) out.set(`${c.type}=${c.status}`, (out.get(`${c.type}=${c.status}`) ?? 0) + 1);
    }
    return out;
  }
}
