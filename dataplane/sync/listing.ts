// Pure: the listing sync — what a full read-back finds, from a list of the services without their
// destinations. A full sync reads every service and its destinations back (one destination dump
// per service: at 10,000 services under emulation the largest part of programming from empty, and
// a change landing during the periodic one waited 15 s). Two kinds of sync need only to know which
// services exist: one that brings new owned VIPs (a new VirtualServer with a VIP of its own), and,
// with the rolling verifier reading every desired service's destinations once per interval, the
// periodic full read-back. What they must find beyond a partial sync:
// - adoption (adoption.ts): a new VIP is refused when the kernel holds a service on it that is not
//   ours (someone else's: kube-proxy, keepalived, ipvsadm by hand); a services-only dump
//   (IPVS_CMD_GET_SERVICE with NLM_F_DUMP: every service, no destination) shows every such key,
//   whatever its port;
// - which services on owned VIPs are ours to remove because nothing desires them: the kernel
//   services on an owned VIP that the view does not know (an edit by hand, or a leftover);
// - which desired services the kernel lacks (deleted by hand): they are added.
// So the sync lists the services, reads back with their destinations only the changed services
// and those extras that exist (a desired service the kernel does not hold is simply added), binds
// the new VIPs after their services exist, and moves the view to the new scope. Anything else
// that changed in the scope — a VIP no longer owned (it must be retired), other frozen keys — or a
// refusal leaves the sync full, as before.
import type { IpvsService, IpvsServiceKey } from '../ipvs/types.ts';
import type { DesiredState } from './desired.ts';
import { byString, canonicalAddress, ipvsServiceKey } from './keys.ts';
import { changedSince, desiredKeyOf, serviceIdentity, type SyncedView } from './partial.ts';

/**
 * The owned VIPs `wanted` adds to `before` (the last sync's), sorted; undefined unless it only adds
 * (at least one, none removed) and the frozen keys, the part of the scope after '|', are the same.
 */
export function addedVips(before: ReadonlySet<string>, viewScope: string, wanted: readonly string[], scope: string): string[] | undefined {
  if (viewScope.slice(viewScope.indexOf('|')) !== scope.slice(scope.indexOf('|'))) return undefined;
  const now = new Set(wanted);
  for (const v of before) if (!now.has(v)) return undefined;
  const added = wanted.filter((v) => !before.has(v));
  return added.length > 0 ? [...added].sort(byString) : undefined;
}

export interface ListingReads {
  /** Service key → kernel identity, sorted: what the sync diffs (changed, draining, extra). */
  keys: Map<string, IpvsServiceKey>;
  /** The keys among them the kernel holds (only those are read back). */
  present: Set<string>;
}

/**
 * What a listing sync diffs: the services whose desired state changed or that drain (as a partial
 * sync), every kernel service on an owned VIP that is neither desired nor draining nor frozen, and
 * every desired service not listed. Undefined when reading them one by one (two requests
 * each, against one per service for a full dump) would cost more than the full read-back, or a
 * draining service's identity is unknown.
 */
export function listingReads(view: SyncedView, planned: DesiredState, draining: ReadonlyMap<string, number>, listed: readonly IpvsService[]): ListingReads | undefined {
  const changed = changedSince(view, planned, draining);
  if (!changed) return undefined;
  const owned = new Set(planned.ownedVips);
  const frozen = new Set(planned.frozen);
  const listedKeys = new Set<string>();
  for (const s of listed) {
    const key = ipvsServiceKey(s);
    listedKeys.add(key);
    // Desired (changed, or trusted: the verifier reads their destinations), draining, or not ours.
    if (planned.index.has(key) || changed.has(key) || s.fwmark || !owned.has(canonicalAddress(s.address)) || frozen.has(key)) continue;
    changed.set(key, serviceIdentity(s));
  }
  // Desired and not listed: added.
  for (const s of planned.services) {
    const key = desiredKeyOf(s);
    if (!listedKeys.has(key)) changed.set(key, serviceIdentity(s.service));
  }
  const present = new Set([...changed.keys()].filter((k) => listedKeys.has(k)));
  if (present.size * 2 > Math.max(64, listed.length)) return undefined;
  return { keys: new Map([...changed.entries()].sort(([a], [b]) => byString(a, b))), present };
}
