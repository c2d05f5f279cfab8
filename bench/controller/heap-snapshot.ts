// Reads a V8 heap snapshot (node:v8 writeHeapSnapshot) and says what holds the memory:
//   node bench/controller/heap-snapshot.ts FILE [Class ...] [--depth=N] [--min=MiB]
// For every object of the named classes (default Controller, FakeKubeApi) it prints the retained
// size (the dominator tree's: what would be freed if only that object went) of each property,
// following properties down to --depth (default 3), and the sizes of what that object dominates
// directly but reaches through no single property (objects two structures share: e.g. a cached
// Service both an informer and the World index point at). Weak edges are not followed, as in
// DevTools. Sizes are V8's self sizes, in MiB.
import { readFileSync } from 'node:fs';

interface Snapshot {
  nodeFields: number; edgeFields: number; nodeTypes: string[]; edgeTypes: string[];
  nodes: Float64Array; edges: Float64Array; strings: string[];
  /** index of the first edge (in edges, not multiplied) of each node */
  firstEdge: Uint32Array;
}

function numbersAfter(buf: Buffer, key: string, from: number): { values: Float64Array; end: number } {
  let i = buf.indexOf(`"${key}":[`, from, 'latin1');
  if (i < 0) throw new Error(`no ${key} in snapshot`);
  i += key.length + 4;
  const out: number[] = [];
  let n = 0, inNum = false;
  for (; buf[i] !== 0x5d; i++) {
    const c = buf[i]!;
    if (c >= 0x30 && c <= 0x39) { n = n * 10 + (c - 0x30); inNum = true; } else if (inNum) { out.push(n); n = 0; inNum = false; }
  }
  if (inNum) out.push(n);
  return { values: Float64Array.from(out), end: i };
}

function stringsAfter(buf: Buffer, from: number): string[] {
  let i = buf.indexOf('"strings":[', from, 'latin1') + 11;
  const out: string[] = [];
  while (buf[i] !== 0x5d) {
    if (buf[i] !== 0x22) { i++; continue; }
    let j = i + 1, escaped = false;
    while (buf[j] !== 0x22) { if (buf[j] === 0x5c) { escaped = true; j++; } j++; }
    const raw = buf.subarray(i, j + 1);
    out.push(escaped ? (JSON.parse(raw.toString('utf8')) as string) : raw.subarray(1, raw.length - 1).toString('utf8'));
    i = j + 1;
  }
  return out;
}

export function readSnapshot(path: string): Snapshot {
  const buf = readFileSync(path);
  const metaEnd = buf.indexOf('"nodes":[', 0, 'latin1');
  const head = buf.subarray(0, metaEnd).toString('utf8').replace(/,\s*$/, '') + '}';
  const meta = (JSON.parse(head) as { snapshot: { meta: { node_fields: string[]; edge_fields: string[]; node_types: [string[]]; edge_types: [string[]] } } }).snapshot.meta;
  const nodes = numbersAfter(buf, 'nodes', metaEnd);
  const edges = numbersAfter(buf, 'edges', nodes.end);
  const strings = stringsAfter(buf, edges.end);
  const nf = meta.node_fields.length, ef = meta.edge_fields.length;
  const count = nodes.values.length / nf;
  const firstEdge = new Uint32Array(count + 1);
  for (let n = 0, e = 0; n < count; n++) { firstEdge[n] = e; e += nodes.values[n * nf + 4]!; firstEdge[n + 1] = e; }
  return { nodeFields: nf, edgeFields: ef, nodeTypes: meta.node_types[0], edgeTypes: meta.edge_types[0], nodes: nodes.values, edges: edges.values, strings, firstEdge };
}

export class Graph {
  readonly s: Snapshot;
  readonly count: number;
  readonly weak: number;
  idom!: Int32Array;
  retained!: Float64Array;

  constructor(s: Snapshot) {
    this.s = s;
    this.count = s.nodes.length / s.nodeFields;
    this.weak = s.edgeTypes.indexOf('weak');
  }

  type(n: number): string { return this.s.nodeTypes[this.s.nodes[n * this.s.nodeFields]!]!; }
  name(n: number): string { return this.s.strings[this.s.nodes[n * this.s.nodeFields + 1]!]!; }
  self(n: number): number { return this.s.nodes[n * this.s.nodeFields + 3]!; }

  *children(n: number): Generator<{ to: number; type: string; name: string }> {
    const { edges, edgeFields: ef, nodeFields: nf, edgeTypes, strings, firstEdge } = this.s;
    for (let e = firstEdge[n]!; e < firstEdge[n + 1]!; e++) {
      const t = edges[e * ef]!;
      const nameOrIndex = edges[e * ef + 1]!;
      const type = edgeTypes[t]!;
      yield { to: edges[e * ef + 2]! / nf, type, name: type === 'element' || type === 'hidden' ? String(nameOrIndex) : strings[nameOrIndex]! };
    }
  }

