// Pure: the plan's services for which this node is a director → the IPVS services and destinations
// its kernel should hold, as plain sorted data, plus the VIPs the node owns (bound on lvs0).
// Bad input never throws: it becomes a Problem naming the field. A service with a service-level
// problem is "frozen" (its kernel state is left exactly as found, its VIP stays owned) rather than
// dropped, because dropping it would make the diff tear down a service that may carry traffic.
// Held keys (the caller's: an owner whose plan it cannot use and never had, a removal awaiting
// confirmation) are frozen the same way without any plan entry: only the key names them.
import { refKey, type Forwarding, type PlanRealServer, type PlanService } from '../../api/plan.ts';
import type { ForwardMethod, IpvsDestination, IpvsService, IpvsServiceState } from '../ipvs/types.ts';
import { AlternatingList, rewrites, type ListDelta } from '../delta-list.ts';
import { SCHED_FLAG_BITS, SVC_F, TUNNEL_FLAG } from './flags.ts';
import { addressFamily, byString, canonicalAddress, compareDestinations, destKey, ipvsServiceKey, parseServiceKey, serviceKeyOf } from './keys.ts';

export interface Problem {
  /** Service key (the plan's key when the service's own address is unusable). */
  key: string;
  /** Path of the offending field inside the PlanService, e.g. realServers[2].address. */
  field: string;
  message: string;
}

export interface DesiredState {
  /** Sorted by service key; destinations sorted by address, then port. */
  services: IpvsServiceState[];
  /** Canonical VIPs of every service this node directs (including frozen ones), sorted. */
  ownedVips: string[];
  /** Service key → owning VirtualServer "namespace/name", for log context. */
  owners: Map<string, string>;
  /** Keys of services to leave untouched in the kernel: their plan entry is invalid, or they are held. */
  frozen: string[];
  problems: Problem[];
  /** Service key → its position in `services`. Never modified: a patched state shares it. */
  index: ReadonlyMap<string, number>;
  /**
   * Set when this state was patched from the last call's (see patch()): `keys` (sorted) are the
   * services whose state object differs from the one in `from`, that call's services; every other
   * entry is the very object `from` holds, and no key came or went. `compared`: plan entries looked
   * at to find them (the plan's delta positions when the caller passed one, else every entry).
   */
  delta?: { from: readonly IpvsServiceState[]; keys: string[]; compared: number };
}

const FORWARD: Record<Forwarding, ForwardMethod> = { NAT: 'masq', DR: 'droute', TUN: 'tunnel' };
const PROTOCOLS = new Set(['TCP', 'UDP', 'SCTP']);
const TUNNEL_TYPES = new Set(['ipip', 'gue', 'gre']);
/** ipvsadm's upper bound for -p (one month), also the CRD's. */
const MAX_PERSISTENCE = 2678400;

/** What one desiredState() keeps for the next (the syncer's): the sorted service keys, the last call. */
export interface DesiredMemo {
  keys?: string[];
  /** `planRewrites`: rewrites(plan) when it was kept (../delta-list.ts): patched from only while the same. */
  last?: { plan: readonly PlanService[]; planRewrites: number; node: string; held: readonly string[]; state: DesiredState };
  /** The services lists patches are written into, in turn: the caller keeps only the last state's. */
  lists?: AlternatingList<IpvsServiceState>;
}

/**
 * `held`: service keys to leave exactly as the kernel has them, their VIPs owned, though the plan
 * has no entry for them. A plan entry with a held key is not built (the hold wins) and is reported.
 * `memo`: the last call's plan and result; a plan that only replaced entries by others of the same
 * service is patched (patch()), otherwise built whole, with the last sorted key order reused while
 * the service keys are the same. `delta`: where `plan` differs from `delta.from`; when that is the
 * last call's plan, a patch looks only there.
 */
export function desiredState(plan: readonly PlanService[], node: string, held: readonly string[] = [], memo?: DesiredMemo, delta?: ListDelta<PlanService>): DesiredState {
  const state = (memo?.last && patch(memo.last, plan, node, held, memo.lists ??= new AlternatingList(), delta)) ?? build(plan, node, held, memo);
  if (memo) memo.last = { plan, planRewrites: rewrites(plan), node, held, state };
  return state;
}

