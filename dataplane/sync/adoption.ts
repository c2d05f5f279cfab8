// Pure: which of the VIPs the plan wants this node to own the agent refuses to adopt, decided on
// its own, whatever the controller checked (defence in depth: a wrong or forged plan must not take
// over kube-proxy's or keepalived's addresses). MetalLB style: this decides, the syncer acts.
//
// Kernel behaviour relied on:
// - IPVS schedules every packet that reaches LOCAL_IN and matches a virtual service, whatever
//   device holds the destination address: a service of ours on an address of eth0, lo or
//   kube-ipvs0 would capture that port of someone else's address. So an address assigned on any
//   device other than lvs0 (kube-proxy's kube-ipvs0 ClusterIPs, keepalived's VIPs, the node's own
//   addresses) is never adopted.
// - IPVS services carry no owner: the only record of ours is lvs0 (and the owner record). IPVS
//   services on a VIP that is not ours were created by someone else (kube-proxy, keepalived,
//   ipvsadm by hand); adopting the VIP would make them ours to edit and delete.
// A VIP that is ours already stays ours (our own services on it never make us refuse it, so a
// restart does not flap). If its address shows up on another device too, nothing on it is touched
// any more — its services are frozen as found, it stays bound — and it is reported: doubt freezes.
import type { IpvsServiceKey, IpvsServiceState } from '../ipvs/types.ts';
import { indexOf, type DesiredState, type Problem } from './desired.ts';
import { byString, canonicalAddress, ipvsServiceKey, parseServiceKey } from './keys.ts';

export interface AdoptionInput {
  /** Canonical VIPs the plan wants this node to own (DesiredState.ownedVips). */
  wanted: readonly string[];
  /** Canonical VIPs this node owns already: bound on lvs0, in the owner record, retiring, or accepted by the last sync. */
  ours: ReadonlySet<string>;
  /**
   * Canonical address → the devices other than lvs0 it is assigned on (any scope), as read in
   * the director's namespace; undefined when the node's addresses could not be read.
   */
  elsewhere: ReadonlyMap<string, readonly string[]> | undefined;
  /** The kernel's IPVS services (a full dump, or a services-only one: destinations are not looked at). */
  kernel: readonly { service: IpvsServiceKey }[];
}

export interface Refusal {
  vip: string;
  /** The VIP was ours already: its services stay exactly as found, it stays bound if it is. */
  ours: boolean;
  message: string;
}

/** How many foreign service keys a message names before "and N more". */
const NAMED = 4;

/** The wanted VIPs not to adopt (or, when ours, to freeze), by canonical VIP. */
export function refusedVips(input: AdoptionInput): Map<string, Refusal> {
  const foreign = new Map<string, string[]>();
  for (const s of input.kernel) {
    if (s.service.fwmark) continue;
    const vip = canonicalAddress(s.service.address);
    if (input.ours.has(vip)) continue;
    foreign.set(vip, [...(foreign.get(vip) ?? []), ipvsServiceKey(s.service)]);
  }
  const out = new Map<string, Refusal>();
  for (const vip of [...input.wanted].map(canonicalAddress).sort(byString)) {
    const ours = input.ours.has(vip);
    const devices = input.elsewhere?.get(vip) ?? [];
    if (devices.length > 0) {
      const on = [...devices].sort(byString).join(', ');
      const message = ours
        ? `VIP ${vip} is also assigned to ${on} on this node; its services are left as they are`
        : `VIP ${vip} is already assigned to ${on} on this node; not adopted`;
      out.set(vip, { vip, ours, message });
    } else if (!ours && input.elsewhere === undefined) {
      out.set(vip, { vip, ours, message: `VIP ${vip} not adopted yet: this node's addresses could not be read` });
    } else if (!ours && foreign.has(vip)) {
      const keys = foreign.get(vip)!.sort(byString);
      const named = keys.slice(0, NAMED).join(', ') + (keys.length > NAMED ? ` and ${keys.length - NAMED} more` : '');
      out.set(vip, { vip, ours, message: `VIP ${vip} already has IPVS services this agent did not create (${named}); not adopted` });
    }
  }
  return out;
}

/**
 * The desired state with the refusals applied: no service of a refused VIP is desired; a refused
 * VIP that is not ours is not owned (its kernel services stay foreign); one that is ours stays
 * owned with every kernel service on it frozen. Each plan key on a refused VIP becomes a problem.
 */
export function withRefusals(want: DesiredState, refusals: ReadonlyMap<string, Refusal>, kernel: readonly IpvsServiceState[]): DesiredState {
  if (refusals.size === 0) return want;
  const vipOf = (key: string) => parseServiceKey(key)?.vip;
  const refusedKey = (key: string) => { const v = vipOf(key); return v !== undefined && refusals.has(v); };
  const problems: Problem[] = [...want.problems];
  for (const key of [...want.services.map((s) => ipvsServiceKey(s.service)), ...want.frozen].filter(refusedKey).sort(byString)) {
    problems.push({ key, field: 'vip', message: refusals.get(vipOf(key)!)!.message });
  }
  const frozen = new Set(want.frozen.filter((k) => !refusedKey(k) || refusals.get(vipOf(k)!)!.ours));
  for (const s of kernel) {
    const r = s.service.fwmark ? undefined : refusals.get(canonicalAddress(s.service.address));
    if (r?.ours) frozen.add(ipvsServiceKey(s.service));
  }
  const services = want.services.filter((s) => !refusals.has(canonicalAddress(s.service.address)));
  return {
    ...want,
    services,
    index: indexOf(services),
    // Filtered: no longer the patch of the last state's services.
    delta: undefined,
    ownedVips: want.ownedVips.filter((v) => refusals.get(v)?.ours ?? true),
    frozen: [...frozen].sort(byString),
    problems,
  };
}

/**
 * The keys minus those on VIPs a sync refused to adopt (not ours): written to the owner record they
 * would make the next process count those VIPs, and the foreign services on them, as ours.
 */
export function adoptedKeys<T>(keys: ReadonlyMap<string, T>, refused: readonly Refusal[] | undefined): ReadonlyMap<string, T> {
  const foreign = new Set((refused ?? []).filter((r) => !r.ours).map((r) => r.vip));
  if (foreign.size === 0) return keys;
  return new Map([...keys].filter(([key]) => { const vip = parseServiceKey(key)?.vip; return vip === undefined || !foreign.has(vip); }));
}
