// Real servers for one VirtualServer port and one VIP family, from a Service's EndpointSlices or
// from the static list. Pure: reads the index, returns real servers (sorted) and reasons.
import type { V1EndpointSlice, V1Service, V1ServicePort } from '@kubernetes/client-node';
import type { Forwarding, PlanRealServer, Protocol, Reason, RealServerState } from '../plan.ts';
import { parseIp } from '../ip.ts';
import { nsName, type ResolveIndex } from './lookup.ts';
import { cmp, compareSortable, type Sortable } from './order.ts';
import type { NormalizedSpec, StaticBackend, VsPort } from './types.ts';

export interface FamilyBackends {
  /** Sorted by address, then port. */
  realServers: PlanRealServer[];
  reasons: Reason[];
}

const portProtocol = (p: { protocol?: string }): string => p.protocol ?? 'TCP';

/** Finds the Service port a VirtualServer port maps to (explicit mapping, else same name, else same number). */
export function servicePortFor(svc: V1Service, port: VsPort, spec: NormalizedSpec): { servicePort: V1ServicePort } | { reason: Reason } {
  const mapping = spec.backends.kind === 'service' ? spec.backends.mapping.get(port.name) : undefined;
  const all = (svc.spec?.ports ?? []).filter((x) => x && typeof x === 'object');
  const same = all.filter((sp) => portProtocol(sp) === port.protocol);
  let found: V1ServicePort | undefined;
  let wanted: string;
  if (mapping) {
    const sp = mapping.servicePort;
    found = typeof sp === 'number' ? same.find((x) => x.port === sp) : same.find((x) => x.name === sp);
    wanted = typeof sp === 'number' ? `${sp}` : `named ${sp}`;
  } else {
    found = same.find((x) => x.name === port.name) ?? same.find((x) => x.port === port.port);
    wanted = `named ${port.name} or numbered ${port.port}`;
  }
  if (found) return { servicePort: found };
  const other = all.find((x) => (mapping ? (x.name === mapping.servicePort || x.port === mapping.servicePort) : (x.name === port.name || x.port === port.port)));
  const why = other ? ` (port ${other.name ? `${other.name}/` : ''}${other.port} is ${portProtocol(other)})` : '';
  return { reason: {
    type: 'ServicePortNotFound',
    field: mapping ? `spec.backends.service.ports[${mapping.index}].servicePort` : `spec.ports[${port.index}]`,
    message: `VirtualServer port ${port.name} (${port.protocol}/${port.port}): Service ${svc.metadata?.name ?? ''} has no ${port.protocol} port ${wanted}${why}`,
  } };
}

function endpointState(c: { ready?: boolean; serving?: boolean; terminating?: boolean } | undefined): RealServerState | undefined {
  if (c?.ready !== false) return 'Ready';
  // A terminating endpoint that still serves keeps its connections but gets no new ones.
  if (c.serving === true && c.terminating === true) return 'Draining';
  return undefined;
}

/** Deterministic preference between duplicates of one address:port across slices. */
function preferred(a: Sortable, b: Sortable): Sortable {
  if (a.rs.state !== b.rs.state) return a.rs.state === 'Ready' ? a : b;
  const ka = `${a.rs.node ?? ''}\u0000${a.rs.pod?.namespace ?? ''}\u0000${a.rs.pod?.name ?? ''}`;
  const kb = `${b.rs.node ?? ''}\u0000${b.rs.pod?.namespace ?? ''}\u0000${b.rs.pod?.name ?? ''}`;
  return cmp(ka, kb) <= 0 ? a : b;
}

