// The agents' reports (one AgentReport per node, api/agent-report.ts) as the controller reads
// them: by node, with their exceptions indexed by VirtualServer uid, so judging one
// VirtualServer costs O(its directors) and never a scan of every report's lists. No I/O here.
import { compareResourceVersions, type AgentReportObject } from '../api/agent-report.ts';

/** What one node says of one VirtualServer beyond "synced up to": its listed exceptions. */
export interface NodeException {
  failing?: string;
  frozen?: string;
  /** Real servers its health checks keep out of rotation there. */
  unhealthy?: Array<{ address: string; port: number; message: string; since: string }>;
}

/** What changed between two reports of one node, for deciding which VirtualServers to mark. */
export interface ReportChange {
  node: string;
  /** The report appeared, disappeared, or its synced resourceVersion is not comparable. */
  whole: boolean;
  /** (lo, hi]: the synced resourceVersion moved across this range (either way). */
  range?: [bigint, bigint];
  /** nodeErrors changed, or whether a list is truncated changed: every VirtualServer the node directs. */
  directed: boolean;
  /** uids entering, leaving or changing in the failing or frozen lists, with the name given for each. */
  uids: Map<string, string>;
}

const truncated = (r: AgentReportObject) => r.failingCount > r.failing.length || r.frozenCount > r.frozen.length;

function exceptionsOf(r: AgentReportObject | undefined): Map<string, NodeException & { virtualServer: string }> {
  const out = new Map<string, NodeException & { virtualServer: string }>();
  for (const e of r?.failing ?? []) out.set(e.uid, { ...out.get(e.uid), virtualServer: e.virtualServer, failing: e.message });
  for (const e of r?.frozen ?? []) out.set(e.uid, { ...out.get(e.uid), virtualServer: e.virtualServer, frozen: e.message });
  for (const u of r?.health?.unhealthy ?? []) {
    const prev = out.get(u.uid);
    const entry = { address: u.address, port: u.port, message: u.message, since: u.since };
    out.set(u.uid, { ...prev, virtualServer: u.virtualServer, unhealthy: [...(prev?.unhealthy ?? []), entry] });
  }
  return out;
}

/** The difference between a node's previous and next report (pure). */
export function reportChange(node: string, prev: AgentReportObject | undefined, next: AgentReportObject | undefined): ReportChange {
  const uids = new Map<string, string>();
  const a = exceptionsOf(prev), b = exceptionsOf(next);
  for (const [uid, e] of a) {
    const n = b.get(uid);
    if (!n || n.failing !== e.failing || n.frozen !== e.frozen || JSON.stringify(n.unhealthy) !== JSON.stringify(e.unhealthy)) uids.set(uid, e.virtualServer);
  }
  for (const [uid, e] of b) if (!a.has(uid)) uids.set(uid, e.virtualServer);
  const out: ReportChange = { node, whole: false, directed: false, uids };
  if (!prev || !next) return { ...out, whole: true };
  const cmp = compareResourceVersions(prev.syncedResourceVersion, next.syncedResourceVersion);
  if (cmp === undefined) out.whole = true;
  else if (cmp !== 0) {
    const x = BigInt(prev.syncedResourceVersion), y = BigInt(next.syncedResourceVersion);
    out.range = x < y ? [x, y] : [y, x];
  }
  // Announcements are few and change on failover only: every VirtualServer the node directs is
  // looked at again (its status.announcers).
  out.directed = JSON.stringify(prev.nodeErrors) !== JSON.stringify(next.nodeErrors) || truncated(prev) !== truncated(next)
    || JSON.stringify(prev.announced ?? []) !== JSON.stringify(next.announced ?? []);
  return out;
}

export class Reports {
  readonly #byNode = new Map<string, AgentReportObject>();
  readonly #exceptions = new Map<string, Map<string, NodeException>>();

  get(node: string): AgentReportObject | undefined {
    return this.#byNode.get(node);
  }

  /** Nodes listing uid as failing or frozen, with what they say. */
  exceptions(uid: string): ReadonlyMap<string, NodeException> {
    return this.#exceptions.get(uid) ?? new Map();
  }

  /** Stores a node's report (undefined: deleted or unreadable) and returns what changed. */
  set(node: string, next: AgentReportObject | undefined): ReportChange {
    const prev = this.#byNode.get(node);
    for (const uid of exceptionsOf(prev).keys()) {
      const m = this.#exceptions.get(uid);
      if (m?.delete(node) && m.size === 0) this.#exceptions.delete(uid);
    }
    if (next) this.#byNode.set(node, next); else this.#byNode.delete(node);
    for (const [uid, e] of exceptionsOf(next)) {
      let m = this.#exceptions.get(uid);
      if (!m) this.#exceptions.set(uid, (m = new Map()));
      m.set(node, {
        ...(e.failing !== undefined ? { failing: e.failing } : {}), ...(e.frozen !== undefined ? { frozen: e.frozen } : {}),
        ...(e.unhealthy !== undefined ? { unhealthy: e.unhealthy } : {}),
      });
    }
    return reportChange(node, prev, next);
  }
}

/** What marking needs to know of the published plans. */
export interface PlanIndex {
  /** Owners (VirtualServer keys) whose slices' highest resourceVersion lies in (lo, hi]. */
  ownersBetween(lo: bigint, hi: bigint): string[];
  owners(): string[];
  /** The sorted directors of an owner's published plan. */
  directors(owner: string): readonly string[] | undefined;
  /** The VirtualServer key of a uid, when known. */
  keyOfUid(uid: string): string | undefined;
}

function sortedHas(list: readonly string[], x: string): boolean {
  let lo = 0, hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (list[mid]! < x) lo = mid + 1; else hi = mid;
  }
  return list[lo] === x;
}

/**
 * The VirtualServer keys a report change can affect: those the node directs whose plan's highest
 * slice resourceVersion the synced resourceVersion moved across, those whose uid entered, left
 * or changed in its exception lists, and — when the report appeared or disappeared, its synced
 * resourceVersion is not comparable, its nodeErrors changed or a list became (un)truncated —
 * every VirtualServer the node directs. Cost: O(log V + k) for the range plus O(u) for the
 * exceptions (k owners in the range, u uids in the diff), each checked against its sorted
 * directors in O(log D); the whole-node cases scan all V published plans, which happens only
 * when a node's report appears, goes, or its node-wide errors change.
 */
export function keysToMark(change: ReportChange, plans: PlanIndex): string[] {
  const out = new Set<string>();
  const directs = (owner: string) => { const d = plans.directors(owner); return d !== undefined && sortedHas(d, change.node); };
  const candidates = change.whole || change.directed ? plans.owners() : change.range ? plans.ownersBetween(change.range[0], change.range[1]) : [];
  for (const owner of candidates) if (directs(owner)) out.add(owner);
  for (const [uid, given] of change.uids) out.add(plans.keyOfUid(uid) ?? given);
  return [...out];
}
