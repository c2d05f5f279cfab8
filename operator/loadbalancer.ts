// LoadBalancer Services (spec.loadBalancerClass: lvs.dev/ipvs, or no class when this controller
// is the cluster's default): pure decisions. Each such Service is served by a VirtualServer the
// controller creates and owns ("lb-<service>", labelled and owner-referenced), so everything a
// VirtualServer has — pools, reserved addresses, holder keeps, PlanSlices, Programmed — applies
// unchanged. Addresses: the one requested (annotation lvs.dev/address, or spec.loadBalancerIP),
// else the one the owned VirtualServer already has (sticky), else the lowest free address of an
// autoAssign pool admitting the namespace. The Service's status.loadBalancer.ingress lists the
// addresses its VirtualServer won, with ipMode Proxy: kube-proxy then leaves the address alone
// (every mode programs an ingress IP with ipMode VIP and would take its traffic before IPVS sees
// it; measured in lab/KUBE-PROXY.md).
import { createHash } from 'node:crypto';
import { formatNumber, parseIp } from '../api/ip.ts';
import type { Labels } from '../api/label-selector.ts';
import { parseServiceKey } from '../api/plan.ts';
import { poolAdmits, type PoolSet } from '../api/pool.ts';
import { LOAD_BALANCER_CLASS, type ReservedAddresses } from '../api/resolve/index.ts';
import type { KubeObject, VirtualServerObject } from '../kube/types.ts';

export const SERVICE_LABEL = 'lvs.dev/load-balancer-service';
export const ADDRESS_ANNOTATION = 'lvs.dev/address';
export const FORWARDING_ANNOTATION = 'lvs.dev/forwarding';
export const SCHEDULER_ANNOTATION = 'lvs.dev/scheduler';
export const PERSISTENCE_ANNOTATION = 'lvs.dev/persistence-timeout';
/**
 * On the owned VirtualServer: a hash of the spec the controller wrote. The API server fills in
 * schema defaults, so the stored spec never equals what was sent; the hash says whether the
 * Service asks for something else (only then is the VirtualServer rewritten).
 */
export const SPEC_HASH_ANNOTATION = 'lvs.dev/desired-spec';

export function specHash(spec: unknown): string {
  return createHash('sha256').update(JSON.stringify(spec)).digest('hex').slice(0, 16);
}

export interface ServiceObject extends KubeObject {
  spec?: {
    type?: string;
    loadBalancerClass?: string;
    loadBalancerIP?: string;
    ipFamilies?: string[];
    ipFamilyPolicy?: string;
    ports?: Array<{ name?: string; port?: number; protocol?: string }>;
  };
  status?: { loadBalancer?: { ingress?: Array<{ ip?: string; ipMode?: string }> }; conditions?: unknown[] };
}

/** Whether this controller serves the Service. */
export function servedHere(svc: ServiceObject | undefined, defaultClass: boolean): boolean {
  if (svc?.spec?.type !== 'LoadBalancer') return false;
  const cls = svc.spec.loadBalancerClass;
  return cls === LOAD_BALANCER_CLASS || (cls === undefined && defaultClass);
}

export const vsNameFor = (service: string): string => `lb-${service}`;

/** The owned VirtualServer is ours for this Service: labelled and owner-referenced to its uid. */
export function ownedBy(vs: VirtualServerObject, svc: ServiceObject): boolean {
  return vs.metadata.labels?.[SERVICE_LABEL] === svc.metadata.name
    && (vs.metadata as { ownerReferences?: Array<{ uid?: string; kind?: string }> }).ownerReferences?.some((o) => o.kind === 'Service' && o.uid === svc.metadata.uid) === true;
}

/** Families the Service wants an address of: every one for RequireDualStack/PreferDualStack, else the first. */
export function familiesOf(svc: ServiceObject): Array<4 | 6> {
  const fams = (svc.spec?.ipFamilies?.length ? svc.spec.ipFamilies : ['IPv4']).map((f) => (f === 'IPv6' ? 6 : 4) as 4 | 6);
  const dual = svc.spec?.ipFamilyPolicy === 'RequireDualStack' || svc.spec?.ipFamilyPolicy === 'PreferDualStack';
  return [...new Set(dual ? fams : fams.slice(0, 1))];
}

