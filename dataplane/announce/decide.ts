// Which VIPs this node announces (pure; MetalLB's ShouldAnnounce). The side effects — answering
// ARP/NDP, gratuitous ARP / unsolicited NA — are the director setup's (../director/).
//
// A VIP is announced when its plan says so (its pool announces on L2) and this node is its
// active director: the only director, or the one the election picks among the live ones.
// Without an election (no peers configured) a VIP with several directors stays silent: two
// directors answering ARP for one address would split its clients between them at random.
import type { PlanService } from '../../api/plan.ts';

/** The active director of `vip` among `directors` (sorted), or undefined when none is live. */
export type ActiveDirector = (vip: string, directors: readonly string[]) => string | undefined;

export interface AnnounceView {
  /** Directors of the VIP (union over its services), sorted. */
  directors: string[];
  /** Devices from the plan (the pool's announce.l2.interfaces), if any. */
  interfaces?: string[];
}

/** Per VIP announced on L2 by the plan: its directors and devices. VIPs not announced are absent. */
export function announcedVips(services: readonly PlanService[]): Map<string, AnnounceView> {
  const out = new Map<string, AnnounceView>();
  for (const s of services) {
    if (!s.announce) continue;
    const v = out.get(s.vip) ?? { directors: [] };
    v.directors = [...new Set([...v.directors, ...s.directors])].sort();
    if (s.announce.interfaces) v.interfaces = [...new Set([...(v.interfaces ?? []), ...s.announce.interfaces])].sort();
    out.set(s.vip, v);
  }
  return out;
}

/** Does `node` announce `vip` now? */
export function shouldAnnounce(view: AnnounceView | undefined, vip: string, node: string, active?: ActiveDirector): boolean {
  if (!view || !view.directors.includes(node)) return false;
  if (view.directors.length === 1) return true;
  return active?.(vip, view.directors) === node;
}

/** announce / interfacesFor for the director setup (../agent/lvs-device.ts), from the current plan. */
export function announcePolicy(services: () => readonly PlanService[], node: string, active?: ActiveDirector): {
  announce: (vip: string) => boolean;
  interfacesFor: (vip: string) => string[] | undefined;
} {
  let seen: readonly PlanService[] | undefined;
  let views = new Map<string, AnnounceView>();
  const view = (vip: string) => {
    const now = services();
    if (now !== seen) { seen = now; views = announcedVips(now); }
    return views.get(vip);
  };
  return {
    announce: (vip) => shouldAnnounce(view(vip), vip, node, active),
    interfacesFor: (vip) => view(vip)?.interfaces,
  };
}
