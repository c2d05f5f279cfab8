// Retained sizes in a V8 heap snapshot (.heapsnapshot, as node:v8 writeHeapSnapshot writes it),
// for ./memory.ts: the dominator tree (Cooper, Harvey and Kennedy's iterative algorithm; weak
// edges ignored), then, from the closure context holding every named variable given (by default
// the cluster agent's: index, bookList, gating), each variable's retained size and the biggest
// objects under it, depth first. An object two variables both reach is retained by the context,
// not by either: the context's total exceeds the sum of its variables' by what they share.
//   node_modules/.bin/node bench/replay/heap-retained.ts FILE [--depth 4] [--min-kib 256] [--vars index,bookList,gating]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface Graph {
  nodeCount: number;
  nodeType(n: number): string;
  nodeName(n: number): string;
  selfSize: Uint32Array;
  firstEdge: Uint32Array;
  edgeType: Uint8Array;
  edgeName: Uint32Array;
  edgeTo: Uint32Array;
  strings: string[];
  edgeTypes: string[];
  id: Uint32Array;
}

/** The numbers of one `"key":[...]` array of the snapshot, read without making a string of it. */
function numbers(buf: Buffer, key: string): Uint32Array {
  const start = buf.indexOf(`"${key}":[`) + key.length + 4;
  const end = buf.indexOf(']', start);
  let count = end > start ? 1 : 0;
  for (let i = start; i < end; i++) if (buf[i] === 44) count++;
  const out = new Uint32Array(count);
  let k = 0, v = 0, any = false;
  for (let i = start; i <= end; i++) {
    const c = buf[i]!;
    if (c >= 48 && c <= 57) { v = v * 10 + (c - 48); any = true; } else if (c === 44 || i === end) { if (any) out[k++] = v; v = 0; any = false; }
  }
  return out;
}

export function load(file: string): Graph {
  const buf = readFileSync(file);
  const head = JSON.parse(buf.toString('utf8', 0, buf.indexOf('"nodes":[')).replace(/,\s*$/, '') + '}') as { snapshot: { meta: { node_fields: string[]; edge_fields: string[]; node_types: [string[]]; edge_types: [string[]] } } };
  const meta = head.snapshot.meta;
  const nodes = numbers(buf, 'nodes'), edges = numbers(buf, 'edges');
  const sStart = buf.indexOf('"strings":[') + '"strings":'.length;
  const strings = JSON.parse(buf.toString('utf8', sStart, buf.lastIndexOf(']') + 1)) as string[];
  const nf = meta.node_fields.length, ef = meta.edge_fields.length;
  const f = (n: string) => meta.node_fields.indexOf(n), e = (n: string) => meta.edge_fields.indexOf(n);
  const nodeCount = nodes.length / nf, edgeCount = edges.length / ef;
  const id = new Uint32Array(nodeCount);
  for (let n = 0; n < nodeCount; n++) id[n] = nodes[n * nf + f('id')]!;
  const selfSize = new Uint32Array(nodeCount), firstEdge = new Uint32Array(nodeCount + 1);
  for (let n = 0, acc = 0; n < nodeCount; n++) { selfSize[n] = nodes[n * nf + f('self_size')]!; firstEdge[n] = acc; acc += nodes[n * nf + f('edge_count')]!; firstEdge[n + 1] = acc; }
  const edgeType = new Uint8Array(edgeCount), edgeName = new Uint32Array(edgeCount), edgeTo = new Uint32Array(edgeCount);
  for (let i = 0; i < edgeCount; i++) { edgeType[i] = edges[i * ef + e('type')]!; edgeName[i] = edges[i * ef + e('name_or_index')]!; edgeTo[i] = edges[i * ef + e('to_node')]! / nf; }
  return {
    nodeCount, id, selfSize, firstEdge, edgeType, edgeName, edgeTo, strings, edgeTypes: meta.edge_types[0],
    nodeType: (n) => meta.node_types[0][nodes[n * nf + f('type')]!]!,
    nodeName: (n) => strings[nodes[n * nf + f('name')]!]!,
  };
}

