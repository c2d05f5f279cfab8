// Pure: real servers in cluster mode. Gating — a DR/TUN real server that must be prepared gets
// weight > 0 only once the agent of its node reports it prepared for that VIP and method, so no
// connection goes to a pod that would drop it — and what this node prepares and reports.
import { parseAgentReport, preparedKey, type PreparedRealServer } from '../../api/agent-report.ts';
import type { PlanRealServer, PlanService } from '../../api/plan.ts';
import type { RealServerVip } from '../realserver/plan.ts';
import type { PlanSliceObject, SliceService } from '../../api/plan-slice.ts';
import type { KubeObject } from '../../kube/types.ts';
import type { KeyOwner } from './plan-book.ts';

/** node → preparedKey()s its report lists. */
export type PreparedByNode = ReadonlyMap<string, ReadonlySet<string>>;

/**
 * The prepared entries of each node's report. A report this version cannot read, or one that
 * disappeared, keeps the entries last read from it (`previous`): doubt never closes a gate that
 * was open, since that would turn traffic away from pods that are still prepared.
 */
export function preparedByNode(reports: readonly unknown[], previous: PreparedByNode): Map<string, ReadonlySet<string>> {
  const out = new Map(previous);
  for (const obj of reports) {
    const r = parseAgentReport(obj);
    if (r.ok) out.set(r.value.node, new Set(r.value.prepared.map(preparedKey)));
  }
  return out;
}

function needsPreparation(s: PlanService): s is PlanService & { forwarding: 'DR' | 'TUN' } {
  return s.prepareRealServers && s.forwarding !== 'NAT';
}

/**
 * The gated version of each DR/TUN service, by its plan entry: while the same real servers are gated
 * the same object is returned (a sync builds desired state per object, so a new equal object per
 * sync would rebuild and re-serialise every DR/TUN service on every change).
 */
const gatedCache = new WeakMap<PlanService, { closed: string; out: PlanService }>();

/** The services with weight 0 for every gated real server (on a node, not yet reported prepared). */
export function gateServices(services: readonly PlanService[], prepared: PreparedByNode): PlanService[] {
  return services.map((s) => gateService(s, prepared));
}

/** gateServices() of one entry. */
export function gateService(s: PlanService, prepared: PreparedByNode): PlanService {
  if (!needsPreparation(s)) return s;
  const shut = new Set<number>();
  s.realServers.forEach((r, i) => {
    if (r.node === undefined || r.weight === 0) return;
    if (!prepared.get(r.node)?.has(preparedKey({ address: r.address, vip: s.vip, forwarding: s.forwarding }))) shut.add(i);
  });
  if (shut.size === 0) return s;
  const closed = [...shut].join();
  const hit = gatedCache.get(s);
  if (hit?.closed === closed) return hit.out;
  const out = { ...s, realServers: s.realServers.map((r, i) => (shut.has(i) ? { ...r, weight: 0 } : r)) };
  gatedCache.set(s, { closed, out });
  return out;
}

export interface LocalRealServer {
  vips: RealServerVip[];
  /** Owners of services this address serves, for reports. */
  owners: KeyOwner[];
}

/**
 * Real servers on `node` to prepare, by address: each with the VIPs and methods it serves and the
 * owners of those services. A TUN real server of the other family than its VIP gets `encap` (an
 * IPv6 VIP over an IPv4 pod is decapsulated by sit0); an IPv4 VIP over an IPv6 real server cannot
 * be prepared (see ../realserver/plan.ts) and is left out, so its gate stays closed.
 */
export function localRealServers(plans: ReadonlyArray<{ owner: KeyOwner; services: readonly PlanService[] }>, node: string): Map<string, LocalRealServer> {
  const out = new Map<string, LocalRealServer>();
  for (const { owner, services } of plans) {
    for (const svc of services) {
      if (!needsPreparation(svc)) continue;
      for (const r of svc.realServers) {
        if (r.node !== node) continue;
        const vip = realServerVip(svc, r.address);
        if (!vip) continue;
        const entry = out.get(r.address) ?? { vips: [], owners: [] };
        if (!entry.vips.some((x) => x.vip === vip.vip && x.mode === vip.mode && x.encap === vip.encap)) entry.vips.push(vip);
        if (!entry.owners.some((o) => o.uid === owner.uid)) entry.owners.push(owner);
        out.set(r.address, entry);
      }
    }
  }
  return out;
}