function build(plan: readonly PlanService[], node: string, held: readonly string[], memo: DesiredMemo | undefined): DesiredState {
  const byKey = new Map<string, IpvsServiceState>();
  const owners = new Map<string, string>();
  const vips = new Set<string>();
  const frozen = new Set<string>();
  const problems: Problem[] = [];
  const holds = new Set<string>();
  for (const h of held) {
    const k = parseServiceKey(h);
    if (!k) { problems.push({ key: h, field: 'key', message: 'held key is not a service key' }); continue; }
    const key = serviceKeyOf(k);
    holds.add(key);
    frozen.add(key);
    vips.add(k.vip);
  }
  for (const ps of plan) {
    if (!ps.directors.includes(node)) continue;
    const b = built(ps);
    if (!b.ok) { problems.push(b.problem); continue; }
    const { vip, key, svcProblems } = b;
    vips.add(vip);
    if (holds.has(key)) {
      owners.set(key, b.owner);
      problems.push({ key, field: 'key', message: 'held as the kernel has it (another owner\'s service is frozen or its removal awaits confirmation)' });
      continue;
    }
    if (byKey.has(key) || frozen.has(key)) {
      problems.push({ key, field: 'key', message: `duplicate service in the plan (also owned by ${owners.get(key) ?? '?'})` });
      continue;
    }
    owners.set(key, b.owner);
    if (svcProblems.length > 0) {
      problems.push(...svcProblems.map((p) => ({ ...p, key })));
      frozen.add(key);
      continue;
    }
    problems.push(...b.destProblems);
    byKey.set(key, b.state);
  }
  const keys = memo?.keys && sameKeys(memo.keys, byKey) ? memo.keys : [...byKey.keys()].sort(byString);
  if (memo) memo.keys = keys;
  const services = keys.map((k) => byKey.get(k)!);
  memo?.lists?.whole(services);
  return {
    services,
    ownedVips: [...vips].sort(byString),
    owners,
    frozen: [...frozen].sort(byString),
    problems,
    index: new Map(keys.map((k, i) => [k, i])),
  };
}

/**
 * The last call's state brought to `plan` in proportion to what changed, or undefined when only a
 * whole build can tell. A walk by identity finds the replaced entries (the callers build a new
 * array per sync but keep unchanged entries); each must replace a usable entry of the same service
 * and owner by another usable one — the common change: endpoints moved, weights changed. Then the
 * owners, VIPs, frozen keys and problems are those of the last call, and only the replaced states
 * change. Not patched: another length, node or hold list, or an entry replaced that did not make
 * its service (frozen, held, or a duplicate of an earlier entry: which one wins depends on order).
 */
function patch(last: NonNullable<DesiredMemo['last']>, plan: readonly PlanService[], node: string, held: readonly string[], lists: AlternatingList<IpvsServiceState>, delta: ListDelta<PlanService> | undefined): DesiredState | undefined {
  const prev = last.state;
  if (last.node !== node || last.plan.length !== plan.length || !sameList(last.held, held)) return undefined;
  // The last plan's array written again since (a call missed): its entries are no longer what was built.
  if (rewrites(last.plan) !== last.planRewrites) return undefined;
  const states = new Map<number, IpvsServiceState>();
  const keys: string[] = [];
  // Told where the plan changed since the last call: only there, not a walk over every entry.
  const positions = delta?.from === last.plan ? delta.at : undefined;
  const compared = (positions ?? plan).length;
  for (let k = 0; k < compared; k++) {
    const i = positions ? positions[k]! : k;
    const was = last.plan[i]!, now = plan[i]!;
    if (was === now) continue;
    const r = replacement(was, now, node, prev);
    if (r === undefined) return undefined;
    if (r === 'undirected') continue;
    states.set(r.at, r.state);
    keys.push(r.key);
  }
  const services = states.size > 0 ? lists.patch(prev.services, [...states.keys()], (i) => states.get(i)!).list as IpvsServiceState[] : prev.services;
  return { ...prev, services, delta: { from: prev.services, keys: keys.sort(byString), compared } };
}

/** Where `now` replaces `was` in `prev`, with its new state; 'undirected' when neither concerns this node. */
function replacement(was: PlanService, now: PlanService, node: string, prev: DesiredState): { at: number; key: string; state: IpvsServiceState } | 'undirected' | undefined {
  const directed = now.directors.includes(node);
  if (directed !== was.directors.includes(node)) return undefined;
  if (!directed) return 'undirected';
  const a = built(was), b = built(now);
  if (!a.ok || !b.ok || a.key !== b.key || a.owner !== b.owner) return undefined;
  if (a.svcProblems.length + b.svcProblems.length + a.destProblems.length + b.destProblems.length > 0) return undefined;
  const at = prev.index.get(a.key);
  // The replaced entry must be the one that made the service (not frozen, not shadowed).
  if (at === undefined || prev.services[at] !== a.state) return undefined;
  return { at, key: a.key, state: b.state };
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a === b || (a.length === b.length && a.every((x, i) => x === b[i]));
}

