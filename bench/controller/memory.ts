// The real controller (operator/controller.ts) converged at N VirtualServers in this process,
// against the in-memory API (kube/testing/fake.ts), with the convergence benchmark's layout
// (bench/convergence/layout.ts: N headless Services, one EndpointSlice of 3 endpoints each, N NAT
// VirtualServers, a VIPPool, one director Node and its AgentReport):
//   node --expose-gc bench/controller/memory.ts [N] [--snapshot=PATH]
// Prints one JSON line: live heap after a forced GC once the controller is idle with every
// VirtualServer Programmed, RSS then and its peak, and (with --snapshot) writes a heap snapshot
// for bench/controller/heap-snapshot.ts. The fake API's own store is in the same heap: the
// snapshot's summary separates it (FakeKubeApi's retained size).
import { writeHeapSnapshot } from 'node:v8';
import { Controller } from '../../operator/controller.ts';
import { FakeKubeApi } from '../../kube/testing/fake.ts';
import { buildAgentReport } from '../../api/agent-report.ts';
import {
  AGENT_REPORTS, ENDPOINT_SLICES, NAMESPACES, NODES, PLAN_SLICES, SERVICES, VIP_POOLS, VIRTUAL_SERVERS, type KubeObject, type VirtualServerObject,
} from '../../kube/types.ts';
import { NS, serviceManifest, sliceManifest, virtualServerManifest } from '../convergence/layout.ts';

const NODE = 'lvs-node-1';
const MiB = 1024 * 1024;
const round = (x: number) => Math.round(x * 10) / 10;

function populate(api: FakeKubeApi, n: number): void {
  api.apply(NAMESPACES, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
  api.apply(VIP_POOLS, {
    apiVersion: 'lvs.dev/v1alpha1', kind: 'VIPPool', metadata: { name: 'bench' },
    spec: { addresses: ['198.51.100.0/24', '203.0.113.0/24'], allocation: { namespaces: [NS] }, forwarding: ['NAT'], staticRealServers: ['10.244.0.0/16'] },
  } as KubeObject);
  api.apply(NODES, {
    apiVersion: 'v1', kind: 'Node', metadata: { name: NODE, labels: { 'kubernetes.io/hostname': NODE, 'lvs.dev/director': 'true' } },
    status: { addresses: [{ type: 'InternalIP', address: '10.0.2.15' }, { type: 'Hostname', address: NODE }], conditions: [{ type: 'Ready', status: 'True' }] },
  } as KubeObject);
  for (let i = 0; i < n; i++) {
    api.apply(SERVICES, serviceManifest(i) as unknown as KubeObject);
    api.apply(ENDPOINT_SLICES, sliceManifest(i, NODE) as unknown as KubeObject);
    api.apply(VIRTUAL_SERVERS, virtualServerManifest(i) as unknown as KubeObject);
  }
}

async function until(check: () => boolean, what: string, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Idle twice 200 ms apart: no event left in flight. */
async function settle(c: Controller, timeoutMs: number): Promise<void> {
  await until(() => c.idle(), 'controller idle', timeoutMs);
  await new Promise((r) => setTimeout(r, 200));
  await until(() => c.idle(), 'controller idle', timeoutMs);
}

function condition(api: FakeKubeApi, type: string): number {
  return api.all<VirtualServerObject>(VIRTUAL_SERVERS).filter((v) => v.status?.conditions?.some((c) => c.type === type && c.status === 'True')).length;
}

function memory(): Record<string, number> {
  const m = process.memoryUsage();
  return { rssMiB: round(m.rss / MiB), heapUsedMiB: round(m.heapUsed / MiB), externalMiB: round(m.external / MiB), arrayBuffersMiB: round(m.arrayBuffers / MiB), maxRssMiB: round(process.resourceUsage().maxRSS / 1024) };
}

function liveHeap(): Record<string, number> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with --expose-gc');
  gc(); gc();
  return memory();
}

async function main(): Promise<void> {
  const n = Number(process.argv.slice(2).find((a) => !a.startsWith('--')) ?? 10_000);
  const snapshot = process.argv.find((a) => a.startsWith('--snapshot='))?.slice(11);
  const t0 = Date.now();
  const api = new FakeKubeApi();
  populate(api, n);
  api.compact(); // the fake's watch history of the set-up: the controller lists, it never needs it
  const baseline = liveHeap();
  const c = new Controller({ api, identity: 'bench', leaderElection: false, workers: 4 });
  await c.start();
  await settle(c, 600_000);
  const published = memory();
  const planSlices = api.count('create', PLAN_SLICES.plural);
  const synced = api.all(PLAN_SLICES).reduce((m, s) => Math.max(m, Number(s.metadata.resourceVersion)), 0);
  api.apply(AGENT_REPORTS, buildAgentReport(NODE, { syncedResourceVersion: String(synced), nodeErrors: [], failing: [], frozen: [], prepared: [] }) as unknown as KubeObject);
  await settle(c, 600_000);
  const programmed = condition(api, 'Programmed');
  api.compact();
  const converged = liveHeap();
  if (snapshot) writeHeapSnapshot(snapshot);
  console.log(JSON.stringify({
    n, planSlices, programmed, pendingWrites: (c.published as { pending?: number }).pending, ms: Date.now() - t0,
    heapLimitMiB: round((await import('node:v8')).getHeapStatistics().heap_size_limit / MiB),
    fakeOnly: baseline, afterPublish: published, converged,
  }));
  await c.stop();
}

await main();
