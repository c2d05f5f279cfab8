// Host-native replay: the cluster agent's CPU per plan change at N services (issue 14: "at 40,000
// within 1.5× of 100"). The real agent code (dataplane/cluster/agent.ts: informers, plan book,
// sync loop, syncer, owner record, report writer) over the in-memory fakes of the Kubernetes API
// and the IPVS kernel, on a manual clock: N VirtualServers of one NAT service with two real
// servers each, programmed; then `changes` plan revisions, each moving one real server of one
// VirtualServer (a different one each time), each followed by 1 s of agent time (the sync loop's
// least gap). CPU is process.cpuUsage() around one change and its second, so it includes the
// fakes' share (structured clones of each watch event, the fake kernel's writes) — small and O(1)
// per change, but not zero. The agent verifies in verify slices (dataplane/sync/verify.ts: every
// service read back once per 30 s, one slice per 5 s tick, riding along with a change's sync when
// one is due) and reads everything back every 300 s: changes whose second held a verify slice
// (the fake kernel read more services one by one than the change's own) and those whose second
// held a full read-back (a dump) are reported apart. Then `idle` seconds without changes, in 5 s
// steps, measure the verify ticks alone and the full syncs among them (a step with a dump). At the
// end the kernel must hold every VirtualServer's latest real servers, or the run fails.
import pino from 'pino';
import { slicePlan } from '../../api/plan-slice.ts';
import { FakeIpvsKernel } from '../../dataplane/ipvs/testing/fake.ts';
import type { IpvsWrite, IpvsWriteResult } from '../../dataplane/ipvs/types.ts';
import { ManualClock } from '../../kube/clock.ts';
import { FakeKubeApi } from '../../kube/testing/fake.ts';
import { PLAN_SLICES, type KubeObject } from '../../kube/types.ts';
import { harness, ownerPlan, service } from '../../test/lib/cluster-fixtures.ts';
import { load, machine, type Load, type Machine } from '../lib/machine.ts';

export interface ReplaySize {
  services: number;
  changes: number;
  /** CPU ms of the first sync (programming everything from an empty kernel). */
  firstSyncCpuMs: number;
  /**
   * CPU µs from publishing a change to the agent's first kernel write after it (its own write:
   * nothing else is wrong in the kernel), over all changes: what a change waits for. Since the
   * change-first order (sync.ts followUp), a due slice or full read-back comes after that write.
   */
  toWrite: Stats & { max: number };
  /** CPU µs per change, changes without a verify slice or a full read-back in their second. */
  perChange: Stats;
  /** The same for changes whose second held a verify slice. */
  withSlice: Stats;
  /** The same for changes whose second held a full read-back. */
  withFull: Stats;
  /** CPU µs per 5 s step of agent time without changes: verify ticks, and the full syncs. */
  verifyTicks: Stats;
  fullSyncs: Stats;
  rssMiB: number;
  heapUsedMiB: number;
}

export interface ReplayRecord {
  command: string;
  date: string;
  machine: Machine;
  loadBefore: Load;
  loadAfter: Load;
  sizes: ReplaySize[];
}

/** 198.18.0.0/15 is for benchmarks (RFC 2544); up to 65,536 VirtualServers. */
export const vipOf = (i: number) => `198.18.${i >> 8}.${i & 255}`;
export const realServers = (i: number, gen: number) => [
  { address: `10.${(i >> 8) & 255}.${i & 255}.1`, port: 8080, weight: 1, state: 'Ready' as const },
  { address: `10.${(i >> 8) & 255}.${i & 255}.${2 + (gen % 200)}`, port: 8080, weight: 1, state: 'Ready' as const },
];
const planOf = (i: number, gen: number) => ownerPlan(`vs-${i}`, [service({ vip: vipOf(i), key: `TCP/${vipOf(i)}:80`, realServers: realServers(i, gen) })], { generation: gen });

export function publishPlan(api: FakeKubeApi, i: number, gen: number): void {
  for (const s of slicePlan(planOf(i, gen))) api.apply(PLAN_SLICES, s as unknown as KubeObject);
}

const cpuUs = () => { const c = process.cpuUsage(); return c.user + c.system; };

type Stats = { n: number; p50: number; p99: number; mean: number };

/** Agent time without changes after the change phase: long enough for one full read-back (300 s). */
const IDLE_MS = 310_000, IDLE_STEP_MS = 5_000;

function stats(xs: number[]): Stats {
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? 0;
  return { n: s.length, p50: Math.round(at(0.5)), p99: Math.round(at(0.99)), mean: Math.round(s.reduce((a, b) => a + b, 0) / Math.max(1, s.length)) };
}

/** The in-memory kernel, noting the CPU time of the first batch of writes after arm(). */
class WriteTimedKernel extends FakeIpvsKernel {
  firstWriteCpu: number | undefined;
  armed = false;
  arm(): void { this.armed = true; this.firstWriteCpu = undefined; }
  override async applyBatch(writes: readonly IpvsWrite[]): Promise<IpvsWriteResult[]> {
    if (this.armed && writes.length > 0) { this.firstWriteCpu = cpuUs(); this.armed = false; }
    return super.applyBatch(writes);
  }
}

