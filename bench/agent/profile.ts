// Summarises a V8 CPU profile (what `node --cpu-prof` writes, and what the inspector's
// Profiler.stop returns): self time per function and per area (our files, a package, node
// internals, or V8's pseudo-frames: "(idle)" = waiting on I/O, "(garbage collector)", "(program)"
// = native code outside JS, which includes the sendmsg() in which the kernel handles a request).
import { relative } from 'node:path';

export interface CpuProfile {
  nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }>;
  samples?: number[];
  timeDeltas?: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  totalMs: number;
  /** Self time by area, largest first. */
  areas: Array<{ area: string; ms: number; pct: number }>;
  /** Self time by function, largest first. */
  functions: Array<{ fn: string; ms: number; pct: number }>;
}

export function areaOf(url: string, root: string): string {
  if (!url) return 'native/V8';
  const path = url.startsWith('file://') ? decodeURIComponent(url.slice(7)) : url;
  if (path.startsWith('node:')) return 'node internals';
  const nm = path.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = path.slice(nm + 14).split('/');
    return `npm ${rest[0]?.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]}`;
  }
  return path.startsWith('/') ? relative(root, path) : path;
}

export function summarise(profile: CpuProfile, root: string, top = 15): ProfileSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  // timeDeltas[i] is the time from the previous sample to sample i: attribute it to sample i.
  for (let i = 0; i < samples.length; i++) self.set(samples[i]!, (self.get(samples[i]!) ?? 0) + (deltas[i] ?? 0));
  const areas = new Map<string, number>();
  const fns = new Map<string, number>();
  let total = 0;
  for (const [id, us] of self) {
    const cf = byId.get(id)?.callFrame;
    if (!cf) continue;
    total += us;
    const pseudo = cf.functionName.startsWith('(');
    const area = pseudo ? cf.functionName : areaOf(cf.url, root);
    areas.set(area, (areas.get(area) ?? 0) + us);
    const fn = pseudo ? cf.functionName : `${cf.functionName || '(anonymous)'} ${area}:${cf.lineNumber + 1}`;
    fns.set(fn, (fns.get(fn) ?? 0) + us);
  }
  const rank = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]);
  const pct = (us: number) => (total ? Math.round((1000 * us) / total) / 10 : 0);
  return {
    totalMs: Math.round(total / 1000),
    areas: rank(areas).slice(0, top).map(([area, us]) => ({ area, ms: Math.round(us / 1000), pct: pct(us) })),
    functions: rank(fns).slice(0, top).map(([fn, us]) => ({ fn, ms: Math.round(us / 1000), pct: pct(us) })),
  };
}

/**
 * Total time (self and callees) by function, largest first: for each sample, every distinct
 * function on its stack gets the sample's time. Tells which phase of a process the time went to
 * (module evaluation, manifest validation, the sync, ...), where self time only names the leaves.
 */
export function inclusive(profile: CpuProfile, root: string, top = 25): Array<{ fn: string; ms: number; pct: number }> {
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const name = (id: number) => {
    const cf = byId.get(id)!.callFrame;
    return cf.functionName.startsWith('(') ? cf.functionName : `${cf.functionName || '(anonymous)'} ${areaOf(cf.url, root)}:${cf.lineNumber + 1}`;
  };
  const total = new Map<string, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  let all = 0;
  for (let i = 0; i < samples.length; i++) {
    const us = deltas[i] ?? 0;
    all += us;
    const seen = new Set<string>();
    for (let id: number | undefined = samples[i]; id !== undefined; id = parent.get(id)) seen.add(name(id));
    for (const fn of seen) total.set(fn, (total.get(fn) ?? 0) + us);
  }
  return [...total].filter(([fn]) => fn !== '(root)').sort((a, b) => b[1] - a[1]).slice(0, top)
    .map(([fn, us]) => ({ fn, ms: Math.round(us / 1000), pct: all ? Math.round((1000 * us) / all) / 10 : 0 }));
}
