// Pure: this node's AgentReport from what its last sync and real-server pass left. Bounded: the
// plan-slice resourceVersion the sync read its plan at, plus the exceptions — errors of the node
// as a whole (nodeErrors: every VirtualServer it directs fails), owners whose services or
// real-server preparation failed (failing), owners kept as they were (frozen) — and the real
// servers prepared here. The controller reads "no exception and synced past the plan" as
// programmed, so every failure must land in one of these lists.
import { buildAgentReport, type AgentReportObject, type PreparedRealServer, type ReportException, type UnhealthyRealServer } from '../../api/agent-report.ts';
import type { RealServerHealth } from '../health/agent-health.ts';
import type { SyncError, SyncResult } from '../sync/sync.ts';
import { canonicalKey, type KeyOwner } from './plan-book.ts';

/** A real-server preparation error: of these addresses, or (none given) of the whole pass. */
export interface PrepError { addresses?: readonly string[]; message: string }

/** The step each sync error without a service key belongs to, as the report names it. */
const STEPS: Partial<Record<SyncError['op'], string>> = {
  dump: 'kernel read-back failed',
  listVips: 'director setup (lvs0, sysctls, nft) failed',
  bindVip: 'binding VIPs on lvs0 failed',
  unbindVip: 'unbinding VIPs from lvs0 failed',
  plan: 'sync failed',
};

export interface SyncFailures {
  /** Service key → what failed for it (netlink operations, plan entries). */
  byKey: Map<string, string>;
  /** Failed steps of no one service, each once. */
  nodeErrors: string[];
}

/** A sync result as report state: errors of one service by key, the others for the whole node. */
export function syncFailures(r: SyncResult | undefined): SyncFailures {
  const byKey = new Map<string, string>();
  const nodeErrors: string[] = [];
  const note = (key: string, text: string) => byKey.set(key, byKey.has(key) ? `${byKey.get(key)}; ${text}` : text);
  if (r?.kind === 'retry') {
    for (const e of r.errors) {
      if (e.key) note(e.key, `netlink ${e.op}${e.dest ? ` ${e.dest}` : ''} failed: ${e.error.message}`);
      else {
        const text = `${STEPS[e.op] ?? `${e.op} failed`}: ${e.error.message}`;
        if (!nodeErrors.includes(text)) nodeErrors.push(text);
      }
    }
  }
  for (const p of r?.problems ?? []) note(p.key, `${p.field}: ${p.message}`);
  return { byKey, nodeErrors };
}

/** Exceptions by owner: one entry per uid, its messages joined. */
class Exceptions {
  readonly #m = new Map<string, { owner: KeyOwner; messages: string[] }>();
  add(owner: KeyOwner, message: string): void {
    const e = this.#m.get(owner.uid) ?? { owner, messages: [] };
    if (!e.messages.includes(message)) e.messages.push(message);
    this.#m.set(owner.uid, e);
  }
  list(): ReportException[] {
    return [...this.#m.values()].map((e) => ({ uid: e.owner.uid, virtualServer: e.owner.virtualServer, message: e.messages.join('; ') }));
  }
}

export interface ReportState {
  /** The plan-slice resourceVersion the finished sync read its plan at. */
  syncedResourceVersion: string;
  sync: SyncResult | undefined;
  /** Owner of every key that sync programmed or held. */
  keyOwners: ReadonlyMap<string, KeyOwner>;
  /** Owners kept as they were, with the reason (the book's and the removal guards'). */
  frozen: ReadonlyArray<{ owner: KeyOwner; message: string }>;
  prepared: readonly PreparedRealServer[];
  prepErrors: readonly PrepError[];
  /** Local real-server address → owners it serves. */
  addressOwners: ReadonlyMap<string, readonly KeyOwner[]>;
  /** Health checks: targets checked here, and the real servers out of rotation by service key. */
  health?: { checked: number; down: readonly RealServerHealth[] };
  /** VIPs this node answers ARP/NDP for now. */
  announced?: readonly string[];
  /** Where this node takes director heartbeats (HA configured). */
  peer?: { address: string; port: number };
  /** Why this director is yielding in the election (./yielding.ts), if it is. */
  yielding?: string;
}

/** Down real servers by owner uid, one entry per (uid, address, port), with the owner's name. */
function unhealthyOf(s: ReportState): UnhealthyRealServer[] {
  const out = new Map<string, UnhealthyRealServer>();
  for (const d of s.health?.down ?? []) {
    const owner = s.keyOwners.get(d.serviceKey) ?? s.keyOwners.get(canonicalKey(d.serviceKey));
    if (!owner) continue;
    const k = `${owner.uid}|${d.address}|${d.port}`;
    if (!out.has(k)) out.set(k, { uid: owner.uid, virtualServer: owner.virtualServer, address: d.address, port: d.port, message: d.message, since: new Date(d.since).toISOString().replace(/\.\d{3}Z$/, 'Z') });
  }
  return [...out.values()];
}

export function reportFor(node: string, s: ReportState): AgentReportObject {
  const f = syncFailures(s.sync);
  const failing = new Exceptions();
  for (const [key, message] of f.byKey) {
    const owner = s.keyOwners.get(key) ?? s.keyOwners.get(canonicalKey(key));
    // A key of no owner (cannot happen with a plan from the book) has nobody to fail but the node.
    if (owner) failing.add(owner, `${key}: ${message}`);
    else f.nodeErrors.push(`${key}: ${message}`);
  }
  for (const e of s.prepErrors) {
    const addresses = e.addresses ?? [...s.addressOwners.keys()];
    for (const a of addresses) for (const owner of s.addressOwners.get(a) ?? []) failing.add(owner, `real-server preparation failed: ${e.message}`);
  }
  const frozen = new Exceptions();
  for (const x of s.frozen) frozen.add(x.owner, x.message);
  return buildAgentReport(node, {
    syncedResourceVersion: s.syncedResourceVersion, nodeErrors: f.nodeErrors,
    failing: failing.list(), frozen: frozen.list(), prepared: s.prepared,
    ...(s.health ? { health: { checked: s.health.checked, unhealthy: unhealthyOf(s) } } : {}),
    ...(s.announced ? { announced: s.announced } : {}),
    ...(s.peer ? { peer: s.peer } : {}),
    ...(s.yielding ? { yielding: s.yielding } : {}),
  });
}

/** The report's content as compared before writing: canonical JSON, metadata aside. */
export function reportContent(r: AgentReportObject): string {
  const { metadata: _m, ...rest } = r;
  const canonical = (v: unknown): string => {
    if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
    if (v && typeof v === 'object') {
      const o = v as Record<string, unknown>;
      return `{${Object.keys(o).filter((k) => o[k] !== undefined).sort().map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`).join(',')}}`;
    }
    return JSON.stringify(v);
  };
  return canonical(rest);
}
