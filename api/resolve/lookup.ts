// The lookup index the resolver reads: built once per full resolve in O(input), so resolving one
// VirtualServer costs O(its own endpoints) plus one map lookup per Service, node selector and
// static address. The controller's incremental path keeps an index and replaces entries as
// watch events arrive (a Service, one service's slice list, or the node maps as a whole).
import type { V1EndpointSlice, V1Node, V1Service } from '@kubernetes/client-node';
import { parseIp } from '../ip.ts';
import type { ResolveInput } from './types.ts';

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
    services, slices, nodes: new Map(), nodeByAddress: new Map(), directorCache: new Map(),
  };
  setNodes(index, input.nodes);
  return index;
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
