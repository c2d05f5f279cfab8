// The controller's incremental view of the cluster for resolving: the resolver's lookup index,
// kept up to date from informer events, plus the reverse indexes that turn an event into the
// VirtualServer keys it can affect. Every *Changed method updates the index and returns keys to
// mark; nothing here reads the API or the clock.
import type { V1EndpointSlice, V1Node, V1Service } from '@kubernetes/client-node';
import { parseServiceKey, type PlanService, type VirtualServerResolution } from '../api/plan.ts';
import { buildPools, type VIPPoolLike } from '../api/pool.ts';
import { annotatedTime, TRIGGER_TIME_ANNOTATION } from '../api/plan-slice.ts';
import {
  arbitrate, buildIndex, finalize, heldOf, isApiserverSlice, parseIp, reservedOfApiserverSlice, reservedOfNode, reservedOfService, reservedOfServiceCIDR,
  REAL_SERVER_HOST_LABEL, resolveOne, setNodes, SERVICE_NAME_LABEL, type Admission, type ResolveIndex, type ServiceCIDRLike, type VirtualServerLike,
} from '../api/resolve/index.ts';
import { objectKey, type KubeObject, type NodeObject, type VirtualServerObject } from '../kube/types.ts';

interface VsDeps {
  /** namespace/name of the backing Service. */
  service?: string;
  /** Canonical VIPs. */
  vips: string[];
  /** undefined: every node is a director. */
  selector?: Record<string, string>;
  /** Canonical static backend addresses. */
  statics: string[];
}

const canon = (a: unknown): string | undefined => (typeof a === 'string' ? (parseIp(a)?.address ?? a) : undefined);

function depsOf(vs: VirtualServerObject): VsDeps {
  const spec = vs.spec ?? {};
  // Held VIPs count too: an invalid VirtualServer keeps claiming what it holds.
  const held = (Array.isArray(vs.status?.claims) ? vs.status.claims : []).map((c) => (typeof c?.service === 'string' ? parseServiceKey(c.service)?.vip : undefined));
  const d: VsDeps = {
    vips: [...new Set([...(Array.isArray(spec.addresses) ? spec.addresses : []).map(canon), ...held].filter((x) => x !== undefined))],
    statics: (Array.isArray(spec.backends?.static) ? spec.backends.static : []).map((s) => canon(s?.address)).filter((x) => x !== undefined),
  };
  const svc = spec.backends?.service?.name;
  if (typeof svc === 'string') d.service = `${vs.metadata.namespace ?? ''}/${svc}`;
  const sel = spec.directors?.nodeSelector;
  if (sel && typeof sel === 'object') d.selector = sel;
  return d;
}

function addTo(m: Map<string, Set<string>>, k: string, v: string): void {
  let s = m.get(k);
  if (!s) m.set(k, (s = new Set()));
  s.add(v);
}

function removeFrom(m: Map<string, Set<string>>, k: string, v: string): void {
  const s = m.get(k);
  if (s?.delete(v) && s.size === 0) m.delete(k);
}

function matches(selector: Readonly<Record<string, string>> | undefined, node: NodeObject | undefined): boolean {
  if (!node) return false;
  const labels = node.metadata.labels ?? {};
  return Object.entries(selector ?? {}).every(([k, v]) => labels[k] === v);
}

function nodeAddresses(node: NodeObject | undefined): Set<string> {
  return new Set((node?.status?.addresses ?? []).map((a) => canon(a.address)).filter((x) => x !== undefined));
}

/** What the resolver reads from a Node: labels (directors), addresses (static backends, reserved), pod CIDRs (reserved). */
function nodeFingerprint(node: NodeObject | undefined): string {
  if (!node) return '';
  const labels = Object.entries(node.metadata.labels ?? {}).sort(([a], [b]) => (a < b ? -1 : 1));
  const spec = (node as { spec?: { podCIDRs?: string[]; podCIDR?: string } }).spec;
  return JSON.stringify([labels, [...nodeAddresses(node)].sort(), spec?.podCIDRs ?? spec?.podCIDR ?? null]);
}

export class World {
  readonly index: ResolveIndex = buildIndex({ services: [], endpointSlices: [], nodes: [] });
  readonly #getVs: (key: string) => VirtualServerObject | undefined;
  readonly #deps = new Map<string, VsDeps>();
  readonly #byService = new Map<string, Set<string>>();
  readonly #byVip = new Map<string, Set<string>>();
  readonly #slices = new Map<string, Map<string, V1EndpointSlice>>();
  readonly #sliceOwner = new Map<string, string>();
  readonly #nodes = new Map<string, NodeObject>();
  readonly #pools = new Map<string, VIPPoolLike>();

  /** getVs reads the VirtualServer cache (the informer's), for arbitration against neighbours. */
  constructor(getVs: (key: string) => VirtualServerObject | undefined) {
    this.#getVs = getVs;
  }

