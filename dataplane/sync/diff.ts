// Pure: desired state + what the kernel holds now → the ordered operations that converge the two.
//
// Ownership: a kernel service is ours when its VIP is owned (directed now, or being retired);
// every other service (other VIPs, firewall-mark services, frozen keys) is left exactly as found,
// even when it shares a port with ours. A service on an owned VIP that is not desired is ours to
// remove.
//
// Connections are never cut by a reconfiguration: changing scheduler, flags, timeout, netmask or
// persistence engine edits the service in place (IPVS_CMD_SET_SERVICE keeps its destinations and
// their connection counters), and a changed destination is edited in place (IPVS_CMD_SET_DEST).
//
// Removal is a drain. A TCP/SCTP destination that is no longer wanted first gets weight 0 (no new
// connections), and is deleted once its active + inactive connection counts read 0, or when
// drainTimeoutMs has passed since the drain began. UDP has no connection end to wait for, so a UDP
// destination is deleted at once. This relies on net.ipv4.vs.expire_nodest_conn=1 (set by the agent
// at start-up, outside this module): with it the kernel expires entries that point at a deleted
// destination on their next packet instead of black-holing that flow until the UDP timeout.
// A service that is no longer wanted is deleted with one DEL_SERVICE once none of its destinations
// needs to drain any more (the kernel removes the destinations with it); until then its idle
// destinations are deleted and the busy ones drain.
import type { IpvsDestination, IpvsService, IpvsServiceKey, IpvsServiceState } from '../ipvs/types.ts';
import { userServiceFlags } from './flags.ts';
import { byString, canonicalAddress, destKey, drainKey, ipvsServiceKey } from './keys.ts';

export type DeleteReason = 'idle' | 'udp' | 'deadline' | 'empty';

interface OpBase {
  /** Service key, e.g. "TCP/203.0.113.10:80". */
  key: string;
  /** The kernel service the op addresses. */
  service: IpvsServiceKey;
}
interface DestOpBase extends OpBase {
  /** Destination as "addr:port". */
  dest: string;
}

export type SyncOp =
  | (OpBase & { kind: 'addService'; service: IpvsService })
  | (OpBase & { kind: 'updateService'; service: IpvsService; changed: string[] })
  | (OpBase & { kind: 'deleteService'; reason: DeleteReason })
  | (DestOpBase & { kind: 'addDestination'; destination: IpvsDestination })
  | (DestOpBase & { kind: 'updateDestination'; destination: IpvsDestination; changed: string[] })
  /** Weight 0 on a destination that is on its way out; an updateDestination in the kernel. */
  | (DestOpBase & { kind: 'drainDestination'; destination: IpvsDestination })
  | (DestOpBase & { kind: 'deleteDestination'; destination: Pick<IpvsDestination, 'family' | 'address' | 'port'>; reason: DeleteReason });

export type SyncOpKind = SyncOp['kind'];

export interface DiffInput {
  desired: readonly IpvsServiceState[];
  kernel: readonly IpvsServiceState[];
  /** VIPs this node directs now (DesiredState.ownedVips, frozen services' VIPs included). */
  ownedVips: Iterable<string>;
  /** VIPs it directed before and may still hold services of ours on; they are removed (drained). */
  retiringVips?: Iterable<string>;
  /** Service keys to leave as found even on an owned VIP (their plan entry is invalid). */
  frozen?: Iterable<string>;
  /** drainKey() → time (ms) the destination started draining. */
  draining: ReadonlyMap<string, number>;
  now: number;
  drainTimeoutMs: number;
}

export interface DiffResult {
  ops: SyncOp[];
  /** The draining map for the next sync: only destinations still draining after these ops. */
  draining: Map<string, number>;
  /** Earliest time at which a still-draining destination reaches its deadline. */
  nextDeadline?: number;
  /** Retiring VIPs that hold no service of ours once the ops are applied: safe to unbind. */
  retiredVips: string[];
}