const familyOf = (address: string): 4 | 6 => (address.includes(':') ? 6 : 4);
const familyNames = (fams: ReadonlyArray<4 | 6>) => `[${fams.map((f) => `IPv${f}`).join(', ')}]`;

/** The addresses a LoadBalancer Service is served at; `partial` says which family PreferDualStack went without. */
export type AddressChoice = { addresses: string[]; partial?: string } | { error: string };

/**
 * Addresses for a LoadBalancer Service, one per family it wants (familiesOf), primary family first:
 * requested ones as they are (each of a family the Service has: an IPv6 VIP cannot reach IPv4-only
 * endpoints), else per family the one its VirtualServer already has (sticky: a Service turned
 * dual-stack keeps its IPv4 address), else a fresh one from `allocateFamily`. RequireDualStack
 * needs every family; PreferDualStack is served with the primary family alone when no pool has an
 * address of the other (and picks one up when a pool does, as pool changes reconcile the Service).
 */
export function chooseAddresses(svc: ServiceObject, had: readonly string[], allocateFamily: (family: 4 | 6) => string | { error: string }): AddressChoice {
  const families = familiesOf(svc);
  const requested = requestedAddresses(svc);
  if (requested && 'error' in requested) return requested;
  if (requested) {
    const field = svc.metadata.annotations?.[ADDRESS_ANNOTATION] !== undefined ? `metadata.annotations[${ADDRESS_ANNOTATION}]` : 'spec.loadBalancerIP';
    const stray = requested.find((a) => !families.includes(familyOf(a)));
    if (stray) return { error: `${field}: ${stray} is IPv${familyOf(stray)}, but the Service is served in ${familyNames(families)} (spec.ipFamilies, spec.ipFamilyPolicy)` };
    const missing = families.filter((f) => !requested.some((a) => familyOf(a) === f));
    if (missing.length && svc.spec?.ipFamilyPolicy === 'RequireDualStack') {
      return { error: `${field}: spec.ipFamilyPolicy is RequireDualStack, and no ${familyNames(missing)} address is requested` };
    }
    return { addresses: requested };
  }
  const out: string[] = [];
  for (const [i, family] of families.entries()) {
    const kept = had.find((a) => familyOf(a) === family);
    const got = kept ?? allocateFamily(family);
    if (typeof got === 'string') { out.push(got); continue; }
    if (i === 0 || svc.spec?.ipFamilyPolicy === 'RequireDualStack') return got;
    return { addresses: out, partial: `PreferDualStack: served in IPv${families[0]} only: ${got.error}` };
  }
  return { addresses: out };
}

/** Addresses the Service asks for, canonical; an error names the field. */
export function requestedAddresses(svc: ServiceObject): string[] | { error: string } | undefined {
  const annotated = svc.metadata.annotations?.[ADDRESS_ANNOTATION];
  const raw = annotated !== undefined ? annotated.split(',').map((s) => s.trim()).filter(Boolean) : svc.spec?.loadBalancerIP ? [svc.spec.loadBalancerIP] : [];
  if (raw.length === 0) return undefined;
  const field = annotated !== undefined ? `metadata.annotations[${ADDRESS_ANNOTATION}]` : 'spec.loadBalancerIP';
  const out: string[] = [];
  for (const a of raw) {
    const ip = parseIp(a);
    if (!ip) return { error: `${field}: ${JSON.stringify(a)} is not an IP address` };
    out.push(ip.address);
  }
  return out;
}

export interface AllocationInput {
  pools: PoolSet;
  namespace: string;
  namespaceLabels: Labels;
  families: Array<4 | 6>;
  /** Every address some VirtualServer (or an allocation in flight) uses. */
  used: ReadonlySet<string>;
  reserved: ReservedAddresses;
}

/** Tries this many candidates per pool range at most (used addresses plus a margin). */
const SEARCH_MARGIN = 4096;