  /** A VirtualServer was added, changed or (next undefined) deleted. Returns it and its VIP neighbours. */
  virtualServerChanged(key: string, next: VirtualServerObject | undefined): string[] {
    const marked = new Set([key, ...this.#neighbours(key)]);
    const old = this.#deps.get(key);
    if (old) {
      if (old.service) removeFrom(this.#byService, old.service, key);
      for (const v of old.vips) removeFrom(this.#byVip, v, key);
      this.#deps.delete(key);
    }
    if (next) {
      const d = depsOf(next);
      this.#deps.set(key, d);
      if (d.service) addTo(this.#byService, d.service, key);
      for (const v of d.vips) addTo(this.#byVip, v, key);
      for (const k of this.#neighbours(key)) marked.add(k);
    }
    return [...marked];
  }

  /**
   * Only a VirtualServer's status.claims changed (its spec and age did not): most often the echo
   * of the controller's own status write, which records the keys the VirtualServer just won. A
   * key it holds from now on (or since another time) changes no neighbour's outcome except a
   * neighbour's that holds the same key: holders compare by since, and a holder beats every
   * non-holder anyway (api/resolve/conflicts.ts). So those holders are marked, with the key
   * itself when there are any; the key alone otherwise goes to the refresh lane (returned empty
   * here). A key it no longer holds can go to any neighbour that wants it: all are marked, as for
   * a spec change. Marking every neighbour on each first status write made 25 changes out of one
   * at 25 VirtualServers per VIP (bench/RESULTS.md, 2026-12-07).
   */
  claimsChanged(key: string, old: VirtualServerObject, next: VirtualServerObject): string[] {
    const before = heldOf(old as unknown as VirtualServerLike);
    const after = heldOf(next as unknown as VirtualServerLike);
    if ([...before.keys()].some((k) => !after.has(k))) return this.virtualServerChanged(key, next);
    this.virtualServerChanged(key, next);
    const taken = [...after].filter(([k, since]) => !Object.is(before.get(k), since)).map(([k]) => k);
    const holders = this.#neighbours(key).filter((n) => {
      const vs = this.#getVs(n);
      const held = vs ? heldOf(vs as unknown as VirtualServerLike) : new Map<string, number>();
      return taken.some((k) => held.has(k));
    });
    return holders.length ? [key, ...holders] : [];
  }

  serviceChanged(svc: KubeObject, deleted: boolean): string[] {
    const key = objectKey(svc);
    if (deleted) this.index.services.delete(key);
    else this.index.services.set(key, svc as unknown as V1Service);
    const reserved = this.#reserve(`service/${key}`, deleted ? [] : reservedOfService(svc as unknown as V1Service));
    return [...new Set([...(this.#byService.get(key) ?? []), ...reserved])];
  }

  /** The admission side of the index: pools, namespaces, reserved addresses (never unrestricted here). */
  get admission(): Extract<Admission, { kind: 'pools' }> {
    const a = this.index.admission;
    if (a.kind !== 'pools') throw new Error('the controller always admits by pools');
    return a;
  }

  /** Replaces one source of reserved addresses; returns the VirtualServers it can affect. */
  #reserve(source: string, entries: ReturnType<typeof reservedOfService>): string[] {
    const changed = this.admission.reserved.set(source, entries);
    if (changed.ranges) return this.keys();
    return [...new Set(changed.addresses.flatMap((a) => [...(this.#byVip.get(a) ?? [])]))];
  }

  /** A VIPPool was added, changed or deleted: pools are few and change rarely, so every VirtualServer is marked. */
  poolChanged(pool: KubeObject, deleted: boolean): string[] {
    const name = pool.metadata.name;
    const before = JSON.stringify(this.#pools.get(name)?.spec ?? null);
    if (deleted) this.#pools.delete(name); else this.#pools.set(name, pool as unknown as VIPPoolLike);
    if (before === JSON.stringify(deleted ? null : (pool as unknown as VIPPoolLike).spec ?? null)) return [];
    this.admission.pools = buildPools([...this.#pools.values()]);
    this.index.directorCache.clear();
    return this.keys();
  }

  /** Why a pool grants nothing (for its VIPPool status); undefined when it is usable. */
  poolProblems(name: string): ReadonlyArray<{ reason: string; field: string; message: string }> | undefined {
    return this.admission.pools.problems.get(name);
  }

  /** A Namespace's labels changed (namespaceSelector): marks its VirtualServers. */
  namespaceChanged(ns: KubeObject, deleted: boolean): string[] {
    const name = ns.metadata.name;
    const m = this.admission.namespaces;
    const before = JSON.stringify(m.get(name) ?? null);
    if (deleted) m.delete(name); else m.set(name, ns.metadata.labels ?? {});
    if (before === JSON.stringify(m.get(name) ?? null)) return [];
    return this.keys().filter((k) => k.startsWith(`${name}/`));
  }

  serviceCIDRChanged(obj: KubeObject, deleted: boolean): string[] {
    return this.#reserve(`servicecidr/${obj.metadata.name}`, deleted ? [] : reservedOfServiceCIDR(obj as unknown as ServiceCIDRLike));
  }

  endpointSliceChanged(slice: KubeObject, deleted: boolean): string[] {
    const key = objectKey(slice);
    const apiserver = isApiserverSlice(slice) ? this.#reserve(`apiserver/${slice.metadata.name}`, deleted ? [] : reservedOfApiserverSlice(slice as unknown as V1EndpointSlice)) : [];
    const ns = slice.metadata.namespace ?? '';
    const label = slice.metadata.labels?.[SERVICE_NAME_LABEL];
    const owner = !deleted && label ? `${ns}/${label}` : undefined;
    const before = this.#sliceOwner.get(key);
    const touched = new Set<string>();
    if (before !== undefined && before !== owner) {
      this.#slices.get(before)?.delete(key);
      this.#sliceOwner.delete(key);
      this.#publishSlices(before);
      touched.add(before);
    }
    if (owner !== undefined) {
      let m = this.#slices.get(owner);
      if (!m) this.#slices.set(owner, (m = new Map()));
      m.set(key, slice as unknown as V1EndpointSlice);
      this.#sliceOwner.set(key, owner);
      this.#publishSlices(owner);
      touched.add(owner);
    }
    return [...new Set([...apiserver, ...[...touched].flatMap((svc) => [...(this.#byService.get(svc) ?? [])])])];
  }

  /** The newest last-change-trigger-time among the EndpointSlices of the VirtualServer's Service (epoch ms). */
  changeTriggerTime(key: string): number | undefined {
    const svc = this.#deps.get(key)?.service;
    let newest: number | undefined;
    for (const slice of (svc ? this.#slices.get(svc)?.values() : undefined) ?? []) {
      const t = annotatedTime(slice.metadata, TRIGGER_TIME_ANNOTATION);
      if (t !== undefined && (newest === undefined || t > newest)) newest = t;
    }
    return newest;
  }

  #publishSlices(service: string): void {
    const m = this.#slices.get(service);
    if (!m || m.size === 0) {
      this.#slices.delete(service);
      this.index.slices.delete(service);
    } else {
      this.index.slices.set(service, [...m.values()]);
    }
  }

  /**
   * A Node was added, changed or (next undefined) deleted. Only changes to what the resolver reads
   * (labels, addresses) count; heartbeats and condition updates mark nothing. Marks the
   * VirtualServers whose director set changes (selector matched before xor after) and those with
   * a static backend on an address the node gained or lost.
   */
  nodeChanged(name: string, next: NodeObject | undefined): string[] {
    const old = this.#nodes.get(name);
    if (nodeFingerprint(old) === nodeFingerprint(next)) {
      if (next) this.#nodes.set(name, next);
      return [];
    }
    if (next) this.#nodes.set(name, next); else this.#nodes.delete(name);
    setNodes(this.index, [...this.#nodes.values()] as unknown as V1Node[]);
    const reserved = this.#reserve(`node/${name}`, next ? reservedOfNode(next as unknown as V1Node) : []);
    const before = nodeAddresses(old), after = nodeAddresses(next);
    const moved = new Set([...before, ...after].filter((a) => before.has(a) !== after.has(a)));
    // A node joining or leaving a pool's directors, or gaining or losing the real-server-host
    // label, is rare and may affect any VirtualServer: all are marked. Otherwise only those whose
    // own selector's match changed or that use an address the node gained or lost.
    const hostLabel = (n: NodeObject | undefined) => n?.metadata.labels?.[REAL_SERVER_HOST_LABEL];
    const poolMoved = this.admission.pools.pools.some((p) => p.directors !== undefined && matches(p.directors, old) !== matches(p.directors, next));
    if (poolMoved || hostLabel(old) !== hostLabel(next)) return this.keys();
    const out = new Set(reserved);
    for (const [key, d] of this.#deps) {
      if (matches(d.selector, old) !== matches(d.selector, next) || d.statics.some((a) => moved.has(a))) out.add(key);
    }
    return [...out];
  }

  /** Keys of the other VirtualServers sharing at least one VIP with key. */
  #neighbours(key: string): string[] {
    const out = new Set<string>();
    for (const v of this.#deps.get(key)?.vips ?? []) for (const k of this.#byVip.get(v) ?? []) if (k !== key) out.add(k);
    return [...out];
  }

  /**
   * Resolves one VirtualServer against the index and arbitrates it against every VirtualServer
   * sharing one of its VIPs: the only ones that can claim the same (VIP, protocol, port).
   */
  resolve(vs: VirtualServerObject): VirtualServerResolution {
    return this.resolvePlan(vs).resolution;
  }

  /** resolve(), with the plan services the VirtualServer won (what it publishes). */
  resolvePlan(vs: VirtualServerObject): { services: PlanService[]; resolution: VirtualServerResolution } {
    const key = objectKey(vs);
    const self = resolveOne(vs as unknown as VirtualServerLike, this.index);
    const others = this.#neighbours(key).map((k) => this.#getVs(k)).filter((o) => o !== undefined)
      .map((o) => resolveOne(o as unknown as VirtualServerLike, this.index));
    const { losses } = arbitrate([self, ...others]);
    return finalize(self, losses.get(key));
  }

  /** Every VirtualServer key known to the index. */
  keys(): string[] {
    return [...this.#deps.keys()];
  }
}