export function diff(input: DiffInput): DiffResult {
  const current = new Set([...input.ownedVips].map(canonicalAddress));
  for (const s of input.desired) current.add(canonicalAddress(s.service.address));
  const retiring = new Set([...(input.retiringVips ?? [])].map(canonicalAddress).filter((v) => !current.has(v)));
  const desired = new Map(input.desired.map((s) => [ipvsServiceKey(s.service), s]));
  const frozen = new Set(input.frozen ?? []);
  const kernel = new Map<string, IpvsServiceState>();
  for (const s of input.kernel) {
    const vip = s.service.fwmark ? undefined : canonicalAddress(s.service.address);
    if (vip === undefined || !(current.has(vip) || retiring.has(vip))) continue;
    const key = ipvsServiceKey(s.service);
    if (!frozen.has(key)) kernel.set(key, s);
  }
  const ctx: Ctx = { ...input, ops: [], next: new Map() };
  const remaining = new Set<string>(); // retiring VIPs that still hold a service of ours after the ops
  for (const key of [...new Set([...desired.keys(), ...kernel.keys()])].sort(byString)) {
    const want = desired.get(key);
    const have = kernel.get(key);
    if (want) syncService(ctx, key, want, have);
    else if (have && !removeService(ctx, key, have)) remaining.add(canonicalAddress(have.service.address));
  }
  let nextDeadline: number | undefined;
  for (const since of ctx.next.values()) {
    const deadline = since + input.drainTimeoutMs;
    if (nextDeadline === undefined || deadline < nextDeadline) nextDeadline = deadline;
  }
  return {
    ops: ctx.ops,
    draining: ctx.next,
    ...(nextDeadline === undefined ? {} : { nextDeadline }),
    retiredVips: [...retiring].filter((v) => !remaining.has(v)).sort(byString),
  };
}

interface Ctx extends DiffInput {
  ops: SyncOp[];
  next: Map<string, number>;
}

/** Add or edit the service in place, then its destinations: additions before removals. */
function syncService(ctx: Ctx, key: string, want: IpvsServiceState, have: IpvsServiceState | undefined): void {
  const svc = keyOf(want.service);
  if (!have) {
    ctx.ops.push({ kind: 'addService', key, service: want.service });
  } else {
    const changed = serviceChanges(want.service, have.service);
    if (changed.length > 0) ctx.ops.push({ kind: 'updateService', key, service: want.service, changed });
  }
  const current = new Map((have?.destinations ?? []).map((d) => [destKey(d), d]));
  const wanted = new Set<string>();
  for (const d of want.destinations) {
    const dk = destKey(d);
    wanted.add(dk);
    const k = current.get(dk);
    if (!k) {
      ctx.ops.push({ kind: 'addDestination', key, service: svc, dest: dk, destination: d });
      continue;
    }
    const changed = destinationChanges(d, k);
    if (changed.length > 0) ctx.ops.push({ kind: 'updateDestination', key, service: svc, dest: dk, destination: d, changed });
  }
  const extra = [...current.entries()].filter(([dk]) => !wanted.has(dk)).sort(([a], [b]) => byString(a, b));
  for (const [, d] of extra) retireDestination(ctx, key, svc, d);
}

/**
 * A service that is no longer wanted: one DEL_SERVICE when nothing needs to drain, else delete
 * the idle destinations and drain the busy ones. Returns true when the service is deleted now.
 */
function removeService(ctx: Ctx, key: string, have: IpvsServiceState): boolean {
  const svc = have.service;
  const verdicts = have.destinations.map((d) => ({ d, why: deleteReason(ctx, svc, d) }));
  if (verdicts.every((v) => v.why !== undefined)) {
    const reasons = new Set(verdicts.map((v) => v.why));
    const reason: DeleteReason = verdicts.length === 0 ? 'empty' : reasons.has('deadline') ? 'deadline' : svc.protocol === 'UDP' ? 'udp' : 'idle';
    ctx.ops.push({ kind: 'deleteService', key, service: keyOf(svc), reason });
    return true;
  }
  const sorted = [...have.destinations].sort((a, b) => byString(destKey(a), destKey(b)));
  for (const d of sorted) retireDestination(ctx, key, keyOf(svc), d);
  return false;
}