  /** Cooper, Harvey and Kennedy's iterative dominators over the graph from node 0 (weak edges skipped). */
  dominators(): void {
    const { edges, edgeFields: ef, nodeFields: nf, firstEdge } = this.s;
    const n = this.count;
    const post = new Int32Array(n).fill(-1), order: number[] = [];
    const preds: number[][] = Array.from({ length: n }, () => []);
    const stack = [0], it = new Uint32Array(n);
    const seen = new Uint8Array(n); seen[0] = 1;
    for (let i = 0; i < n; i++) it[i] = firstEdge[i]!;
    while (stack.length) {
      const v = stack.at(-1)!;
      if (it[v]! < firstEdge[v + 1]!) {
        const e = it[v]!++;
        if (edges[e * ef] === this.weak) continue;
        const w = edges[e * ef + 2]! / nf;
        preds[w]!.push(v);
        if (!seen[w]) { seen[w] = 1; stack.push(w); }
      } else { post[v] = order.length; order.push(v); stack.pop(); }
    }
    const idom = new Int32Array(n).fill(-1); idom[0] = 0;
    const intersect = (a: number, b: number) => {
      while (a !== b) { while (post[a]! < post[b]!) a = idom[a]!; while (post[b]! < post[a]!) b = idom[b]!; }
      return a;
    };
    for (let changed = true; changed;) {
      changed = false;
      for (let k = order.length - 2; k >= 0; k--) {
        const v = order[k]!;
        let d = -1;
        for (const p of preds[v]!) if (idom[p] !== -1) d = d === -1 ? p : intersect(p, d);
        if (d !== -1 && idom[v] !== d) { idom[v] = d; changed = true; }
      }
    }
    const retained = new Float64Array(n);
    for (const v of order) { retained[v]! += this.self(v); if (v !== 0 && idom[v]! >= 0) retained[idom[v]!]! += retained[v]!; }
    this.idom = idom; this.retained = retained;
  }
}

const mib = (b: number) => (b / 1048576).toFixed(2);

const DATA = new Set(['object', 'array', 'string', 'concatenated string', 'sliced string', 'number', 'heap number', 'bigint']);

/** Self sizes of the plain data reachable from obj (objects, arrays, strings; not functions or hidden classes). */
function reachable(g: Graph, obj: number): number {
  const seen = new Set<number>([obj]);
  const stack = [obj];
  let total = 0;
  while (stack.length) {
    const v = stack.pop()!;
    total += g.self(v);
    for (const e of g.children(v)) {
      if (e.type === 'weak' || e.type === 'shortcut' || seen.has(e.to) || !DATA.has(g.type(e.to)) || g.name(e.to).startsWith('system /')) continue;
      if (e.name === '__proto__' || e.name === 'map') continue;
      seen.add(e.to); stack.push(e.to);
    }
  }
  return total;
}

/**
 * Where the data a Map reaches lies: self sizes summed by property path (element indexes as []),
 * each object counted once, at the first path that reaches it (depth-first from the Map).
 */
export function fieldProfile(g: Graph, map: number): Array<[string, number, number]> {
  const by = new Map<string, [number, number]>();
  const seen = new Set<number>([map]);
  const visit = (v: number, path: string, depth: number) => {
    for (const e of g.children(v)) {
      if (e.type === 'weak' || e.type === 'shortcut' || seen.has(e.to) || !DATA.has(g.type(e.to)) || g.name(e.to).startsWith('system /')) continue;
      if (e.name === '__proto__' || e.name === 'map') continue;
      seen.add(e.to);
      const seg = depth <= 1 ? '' : e.type === 'element' ? '[]' : e.type === 'internal' ? '' : `.${e.name}`;
      const p = `${path}${seg}`;
      const key = `${p} ${g.type(e.to) === 'object' ? '' : g.type(e.to)}`.trim();
      const x = by.get(key) ?? [0, 0];
      by.set(key, [x[0] + g.self(e.to), x[1] + 1]);
      visit(e.to, p, depth + 1);
    }
  };
  visit(map, '', 0);
  return [...by].map(([k, [b, c]]) => [k, b, c] as [string, number, number]).sort((a, b) => b[1] - a[1]);
}

