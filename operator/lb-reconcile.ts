// Reconcile of one LoadBalancer Service (queue key "Service/<namespace>/<name>": a namespace never
// holds an uppercase letter): keep its owned VirtualServer as operator/loadbalancer.ts decides,
// and its status.loadBalancer.ingress as that VirtualServer's status says. Allocation runs under
// one lock so two Services reconciled side by side never get the same address.
import type { KubeApi } from '../kube/api.ts';
import { isNotFound } from '../kube/errors.ts';
import type { EventSink } from '../kube/events.ts';
import { SERVICES, VIRTUAL_SERVERS, type VirtualServerObject } from '../kube/types.ts';
import {
  addressesOf, allocate, chooseAddresses, desiredVirtualServer, ingressOf, ownedBy, SERVICE_LABEL, servedHere, SPEC_HASH_ANNOTATION, vsNameFor,
  type AddressChoice, type ServiceObject,
} from './loadbalancer.ts';
import type { ReconcileResult } from './queue.ts';
import { jsonEqual, rfc3339 } from './status.ts';
import type { World } from './world.ts';

export const LB_KEY_PREFIX = 'Service/';
export const lbKey = (namespace: string, name: string): string => `${LB_KEY_PREFIX}${namespace}/${name}`;

export interface LbDeps {
  api: KubeApi;
  world: World;
  events: EventSink;
  defaultClass: boolean;
  getService(key: string): ServiceObject | undefined;
  getVs(key: string): VirtualServerObject | undefined;
  listVs(): VirtualServerObject[];
  canWrite(): boolean;
  /** Wall-clock ms (condition times). */
  now(): number;
  /** Serialises allocations (one controller-wide lock). */
  lock<T>(fn: () => Promise<T>): Promise<T>;
  /**
   * Addresses handed out, by Service key, kept under the lock: the VirtualServer cache lags the
   * writes, and without this two Services reconciled back to back would get the same address.
   */
  allocations: Map<string, string[]>;
}

/** A promise chain as a mutex. */
export function createLock(): <T>(fn: () => Promise<T>) => Promise<T> {
  let tail: Promise<unknown> = Promise.resolve();
  return <T>(fn: () => Promise<T>) => {
    const run = tail.then(fn, fn);
    tail = run.catch(() => undefined);
    return run;
  };
}

export async function reconcileLoadBalancer(key: string, deps: LbDeps, signal?: AbortSignal): Promise<ReconcileResult> {
  const rest = key.slice(LB_KEY_PREFIX.length);
  const [namespace = '', name = ''] = [rest.slice(0, rest.indexOf('/')), rest.slice(rest.indexOf('/') + 1)];
  const svc = deps.getService(`${namespace}/${name}`);
  const vsKey = `${namespace}/${vsNameFor(name)}`;
  const existing = deps.getVs(vsKey);
  if (!deps.canWrite()) return { kind: 'error', err: new Error('not the leader: writes withheld') };
  try {
    if (!svc || !servedHere(svc, deps.defaultClass) || svc.metadata.deletionTimestamp) return await release(svc, existing, name, deps, signal);
    if (existing && !ownedBy(existing, svc)) {
      await deps.events.record(svc, { type: 'Warning', reason: 'NameTaken', action: 'Allocate', note: `VirtualServer ${vsKey} exists and is not owned by this Service; delete or rename it` });
      return { kind: 'done' };
    }
    const svcKey = `${namespace}/${name}`;
    const choice = await deps.lock(async () => {
      const got = addressesFor(svc, svcKey, existing, deps);
      if ('error' in got) deps.allocations.delete(svcKey); else deps.allocations.set(svcKey, got.addresses);
      return got;
    });
    if ('error' in choice) {
      await deps.events.record(svc, { type: 'Warning', reason: 'AllocationFailed', action: 'Allocate', note: choice.error });
      await writeStatus(svc, [], { status: 'False', reason: 'AllocationFailed', message: choice.error }, deps, signal);
      return { kind: 'done' };
    }
    const { addresses, partial } = choice;
    const want = desiredVirtualServer(svc, addresses);
    let changed = true;
    if (!existing) {
      await deps.api.create(VIRTUAL_SERVERS, namespace, want, signal);
      await deps.events.record(svc, { type: 'Normal', reason: 'AddressAllocated', action: 'Allocate', note: `${addresses.join(', ')} served by VirtualServer ${vsKey}` });
    } else if (existing.metadata.annotations?.[SPEC_HASH_ANNOTATION] !== want.metadata.annotations?.[SPEC_HASH_ANNOTATION] || !jsonEqual(existing.spec?.addresses, want.spec?.addresses)) {
      const metadata = { ...existing.metadata, labels: { ...existing.metadata.labels, ...want.metadata.labels }, annotations: { ...existing.metadata.annotations, ...want.metadata.annotations } };
      await deps.api.replace(VIRTUAL_SERVERS, namespace, want.metadata.name, { ...existing, metadata, spec: want.spec }, signal);
    } else changed = false;
    if (partial && changed) await deps.events.record(svc, { type: 'Warning', reason: 'SingleStackFallback', action: 'Allocate', note: partial });
    await writeStatus(svc, ingressOf(existing), allocatedCondition(existing, addresses, vsKey, partial), deps, signal);
    return { kind: 'done' };
  } catch (err) {
    // A 409 (the VirtualServer or Service changed meanwhile) or anything else: retried with backoff.
    return { kind: 'error', err };
  }
}

