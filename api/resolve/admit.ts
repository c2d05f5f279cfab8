// Admission of one VirtualServer's VIPs and real servers against the VIPPools and the reserved
// addresses: what a namespaced user may make the cluster's directors program. Pure.
//
// - A VIP is served only if it is not reserved (AddressReserved), lies in a usable pool that
//   admits the namespace (AddressNotAllowed) and that pool allows the forwarding method
//   (ForwardingNotAllowed). Its directors are the pool's, narrowed by the VirtualServer's selector.
// - A real server is used only if it is a pod of the VirtualServer's own namespace (Service
//   backends) or lies in the pool's staticRealServers (static backends, and endpoints that are
//   not such pods): otherwise RealServerNotAllowed, so nothing relays to addresses the admin did
//   not grant. A DR/TUN real server at a node's address would make that node's agent prepare the
//   host's own network namespace: allowed only by a pool with realServers.prepareHosts on a node
//   labelled lvs.dev/real-server-host=true.
import { parseIp } from '../ip.ts';
import type { PlanRealServer, Reason } from '../plan.ts';
import { poolAdmits, poolOf, staticAllowed, type Pool } from '../pool.ts';
import { directorsFor, type ResolveIndex } from './lookup.ts';
import type { NormalizedSpec, Vip } from './types.ts';

/** Node label an admin sets to let agents prepare that node's host namespace as a real server. */
export const REAL_SERVER_HOST_LABEL = 'lvs.dev/real-server-host';

export interface VipGrant {
  vip: Vip;
  /** undefined when admission is unrestricted (standalone). */
  pool?: Pool;
  directors: string[];
}

/** Both selectors must match: undefined when they demand different values for one key. */
function narrow(pool: Readonly<Record<string, string>> | undefined, own: Readonly<Record<string, string>> | undefined): Record<string, string> | undefined | null {
  if (!pool) return own ? { ...own } : undefined;
  const out: Record<string, string> = { ...pool };
  for (const [k, v] of Object.entries(own ?? {})) {
    if (k in out && out[k] !== v) return null;
    out[k] = v;
  }
  return out;
}

function refuseVip(spec: NormalizedSpec, vip: Vip, namespace: string, index: ResolveIndex): Reason | Pool | undefined {
  const a = index.admission;
  if (a.kind === 'unrestricted') return undefined;
  const field = `spec.addresses[${vip.index}]`;
  const ip = parseIp(vip.address);
  if (!ip) return { type: 'AddressNotAllowed', field, message: `${vip.address} is not an address` };
  const pool = poolOf(a.pools, ip);
  const why = a.reserved.why(ip, pool !== undefined);
  if (why) return { type: 'AddressReserved', field, message: `${vip.address} is reserved: ${why}; it is not programmed` };
  if (!pool) return { type: 'AddressNotAllowed', field, message: `${vip.address} is in no VIPPool; an admin must grant it to namespace ${namespace}` };
  // A namespace not (yet) in the cache still has the label the API server sets on every one.
  const labels = a.namespaces.get(namespace) ?? { 'kubernetes.io/metadata.name': namespace };
  if (!poolAdmits(pool, namespace, labels)) {
    return { type: 'AddressNotAllowed', field, message: `VIPPool ${pool.name} does not admit namespace ${namespace} (spec.allocation)` };
  }
  if (!pool.forwarding.has(spec.forwarding)) {
    return { type: 'ForwardingNotAllowed', field: 'spec.forwarding', message: `VIPPool ${pool.name} (for ${vip.address}) allows ${[...pool.forwarding].join(', ') || 'no'} forwarding, not ${spec.forwarding}` };
  }
  return pool;
}

/** The VIPs this VirtualServer may serve, with their directors, and the reasons for the others. */
export function admitVips(spec: NormalizedSpec, namespace: string, index: ResolveIndex): { grants: VipGrant[]; reasons: Reason[] } {
  const grants: VipGrant[] = [];
  const reasons: Reason[] = [];
  for (const vip of spec.vips) {
    const r = refuseVip(spec, vip, namespace, index);
    if (r && 'type' in r) { reasons.push(r); continue; }
    const pool = r;
    const selector = narrow(pool?.directors, spec.nodeSelector);
    grants.push({ vip, ...(pool ? { pool } : {}), directors: selector === null ? [] : directorsFor(index, selector) });
  }
  return { grants, reasons };
}

/** Why a real server may not be used behind a VIP of `pool`, or undefined when it may. */
function refuseRealServer(rs: PlanRealServer, pool: Pool, spec: NormalizedSpec, namespace: string, index: ResolveIndex): string | undefined {
  const ip = parseIp(rs.address);
  if (!ip) return `${rs.address} is not an address`;
  const ownPod = spec.backends.kind === 'service' && rs.pod !== undefined && rs.pod.namespace === namespace;
  if (!ownPod && !staticAllowed(pool, ip)) {
    return spec.backends.kind === 'service'
      ? `endpoint ${rs.address} is not a pod of namespace ${namespace} and not in VIPPool ${pool.name}'s staticRealServers`
      : `${rs.address} is not in VIPPool ${pool.name}'s staticRealServers`;
  }
  const node = index.nodeByAddress.get(ip.address);
  if (node !== undefined && spec.prepareRealServers && spec.forwarding !== 'NAT') {
    if (!pool.prepareHosts) return `${rs.address} is node ${node}'s address and VIPPool ${pool.name} does not allow preparing hosts (spec.realServers.prepareHosts)`;
    if (index.nodes.get(node)?.labels[REAL_SERVER_HOST_LABEL] !== 'true') return `${rs.address} is node ${node}'s address and the node is not labelled ${REAL_SERVER_HOST_LABEL}=true`;
  }
  return undefined;
}

/** The real servers a grant may use; the refused ones become RealServerNotAllowed reasons. */
export function admitRealServers(grant: VipGrant, list: readonly PlanRealServer[], spec: NormalizedSpec, namespace: string, index: ResolveIndex, reasons: Map<string, Reason>): PlanRealServer[] {
  const pool = grant.pool;
  if (!pool) return [...list];
  const kept: PlanRealServer[] = [];
  for (const rs of list) {
    const why = refuseRealServer(rs, pool, spec, namespace, index);
    if (!why) { kept.push(rs); continue; }
    const entry = spec.backends.kind === 'static' ? spec.backends.entries.find((e) => e.address === rs.address) : undefined;
    const field = entry ? `spec.backends.static[${entry.index}].address` : 'spec.backends.service.name';
    reasons.set(`${field}|${why}`, { type: 'RealServerNotAllowed', field, message: `${why}; it is not used` });
  }
  return kept;
}