async function runSize(services: number, changes: number): Promise<ReplaySize> {
  const clock = new ManualClock();
  const api = new FakeKubeApi(() => clock.wallNow());
  const kernel = new WriteTimedKernel();
  const gens = new Array<number>(services).fill(1);
  for (let i = 0; i < services; i++) publishPlan(api, i, 1);
  const h = harness('n1', { api, kernel, clock });
  const t0 = cpuUs();
  await h.start({ log: pino({ level: 'silent' }) });
  // The first list and sync: a few seconds of agent time at 40,000 (the list comes in pages).
  for (let s = 0; s < 120 && kernel.snapshot().length < services; s++) await clock.advance(1_000);
  const firstSyncCpuMs = Math.round((cpuUs() - t0) / 1000);
  if (kernel.snapshot().length !== services) throw new Error(`first sync programmed ${kernel.snapshot().length} of ${services} services`);
  const plain: number[] = [], sliced: number[] = [], full: number[] = [], toWrite: number[] = [];
  try {
    for (let c = 0; c < changes; c++) {
      const i = (c * 7919) % services;
      gens[i]! += 1;
      const reads = { ...kernel.reads };
      const before = cpuUs();
      kernel.arm();
      publishPlan(api, i, gens[i]!);
      await clock.advance(1_000);
      const cpu = cpuUs() - before;
      if (kernel.firstWriteCpu === undefined) throw new Error(`change ${c} (VirtualServer ${i}) reached no kernel write within its second`);
      toWrite.push(kernel.firstWriteCpu - before);
      // The change reads back its own service (one readService); more is a verify slice.
      (kernel.reads.dump > reads.dump ? full : kernel.reads.readService - reads.readService > 1 ? sliced : plain).push(cpu);
    }
    const ticks: number[] = [], fulls: number[] = [];
    for (let t = 0; t < IDLE_MS; t += IDLE_STEP_MS) {
      const dumps = kernel.reads.dump;
      const before = cpuUs();
      await clock.advance(IDLE_STEP_MS);
      (kernel.reads.dump > dumps ? fulls : ticks).push(cpuUs() - before);
    }
    const want = new Map(gens.map((g, i) => [vipOf(i), realServers(i, g).map((r) => r.address).sort().join(',')] as const));
    const wrong = kernel.snapshot().filter((s) => want.get(s.service.address) !== s.destinations.map((d) => d.address).sort().join(','));
    if (wrong.length) throw new Error(`${wrong.length} services differ from their latest plan, e.g. ${wrong[0]!.service.address}`);
    const mem = process.memoryUsage();
    return {
      services, changes, firstSyncCpuMs, toWrite: { ...stats(toWrite), max: Math.max(...toWrite) }, perChange: stats(plain), withSlice: stats(sliced), withFull: stats(full),
      verifyTicks: stats(ticks), fullSyncs: stats(fulls), rssMiB: Math.round(mem.rss / 2 ** 20), heapUsedMiB: Math.round(mem.heapUsed / 2 ** 20),
    };
  } finally { await h.close(); }
}

export async function runReplayBench(o: { command: string; sizes?: number[]; changes?: number }): Promise<ReplayRecord> {
  const loadBefore = load();
  const sizes: ReplaySize[] = [];
  for (const n of o.sizes ?? [100, 1_000, 10_000, 40_000]) {
    const r = await runSize(n, o.changes ?? 300);
    console.log(`# replay ${n} services: first sync ${r.firstSyncCpuMs} ms CPU; to the change's kernel write p50 ${r.toWrite.p50} µs, p99 ${r.toWrite.p99} µs, max ${r.toWrite.max} µs; per change p50 ${r.perChange.p50} µs, p99 ${r.perChange.p99} µs (${r.perChange.n}); with a verify slice p50 ${r.withSlice.p50} µs (${r.withSlice.n}); with a full read-back p50 ${r.withFull.p50} µs (${r.withFull.n}); verify ticks p50 ${r.verifyTicks.p50} µs, p99 ${r.verifyTicks.p99} µs (${r.verifyTicks.n}); full syncs p50 ${r.fullSyncs.p50} µs (${r.fullSyncs.n}); rss ${r.rssMiB} MiB`);
    sizes.push(r);
  }
  return { command: o.command, date: new Date().toISOString(), machine: machine(), loadBefore, loadAfter: load(), sizes };
}

export function replaySection(r: ReplayRecord): string {
  const base = r.sizes[0]?.perChange.p50 ?? 1;
  const n = (x: number) => x.toLocaleString('en');
  const rows = r.sizes.map((s) => `| ${n(s.services)} | ${n(s.firstSyncCpuMs)} | ${s.toWrite ? `${n(s.toWrite.p50)} / ${n(s.toWrite.p99)} / ${n(s.toWrite.max)}` : '–'} | ${n(s.perChange.p50)} | ${n(s.perChange.p99)} | ${n(s.perChange.mean)} | ${(s.perChange.p50 / base).toFixed(1)}× | ${s.withSlice.n} | ${n(s.withSlice.p50)} / ${n(s.withSlice.p99)} | ${s.withFull.n} | ${n(s.withFull.p50)} | ${s.verifyTicks.n} | ${n(s.verifyTicks.p50)} / ${n(s.verifyTicks.p99)} | ${s.fullSyncs.n} | ${n(s.fullSyncs.p50)} | ${s.rssMiB} / ${s.heapUsedMiB} |`);
  return [
    `Command: \`${r.command}\` · ${r.date.slice(0, 16).replace('T', ' ')} UTC · ${r.machine.nproc} CPUs (${r.machine.cpuModel}) · node ${r.machine.node} · load (1/5/15 min) before ${r.loadBefore.loadavg.join(' / ')}, after ${r.loadAfter.loadavg.join(' / ')}`,
    '',
    '| services | first sync, ms CPU | publish → the change\'s kernel write p50 / p99 / max, µs CPU (all changes) | per change p50, µs CPU | p99 | mean | p50 vs the smallest | changes with a verify slice | their p50 / p99, µs | changes with a full read-back | their p50, µs | idle verify ticks (5 s) | their p50 / p99, µs | idle full syncs | their p50, µs | RSS / heap MiB |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows,
  ].join('\n');
}