function addressesFor(svc: ServiceObject, svcKey: string, existing: VirtualServerObject | undefined, deps: LbDeps): AddressChoice {
  // Families are distinct, so an address chosen for one never collides with another's.
  let used: Set<string> | undefined;
  const allocateFamily = (family: 4 | 6) => {
    if (!used) {
      used = new Set<string>();
      for (const vs of deps.listVs()) for (const a of addressesOf(vs)) used.add(a);
      for (const [k, list] of deps.allocations) if (k !== svcKey) for (const a of list) used.add(a);
    }
    const adm = deps.world.admission;
    const ns = svc.metadata.namespace ?? '';
    const got = allocate({ pools: adm.pools, namespace: ns, namespaceLabels: adm.namespaces.get(ns) ?? { 'kubernetes.io/metadata.name': ns }, families: [family], used, reserved: adm.reserved });
    return 'error' in got ? got : got[0]!;
  };
  return chooseAddresses(svc, addressesOf(existing), allocateFamily);
}

/** Not (or no longer) ours to serve: the owned VirtualServer goes, and with it the ingress we wrote. */
async function release(svc: ServiceObject | undefined, existing: VirtualServerObject | undefined, name: string, deps: LbDeps, signal?: AbortSignal): Promise<ReconcileResult> {
  deps.allocations.delete(`${existing?.metadata.namespace ?? svc?.metadata.namespace ?? ''}/${name}`);
  // Gone Service: its VirtualServer is the one labelled for it and controlled by a Service of that name.
  const controlledByName = (existing?.metadata as { ownerReferences?: Array<{ kind?: string; name?: string; controller?: boolean }> } | undefined)
    ?.ownerReferences?.some((o) => o.kind === 'Service' && o.name === name && o.controller === true) === true;
  if (existing && existing.metadata.labels?.[SERVICE_LABEL] === name && (svc ? ownedBy(existing, svc) : controlledByName)) {
    await deps.api.delete(VIRTUAL_SERVERS, existing.metadata.namespace, existing.metadata.name, {}, signal).catch((err) => { if (!isNotFound(err)) throw err; });
  }
  if (svc && (svc.status?.loadBalancer?.ingress ?? []).some((i) => i.ipMode === 'Proxy') && !servedHere(svc, deps.defaultClass)) {
    await deps.api.patchStatus(SERVICES, svc.metadata.namespace, svc.metadata.name, { status: { loadBalancer: { ingress: null } } }, signal);
  }
  return { kind: 'done' };
}

const CONDITION = 'lvs.dev/AddressAllocated';

/**
 * True once the VirtualServer serves every address; PartiallyServed while it serves some (a
 * dual-stack Service whose IPv6 address was refused, say); while it serves none (just created, or
 * refused: an address the pools do not grant, or held by another), False with the VirtualServer's reason.
 */
function allocatedCondition(vs: VirtualServerObject | undefined, addresses: readonly string[], vsKey: string, partial?: string): { status: 'True' | 'False'; reason: string; message: string } {
  const won = new Set(ingressOf(vs).map((i) => i.ip));
  const ready = vs?.status?.conditions?.find((c) => c.type === 'Ready');
  if (won.size > 0 && addresses.every((a) => won.has(a))) return { status: 'True', reason: 'Allocated', message: `${addresses.join(', ')} (VirtualServer ${vsKey})${partial ? `; ${partial}` : ''}` };
  if (won.size > 0) {
    const why = ready?.status === 'False' && ready.reason !== 'NoReadyEndpoints' ? `: ${ready.message}` : ' yet';
    return { status: 'False', reason: 'PartiallyServed', message: `VirtualServer ${vsKey} serves ${[...won].join(', ')}, not ${addresses.filter((a) => !won.has(a)).join(', ')}${why}` };
  }
  if (ready?.status === 'False' && ready.reason !== 'NoReadyEndpoints') return { status: 'False', reason: ready.reason, message: `VirtualServer ${vsKey}: ${ready.message}` };
  return { status: 'False', reason: 'Pending', message: `${addresses.join(', ')}: VirtualServer ${vsKey} does not serve it yet` };
}

async function writeStatus(svc: ServiceObject, ingress: Array<{ ip: string; ipMode: 'Proxy' }>, cond: { status: 'True' | 'False'; reason: string; message: string }, deps: LbDeps, signal?: AbortSignal): Promise<void> {
  const conditions = (Array.isArray(svc.status?.conditions) ? svc.status.conditions : []) as Array<{ type?: string; status?: string; reason?: string; message?: string; lastTransitionTime?: string }>;
  const prev = conditions.find((c) => c.type === CONDITION);
  const sameCond = prev?.status === cond.status && prev.reason === cond.reason && prev.message === cond.message;
  const sameIngress = jsonEqual(svc.status?.loadBalancer?.ingress ?? [], ingress);
  if (sameCond && sameIngress) return;
  const next = { type: CONDITION, ...cond, lastTransitionTime: prev?.status === cond.status && prev.lastTransitionTime ? prev.lastTransitionTime : rfc3339(deps.now()), observedGeneration: svc.metadata.generation ?? 0 };
  await deps.api.patchStatus(SERVICES, svc.metadata.namespace, svc.metadata.name, {
    status: { loadBalancer: { ingress: ingress.length ? ingress : null }, conditions: [...conditions.filter((c) => c.type !== CONDITION), next] },
  }, signal);
}
