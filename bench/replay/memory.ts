// The cluster agent's retained heap at N services (issue 14: under 150 MiB RSS at 10,000), apart
// from the fakes' (the fake API holds every PlanSlice and its watch history, the fake kernel every
// rule). The replay's set-up (./run.ts: one NAT VirtualServer with two real servers each, its own
// PlanSlice), the real agent over the fakes on a manual clock:
//   fakes   heap after a forced GC with the plans published, before the agent starts;
//   agent   heap after a forced GC at each point (programmed, after the changes, after idle time
//           covering a full read-back), less the heap left once the agent is stopped and dropped
//           (the fakes then, the kernel's rules and the API's history included).
// Figures are V8 heapUsed after gc() (needs --expose-gc), heapTotal (what V8 keeps committed) and its
// most at any clock step so far (sampled after each step, before any forced GC), and the process RSS. With
// --snapshot FILE heap snapshots are written before the agent starts (FILE.before) and at the last
// point (FILE); read them with ./heap-retained.ts FILE --baseline FILE.before.
//   node_modules/.bin/node --expose-gc bench/replay/memory.ts [--services 10000] [--changes 100] [--idle 310] [--snapshot FILE]
import { parseArgs } from 'node:util';
import { getHeapSpaceStatistics, writeHeapSnapshot } from 'node:v8';
import pino from 'pino';
import { ManualClock } from '../../kube/clock.ts';
import { FakeKubeApi } from '../../kube/testing/fake.ts';
import { FakeIpvsKernel } from '../../dataplane/ipvs/testing/fake.ts';
import { harness, type Harness } from '../../test/lib/cluster-fixtures.ts';
import { publishPlan, realServers, vipOf } from './run.ts';

const MiB = 2 ** 20;
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc');

/** heapUsed after full collections (twice: weak references cleared by the first are freed by the second). */
function settledHeap(): { heap: number; rss: number; total: number; peakTotal: number } {
  const before = process.memoryUsage();
  gc!(); gc!();
  const m = process.memoryUsage();
  peakTotal = Math.max(peakTotal, before.heapTotal);
  return { heap: m.heapUsed, rss: m.rss, total: m.heapTotal, peakTotal };
}

/** The most V8 had committed for its heap (heapTotal) at any clock step so far. */
let peakTotal = 0;
const sample = () => { peakTotal = Math.max(peakTotal, process.memoryUsage().heapTotal); };

const mib = (b: number) => (b / MiB).toFixed(1);

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { services: { type: 'string' }, changes: { type: 'string' }, idle: { type: 'string' }, snapshot: { type: 'string' } } });
  const services = Number(values.services ?? 10_000), changes = Number(values.changes ?? 100), idleS = Number(values.idle ?? 310);
  const clock = new ManualClock();
  const api = new FakeKubeApi(() => clock.wallNow());
  const kernel = new FakeIpvsKernel();
  const gens = new Array<number>(services).fill(1);
  for (let i = 0; i < services; i++) publishPlan(api, i, 1);
  const points: Array<{ at: string; heap: number; rss: number; total: number; peakTotal: number }> = [];
  const fakes = settledHeap();
  points.push({ at: 'fakes only (plans published, agent not started)', ...fakes });
  // The objects that exist before the agent starts (their ids): ./heap-retained.ts --baseline.
  if (values.snapshot) writeHeapSnapshot(`${values.snapshot}.before`);

  let h: Harness | undefined = harness('n1', { api, kernel, clock });
  const t0 = Date.now();
  await h.start({ log: pino({ level: 'silent' }) });
  for (let s = 0; s < 600 && kernel.snapshot().length < services; s++) { await clock.advance(1_000); sample(); }
  if (kernel.snapshot().length !== services) throw new Error(`programmed ${kernel.snapshot().length} of ${services} services`);
  const programmedMs = Date.now() - t0;
  points.push({ at: 'programmed', ...settledHeap() });
  for (let c = 0; c < changes; c++) {
    const i = (c * 7919) % services;
    gens[i]! += 1;
    publishPlan(api, i, gens[i]!);
    await clock.advance(1_000);
    sample();
  }
  if (changes > 0) points.push({ at: `after ${changes} changes (1 s each)`, ...settledHeap() });
  for (let t = 0; t < idleS; t += 5) { await clock.advance(5_000); sample(); }
  if (idleS > 0) points.push({ at: `after ${idleS} s idle (verify ticks, a full read-back)`, ...settledHeap() });
  const want = new Map(gens.map((g, i) => [vipOf(i), realServers(i, g).map((r) => r.address).sort().join(',')] as const));
  const wrong = kernel.snapshot().filter((s) => want.get(s.service.address) !== s.destinations.map((d) => d.address).sort().join(','));
  if (wrong.length) throw new Error(`${wrong.length} services differ from their latest plan`);
  // What V8 keeps committed per space at the last point (after the forced GCs).
  const spaces = getHeapSpaceStatistics().filter((x) => x.space_size > MiB).map((x) => `${x.space_name} ${mib(x.space_size)} (used ${mib(x.space_used_size)})`).join(', ');
  if (values.snapshot) { gc!(); writeHeapSnapshot(values.snapshot); }

  await h.close();
  h = undefined;
  await clock.advance(1_000);
  const end = settledHeap();
  console.log(`# agent memory, ${services} services, ${changes} changes, ${idleS} s idle (programmed in ${programmedMs} ms wall)`);
  for (const p of points) {
    const agent = p === points[0] ? '' : `; agent ${mib(p.heap - end.heap)} MiB`;
    console.log(`${p.at}: heapUsed ${mib(p.heap)} MiB, heapTotal ${mib(p.total)} MiB (most so far at a step ${mib(p.peakTotal)}), rss ${mib(p.rss)} MiB${agent}`);
  }
  console.log(`fakes after the agent stopped and was dropped: heapUsed ${mib(end.heap)} MiB (${mib(end.heap - fakes.heap)} MiB more than before it started: the kernel's rules, the API's history and the agent's report), rss ${mib(end.rss)} MiB`);
  console.log(`V8 heap spaces at the last agent point, MiB committed: ${spaces}`);
  console.log(`kept: api ${api.openWatches} open watches, kernel ${kernel.snapshot().length} services`);
}

await main();
