// The lookup index the resolver reads: built once per full resolve in O(input), so resolving one
// VirtualServer costs O(its own endpoints) plus one map lookup per Service, node selector and
// static address. The controller's incremental path keeps an index and replaces entries as
// watch events arrive (a Service, one service's slice list, or the node maps as a whole).
import type { V1EndpointSlice, V1Node, V1Service } from '@kubernetes/client-node';
import { parseIp } from '../ip.ts';
import type { Labels } from '../label-selector.ts';
import { buildPools, type PoolSet } from '../pool.ts';
import {
  isApiserverSlice, ReservedAddresses, reservedOfApiserverSlice, reservedOfNode, reservedOfService, reservedOfServiceCIDR,
} from './reserved.ts';
import type { ResolveInput } from './types.ts';

/**
 * How VIPs are admitted: by pools (the controller: deny by default, reserved addresses always
 * refused), or not at all (standalone `lvs-agent apply` on a host whose admin wrote the manifests).
 */
export type Admission =
  | { kind: 'unrestricted' }
  | { kind: 'pools'; pools: PoolSet; namespaces: Map<string, Labels>; reserved: ReservedAddresses };

export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

export interface NodeInfo {
  name: string;
  labels: Readonly<Record<string, string>>;
}

export interface ResolveIndex {
  /** Services by namespace/name. */
  services: Map<string, V1Service>;
  /** EndpointSlices by namespace/<kubernetes.io/service-name label>, in no particular order. */
  slices: Map<string, V1EndpointSlice[]>;
  /** Nodes by name. */
  nodes: Map<string, NodeInfo>;
  /** Canonical node address (status.addresses) -> node name; the smallest name if shared. */
  nodeByAddress: Map<string, string>;
  /** Memo of directorsFor(); must be cleared whenever `nodes` changes. */
  directorCache: Map<string, string[]>;
  admission: Admission;
}

export const nsName = (namespace: string, name: string): string => `${namespace}/${name}`;

export function buildIndex(input: Omit<ResolveInput, 'virtualServers'>): ResolveIndex {
  const services = new Map<string, V1Service>();
  for (const s of input.services) {
    const m = s?.metadata;
    if (m?.name) services.set(nsName(m.namespace ?? '', m.name), s);
  }
  const slices = new Map<string, V1EndpointSlice[]>();
  for (const es of input.endpointSlices) {
    const owner = es?.metadata?.labels?.[SERVICE_NAME_LABEL];
    if (!owner) continue;
    const key = nsName(es.metadata?.namespace ?? '', owner);
    const list = slices.get(key);
    if (list) list.push(es);
    else slices.set(key, [es]);
  }
  const index: ResolveIndex = {
    services, slices, nodes: new Map(), nodeByAddress: new Map(), directorCache: new Map(), admission: admissionOf(input),
  };
  setNodes(index, input.nodes);
  return index;
}

function admissionOf(input: Omit<ResolveInput, 'virtualServers'>): Admission {
  const a = input.admission;
  if (a && 'unrestricted' in a && a.unrestricted === true) return { kind: 'unrestricted' };
  const given = a && !('unrestricted' in a) ? a : {};
  const reserved = new ReservedAddresses();
  for (const n of input.nodes) if (n?.metadata?.name) reserved.set(`node/${n.metadata.name}`, reservedOfNode(n));
  for (const s of input.services) if (s?.metadata?.name) reserved.set(`service/${s.metadata.namespace ?? ''}/${s.metadata.name}`, reservedOfService(s));
  for (const es of input.endpointSlices) if (es && isApiserverSlice(es)) reserved.set(`apiserver/${es.metadata?.name ?? ''}`, reservedOfApiserverSlice(es));
  for (const c of given.serviceCIDRs ?? []) if (c?.metadata?.name) reserved.set(`servicecidr/${c.metadata.name}`, reservedOfServiceCIDR(c));
  const namespaces = new Map<string, Labels>();
  for (const n of given.namespaces ?? []) if (n?.metadata?.name) namespaces.set(n.metadata.name, n.metadata.labels ?? {});
  return { kind: 'pools', pools: buildPools(given.pools ?? []), namespaces, reserved };
}

/** Replaces every node-derived entry of the index (nodes change rarely; this is O(nodes)). */
export function setNodes(index: ResolveIndex, nodes: readonly V1Node[]): void {
  index.nodes.clear();
  index.nodeByAddress.clear();
  index.directorCache.clear();
  for (const n of nodes) {
    const name = n?.metadata?.name;
    if (!name) continue;
    const labels = n.metadata?.labels;
    index.nodes.set(name, { name, labels: typeof labels === 'object' && labels !== null ? labels : {} });
    for (const a of n.status?.addresses ?? []) {
      const ip = parseIp(a?.address); // Hostname/InternalDNS entries are not addresses: skipped.
      if (!ip) continue;
      const prev = index.nodeByAddress.get(ip.address);
      if (prev === undefined || name < prev) index.nodeByAddress.set(ip.address, name);
    }
  }
}

/** Sorted names of the nodes matching a label selector (every node when it is undefined). */
export function directorsFor(index: ResolveIndex, selector: Readonly<Record<string, string>> | undefined): string[] {
  const entries = Object.entries(selector ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const memo = JSON.stringify(entries);
  const hit = index.directorCache.get(memo);
  if (hit) return hit;
  const out: string[] = [];
  for (const n of index.nodes.values()) {
    if (entries.every(([k, v]) => n.labels[k] === v)) out.push(n.name);
  }
  out.sort();
  index.directorCache.set(memo, out);
  return out;
}