/** Delete an unwanted destination when it may go, else set weight 0 and remember since when. */
function retireDestination(ctx: Ctx, key: string, svc: IpvsServiceKey, d: IpvsDestination): void {
  const dk = destKey(d);
  const why = deleteReason(ctx, svc, d);
  if (why !== undefined) {
    const destination = { family: d.family, address: d.address, port: d.port };
    ctx.ops.push({ kind: 'deleteDestination', key, service: keyOf(svc), dest: dk, destination, reason: why });
    return;
  }
  ctx.next.set(drainKey(svc, d), ctx.draining.get(drainKey(svc, d)) ?? ctx.now);
  if (d.weight !== 0) {
    ctx.ops.push({ kind: 'drainDestination', key, service: keyOf(svc), dest: dk, destination: { ...withoutStats(d), weight: 0 } });
  }
}

/** Why an unwanted destination may be deleted now, or undefined while it must keep draining. */
function deleteReason(ctx: Ctx, svc: IpvsServiceKey, d: IpvsDestination): DeleteReason | undefined {
  if (svc.protocol === 'UDP') return 'udp';
  const conns = (d.stats?.activeConns ?? 0) + (d.stats?.inactiveConns ?? 0);
  if (conns === 0) return 'idle';
  const since = ctx.draining.get(drainKey(svc, d)) ?? ctx.now;
  return ctx.now - since >= ctx.drainTimeoutMs ? 'deadline' : undefined;
}

function serviceChanges(want: IpvsService, have: IpvsService): string[] {
  const changed: string[] = [];
  if (want.scheduler !== have.scheduler) changed.push('scheduler');
  if (userServiceFlags(want.flags) !== userServiceFlags(have.flags)) changed.push('flags');
  if (want.timeout !== have.timeout) changed.push('timeout');
  if (!sameNetmask(want, have)) changed.push('netmask');
  if ((want.pe ?? '') !== (have.pe ?? '')) changed.push('pe');
  return changed;
}

function sameNetmask(want: IpvsService, have: IpvsService): boolean {
  if (want.netmask === have.netmask) return true;
  if (want.family !== 4) return Number(want.netmask) === Number(have.netmask);
  try {
    return canonicalAddress(want.netmask) === canonicalAddress(have.netmask);
  } catch {
    return false;
  }
}

function destinationChanges(want: IpvsDestination, have: IpvsDestination): string[] {
  const changed: string[] = [];
  if (want.weight !== have.weight) changed.push('weight');
  if (want.forward !== have.forward) changed.push('forward');
  if (want.upperThreshold !== have.upperThreshold) changed.push('upperThreshold');
  if (want.lowerThreshold !== have.lowerThreshold) changed.push('lowerThreshold');
  // The kernel reports tunnel attributes for every destination; they only mean something for TUN.
  if (want.forward === 'tunnel') {
    if ((want.tunnelType ?? 'ipip') !== (have.tunnelType ?? 'ipip')) changed.push('tunnelType');
    if ((want.tunnelPort ?? 0) !== (have.tunnelPort ?? 0)) changed.push('tunnelPort');
    if ((want.tunnelFlags ?? 0) !== (have.tunnelFlags ?? 0)) changed.push('tunnelFlags');
  }
  return changed;
}

function keyOf(s: IpvsServiceKey): IpvsServiceKey {
  return { family: s.family, protocol: s.protocol, address: s.address, port: s.port };
}

function withoutStats(d: IpvsDestination): IpvsDestination {
  const { stats: _stats, ...rest } = d;
  return rest;
}