export function edgeLabel(g: Graph, i: number): string {
  const t = g.edgeTypes[g.edgeType[i]!]!;
  return t === 'element' || t === 'hidden' ? `[${g.edgeName[i]}]` : g.strings[g.edgeName[i]!]!;
}

/** Immediate dominators (by node) and retained sizes of every node reachable from node 0. */
function dominators(g: Graph, cut?: (edge: number) => boolean): { idom: Int32Array; retained: Float64Array } {
  const weak = g.edgeTypes.indexOf('weak');
  const strong = (i: number) => g.edgeType[i] !== weak && !cut?.(i);
  const po = new Int32Array(g.nodeCount).fill(-1), order: number[] = [];
  const seen = new Uint8Array(g.nodeCount), stack = [0], cursor = [g.firstEdge[0]!];
  seen[0] = 1;
  while (stack.length) {
    const n = stack[stack.length - 1]!, i = cursor[cursor.length - 1]!;
    if (i < g.firstEdge[n + 1]!) {
      cursor[cursor.length - 1] = i + 1;
      const to = g.edgeTo[i]!;
      if (strong(i) && !seen[to]) { seen[to] = 1; stack.push(to); cursor.push(g.firstEdge[to]!); }
    } else { po[n] = order.length; order.push(n); stack.pop(); cursor.pop(); }
  }
  const count = order.length;
  const predStart = new Uint32Array(count + 1);
  for (let n = 0; n < g.nodeCount; n++) if (po[n]! >= 0) for (let i = g.firstEdge[n]!; i < g.firstEdge[n + 1]!; i++) if (strong(i)) predStart[po[g.edgeTo[i]!]! + 1]!++;
  for (let k = 0; k < count; k++) predStart[k + 1]! += predStart[k]!;
  const preds = new Uint32Array(predStart[count]!), fill = predStart.slice(0, count);
  for (let n = 0; n < g.nodeCount; n++) if (po[n]! >= 0) for (let i = g.firstEdge[n]!; i < g.firstEdge[n + 1]!; i++) if (strong(i)) preds[fill[po[g.edgeTo[i]!]!]!++] = po[n]!;
  const dom = new Int32Array(count).fill(-1);
  const root = count - 1;
  dom[root] = root;
  for (let changed = true; changed;) {
    changed = false;
    for (let b = root - 1; b >= 0; b--) {
      let d = -1;
      for (let k = predStart[b]!; k < predStart[b + 1]!; k++) {
        let p = preds[k]!;
        if (dom[p] === -1) continue;
        if (d === -1) { d = p; continue; }
        let q = d;
        while (p !== q) { while (p < q) p = dom[p]!; while (q < p) q = dom[q]!; }
        d = p;
      }
      if (d !== dom[b]) { dom[b] = d; changed = true; }
    }
  }
  const retained = new Float64Array(g.nodeCount), idom = new Int32Array(g.nodeCount).fill(-1);
  for (let k = 0; k < count; k++) retained[order[k]!] = g.selfSize[order[k]!]!;
  for (let k = 0; k < root; k++) { const n = order[k]!, d = order[dom[k]!]!; idom[n] = d; retained[d]! += retained[n]!; }
  return { idom, retained };
}

