// Addresses no VirtualServer may use as a VIP, pool or not: taking one would take a node off the
// network (its own address bound on every director's lvs0 with ARP for it dropped), cut every
// agent off the API server, or put IPVS services on an address kube-proxy or another load
// balancer serves. Reserved: every node's addresses and pod CIDRs, every Service's cluster IPs,
// external IPs and load-balancer addresses another implementation assigned, the service CIDRs
// (ServiceCIDR objects), the API server's endpoints (EndpointSlices of default/kubernetes), and
// the special-purpose ranges (loopback, link-local, multicast, unspecified, broadcast).
//
// Kept per source (one node, one Service, one slice, one ServiceCIDR) so the controller replaces
// one source's entries per watch event instead of rebuilding the set.
import type { V1EndpointSlice, V1Node, V1Service } from '@kubernetes/client-node';
import { parseCidr, parseIp, rangeContains, type AddressRange, type ParsedIp } from '../ip.ts';

export interface ReservedEntry {
  /** Canonical address, or a range. */
  address?: string;
  range?: AddressRange;
  /** Human text: "InternalIP of node lvs-node-1". */
  why: string;
  /**
   * Written by any namespace user (a Service's spec.externalIPs), so it cannot outrank an
   * admin's VIPPool: inside a pool's addresses it does not reserve (see why()).
   */
  yieldsToPools?: boolean;
}

/** The Service load-balancer class this project serves; other classes' addresses are reserved. */
export const LOAD_BALANCER_CLASS = 'lvs.dev/ipvs';

export interface ServiceCIDRLike {
  metadata?: { name?: string };
  spec?: { cidrs?: string[] };
}

export class ReservedAddresses {
  readonly #bySource = new Map<string, ReservedEntry[]>();
  readonly #byAddress = new Map<string, Map<string, ReservedEntry>>();
  readonly #ranges = new Map<string, Array<{ range: AddressRange; why: string }>>();

  /**
   * Replaces the entries of one source (empty list: the source is gone). Returns the addresses
   * whose reservation changed, and whether a range changed (then any VIP may be affected).
   */
  set(source: string, entries: readonly ReservedEntry[]): { addresses: string[]; ranges: boolean } {
    const before = this.#bySource.get(source) ?? [];
    const oldAddrs = new Set(before.flatMap((e) => (e.address === undefined ? [] : [e.address])));
    const newAddrs = new Set(entries.flatMap((e) => (e.address === undefined ? [] : [e.address])));
    for (const a of oldAddrs) {
      const m = this.#byAddress.get(a);
      m?.delete(source);
      if (m?.size === 0) this.#byAddress.delete(a);
    }
    const rs: Array<{ range: AddressRange; why: string }> = [];
    for (const e of entries) {
      if (e.range) rs.push({ range: e.range, why: e.why });
      if (e.address === undefined) continue;
      let m = this.#byAddress.get(e.address);
      if (!m) this.#byAddress.set(e.address, (m = new Map()));
      m.set(source, e);
    }
    const rangeText = (xs: readonly ReservedEntry[]) => JSON.stringify(xs.filter((e) => e.range).map((e) => [`${e.range?.start}-${e.range?.end}`, e.why]));
    const ranges = rangeText(before) !== rangeText(entries);
    if (rs.length) this.#ranges.set(source, rs); else this.#ranges.delete(source);
    if (entries.length) this.#bySource.set(source, [...entries]); else this.#bySource.delete(source);
    const addresses = [...oldAddrs, ...newAddrs].filter((a) => oldAddrs.has(a) !== newAddrs.has(a));
    return { addresses, ranges };
  }

  /**
   * Why this address may not be a VIP, or undefined. `inPool`: the address lies in a VIPPool, so
   * entries any namespace user can write (externalIPs) do not count: otherwise a tenant could
   * list another team's VIP in its own Service's externalIPs and have that VIP withdrawn.
   */
  why(ip: ParsedIp, inPool = false): string | undefined {
    if (ip.unspecified) return 'it is the unspecified address';
    if (ip.loopback) return 'it is a loopback address';
    if (ip.linkLocal) return 'it is a link-local address';
    if (ip.multicast || ip.broadcast) return 'it is a multicast or broadcast address';
    if (ip.family === 4 && ip.address.startsWith('127.')) return 'it is a loopback address';
    const m = this.#byAddress.get(ip.address);
    const counted = [...(m?.values() ?? [])].filter((e) => !(inPool && e.yieldsToPools)).map((e) => e.why);
    if (counted.length > 0) return counted.sort()[0];
    for (const list of this.#ranges.values()) for (const r of list) if (rangeContains(r.range, ip)) return r.why;
    return undefined;
  }
}

function addr(a: unknown, why: string, yieldsToPools = false): ReservedEntry[] {
  const ip = parseIp(a);
  return ip ? [{ address: ip.address, why, ...(yieldsToPools ? { yieldsToPools } : {}) }] : [];
}

function cidr(c: unknown, why: string): ReservedEntry[] {
  const r = parseCidr(c);
  return typeof r === 'string' ? [] : [{ range: r, why }];
}

export function reservedOfNode(node: V1Node): ReservedEntry[] {
  const name = node.metadata?.name ?? '';
  const out: ReservedEntry[] = [];
  for (const a of node.status?.addresses ?? []) out.push(...addr(a?.address, `it is the ${a?.type ?? 'address'} of node ${name}`));
  const podCIDRs = node.spec?.podCIDRs?.length ? node.spec.podCIDRs : node.spec?.podCIDR ? [node.spec.podCIDR] : [];
  for (const c of podCIDRs) out.push(...cidr(c, `it is in pod CIDR ${c} of node ${name}`));
  return out;
}

export function reservedOfService(svc: V1Service): ReservedEntry[] {
  const id = `${svc.metadata?.namespace ?? ''}/${svc.metadata?.name ?? ''}`;
  const spec = svc.spec ?? {};
  const out: ReservedEntry[] = [];
  const clusterIPs = spec.clusterIPs?.length ? spec.clusterIPs : spec.clusterIP ? [spec.clusterIP] : [];
  for (const a of clusterIPs) out.push(...addr(a, `it is the cluster IP of Service ${id}`));
  for (const a of spec.externalIPs ?? []) out.push(...addr(a, `it is an external IP of Service ${id}`, true));
  // Addresses another load-balancer implementation assigned; ours are VIPs of our own VirtualServers.
  if (spec.type === 'LoadBalancer' && spec.loadBalancerClass !== LOAD_BALANCER_CLASS) {
    for (const i of svc.status?.loadBalancer?.ingress ?? []) out.push(...addr(i?.ip, `it is the load-balancer address of Service ${id} (class ${spec.loadBalancerClass ?? 'default'})`));
  }
  return out;
}

/** The API server's own addresses: endpoints of the default/kubernetes Service. */
export function reservedOfApiserverSlice(slice: V1EndpointSlice): ReservedEntry[] {
  return (slice.endpoints ?? []).flatMap((e) => (e?.addresses ?? []).flatMap((a) => addr(a, 'it is an address of the Kubernetes API server')));
}

export function isApiserverSlice(slice: { metadata?: { namespace?: string; labels?: Record<string, string> } }): boolean {
  return slice.metadata?.namespace === 'default' && slice.metadata.labels?.['kubernetes.io/service-name'] === 'kubernetes';
}

export function reservedOfServiceCIDR(obj: ServiceCIDRLike): ReservedEntry[] {
  return (obj.spec?.cidrs ?? []).flatMap((c) => cidr(c, `it is in service CIDR ${c} (ServiceCIDR ${obj.metadata?.name ?? ''})`));
}