function realServerVip(svc: PlanService & { forwarding: 'DR' | 'TUN' }, address: string): RealServerVip | undefined {
  const family = address.includes(':') ? 6 : 4;
  if (family === svc.family) return { mode: svc.forwarding, vip: svc.vip };
  return svc.forwarding === 'TUN' && family === 4 ? { mode: 'TUN', vip: svc.vip, encap: 4 } : undefined;
}

/** The report's prepared list: every VIP and method of each prepared address. */
export function preparedEntries(prepared: Iterable<string>, local: ReadonlyMap<string, LocalRealServer>): PreparedRealServer[] {
  const out: PreparedRealServer[] = [];
  for (const address of prepared) for (const v of local.get(address)?.vips ?? []) out.push({ address, vip: v.vip, forwarding: v.mode });
  return out;
}

/** preparedKey()s of every wanted (address, VIP, method): what the real-server guard counts. */
export function wantedEntries(local: ReadonlyMap<string, LocalRealServer>): Map<string, { address: string; vip: RealServerVip; owners: KeyOwner[] }> {
  const out = new Map<string, { address: string; vip: RealServerVip; owners: KeyOwner[] }>();
  for (const [address, l] of local) {
    for (const v of l.vips) out.set(preparedKey({ address, vip: v.vip, forwarding: v.mode }), { address, vip: v, owners: l.owners });
  }
  return out;
}

/** Every service NAT with a VIP (nothing to prepare); false for anything unreadable. */
function natOnly(services: unknown): services is SliceService[] {
  return Array.isArray(services) && services.every((x: Partial<SliceService> | null) => x?.forwarding === 'NAT' && typeof x.vip === 'string');
}

/**
 * A plan-slice update that cannot change what the real-server pass does: before and after, every
 * service is NAT (nothing to prepare), with the same VIPs and directors (the pass reads the VIPs
 * this node directs, for the return path of its own DR pods). The common churn of a NAT service,
 * its endpoints coming and going, is this; anything else, adds and deletes included, runs the pass
 * (those: sliceOutsidePass()).
 * A slice that does not look like one (a newer or broken controller) is not judged here: it runs it.
 */
export function realServersUnaffected(old: KubeObject, now: KubeObject): boolean {
  const o = old as Partial<PlanSliceObject>, n = now as Partial<PlanSliceObject>;
  if (!natOnly(o.services) || !natOnly(n.services) || !Array.isArray(o.directors) || !Array.isArray(n.directors)) return false;
  const vips = (s: SliceService[]) => [...new Set(s.map((x) => x.vip))].sort().join(',');
  return o.directors.join(',') === n.directors.join(',') && vips(o.services) === vips(n.services);
}

/**
 * A plan slice whose coming or going cannot change what the real-server pass does: every service
 * NAT, none of its VIPs a VIP of a local real server the last pass wanted (`localVips`), and, when
 * it comes, the whole plan of its VirtualServer (count 1). The pass prepares DR/TUN real servers
 * only, and a VirtualServer has one forwarding method: a NAT slice can complete a plan whose other
 * slices are DR only while the method changes (so an added slice of several runs the pass); a
 * deleted one leaves at most an incomplete plan, which the pass would hold as it is. The one use
 * the pass has for the VIPs this node directs is the return path of its own DR/TUN pods, which
 * only those pods' VIPs decide. So a NAT Service created or deleted (the common case at scale: at
 * 10,000 Services under emulation each pass took seconds, one after another while the first list's
 * slices arrived) leaves the pass alone. Anything unreadable runs it.
 */
export function sliceOutsidePass(obj: KubeObject, localVips: ReadonlySet<string>, event: 'add' | 'delete'): boolean {
  const o = obj as Partial<PlanSliceObject>;
  return natOnly(o.services) && !o.services.some((x) => localVips.has(x.vip)) && (event === 'delete' || o.count === 1);
}