function describe(g: Graph, obj: number, label: string, depth: number, minBytes: number, out: string[], indent = ''): void {
  const reach = g.type(obj) === 'object' && (g.name(obj) === 'Map' || g.name(obj) === 'Set' || g.name(obj) === 'Array') ? `, reaches ${mib(reachable(g, obj))} MiB of data` : '';
  out.push(`${indent}${mib(g.retained[obj]!).padStart(8)} MiB  ${label}  (${g.type(obj)} ${g.name(obj)}${reach})`);
  if (depth === 0) return;
  const viaEdge = new Set<number>();
  const rows: Array<{ to: number; label: string }> = [];
  for (const e of g.children(obj)) {
    if (g.idom[e.to] !== obj || viaEdge.has(e.to)) continue;
    viaEdge.add(e.to);
    if (g.retained[e.to]! >= minBytes) rows.push({ to: e.to, label: `${e.type === 'element' ? `[${e.name}]` : e.name}` });
  }
  rows.sort((a, b) => g.retained[b.to]! - g.retained[a.to]!);
  for (const r of rows) describe(g, r.to, r.label, depth - 1, minBytes, out, `${indent}  `);
  let other = 0, others = 0;
  const byName = new Map<string, number>();
  for (let v = 0; v < g.count; v++) {
    if (g.idom[v] !== obj || viaEdge.has(v) || v === obj) continue;
    others++; other += g.retained[v]!;
    const k = `${g.type(v)} ${g.type(v) === 'string' ? '' : g.name(v)}`;
    byName.set(k, (byName.get(k) ?? 0) + g.retained[v]!);
  }
  if (other >= minBytes) {
    const top = [...byName].sort((a, b) => b[1] - a[1]).slice(0, 4).map(([k, b]) => `${k.trim()} ${mib(b)}`).join(', ');
    out.push(`${indent}  ${mib(other).padStart(8)} MiB  (shared: ${others} objects dominated here but reached by several properties: ${top})`);
  }
}

function main(): void {
  const args = process.argv.slice(2);
  const file = args.find((a) => !a.startsWith('--'));
  if (!file) throw new Error('usage: heap-snapshot.ts FILE [Class ...] [--depth=N] [--min=MiB]');
  const classes = args.filter((a) => !a.startsWith('--') && a !== file);
  const depth = Number(args.find((a) => a.startsWith('--depth='))?.slice(8) ?? 3);
  const minBytes = Number(args.find((a) => a.startsWith('--min='))?.slice(6) ?? 0.25) * 1048576;
  const g = new Graph(readSnapshot(file));
  g.dominators();
  const out = [`total ${mib(g.retained[0]!)} MiB in ${g.count} nodes`];
  const profile = args.find((a) => a.startsWith('--profile='))?.slice(10);
  if (profile) {
    // --profile=Informer: the field profile of every such object's #cache (or the object itself when it is a Map).
    for (let v = 0; v < g.count; v++) {
      if (g.type(v) !== 'object' || g.name(v) !== profile) continue;
      const cache = [...g.children(v)].find((e) => e.name === '#cache' || e.name === '#written' || e.name === '#cached')?.to ?? v;
      const rows = fieldProfile(g, cache);
      const total = rows.reduce((n, r) => n + r[1], 0);
      out.push(`${profile} #${v}: ${mib(total)} MiB of data`);
      for (const [k, b, c] of rows.slice(0, 25)) out.push(`  ${mib(b).padStart(8)} MiB  ${String(c).padStart(8)}  ${k}`);
    }
  }
  const top = Number(args.find((a) => a.startsWith('--top='))?.slice(6) ?? 0);
  if (top > 0) {
    // The biggest subtrees hanging directly off the roots (what no one class of ours dominates).
    const tops: number[] = [];
    for (let v = 1; v < g.count; v++) if (g.type(g.idom[v]!) === 'synthetic' && g.type(v) !== 'synthetic') tops.push(v);
    tops.sort((a, b) => g.retained[b]! - g.retained[a]!);
    for (const v of tops.slice(0, top)) out.push(`${mib(g.retained[v]!).padStart(8)} MiB  root child: ${g.type(v)} ${g.name(v).slice(0, 80)}`);
    const byKind = new Map<string, [number, number]>();
    for (const v of tops) {
      const k = `${g.type(v)} ${g.type(v).includes('string') ? '' : g.name(v).slice(0, 40)}`;
      const x = byKind.get(k) ?? [0, 0];
      byKind.set(k, [x[0] + g.retained[v]!, x[1] + 1]);
    }
    for (const [k, [b, c]] of [...byKind].sort((a, b) => b[1][0] - a[1][0]).slice(0, top)) out.push(`${mib(b).padStart(8)} MiB  root children of kind ${k.trim()}: ${c}`);
  }
  for (const cls of classes.length ? classes : ['Controller', 'FakeKubeApi']) {
    for (let v = 0; v < g.count; v++) if (g.type(v) === 'object' && g.name(v) === cls) describe(g, v, cls, depth, minBytes, out);
  }
  console.log(out.join('\n'));
}

if (import.meta.main) main();
