// VIPPools (lvs.dev/v1alpha1, cluster-scoped, admin-owned): which namespaces may use which
// addresses, served by which directors, with which forwarding methods, pointing static real
// servers where. Deny by default: an address in no usable pool is refused. Pure: the controller
// feeds it the pools and namespaces it watches; the resolver asks it about each VIP.
//
// A pool that the CRD's CEL could not fully judge (a range whose first address is after its last,
// an address range overlapping another pool's) is unusable as a whole: it grants nothing, and its
// status says which field is wrong. Between overlapping pools the older one (creationTimestamp,
// then name) keeps its addresses, so creating a pool never takes addresses from a pool in use.
import type { Forwarding } from './plan.ts';
import { parseAddressRange, parseCidr, rangeContains, rangesOverlap, type AddressRange, type ParsedIp } from './ip.ts';
import { timestampMs } from './resolve/order.ts';
import { selectorMatches, type LabelSelectorLike, type Labels } from './label-selector.ts';

/** The VIPPool shape read here: every field optional, validated (stored objects are not trusted). */
export interface VIPPoolLike {
  metadata?: { name?: string; uid?: string; creationTimestamp?: string | Date };
  spec?: {
    addresses?: string[];
    allocation?: { namespaces?: string[]; namespaceSelector?: LabelSelectorLike; autoAssign?: boolean };
    directors?: { nodeSelector?: Record<string, string> };
    forwarding?: string[];
    staticRealServers?: string[];
    realServers?: { prepareHosts?: boolean };
    announce?: { l2?: { interfaces?: string[] }; none?: object };
  };
}

/** How the network finds a pool's VIPs: L2 (ARP/NDP by the active director) or not at all. */
export type PoolAnnounce = { mode: 'L2'; interfaces?: string[] } | { mode: 'None' };

export interface PoolRange extends AddressRange {
  /** spec.addresses[i] */
  field: string;
  text: string;
}

export interface Pool {
  name: string;
  created: number;
  ranges: PoolRange[];
  namespaces: ReadonlySet<string>;
  namespaceSelector?: LabelSelectorLike;
  autoAssign: boolean;
  /** undefined: every node. */
  directors?: Readonly<Record<string, string>>;
  forwarding: ReadonlySet<Forwarding>;
  staticRealServers: AddressRange[];
  prepareHosts: boolean;
  announce: PoolAnnounce;
}

export interface PoolProblem {
  reason: 'InvalidAddress' | 'Overlap';
  field: string;
  message: string;
}

export interface PoolSet {
  /** Usable pools, oldest first. */
  pools: Pool[];
  /** Pool name -> why it is unusable. Pools absent here are usable. */
  problems: Map<string, PoolProblem[]>;
}

const FORWARDINGS: readonly Forwarding[] = ['NAT', 'DR', 'TUN'];

function ranges(list: unknown, field: string, problems: PoolProblem[], parse: (s: unknown) => AddressRange | string): PoolRange[] {
  const out: PoolRange[] = [];
  (Array.isArray(list) ? list : []).forEach((text, i) => {
    const r = parse(text);
    if (typeof r === 'string') problems.push({ reason: 'InvalidAddress', field: `${field}[${i}]`, message: r });
    else out.push({ ...r, field: `${field}[${i}]`, text: String(text) });
  });
  return out;
}