function main(): void {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { depth: { type: 'string' }, 'min-kib': { type: 'string' }, vars: { type: 'string' }, global: { type: 'boolean' }, baseline: { type: 'string' }, 'path-depth': { type: 'string' }, cut: { type: 'boolean' } } });
  const g = load(positionals[0]!);
  const want = (values.vars ?? 'index,bookList,gating').split(',');
  const ctx = [...Array(g.nodeCount).keys()].find((n) => g.nodeName(n) === 'system / Context' && want.every((v) => edgesOf(g, n).some((i) => edgeLabel(g, i) === v)));
  if (ctx === undefined) throw new Error(`no context holds ${want.join(', ')}`);
  // --cut: the context's variables reachable through the context only (not through the fake API's
  // watch handlers or the clock's timers, which hold the informers and the loop), so that it
  // dominates what they hold. opts and log are left alone (they hold the fakes and the logger).
  const held = new Set(edgesOf(g, ctx).filter((i) => !['opts', 'log', 'clock'].includes(edgeLabel(g, i))).map((i) => g.edgeTo[i]!));
  const from = new Uint32Array(g.edgeTo.length);
  for (let n = 0; n < g.nodeCount; n++) for (let i = g.firstEdge[n]!; i < g.firstEdge[n + 1]!; i++) from[i] = n;
  const { idom, retained } = dominators(g, values.cut ? (i) => held.has(g.edgeTo[i]!) && from[i] !== ctx : undefined);
  const children = new Map<number, number[]>();
  for (let n = 0; n < g.nodeCount; n++) if (idom[n]! >= 0 && n !== 0) { const l = children.get(idom[n]!); if (l) l.push(n); else children.set(idom[n]!, [n]); }
  const minBytes = Number(values['min-kib'] ?? 256) * 1024, maxDepth = Number(values.depth ?? 4);
  const kib = (b: number) => `${(b / 1024).toFixed(0)} KiB`;
  let total = 0;
  for (let n = 0; n < g.nodeCount; n++) if (idom[n]! >= 0 || n === 0) total += g.selfSize[n]!;
  console.log(`# ${positionals[0]}: ${g.nodeCount} nodes, ${kib(total)} reachable; agent context retains ${kib(retained[ctx]!)}`);
  const show = (n: number, label: string, depth: number) => {
    console.log(`${'  '.repeat(depth)}${kib(retained[n]!).padStart(10)}  ${label} (${g.nodeType(n)} ${g.nodeName(n).slice(0, 40)})`);
    if (depth >= maxDepth) return;
    const kids = (children.get(n) ?? []).filter((k) => retained[k]! >= minBytes).sort((a, b) => retained[b]! - retained[a]!);
    for (const k of kids.slice(0, 12)) show(k, edgesOf(g, n).filter((i) => g.edgeTo[i] === k).map((i) => edgeLabel(g, i))[0] ?? '(reached through others)', depth + 1);
    // Many small ones: summed by type and name (e.g. 10,000 slices each shared by two maps).
    const small = new Map<string, { count: number; bytes: number }>();
    for (const k of children.get(n) ?? []) {
      if (retained[k]! >= minBytes) continue;
      const key = `${g.nodeType(k)} ${g.nodeName(k).slice(0, 30)}`, s = small.get(key) ?? { count: 0, bytes: 0 };
      s.count++; s.bytes += retained[k]!; small.set(key, s);
    }
    for (const [key, s] of [...small].sort((a, b) => b[1].bytes - a[1].bytes).filter(([, s]) => s.bytes >= minBytes).slice(0, 8)) console.log(`${'  '.repeat(depth + 1)}${kib(s.bytes).padStart(10)}  ${s.count} × ${key} (each below the threshold)`);
  };
  if (values.global) show(0, 'root', 0); else show(ctx, 'agent context', 0);
  attribution(g, ctx, values.baseline ? new Set(load(values.baseline).id) : undefined, Number(values['path-depth'] ?? 6));
}

/** Edges to what code shares (functions' code, hidden classes, prototypes), not the data an object holds. */
const SHARED = new Set(['shared', 'code', 'map', 'feedback_cell', '__proto__', 'script', 'constructor', 'prototype', 'native_context', 'scope_info']);

/** A path's first two steps and its last `depth`. */
function shortPath(p: string, depth: number): string {
  const parts = p.split('.');
  if (parts.length <= depth + 3) return p;
  return [...parts.slice(0, 2), '…', ...parts.slice(-depth)].join('.');
}

/** What every module reaches: not followed. */
const GLOBAL = new Set(['system / NativeContext', 'global', 'process', 'Module', 'Object / global']);

/**
 * Each object reachable from the agent context counted once, for the first of its variables that
 * reaches it (in context order, the fakes first: whatever the fake API, kernel or clock hold as
 * data is theirs; their closures, e.g. a watch's handler, are not followed). Code, hidden classes
 * and prototypes are not followed. With a baseline, objects that existed before the agent count for no one.
 */
