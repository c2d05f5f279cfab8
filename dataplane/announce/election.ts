// Which director answers ARP/NDP for a VIP. Pure: every director computes the same answer from the
// same member list, with no coordination round (the apiserver may be down, so no leases), which is
// what lets failover take one dead-peer timeout and nothing more.
//
// Rendezvous (highest-random-weight) hashing rather than "sorted members, index = hash % n": when a
// member leaves, only the VIPs it held move (each to its runner-up); a modulo scheme would reshuffle
// almost every VIP, and every move is a gratuitous ARP plus broken flows on the old director.
//
// The score function is a wire contract between directors: during a rolling upgrade old and new
// agents must agree on every VIP's owner, or two of them answer ARP for the same address. Never
// change it without a version negotiation (test/unit/announce-election.test.ts pins known values).
import { createHash } from 'node:crypto';
import { canonicalIp } from '../../api/ip.ts';

export interface Member {
  node: string;
  /** Healthy and willing to announce; ineligible members are known but never chosen. */
  eligible: boolean;
  /**
   * Eligible, but its node is being taken out of service (cordoned, or labelled
   * node.kubernetes.io/exclude-from-external-load-balancers): chosen for a VIP only when no
   * eligible member that is not yielding is there, so a drain moves its VIPs to the other
   * directors before the node goes down, and a lone director keeps serving.
   */
  yielding?: boolean;
}

/**
 * The VIP as hashed: IP literals in canonical form, so "2001:DB8::1" on one director and
 * "2001:db8::1" on another pick the same owner. Anything else is hashed as given.
 */
function hashedVip(vip: string): string {
  return canonicalIp(vip) ?? vip;
}

/** First 8 bytes of sha256(`${node}\n${vip}`), big-endian unsigned. */
export function score(node: string, vip: string): bigint {
  return createHash('sha256').update(`${node}\n${hashedVip(vip)}`).digest().readBigUInt64BE(0);
}

/**
 * The eligible member with the highest score for `vip`; on an (astronomically unlikely) equal
 * score the lexicographically smaller node name, so the answer never depends on list order.
 * Yielding members count only when no other eligible member is there. Undefined when no member
 * is eligible.
 */
export function activeFor(vip: string, members: readonly Member[]): string | undefined {
  const v = hashedVip(vip);
  const yieldingOnly = !members.some((m) => m.eligible && !m.yielding);
  let best: string | undefined;
  let bestScore = -1n;
  for (const m of members) {
    if (!m.eligible || (m.yielding === true && !yieldingOnly)) continue;
    const s = score(m.node, v);
    if (s > bestScore || (s === bestScore && best !== undefined && m.node < best)) {
      best = m.node;
      bestScore = s;
    }
  }
  return best;
}

/** The VIPs (as given in `vips`) that `self` must announce: those whose activeFor is `self`. */
export function announcedBy(self: string, vips: Iterable<string>, members: readonly Member[]): Set<string> {
  const out = new Set<string>();
  // Not an eligible member: it announces nothing, whatever the hashes say.
  if (!members.some((m) => m.node === self && m.eligible)) return out;
  for (const vip of vips) if (activeFor(vip, members) === self) out.add(vip);
  return out;
}
