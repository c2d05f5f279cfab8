// One size of the controller benchmark, in its own process (so its peak RSS is its own):
//   node --expose-gc bench/controller/measure.ts <virtualServers> batch|controller [changes]
// prints one JSON line. With 0 VirtualServers it only loads the modules: the baseline RSS of a
// node process running this code. Peak RSS (maxRSS) is reported per mode, each in a fresh process;
// with --expose-gc also the live heap (after a full GC) holding just the input objects (what an
// informer cache holds anyway) and, for the controller mode, with the World index added.
//
// Measured:
//   batch resync   — resolve() of everything, then for every VirtualServer its plan cut into
//                    PlanSlices (revision hash included) + computeStatus() and statusUpToDate()
//                    (what a full pass costs); cold (first) and warm (median of 3);
//   controller     — the controller's own path on a start: the World index fed every object as an
//                    informer event, then World.resolvePlan + slices + status for every key;
//   one change     — an EndpointSlice update (one pod replaced) through World.endpointSliceChanged,
//                    then for each marked key World.resolvePlan (index + arbitration against its
//                    VIP neighbours) + slices + computeStatus + statusUpToDate; CPU by
//                    process.cpuUsage over `changes` repetitions on different slices, divided by
//                    the count. No agent reports: Programmed is judged against none.
import { performance } from 'node:perf_hooks';
import { resolve } from '../../api/resolve/index.ts';
import { refKey, type PlanService, type VirtualServerResolution } from '../../api/plan.ts';
import { judgeProgrammed } from '../../operator/programmed.ts';
import { desiredSlices, publicationOf, publishedSlice } from '../../operator/publish.ts';
import { computeStatus, statusUpToDate } from '../../operator/status.ts';
import { World } from '../../operator/world.ts';
import { objectKey, type KubeObject, type NodeObject, type VirtualServerObject } from '../../kube/types.ts';
import type { V1EndpointSlice } from '@kubernetes/client-node';
import { backingService, cluster, ENDPOINTS_PER_SERVICE, isStatic, sliceObject, type Cluster } from './cluster.ts';

const NOW = Date.UTC(2026, 0, 1);
const NO_REPORTS = { get: () => undefined, exceptions: () => new Map() };

/** What a reconcile computes for one VirtualServer: its slices (as if stored at RV 1) and status. */
function statusFor(vs: VirtualServerObject, res: VirtualServerResolution, won: readonly PlanService[]) {
  const uid = vs.metadata.uid ?? objectKey(vs);
  const generation = vs.metadata.generation ?? 0;
  const slices = desiredSlices({ namespace: vs.metadata.namespace ?? '', name: vs.metadata.name, uid, generation }, res.reasons, res.directors, won) ?? [];
  const pub = publicationOf(slices.map((s) => publishedSlice({ ...s, metadata: { ...s.metadata, resourceVersion: '1' } })));
  return computeStatus(vs, res, pub, judgeProgrammed(pub, uid, generation, NO_REPORTS), NOW);
}

interface Timing { wallMs: number; cpuMs: number }

function timed<T>(fn: () => T): { value: T; t: Timing } {
  const c0 = process.cpuUsage();
  const w0 = performance.now();
  const value = fn();
  const wallMs = performance.now() - w0;
  const c = process.cpuUsage(c0);
  return { value, t: { wallMs: round(wallMs), cpuMs: round((c.user + c.system) / 1000) } };
}

const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function batchResync(c: Cluster): { ok: number; services: number; realServers: number } {
  const plan = resolve({ virtualServers: c.virtualServers, services: c.services, endpointSlices: c.endpointSlices, nodes: c.nodes });
  let ok = 0;
  const won = new Map<string, PlanService[]>();
  for (const s of plan.services) {
    const list = won.get(refKey(s.owner));
    if (list) list.push(s); else won.set(refKey(s.owner), [s]);
  }
  for (const vs of c.virtualServers) {
    const res = plan.virtualServers.get(objectKey(vs));
    if (!res) throw new Error(`no resolution for ${objectKey(vs)}`);
    const st = statusFor(vs, res, won.get(objectKey(vs)) ?? []);
    if (!statusUpToDate(vs.status, st) && st.conditions?.[0]?.status === 'True') ok++;
  }
  return { ok, services: plan.services.length, realServers: plan.services.reduce((n, s) => n + s.realServers.length, 0) };
}

function feedWorld(c: Cluster, byKey: Map<string, VirtualServerObject>): World {
  const world = new World((k) => byKey.get(k));
  for (const n of c.nodes) world.nodeChanged(n.metadata!.name!, n as unknown as NodeObject);
  for (const s of c.services) world.serviceChanged(s as unknown as KubeObject, false);
  for (const s of c.endpointSlices) world.endpointSliceChanged(s as unknown as KubeObject, false);
  for (const vs of c.virtualServers) world.virtualServerChanged(objectKey(vs), vs);
  return world;
}

function worldResync(world: World, byKey: Map<string, VirtualServerObject>): number {
  let ok = 0;
  for (const key of world.keys()) {
    const vs = byKey.get(key)!;
    const r = world.resolvePlan(vs);
    const st = statusFor(vs, r.resolution, r.services);
    if (!statusUpToDate(vs.status, st) && st.conditions?.[0]?.status === 'True') ok++;
  }
  return ok;
}