/** One pool on its own: its parsed form and the problems found in it. */
function parsePool(p: VIPPoolLike): { pool?: Pool; problems: PoolProblem[] } {
  const problems: PoolProblem[] = [];
  const name = p?.metadata?.name;
  if (typeof name !== 'string' || name === '') return { problems };
  const spec = p.spec ?? {};
  const rs = ranges(spec.addresses, 'spec.addresses', problems, parseAddressRange);
  if (rs.length === 0 && problems.length === 0) problems.push({ reason: 'InvalidAddress', field: 'spec.addresses', message: 'the pool has no addresses' });
  const statics = ranges(spec.staticRealServers, 'spec.staticRealServers', problems, parseCidr);
  const alloc = spec.allocation ?? {};
  const fw = Array.isArray(spec.forwarding) ? spec.forwarding : FORWARDINGS;
  const pool: Pool = {
    name,
    created: timestampMs(p.metadata?.creationTimestamp),
    ranges: rs,
    namespaces: new Set((Array.isArray(alloc.namespaces) ? alloc.namespaces : []).filter((n) => typeof n === 'string')),
    autoAssign: alloc.autoAssign === true,
    forwarding: new Set(FORWARDINGS.filter((f) => fw.includes(f))),
    staticRealServers: statics,
    prepareHosts: spec.realServers?.prepareHosts === true,
    announce: parseAnnounce(spec.announce),
  };
  if (alloc.namespaceSelector && typeof alloc.namespaceSelector === 'object') pool.namespaceSelector = alloc.namespaceSelector;
  const sel = spec.directors?.nodeSelector;
  if (sel && typeof sel === 'object') pool.directors = sel;
  return { pool, problems };
}

/** spec.announce; absent (a pool stored before the field existed) is the CRD's default, l2. */
function parseAnnounce(a: NonNullable<VIPPoolLike['spec']>['announce']): PoolAnnounce {
  if (a && typeof a === 'object' && a.none && !a.l2) return { mode: 'None' };
  const list = a?.l2?.interfaces;
  const interfaces = Array.isArray(list) ? list.filter((d): d is string => typeof d === 'string' && /^[^\s/.][^\s/]{0,14}$/.test(d)) : [];
  return interfaces.length > 0 ? { mode: 'L2', interfaces: [...new Set(interfaces)].sort() } : { mode: 'L2' };
}

function older(a: Pool, b: Pool): boolean {
  return a.created !== b.created ? a.created < b.created : a.name < b.name;
}

/** Parses every pool and settles overlaps: the older pool keeps, the newer is unusable. */
export function buildPools(list: readonly VIPPoolLike[]): PoolSet {
  const problems = new Map<string, PoolProblem[]>();
  const parsed: Pool[] = [];
  for (const p of list) {
    const r = parsePool(p);
    if (!r.pool) continue;
    if (r.problems.length > 0) problems.set(r.pool.name, r.problems);
    else parsed.push(r.pool);
  }
  parsed.sort((a, b) => (older(a, b) ? -1 : 1));
  const pools: Pool[] = [];
  for (const p of parsed) {
    const clash = overlapWith(p, pools);
    if (clash) problems.set(p.name, [clash]);
    else pools.push(p);
  }
  return { pools, problems };
}

function overlapWith(p: Pool, kept: readonly Pool[]): PoolProblem | undefined {
  for (const r of p.ranges) {
    for (const q of kept) {
      const hit = q.ranges.find((x) => rangesOverlap(x, r));
      if (hit) {
        return {
          reason: 'Overlap', field: r.field,
          message: `${r.text} overlaps ${hit.text} of VIPPool ${q.name} (${hit.field}), which is older and keeps its addresses; this pool grants nothing until the overlap is removed`,
        };
      }
    }
  }
  return undefined;
}

/** The usable pool holding this address (pools never overlap, so at most one). */
export function poolOf(set: PoolSet, ip: ParsedIp): Pool | undefined {
  return set.pools.find((p) => p.ranges.some((r) => rangeContains(r, ip)));
}

/** Whether the pool lets VirtualServers and Services of this namespace use its addresses. */
export function poolAdmits(pool: Pool, namespace: string, namespaceLabels: Labels | undefined): boolean {
  if (pool.namespaces.has(namespace)) return true;
  return pool.namespaceSelector !== undefined && namespaceLabels !== undefined && selectorMatches(pool.namespaceSelector, namespaceLabels);
}

/** Whether a static real server (or an endpoint that is not a pod of the namespace) may be used. */
export function staticAllowed(pool: Pool, ip: ParsedIp): boolean {
  return pool.staticRealServers.some((r) => rangeContains(r, ip));
}
