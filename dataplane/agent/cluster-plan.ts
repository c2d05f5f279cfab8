// Pure: what this node's agent should do, from VirtualServers as the controller left them. The
// agent never resolves Services: the controller's status says which (VIP, protocol, port) keys a
// VirtualServer won (status.services), which real servers back each port (status.realServers)
// and which nodes direct it (status.directors). The spec gives the IPVS settings, through the
// resolver's own normalisation so both sides read a spec the same way.
import { serviceKey, type PlanRealServer, type PlanService } from '../../api/plan.ts';
import type { NodeReport, StatusRealServer, VirtualServerObject } from '../../kube/types.ts';
import { claimantOf, planService, validateSpec, type VirtualServerLike } from '../../operator/resolve/index.ts';
import type { RealServerVip } from '../realserver/plan.ts';
import { addressFamily } from '../sync/keys.ts';
import type { SyncError, SyncResult } from '../sync/sync.ts';

/**
 * A DR/TUN real server that the agents must prepare gets weight > 0 only once the agent of its
 * node reports it prepared (status.nodes[node].preparedRealServers); until then it is present
 * with weight 0, so no connection is sent to a pod that would drop it.
 */
function gate(r: StatusRealServer, needsPrep: boolean, reports: ReadonlyMap<string, NodeReport>): PlanRealServer {
  const ready = !needsPrep || r.node === undefined || (reports.get(r.node)?.preparedRealServers ?? []).includes(r.address);
  const out: PlanRealServer = { address: r.address, port: r.targetPort, weight: ready ? r.weight : 0, state: r.state };
  if (r.node !== undefined) out.node = r.node;
  if (r.pod) out.pod = { ...r.pod };
  return out;
}

/** The services a VirtualServer won, with their real servers, as the controller resolved them. */
export function planFromVirtualServer(vs: VirtualServerObject): PlanService[] {
  const status = vs.status;
  if (!status?.services?.length) return [];
  const v = validateSpec((vs as unknown as VirtualServerLike).spec);
  if (!v.ok) return [];
  const spec = v.spec;
  const claimant = claimantOf(vs as unknown as VirtualServerLike);
  // The status describes the generation the controller resolved, which is what gets programmed.
  claimant.ref.generation = status.observedGeneration ?? claimant.ref.generation;
  const won = new Set(status.services);
  const reports = new Map((status.nodes ?? []).map((n) => [n.name, n] as const));
  const needsPrep = spec.prepareRealServers && spec.forwarding !== 'NAT';
  const out: PlanService[] = [];
  for (const port of spec.ports) {
    const backends = (status.realServers ?? []).filter((r) => r.port === port.name);
    for (const vip of spec.vips) {
      if (!won.has(serviceKey(port.protocol, vip.address, port.port))) continue;
      // NAT and DR need the VIP's family; TUN may carry either family inside the tunnel.
      const fit = backends.filter((r) => spec.forwarding === 'TUN' || addressFamily(r.address) === vip.family);
      out.push(planService(claimant, spec, vip, port, fit.map((r) => gate(r, needsPrep, reports)), status.directors ?? []));
    }
  }
  return out;
}

/** Real servers on `node` to prepare, by address: each with the VIPs and methods it serves. */
export function localRealServers(virtualServers: readonly VirtualServerObject[], node: string): Map<string, RealServerVip[]> {
  const out = new Map<string, RealServerVip[]>();
  for (const vs of virtualServers) {
    for (const svc of planFromVirtualServer(vs)) {
      if (svc.forwarding === 'NAT' || !svc.prepareRealServers || svc.family !== 4) continue;
      for (const r of svc.realServers) {
        if (r.node !== node) continue;
        const list = out.get(r.address) ?? [];
        if (!list.some((x) => x.vip === svc.vip && x.mode === svc.forwarding)) list.push({ mode: svc.forwarding, vip: svc.vip });
        out.set(r.address, list);
      }
    }
  }
  return out;
}

/** A real-server preparation error: of these addresses, or (none given) of the whole pass. */
export interface PrepError { addresses?: readonly string[]; message: string }

/** What this node's last sync and real-server pass left failing, by step. */
export interface NodeState {
  /** Service keys whose netlink operations (or plan entries) failed, with the error of each. */
  failedKeys: ReadonlySet<string>;
  errors: ReadonlyMap<string, string>;
  prepared: readonly string[];
  /** Sync errors of no one service (kernel read-back, lvs0/nft/sysctls, plan): every directed VirtualServer fails. */
  nodeErrors?: readonly string[];
  prepErrors?: readonly PrepError[];
}

/**
 * This node's report for one VirtualServer, or undefined when the node has no part in it.
 * programmed is true only when nothing this node does for it failed: for a director, the last
 * sync (every step); for a node of its DR/TUN real servers, their preparation.
 */
export function nodeReport(vs: VirtualServerObject, node: string, state: NodeState): NodeReport | undefined {
  const services = planFromVirtualServer(vs);
  const director = services.some((s) => s.directors.includes(node));
  const mine = new Set(services.flatMap((s) => s.realServers.filter((r) => r.node === node).map((r) => r.address)));
  const prepared = state.prepared.filter((a) => mine.has(a)).sort();
  if (!director && mine.size === 0) return undefined;
  const failed = director
    ? [...(state.nodeErrors ?? []), ...services.filter((s) => state.failedKeys.has(s.key)).map((s) => `${s.key}: ${state.errors.get(s.key) ?? 'failed'}`)]
    : [];
  for (const e of state.prepErrors ?? []) {
    if (!e.addresses || e.addresses.some((a) => mine.has(a))) failed.push(`real-server preparation failed: ${e.message}`);
  }
  return {
    name: node,
    observedGeneration: vs.status?.observedGeneration ?? 0,
    director,
    programmed: failed.length === 0,
    preparedRealServers: prepared,
    message: failed.join('; ').slice(0, 4000),
  };
}

/** The step each sync error without a service key belongs to, as the report names it. */
const STEPS: Partial<Record<SyncError['op'], string>> = {
  dump: 'kernel read-back failed',
  listVips: 'director setup (lvs0, sysctls, nft) failed',
  bindVip: 'binding VIPs on lvs0 failed',
  unbindVip: 'unbinding VIPs from lvs0 failed',
  plan: 'sync failed',
};

/** A sync result as report state: errors of one service by key, the others for the whole node. */
export function syncFailures(r: SyncResult | undefined): Pick<NodeState, 'failedKeys' | 'errors' | 'nodeErrors'> {
  const failedKeys = new Set<string>();
  const errors = new Map<string, string>();
  const nodeErrors: string[] = [];
  const note = (key: string, text: string) => { failedKeys.add(key); errors.set(key, errors.has(key) ? `${errors.get(key)}; ${text}` : text); };
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
  return { failedKeys, errors, nodeErrors };
}

/** Equal as far as the agent's own fields go (lastUpdateTime aside). */
export function sameReport(a: NodeReport | undefined, b: NodeReport | undefined): boolean {
  if (!a || !b) return a === b;
  return a.observedGeneration === b.observedGeneration && a.director === b.director && a.programmed === b.programmed
    && (a.message ?? '') === (b.message ?? '') && JSON.stringify(a.preparedRealServers ?? []) === JSON.stringify(b.preparedRealServers ?? []);
}