/** Updated slices, prepared up front (an informer hands over a decoded object): one pod replaced each. */
function changedSlices(c: Cluster, count: number): V1EndpointSlice[] {
  const n = c.virtualServers.length;
  const out: V1EndpointSlice[] = [];
  for (let r = 0; out.length < count; r++) {
    const k = (r * 7919) % n; // a stride coprime with the sizes: visits VirtualServers all over
    if (isStatic(k)) continue;
    const gens = Array.from({ length: ENDPOINTS_PER_SERVICE }, () => 0);
    gens[r % ENDPOINTS_PER_SERVICE] = 1 + Math.floor(r / n);
    out.push(sliceObject(backingService(k, n), gens, String(2 + r)));
  }
  return out;
}

function perChange(world: World, byKey: Map<string, VirtualServerObject>, slices: V1EndpointSlice[]): { marked: number; statuses: number } {
  let marked = 0, statuses = 0;
  for (const slice of slices) {
    const keys = world.endpointSliceChanged(slice as unknown as KubeObject, false);
    marked += keys.length;
    for (const key of keys) {
      const vs = byKey.get(key);
      if (!vs) continue;
      const r = world.resolvePlan(vs);
      const st = statusFor(vs, r.resolution, r.services);
      if (!statusUpToDate(vs.status, st)) statuses++;
    }
  }
  return { marked, statuses };
}

/** Live heap after a full GC (needs --expose-gc), in MiB; undefined without it. */
function liveHeapMiB(): number | undefined {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) return undefined;
  gc();
  return round(process.memoryUsage().heapUsed / 1024 / 1024, 1);
}

const rssMiB = () => round(process.resourceUsage().maxRSS / 1024, 1);

/** resolve() + status for everything, cold then warm: the batch path. */
function runBatch(c: Cluster): Record<string, unknown> {
  const batch = [0, 1, 2, 3].map(() => timed(() => batchResync(c)));
  const shape = batch[0]!.value;
  return {
    plan: { ipvsServices: shape.services, realServers: shape.realServers, readyVirtualServers: shape.ok },
    batchResync: {
      cold: batch[0]!.t,
      warmMedian: { wallMs: median(batch.slice(1).map((b) => b.t.wallMs)), cpuMs: median(batch.slice(1).map((b) => b.t.cpuMs)) },
    },
  };
}

/** The controller's World: fed every object, every key resolved with status, then single changes. */
function runController(c: Cluster, changes: number): Record<string, unknown> {
  const byKey = new Map(c.virtualServers.map((vs) => [objectKey(vs), vs]));
  const feed = timed(() => feedWorld(c, byKey));
  const world = feed.value;
  const ctrl = [0, 1, 2].map(() => timed(() => worldResync(world, byKey)));
  const slices = changedSlices(c, changes);
  perChange(world, byKey, slices.slice(0, Math.min(200, slices.length))); // warm-up, not counted
  const change = timed(() => perChange(world, byKey, slices));
  return {
    controllerResync: {
      indexFeed: feed.t,
      cold: ctrl[0]!.t,
      warmMedian: { wallMs: median(ctrl.slice(1).map((b) => b.t.wallMs)), cpuMs: median(ctrl.slice(1).map((b) => b.t.cpuMs)) },
    },
    oneEndpointChange: {
      repetitions: slices.length,
      markedPerChange: round(change.value.marked / slices.length, 2),
      cpuUsPerChange: round((change.t.cpuMs * 1000) / slices.length, 1),
      wallUsPerChange: round((change.t.wallMs * 1000) / slices.length, 1),
    },
    liveHeapWithWorldMiB: liveHeapMiB(),
  };
}

function main(): void {
  const n = Number(process.argv[2] ?? '0');
  const mode = process.argv[3] ?? 'controller';
  const changes = Number(process.argv[4] ?? '2000');
  if (!Number.isInteger(n) || n < 0) throw new Error(`virtualServers: ${process.argv[2]} is not a count`);
  if (mode !== 'batch' && mode !== 'controller') throw new Error(`mode: ${JSON.stringify(mode)} is not batch or controller`);
  if (n === 0) {
    console.log(JSON.stringify({ virtualServers: 0, mode: 'baseline', maxRssMiB: rssMiB(), liveHeapMiB: liveHeapMiB() }));
    return;
  }
  const gen = timed(() => cluster(n));
  const c = gen.value;
  const inputs = { maxRssMiB: rssMiB(), liveHeapMiB: liveHeapMiB() };
  const body = mode === 'batch' ? runBatch(c) : runController(c, changes);
  console.log(JSON.stringify({
    virtualServers: n,
    mode,
    services: c.services.length,
    endpoints: c.endpointSlices.reduce((k, s) => k + (s.endpoints?.length ?? 0), 0),
    staticVirtualServers: c.virtualServers.filter((_, k) => isStatic(k)).length,
    generateMs: gen.t.wallMs,
    inputsOnly: inputs,
    ...body,
    maxRssMiB: rssMiB(),
  }));
}

main();