/** The lowest free address per family from autoAssign pools admitting the namespace, oldest pool first. */
export function allocate(a: AllocationInput): string[] | { error: string } {
  const out: string[] = [];
  const pools = a.pools.pools.filter((p) => p.autoAssign && poolAdmits(p, a.namespace, a.namespaceLabels));
  if (pools.length === 0) return { error: `no VIPPool with allocation.autoAssign admits namespace ${a.namespace}` };
  for (const family of a.families) {
    const found = firstFree(a, pools.flatMap((p) => p.ranges.filter((r) => r.family === family)), family);
    if (!found) return { error: `the autoAssign VIPPools admitting namespace ${a.namespace} (${pools.map((p) => p.name).join(', ')}) have no free IPv${family} address` };
    out.push(found);
  }
  return out;
}

function firstFree(a: AllocationInput, ranges: ReadonlyArray<{ start: bigint; end: bigint }>, family: 4 | 6): string | undefined {
  const budget = BigInt(a.used.size + SEARCH_MARGIN);
  for (const r of ranges) {
    for (let n = r.start, tried = 0n; n <= r.end && tried < budget; n++, tried++) {
      // x.x.x.0 and x.x.x.255 are avoided: some clients and middleboxes mistreat them.
      if (family === 4 && ((n & 255n) === 0n || (n & 255n) === 255n)) continue;
      const text = formatNumber(n, family);
      const ip = parseIp(text);
      if (!ip || a.used.has(text) || a.reserved.why(ip) !== undefined) continue;
      return text;
    }
  }
  return undefined;
}

/** The VirtualServer serving the Service at these addresses. */
export function desiredVirtualServer(svc: ServiceObject, addresses: readonly string[]): VirtualServerObject {
  const ann = svc.metadata.annotations ?? {};
  const ports = (svc.spec?.ports ?? []).map((p, i) => ({
    name: p.name || `port-${i}`, port: p.port ?? 0, protocol: p.protocol ?? 'TCP',
  }));
  const spec: Record<string, unknown> = {
    addresses: [...addresses],
    ports,
    forwarding: ann[FORWARDING_ANNOTATION] ?? 'NAT',
    backends: { service: { name: svc.metadata.name, ports: ports.map((p) => ({ name: p.name, servicePort: p.port })) } },
  };
  if (ann[SCHEDULER_ANNOTATION]) spec.scheduler = { name: ann[SCHEDULER_ANNOTATION] };
  const timeout = Number(ann[PERSISTENCE_ANNOTATION]);
  if (ann[PERSISTENCE_ANNOTATION] !== undefined && Number.isInteger(timeout) && timeout > 0) spec.persistence = { timeoutSeconds: timeout };
  return {
    apiVersion: 'lvs.dev/v1alpha1', kind: 'VirtualServer',
    metadata: {
      name: vsNameFor(svc.metadata.name), namespace: svc.metadata.namespace ?? '',
      labels: { [SERVICE_LABEL]: svc.metadata.name, 'app.kubernetes.io/managed-by': 'lvs-operator' },
      annotations: { [SPEC_HASH_ANNOTATION]: specHash(spec) },
      ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name: svc.metadata.name, uid: svc.metadata.uid ?? '', controller: true }],
    } as VirtualServerObject['metadata'],
    spec,
  } as VirtualServerObject;
}

/** spec.addresses of a VirtualServer as stored (anything else: none). */
export function addressesOf(vs: VirtualServerObject | undefined): string[] {
  const a = vs?.spec?.addresses;
  return Array.isArray(a) ? a.filter((x): x is string => typeof x === 'string') : [];
}

/** status.loadBalancer.ingress: the addresses whose virtual services the VirtualServer won. */
export function ingressOf(vs: VirtualServerObject | undefined): Array<{ ip: string; ipMode: 'Proxy' }> {
  const won = new Set((vs?.status?.services ?? []).map((k) => parseServiceKey(k)?.vip));
  return addressesOf(vs).filter((a) => won.has(a)).map((ip) => ({ ip, ipMode: 'Proxy' as const }));
}
