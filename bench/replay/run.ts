// Host-native replay: the cluster agent's CPU per plan change at N services (issue 14: "at 40,000
// within 1.5× of 100"). The real agent code (dataplane/cluster/agent.ts: informers, plan book,
// sync loop, syncer, owner record, report writer) over the in-memory fakes of the Kubernetes API
// and the IPVS kernel, on a manual clock: N VirtualServers of one NAT service with two real
// servers each, programmed; then `changes` plan revisions, each moving one real server of one
// VirtualServer (a different one each time), each followed by 1 s of agent time (the sync loop's
// least gap). CPU is process.cpuUsage() around one change and its second, so it includes the
// fakes' share (structured clones of each watch event, the fake kernel's writes) — small and O(1)
// per change, but not zero. Changes whose second held the periodic full resync (a full read-back
// of every service, every 30 s) are reported apart. At the end the kernel must hold every
// VirtualServer's latest real servers, or the run fails.
import pino from 'pino';
import { slicePlan } from '../../api/plan-slice.ts';
import { FakeIpvsKernel } from '../../dataplane/ipvs/testing/fake.ts';
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
  /** CPU µs per change, changes without a full resync in their second. */
  perChange: { n: number; p50: number; p99: number; mean: number };
  /** The same for changes whose second held a full resync. */
  withResync: { n: number; p50: number; p99: number; mean: number };
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
const vipOf = (i: number) => `198.18.${i >> 8}.${i & 255}`;
const realServers = (i: number, gen: number) => [
  { address: `10.${(i >> 8) & 255}.${i & 255}.1`, port: 8080, weight: 1, state: 'Ready' as const },
  { address: `10.${(i >> 8) & 255}.${i & 255}.${2 + (gen % 200)}`, port: 8080, weight: 1, state: 'Ready' as const },
];
const planOf = (i: number, gen: number) => ownerPlan(`vs-${i}`, [service({ vip: vipOf(i), key: `TCP/${vipOf(i)}:80`, realServers: realServers(i, gen) })], { generation: gen });

function publishPlan(api: FakeKubeApi, i: number, gen: number): void {
  for (const s of slicePlan(planOf(i, gen))) api.apply(PLAN_SLICES, s as unknown as KubeObject);
}

const cpuUs = () => { const c = process.cpuUsage(); return c.user + c.system; };

function stats(xs: number[]): { n: number; p50: number; p99: number; mean: number } {
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? 0;
  return { n: s.length, p50: Math.round(at(0.5)), p99: Math.round(at(0.99)), mean: Math.round(s.reduce((a, b) => a + b, 0) / Math.max(1, s.length)) };
}

async function runSize(services: number, changes: number): Promise<ReplaySize> {
  const clock = new ManualClock();
  const api = new FakeKubeApi(() => clock.wallNow());
  const kernel = new FakeIpvsKernel();
  const gens = new Array<number>(services).fill(1);
  for (let i = 0; i < services; i++) publishPlan(api, i, 1);
  const h = harness('n1', { api, kernel, clock });
  const t0 = cpuUs();
  await h.start({ log: pino({ level: 'silent' }) });
  // The first list and sync: a few seconds of agent time at 40,000 (the list comes in pages).
  for (let s = 0; s < 120 && kernel.snapshot().length < services; s++) await clock.advance(1_000);
  const firstSyncCpuMs = Math.round((cpuUs() - t0) / 1000);
  if (kernel.snapshot().length !== services) throw new Error(`first sync programmed ${kernel.snapshot().length} of ${services} services`);
  const plain: number[] = [], resync: number[] = [];
  try {
    for (let c = 0; c < changes; c++) {
      const i = (c * 7919) % services;
      gens[i]! += 1;
      const dumps = kernel.reads.dump;
      const before = cpuUs();
      publishPlan(api, i, gens[i]!);
      await clock.advance(1_000);
      (kernel.reads.dump > dumps ? resync : plain).push(cpuUs() - before);
    }
    const want = new Map(gens.map((g, i) => [vipOf(i), realServers(i, g).map((r) => r.address).sort().join(',')] as const));
    const wrong = kernel.snapshot().filter((s) => want.get(s.service.address) !== s.destinations.map((d) => d.address).sort().join(','));
    if (wrong.length) throw new Error(`${wrong.length} services differ from their latest plan, e.g. ${wrong[0]!.service.address}`);
    const mem = process.memoryUsage();
    return { services, changes, firstSyncCpuMs, perChange: stats(plain), withResync: stats(resync), rssMiB: Math.round(mem.rss / 2 ** 20), heapUsedMiB: Math.round(mem.heapUsed / 2 ** 20) };
  } finally { await h.close(); }
}

export async function runReplayBench(o: { command: string; sizes?: number[]; changes?: number }): Promise<ReplayRecord> {
  const loadBefore = load();
  const sizes: ReplaySize[] = [];
  for (const n of o.sizes ?? [100, 1_000, 10_000, 40_000]) {
    const r = await runSize(n, o.changes ?? 300);
    console.log(`# replay ${n} services: first sync ${r.firstSyncCpuMs} ms CPU; per change p50 ${r.perChange.p50} µs, p99 ${r.perChange.p99} µs (${r.perChange.n}); with a full resync p50 ${r.withResync.p50} µs (${r.withResync.n}); rss ${r.rssMiB} MiB`);
    sizes.push(r);
  }
  return { command: o.command, date: new Date().toISOString(), machine: machine(), loadBefore, loadAfter: load(), sizes };
}

export function replaySection(r: ReplayRecord): string {
  const base = r.sizes[0]?.perChange.p50 ?? 1;
  const rows = r.sizes.map((s) => `| ${s.services.toLocaleString('en')} | ${s.firstSyncCpuMs.toLocaleString('en')} | ${s.perChange.p50.toLocaleString('en')} | ${s.perChange.p99.toLocaleString('en')} | ${s.perChange.mean.toLocaleString('en')} | ${(s.perChange.p50 / base).toFixed(1)}× | ${s.withResync.n} | ${s.withResync.p50.toLocaleString('en')} | ${s.rssMiB} / ${s.heapUsedMiB} |`);
  return [
    `Command: \`${r.command}\` · ${r.date.slice(0, 16).replace('T', ' ')} UTC · ${r.machine.nproc} CPUs (${r.machine.cpuModel}) · node ${r.machine.node} · load (1/5/15 min) before ${r.loadBefore.loadavg.join(' / ')}, after ${r.loadAfter.loadavg.join(' / ')}`,
    '',
    '| services | first sync, ms CPU | per change p50, µs CPU | p99 | mean | p50 vs the smallest | changes with a full resync | their p50, µs | RSS / heap MiB |',
    '|---|---|---|---|---|---|---|---|---|',
    ...rows,
  ].join('\n');
}