function attribution(g: Graph, ctx: number, baseline: Set<number> | undefined, pathDepth: number): void {
  const owner = new Int32Array(g.nodeCount).fill(-1);
  // Objects of the baseline snapshot (same process, same ids) existed before the agent: nobody's, but passed through.
  if (baseline) for (let n = 0; n < g.nodeCount; n++) if (baseline.has(g.id[n]!)) owner[n] = -2;
  const weak = g.edgeTypes.indexOf('weak');
  const vars = edgesOf(g, ctx).filter((i) => g.edgeType[i] !== weak).map((i) => ({ label: edgeLabel(g, i), node: g.edgeTo[i]! }));
  const fakes = new Set(['FakeKubeApi', 'FakeIpvsKernel', 'ManualClock', 'FakeKernel']);
  const fakeNodes = [...Array(g.nodeCount).keys()].filter((n) => g.nodeType(n) === 'object' && fakes.has(g.nodeName(n))).map((n) => ({ label: g.nodeName(n), node: n }));
  // opts and log last: they hold the fakes, the logger and the callbacks, not the agent's own state.
  const order = [...fakeNodes, ...vars.filter((v) => v.label !== 'opts' && v.label !== 'log'), ...vars.filter((v) => v.label === 'opts' || v.label === 'log')];
  const sizes: Array<{ label: string; bytes: number; reach: number; fake: boolean; byPath: Map<string, number> }> = [];
  owner[ctx] = order.length;
  order.forEach((v, k) => {
    const fake = fakes.has(g.nodeName(v.node));
    let bytes = 0, reach = 0;
    const seen = new Set<number>([v.node]), queue = [v.node];
    const path = new Map<number, string>([[v.node, v.label]]), byPath = new Map<string, number>();
    for (let q = 0; q < queue.length; q++) {
      const n = queue[q]!;
      reach += g.selfSize[n]!;
      if (owner[n] === -1) { owner[n] = k; bytes += g.selfSize[n]!; byPath.set(path.get(n)!, (byPath.get(path.get(n)!) ?? 0) + g.selfSize[n]!); }
      if (fake && (g.nodeType(n) === 'closure' || g.nodeName(n) === 'system / Context')) continue;
      for (let i = g.firstEdge[n]!; i < g.firstEdge[n + 1]!; i++) {
        const to = g.edgeTo[i]!;
        if (g.edgeType[i] === weak || seen.has(to) || owner[to] === order.length || SHARED.has(edgeLabel(g, i)) || g.nodeType(to) === 'code' || GLOBAL.has(g.nodeName(to))) continue;
        if (owner[to]! >= 0 && owner[to] !== k) continue;
        seen.add(to); queue.push(to);
        const p = path.get(n)!;
        path.set(to, shortPath(`${p}.${/^\[?\d+\]?$/.test(edgeLabel(g, i)) ? '[]' : edgeLabel(g, i)}`, pathDepth));
      }
      path.delete(n);
    }
    sizes.push({ label: v.label, bytes, reach, fake, byPath });
  });
  const kib = (b: number) => `${(b / 1024).toFixed(0)} KiB`.padStart(10);
  console.log('# attribution: each object to the first context variable reaching it (fakes first)');
  let agent = 0;
  for (const s of sizes.filter((x) => !x.fake)) agent += s.bytes;
  console.log(`${kib(agent)}  agent, all variables`);
  for (const s of [...sizes].sort((a, b) => b.bytes - a.bytes).filter((x) => x.bytes >= 64 * 1024)) {
    console.log(`${kib(s.bytes)}  ${s.fake ? '(fake) ' : ''}${s.label}`);
    if (!s.fake) for (const [p, b] of [...s.byPath].sort((x, y) => y[1] - x[1]).filter(([, b]) => b >= 256 * 1024)) console.log(`    ${kib(b)}  ${p}`);
  }
}

export function edgesOf(g: Graph, n: number): number[] {
  const out: number[] = [];
  for (let i = g.firstEdge[n]!; i < g.firstEdge[n + 1]!; i++) out.push(i);
  return out;
}

if (import.meta.main) main();
