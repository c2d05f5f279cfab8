// Pure diff for real-server preparation: desired VIPs + observed namespace -> ordered steps.
// Order matters for ARP safety: the ARP sysctls are set before a VIP is added (no window in which
// the namespace answers ARP for it) and restored only after the VIPs are gone.
import { ipFamily } from './iproute.ts';
import {
  type ObservedRealServer, type PrepRecord, type RealServerVip, TUNNEL_DEVICE,
  deviceFor, emptyRecord, formatRecord, isOwnedAddress, parseRecord, sysctlNeeds, tunnelFor, MANAGED_SYSCTLS,
} from './plan.ts';

export type RealServerStep =
  | { kind: 'record'; from: string; to: string }
  /** ensure: make a fallback tunnel (tunl0, ip6tnl0, sit0) exist (autoload, modprobe, or `ip link add`). */
  | { kind: 'link'; device: string; op: 'ensure' | 'up' | 'down' | 'delete' }
  | { kind: 'address'; device: string; address: string; op: 'add' | 'remove' }
  | { kind: 'sysctl'; key: string; from: string; to: string; op: 'set' | 'restore' };

export interface RealServerPlan {
  steps: RealServerStep[];
  /** Some steps wait for a device that does not exist yet (a tunnel): plan again after applying. */
  pending: boolean;
  /** lo's alias is ours or free, so what we change can be undone later. */
  recordable: boolean;
}

/** The value we write for each managed sysctl: a restore happens only while it still holds it. */
const WRITTEN: Record<string, string> = Object.fromEntries(
  sysctlNeeds([{ mode: 'DR', vip: '0.0.0.0' }, { mode: 'TUN', vip: '0.0.0.0' }]).map((n) => [n.key, n.want]),
);

function cloneRecord(r: PrepRecord): PrepRecord {
  return { sysctls: { ...r.sysctls }, tunnels: Object.fromEntries(Object.entries(r.tunnels).map(([d, t]) => [d, { ...t }])) };
}

/** `desired` must come from normalizeVips(). */
export function planRealServer(desired: readonly RealServerVip[], obs: ObservedRealServer): RealServerPlan {
  const alias = obs.lo?.alias ?? '';
  const parsed = parseRecord(alias);
  const recordable = parsed !== undefined;
  // mid: the record before any change (prior values of what we are about to change added);
  // end: the record after this plan (entries no longer needed dropped).
  const mid = cloneRecord(parsed ?? emptyRecord());
  const links = planLinks(desired, obs, recordable ? mid : undefined);
  const sets = planSysctlSets(desired, obs, recordable ? mid : undefined);
  const { adds, removes } = diffAddresses(desired, obs);
  const end = cloneRecord(mid);
  const undo = planUndo(desired, obs, end);

  const steps: RealServerStep[] = [];
  const midText = recordable ? formatRecord(mid) : alias;
  const endText = recordable ? formatRecord(end) : alias;
  if (midText !== alias) steps.push({ kind: 'record', from: alias, to: midText });
  steps.push(...links.steps, ...sets.steps, ...adds, ...removes, ...undo);
  if (endText !== midText) steps.push({ kind: 'record', from: midText, to: endText });
  return { steps, pending: links.pending || sets.pending, recordable };
}

interface PlanPart { steps: RealServerStep[]; pending: boolean }

/** lo up for DR; each TUN VIP's tunnel present and up (what we bring up is recorded in `rec`). */
function planLinks(desired: readonly RealServerVip[], obs: ObservedRealServer, rec: PrepRecord | undefined): PlanPart {
  const steps: RealServerStep[] = [];
  let pending = false;
  if (desired.some((v) => v.mode === 'DR') && obs.lo && !obs.lo.up) steps.push({ kind: 'link', device: 'lo', op: 'up' });
  for (const device of neededTunnels(desired)) {
    const link = obs.tunnels[device];
    if (!link) {
      steps.push({ kind: 'link', device, op: 'ensure' });
      pending = true;
    } else if (!link.up) {
      steps.push({ kind: 'link', device, op: 'up' });
      if (rec) rec.tunnels[device] = { created: false, ...rec.tunnels[device], up: true };
    }
  }
  return { steps, pending };
}

function neededTunnels(desired: readonly RealServerVip[]): Set<string> {
  return new Set(desired.filter((v) => v.mode === 'TUN').map((v) => tunnelFor(v).device));
}