function collectSlice(slice: V1EndpointSlice, sp: V1ServicePort, protocol: Protocol, family: 4 | 6, out: Map<string, Sortable>): void {
  const wantName = sp.name ?? '';
  const port = slice.ports?.find((p) => p && (p.name ?? '') === wantName && portProtocol(p) === protocol)?.port;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) return;
  for (const ep of slice.endpoints ?? []) {
    if (!ep) continue;
    const state = endpointState(ep.conditions);
    if (!state) continue;
    // Consumers use the first address; the others are fungible (discovery.k8s.io/v1).
    const ip = parseIp(ep.addresses?.[0]);
    if (!ip || ip.family !== family) continue;
    const rs: PlanRealServer = { address: ip.address, port, weight: state === 'Ready' ? 1 : 0, state };
    if (typeof ep.nodeName === 'string' && ep.nodeName) rs.node = ep.nodeName;
    const t = ep.targetRef;
    if (t?.kind === 'Pod' && typeof t.name === 'string' && t.name) rs.pod = { namespace: t.namespace ?? slice.metadata?.namespace ?? '', name: t.name };
    const key = `${ip.address}|${port}`;
    const cand: Sortable = { sortKey: ip.sortKey, rs };
    const prev = out.get(key);
    out.set(key, prev ? preferred(prev, cand) : cand);
  }
}

/** Endpoints of a Service port for one family; DR/TUN drop endpoints on another port than the VIP's. */
export function serviceBackends(
  index: ResolveIndex, target: { namespace: string; serviceName: string; servicePort: V1ServicePort },
  port: VsPort, forwarding: Forwarding, family: 4 | 6,
): FamilyBackends {
  const addressType = family === 4 ? 'IPv4' : 'IPv6';
  const found = new Map<string, Sortable>();
  for (const slice of index.slices.get(nsName(target.namespace, target.serviceName)) ?? []) {
    if (slice.addressType === addressType) collectSlice(slice, target.servicePort, port.protocol, family, found);
  }
  const kept: Sortable[] = [];
  const remapped = new Set<number>();
  for (const s of found.values()) {
    if (forwarding !== 'NAT' && s.rs.port !== port.port) remapped.add(s.rs.port);
    else kept.push(s);
  }
  const reasons: Reason[] = [...remapped].map((p) => ({
    type: 'PortRemapNotSupported',
    field: `spec.ports[${port.index}]`,
    message: `${forwarding} forwarding cannot remap ports: endpoints of Service ${target.serviceName} port ` +
      `${target.servicePort.name || target.servicePort.port} listen on ${p}, not on ${port.name} (${port.port}); they are excluded`,
  }));
  return { realServers: sortedRealServers(kept), reasons };
}

/** Static real servers for one family. NAT/DR need the VIP's family; TUN may mix (see staticFamilyReasons). */
export function staticBackends(index: ResolveIndex, entries: StaticBackend[], port: VsPort, forwarding: Forwarding, family: 4 | 6): PlanRealServer[] {
  const out: Sortable[] = [];
  for (const e of entries) {
    if (forwarding !== 'TUN' && e.family !== family) continue;
    const rs: PlanRealServer = {
      address: e.address,
      port: forwarding === 'NAT' ? (e.port ?? port.targetPort ?? port.port) : port.port,
      weight: e.weight,
      state: e.weight === 0 ? 'Draining' : 'Ready',
    };
    if (e.check) rs.check = { ...e.check };
    const node = index.nodeByAddress.get(e.address);
    if (node !== undefined) rs.node = node;
    out.push({ sortKey: e.sortKey, rs });
  }
  return sortedRealServers(out);
}

function sortedRealServers(xs: Sortable[]): PlanRealServer[] {
  return xs.sort(compareSortable).map((s) => s.rs);
}

/**
 * A static real server whose family no VIP has serves nothing with NAT or DR (the kernel
 * forwards NAT/DR packets in the VIP's family only); TUN encapsulates across families.
 */
export function staticFamilyReasons(entries: StaticBackend[], families: Set<4 | 6>, forwarding: Forwarding): Reason[] {
  if (forwarding === 'TUN') return [];
  return entries.filter((e) => !families.has(e.family)).map((e) => ({
    type: 'AddressFamilyMismatch',
    field: `spec.backends.static[${e.index}].address`,
    message: `real server ${e.address} is IPv${e.family} but no VIP is; ${forwarding} needs the VIP's family ` +
      '(only TUN mixes families), so it is excluded',
  }));
}