/** Service key → position, for a services list sorted by key (adoption.ts filters one). */
export function indexOf(services: readonly IpvsServiceState[]): Map<string, number> {
  return new Map(services.map((s, i) => [ipvsServiceKey(s.service), i]));
}

type Built =
  | { ok: false; problem: Problem }
  | { ok: true; vip: string; key: string; owner: string; svcProblems: Problem[]; state: IpvsServiceState; destProblems: Problem[] };

function sameKeys(sorted: readonly string[], byKey: ReadonlyMap<string, unknown>): boolean {
  if (sorted.length !== byKey.size) return false;
  for (const k of sorted) if (!byKey.has(k)) return false;
  return true;
}

/**
 * What one plan entry builds, whatever the rest of the plan: kept per PlanService object, which
 * the callers never modify (a changed entry is a new object), so a sync builds only the entries
 * that changed, and an unchanged one yields the same IpvsServiceState object (partial.ts compares
 * states by identity first).
 */
const builtCache = new WeakMap<PlanService, Built>();

function built(ps: PlanService): Built {
  let b = builtCache.get(ps);
  if (b) return b;
  const vip = addressFamily(ps.vip) === ps.family ? canonicalAddress(ps.vip) : undefined;
  if (vip === undefined) {
    b = { ok: false, problem: { key: ps.key, field: 'vip', message: `${JSON.stringify(ps.vip)} is not an IPv${ps.family} address` } };
  } else {
    const svcProblems: Problem[] = [];
    const service = buildService(ps, vip, svcProblems);
    const key = ipvsServiceKey(service);
    const destProblems: Problem[] = [];
    const destinations = svcProblems.length > 0 ? [] : buildDestinations(ps, key, destProblems);
    b = { ok: true, vip, key, owner: refKey(ps.owner), svcProblems, state: { service, destinations }, destProblems };
  }
  builtCache.set(ps, b);
  return b;
}

function buildService(ps: PlanService, vip: string, problems: Problem[]): IpvsService {
  const bad = (field: string, message: string) => problems.push({ key: ps.key, field, message });
  if (!PROTOCOLS.has(ps.protocol)) bad('protocol', `${JSON.stringify(ps.protocol)} is not TCP, UDP or SCTP`);
  if (!isPort(ps.port)) bad('port', `${ps.port} is not a port number 1..65535`);
  if (!(ps.forwarding in FORWARD)) bad('forwarding', `${JSON.stringify(ps.forwarding)} is not NAT, DR or TUN`);
  if (!ps.scheduler.name) bad('scheduler.name', 'must not be empty');
  let flags = 0;
  for (const [i, f] of ps.scheduler.flags.entries()) {
    const bit = SCHED_FLAG_BITS[f];
    if (bit === undefined || !f.startsWith(`${ps.scheduler.name}-`)) {
      bad(`scheduler.flags[${i}]`, `${JSON.stringify(f)} does not apply to scheduler ${ps.scheduler.name}`);
    } else flags |= bit;
  }
  let timeout = 0;
  let netmask = ps.family === 4 ? '255.255.255.255' : '128';
  if (ps.persistence) {
    const t = ps.persistence.timeoutSeconds;
    if (!Number.isInteger(t) || t < 1 || t > MAX_PERSISTENCE) {
      bad('persistence.timeoutSeconds', `${t} is not an integer 1..${MAX_PERSISTENCE}`);
    }
    flags |= SVC_F.PERSISTENT;
    timeout = t;
    if (ps.persistence.netmask) {
      const m = persistenceNetmask(ps.family, ps.persistence.netmask);
      if (m === undefined) {
        const want = ps.family === 4 ? 'a contiguous dotted IPv4 mask' : 'an IPv6 prefix length 1..128';
        bad('persistence.netmask', `${JSON.stringify(ps.persistence.netmask)} is not ${want}`);
      } else netmask = m;
    }
  }
  if (ps.forwarding === 'TUN') checkTunnel(ps, bad);
  return { family: ps.family, protocol: ps.protocol, address: vip, port: ps.port, scheduler: ps.scheduler.name, flags, timeout, netmask };
}

