// Reads a V8 CPU profile (node --cpu-prof) and prints where the time went: a timeline of busy
// time per window, then the functions by self time and by inclusive time (on the stack), within an
// optional span of the profile.
//   node_modules/.bin/node bench/lib/profile-summary.ts FILE [--window 30] [--from S] [--to S] [--top 30]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface CpuProfile { nodes: ProfileNode[]; startTime: number; endTime: number; samples: number[]; timeDeltas: number[] }

/** Not work of the program: the idle loop, the profiler's own root, (program) and GC are shown apart. */
const IDLE = new Set(['(idle)', '(root)']);

function label(n: ProfileNode): string {
  const f = n.callFrame;
  const file = f.url.replace(/^file:\/\/.*?\/(node_modules|dataplane|kube|api|operator|lab|bench)\//, '$1/').replace(/^node:/, '');
  return `${f.functionName || '(anonymous)'} ${file}${file ? `:${f.lineNumber + 1}` : ''}`;
}

export interface Sample { at: number; node: number; ms: number }

/** The samples with their time (ms from the profile's start) and the time each stands for. */
export function samplesOf(p: CpuProfile): Sample[] {
  const out: Sample[] = [];
  let t = p.startTime;
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i] ?? 0;
    const next = p.timeDeltas[i + 1] ?? 0;
    out.push({ at: (t - p.startTime) / 1000, node: p.samples[i]!, ms: next / 1000 });
  }
  return out;
}

function top(m: Map<string, number>, n: number, total: number): string[] {
  return [...m].sort((a, b) => b[1] - a[1]).slice(0, n)
    .map(([k, ms]) => `${(ms / 1000).toFixed(1).padStart(8)} s ${((100 * ms) / total).toFixed(1).padStart(5)}%  ${k}`);
}

function main(): void {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { window: { type: 'string' }, from: { type: 'string' }, to: { type: 'string' }, top: { type: 'string' } },
  });
  const p = JSON.parse(readFileSync(positionals[0]!, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const windowS = Number(values.window ?? 30), from = Number(values.from ?? 0) * 1000, to = Number(values.to ?? Infinity) * 1000;
  const n = Number(values.top ?? 30);
  const samples = samplesOf(p);
  console.log(`${positionals[0]}: ${samples.length} samples over ${((p.endTime - p.startTime) / 1e6).toFixed(1)} s`);

  console.log(`\nbusy time per ${windowS} s window (not idle), and its top function by self time:`);
  const windows = new Map<number, { busy: number; self: Map<string, number> }>();
  for (const s of samples) {
    const name = byId.get(s.node)!.callFrame.functionName;
    if (IDLE.has(name)) continue;
    const w = Math.floor(s.at / 1000 / windowS);
    const e = windows.get(w) ?? { busy: 0, self: new Map() };
    e.busy += s.ms;
    const k = label(byId.get(s.node)!);
    e.self.set(k, (e.self.get(k) ?? 0) + s.ms);
    windows.set(w, e);
  }
  for (const [w, e] of [...windows].sort((a, b) => a[0] - b[0])) {
    const [k, ms] = [...e.self].sort((a, b) => b[1] - a[1])[0]!;
    console.log(`${(w * windowS).toFixed(windowS < 1 ? 1 : 0).padStart(6)} s  busy ${((100 * e.busy) / (windowS * 1000)).toFixed(0).padStart(3)}%  ${(ms / 1000).toFixed(1)} s ${k}`);
  }

  const self = new Map<string, number>(), incl = new Map<string, number>();
  let total = 0;
  for (const s of samples) {
    if (s.at < from || s.at >= to) continue;
    const node = byId.get(s.node)!;
    if (IDLE.has(node.callFrame.functionName)) continue;
    total += s.ms;
    self.set(label(node), (self.get(label(node)) ?? 0) + s.ms);
    const seen = new Set<string>();
    for (let id: number | undefined = s.node; id !== undefined; id = parent.get(id)) {
      const k = label(byId.get(id)!);
      if (id !== p.nodes[0]!.id && !seen.has(k)) { seen.add(k); incl.set(k, (incl.get(k) ?? 0) + s.ms); }
    }
  }
  console.log(`\nbusy ${(total / 1000).toFixed(1)} s between ${from / 1000} s and ${to === Infinity ? 'the end' : `${to / 1000} s`}`);
  console.log('\nself time:');
  for (const l of top(self, n, total)) console.log(l);
  console.log('\ninclusive time (on the stack):');
  for (const l of top(incl, n, total)) console.log(l);
}

if (import.meta.url === `file://${process.argv[1]}`) main();