/** Sysctls the VIPs need and do not have; prior values go into `rec` (first change wins). */
function planSysctlSets(desired: readonly RealServerVip[], obs: ObservedRealServer, rec: PrepRecord | undefined): PlanPart {
  const steps: RealServerStep[] = [];
  let pending = false;
  for (const need of sysctlNeeds(desired)) {
    const cur = obs.sysctls[need.key];
    if (cur === undefined) {
      // tunl0's sysctls appear with the device: plan them in the next round.
      if (need.key.includes(`.${TUNNEL_DEVICE}.`) && !obs.tunnels[TUNNEL_DEVICE]) { pending = true; continue; }
      throw new Error(`sysctl ${need.key} does not exist in this namespace`);
    }
    if (need.accepts.includes(cur)) continue;
    steps.push({ kind: 'sysctl', key: need.key, from: cur, to: need.want, op: 'set' });
    if (rec && !(need.key in rec.sysctls)) rec.sysctls[need.key] = cur;
  }
  return { steps, pending };
}

/**
 * Undo what no desired VIP needs any more, dropping it from `end`: a recorded sysctl goes back to
 * its prior value if it still holds the value we wrote (otherwise someone changed it since, and it
 * is theirs); a tunnel we brought up goes down (or away, if we created it).
 */
function planUndo(desired: readonly RealServerVip[], obs: ObservedRealServer, end: PrepRecord): RealServerStep[] {
  const steps: RealServerStep[] = [];
  const neededKeys = new Set(sysctlNeeds(desired).map((n) => n.key));
  for (const [key, prior] of Object.entries(end.sysctls)) {
    if (neededKeys.has(key) || !MANAGED_SYSCTLS.includes(key)) continue;
    const cur = obs.sysctls[key];
    if (cur !== undefined && cur === WRITTEN[key] && cur !== prior) steps.push({ kind: 'sysctl', key, from: cur, to: prior, op: 'restore' });
    delete end.sysctls[key];
  }
  const neededDevices = neededTunnels(desired);
  for (const [device, t] of Object.entries(end.tunnels)) {
    if (neededDevices.has(device)) continue;
    const link = obs.tunnels[device];
    if (link && t.created) steps.push({ kind: 'link', device, op: 'delete' });
    else if (link && t.up && link.up) steps.push({ kind: 'link', device, op: 'down' });
    delete end.tunnels[device];
  }
  return steps;
}

function diffAddresses(desired: readonly RealServerVip[], obs: ObservedRealServer): { adds: RealServerStep[]; removes: RealServerStep[] } {
  const adds: RealServerStep[] = [];
  const removes: RealServerStep[] = [];
  for (const link of [obs.lo, ...Object.values(obs.tunnels)]) {
    if (!link) continue;
    const want = new Set(desired.filter((v) => deviceFor(v) === link.name).map((v) => v.vip));
    const have = new Set(link.addresses.map((a) => a.address));
    for (const vip of want) if (!have.has(vip)) adds.push({ kind: 'address', device: link.name, address: vip, op: 'add' });
    for (const a of link.addresses) {
      if (isOwnedAddress(a, link.name) && !want.has(a.address)) {
        removes.push({ kind: 'address', device: link.name, address: a.address, op: 'remove' });
      }
    }
  }
  return { adds, removes };
}

/** Why `vip` is not (fully) prepared in the observed namespace; empty when it is. */
export function assessRealServer(vip: RealServerVip, obs: ObservedRealServer): string[] {
  const problems: string[] = [];
  const device = deviceFor(vip);
  const link = device === 'lo' ? obs.lo : obs.tunnels[device];
  if (!link) problems.push(`device ${device} does not exist`);
  else {
    if (!link.up) problems.push(`device ${device} is down`);
    if (!link.addresses.some((a) => a.family === ipFamily(vip.vip) && a.address === vip.vip)) problems.push(`${vip.vip} is not an address of ${device}`);
  }
  for (const need of sysctlNeeds([vip])) {
    const cur = obs.sysctls[need.key];
    if (cur === undefined || !need.accepts.includes(cur)) problems.push(`${need.key} is ${cur ?? 'missing'}, needs ${need.accepts.join(' or ')}`);
  }
  return problems;
}