function checkTunnel(ps: PlanService, bad: (field: string, message: string) => void): void {
  const t = ps.tunnel ?? { type: 'ipip' };
  if (!TUNNEL_TYPES.has(t.type)) bad('tunnel.type', `${JSON.stringify(t.type)} is not ipip, gue or gre`);
  // The kernel refuses a gue destination without a port (EINVAL), and a port means nothing otherwise.
  if (t.type === 'gue' && !isPort(t.port)) bad('tunnel.port', 'gue needs a UDP port 1..65535');
  if (t.type !== 'gue' && t.port !== undefined) bad('tunnel.port', `only gue tunnels take a port, not ${t.type}`);
  for (const [i, f] of (t.flags ?? []).entries()) {
    if (!(f in TUNNEL_FLAG)) bad(`tunnel.flags[${i}]`, `${JSON.stringify(f)} is not csum or remcsum`);
    else if (t.type === 'ipip') bad(`tunnel.flags[${i}]`, 'ipip tunnels take no checksum flags');
    else if (f === 'remcsum' && t.type !== 'gue') bad(`tunnel.flags[${i}]`, 'remcsum needs a gue tunnel');
  }
}

/** Real servers → destinations. A bad real server is skipped (and reported); the service is kept. */
function buildDestinations(ps: PlanService, key: string, problems: Problem[]): IpvsDestination[] {
  const out = new Map<string, IpvsDestination>();
  for (const [i, rs] of ps.realServers.entries()) {
    const bad = (field: string, message: string) => problems.push({ key, field: `realServers[${i}].${field}`, message });
    const family = addressFamily(rs.address);
    if (family === undefined) { bad('address', `${JSON.stringify(rs.address)} is not an IP address`); continue; }
    // IPVS only forwards across address families by tunnelling (the kernel answers EINVAL otherwise).
    if (family !== ps.family && ps.forwarding !== 'TUN') {
      bad('address', `IPv${family} real server behind an IPv${ps.family} VIP needs TUN forwarding`);
      continue;
    }
    if (!isPort(rs.port)) { bad('port', `${rs.port} is not a port number 1..65535`); continue; }
    if (!Number.isInteger(rs.weight) || rs.weight < 0 || rs.weight > 65535) {
      bad('weight', `${rs.weight} is not an integer 0..65535`);
      continue;
    }
    const dest = destination(ps, rs, family);
    const dk = destKey(dest);
    if (out.has(dk)) { bad('address', `duplicate real server ${dk}`); continue; }
    out.set(dk, dest);
  }
  // Filled at its size (a spread grows its array in steps): desired states are kept while programmed.
  const list = new Array<IpvsDestination>(out.size);
  let i = 0;
  for (const d of out.values()) list[i++] = d;
  return list.sort(compareDestinations);
}

function destination(ps: PlanService, rs: PlanRealServer, family: 4 | 6): IpvsDestination {
  const d: IpvsDestination = {
    family,
    address: canonicalAddress(rs.address),
    port: rs.port,
    forward: FORWARD[ps.forwarding],
    // A draining real server keeps its connections but gets no new ones: weight 0 (ipvsadm -w 0).
    weight: rs.state === 'Draining' ? 0 : rs.weight,
    upperThreshold: 0,
    lowerThreshold: 0,
  };
  if (ps.forwarding === 'TUN') {
    const t = ps.tunnel ?? { type: 'ipip' };
    d.tunnelType = t.type;
    d.tunnelPort = t.port ?? 0;
    d.tunnelFlags = (t.flags ?? []).reduce((acc, f) => acc | (TUNNEL_FLAG[f as keyof typeof TUNNEL_FLAG] ?? 0), 0);
  }
  return d;
}

function isPort(p: unknown): p is number {
  return typeof p === 'number' && Number.isInteger(p) && p >= 1 && p <= 65535;
}

/** IPv4: a contiguous dotted mask (canonicalised). IPv6: a prefix length "1".."128". */
function persistenceNetmask(family: 4 | 6, mask: string): string | undefined {
  if (family === 6) {
    const n = /^\d{1,3}$/.test(mask) ? Number(mask) : NaN;
    return n >= 1 && n <= 128 ? String(n) : undefined;
  }
  if (addressFamily(mask) !== 4) return undefined;
  const bits = canonicalAddress(mask).split('.').reduce((acc, o) => (acc << 8) | Number(o), 0) >>> 0;
  const inverted = ~bits >>> 0;
  // Contiguous: the inverted mask is 2^k - 1.
  return (inverted & (inverted + 1)) === 0 ? canonicalAddress(mask) : undefined;
}
