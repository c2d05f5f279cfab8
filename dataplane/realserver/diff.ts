// Pure diff for real-server preparation: desired VIPs + observed namespace -> ordered steps.
// Order matters for ARP safety: the ARP sysctls are set before a VIP is added (no window in which
// the namespace answers ARP for it) and restored only after the VIPs are gone.
import {
  type ObservedRealServer, type PrepRecord, type RealServerVip, TUNNEL_DEVICE,
  deviceFor, formatRecord, ownedLabel, parseRecord, sysctlNeeds, MANAGED_SYSCTLS,
} from './plan.ts';

export type RealServerStep =
  | { kind: 'record'; from: string; to: string }
  /** ensure: make tunl0 exist (kernel autoload, modprobe, or `ip link add`). */
  | { kind: 'link'; device: string; op: 'ensure' | 'up' | 'down' | 'delete' }
  | { kind: 'address'; device: string; address: string; op: 'add' | 'remove' }
  | { kind: 'sysctl'; key: string; from: string; to: string; op: 'set' | 'restore' };

export interface RealServerPlan {
  steps: RealServerStep[];
  /** Some steps wait for a device that does not exist yet (tunl0): plan again after applying. */
  pending: boolean;
  /** lo's alias is ours or free, so what we change can be undone later. */
  recordable: boolean;
}

/** The value we write for each managed sysctl: a restore happens only while it still holds it. */
const WRITTEN: Record<string, string> = Object.fromEntries(
  sysctlNeeds([{ mode: 'DR', vip: '0.0.0.0' }, { mode: 'TUN', vip: '0.0.0.0' }]).map((n) => [n.key, n.want]),
);

function cloneRecord(r: PrepRecord): PrepRecord {
  return { sysctls: { ...r.sysctls }, tunnelUp: r.tunnelUp, tunnelCreated: r.tunnelCreated };
}

/** `desired` must come from normalizeVips(). */
export function planRealServer(desired: readonly RealServerVip[], obs: ObservedRealServer): RealServerPlan {
  const alias = obs.lo?.alias ?? '';
  const parsed = parseRecord(alias);
  const recordable = parsed !== undefined;
  const mid = cloneRecord(parsed ?? { sysctls: {}, tunnelUp: false, tunnelCreated: false });
  const needTunnel = desired.some((v) => v.mode === 'TUN');
  const needLo = desired.some((v) => v.mode === 'DR');
  let pending = false;

  const links: RealServerStep[] = [];
  if (needLo && obs.lo && !obs.lo.up) links.push({ kind: 'link', device: 'lo', op: 'up' });
  if (needTunnel && !obs.tunnel) { links.push({ kind: 'link', device: TUNNEL_DEVICE, op: 'ensure' }); pending = true; }
  if (needTunnel && obs.tunnel && !obs.tunnel.up) {
    links.push({ kind: 'link', device: TUNNEL_DEVICE, op: 'up' });
    if (recordable) mid.tunnelUp = true;
  }

  const sets: RealServerStep[] = [];
  const needs = sysctlNeeds(desired);
  for (const need of needs) {
    const cur = obs.sysctls[need.key];
    if (cur === undefined) {
      if (need.key.includes(`.${TUNNEL_DEVICE}.`) && !obs.tunnel) { pending = true; continue; }
      throw new Error(`sysctl ${need.key} does not exist in this namespace`);
    }
    if (need.accepts.includes(cur)) continue;
    sets.push({ kind: 'sysctl', key: need.key, from: cur, to: need.want, op: 'set' });
    if (recordable && !(need.key in mid.sysctls)) mid.sysctls[need.key] = cur;
  }

  const { adds, removes } = diffAddresses(desired, obs);

  const end = cloneRecord(mid);
  const restores: RealServerStep[] = [];
  const needed = new Set(needs.map((n) => n.key));
  for (const [key, prior] of Object.entries(mid.sysctls)) {
    if (needed.has(key) || !MANAGED_SYSCTLS.includes(key)) continue;
    const cur = obs.sysctls[key];
    if (cur !== undefined && cur === WRITTEN[key] && cur !== prior) restores.push({ kind: 'sysctl', key, from: cur, to: prior, op: 'restore' });
    delete end.sysctls[key];
  }
  const teardown: RealServerStep[] = [];
  if (!needTunnel && obs.tunnel) {
    if (end.tunnelUp && obs.tunnel.up && !end.tunnelCreated) teardown.push({ kind: 'link', device: TUNNEL_DEVICE, op: 'down' });
    if (end.tunnelCreated) teardown.push({ kind: 'link', device: TUNNEL_DEVICE, op: 'delete' });
  }
  if (!needTunnel) { end.tunnelUp = false; end.tunnelCreated = false; }

  const steps: RealServerStep[] = [];
  const midText = recordable ? formatRecord(mid) : alias;
  const endText = recordable ? formatRecord(end) : alias;
  if (midText !== alias) steps.push({ kind: 'record', from: alias, to: midText });
  steps.push(...links, ...sets, ...adds, ...removes, ...restores, ...teardown);
  if (endText !== midText) steps.push({ kind: 'record', from: midText, to: endText });
  return { steps, pending, recordable };
}

function diffAddresses(desired: readonly RealServerVip[], obs: ObservedRealServer): { adds: RealServerStep[]; removes: RealServerStep[] } {
  const adds: RealServerStep[] = [];
  const removes: RealServerStep[] = [];
  for (const link of [obs.lo, obs.tunnel]) {
    if (!link) continue;
    const want = new Set(desired.filter((v) => deviceFor(v.mode) === link.name).map((v) => v.vip));
    const have = new Set(link.addresses.filter((a) => a.family === 4).map((a) => a.address));
    for (const vip of want) if (!have.has(vip)) adds.push({ kind: 'address', device: link.name, address: vip, op: 'add' });
    for (const a of link.addresses) {
      if (a.family === 4 && a.label === ownedLabel(link.name) && !want.has(a.address)) {
        removes.push({ kind: 'address', device: link.name, address: a.address, op: 'remove' });
      }
    }
  }
  return { adds, removes };
}

/** Why `vip` is not (fully) prepared in the observed namespace; empty when it is. */
export function assessRealServer(vip: RealServerVip, obs: ObservedRealServer): string[] {
  const problems: string[] = [];
  const device = deviceFor(vip.mode);
  const link = device === 'lo' ? obs.lo : obs.tunnel;
  if (!link) problems.push(`device ${device} does not exist`);
  else {
    if (!link.up) problems.push(`device ${device} is down`);
    if (!link.addresses.some((a) => a.family === 4 && a.address === vip.vip)) problems.push(`${vip.vip} is not an address of ${device}`);
  }
  for (const need of sysctlNeeds([vip])) {
    const cur = obs.sysctls[need.key];
    if (cur === undefined || !need.accepts.includes(cur)) problems.push(`${need.key} is ${cur ?? 'missing'}, needs ${need.accepts.join(' or ')}`);
  }
  return problems;
}
