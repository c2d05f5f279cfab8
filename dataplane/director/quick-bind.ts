// The quick way to bind and unbind VIPs on lvs0, for a sync that adds or removes services (the
// common case while a cluster grows). A full director sync reads the node back (every address,
// our nft tables, the sysctls), plans and reads back again: at 10,000 VIPs under emulation one
// that added 25 VIPs took 39.7 s and one with nothing to do 8.6 s (lab/director-scale.ts,
// lab/results/director-scale-2026-12-06.txt). When the change is only quiet VIPs — none announced,
// none with an SNAT service, of families whose drop table and sysctls the last full sync already
// set — its steps are known without reading anything: a drop rule per new VIP (before its address,
// so it is never answered), then the address adds and removals in one `ip -batch`. A removed VIP
// keeps its drop rule (harmless without the address) until the next full sync, as in a full one;
// removing the last quiet VIP of a family is a full sync, which drops that family's table at once.
// The periodic director check (a full sync every verify interval) reads everything back and
// repairs whatever the quick path took for granted.
import type { PlanService } from '../../api/plan.ts';
import type { Runner } from '../exec.ts';
import { hostPrefix, ipBatch, ipFamily } from '../realserver/iproute.ts';
import { DEVICE, NFT_TABLE, quietRule, type DirectorSpec, type DirectorVip } from './plan.ts';
import { ipLine } from './setup.ts';

export interface QuickBindInput {
  /** The spec of the last full director sync: its families, SNAT rules and sysctls hold now. */
  last: DirectorSpec;
  /** VIPs that have a drop rule in our tables now. */
  quiet: ReadonlySet<string>;
  /** VIPs on lvs0 now, and as wanted. */
  bound: readonly string[];
  want: readonly string[];
  /** VIPs as the last spec applied had them (announced or not). */
  before: readonly DirectorVip[];
  announce: (vip: string) => boolean;
  services: readonly PlanService[];
}

export interface QuickBind {
  /** `nft -f` lines adding the drop rules of new VIPs that have none. */
  rules: string[];
  add: string[];
  remove: string[];
}

/** Pure: the quick steps from `bound` to `want`, or why a full director sync is needed. */
export function planQuickBind(s: QuickBindInput): QuickBind | { full: string } {
  const have = new Set(s.bound), wanted = new Set(s.want);
  const add = s.want.filter((v) => !have.has(v));
  const remove = s.bound.filter((v) => !wanted.has(v));
  if (add.length === 0 && remove.length === 0) return { full: 'nothing to add or remove' };
  const quietFamily = new Set(s.last.vips.filter((v) => !v.announce).map((v) => ipFamily(v.address)));
  for (const v of add) {
    if (s.announce(v)) return { full: `${v} is announced` };
    // The family's drop table and (IPv4) arp_announce come only with a full sync.
    if (!quietFamily.has(ipFamily(v))) return { full: `no quiet IPv${ipFamily(v)} VIP yet` };
  }
  const adding = new Set(add);
  for (const svc of s.services) {
    if (!adding.has(svc.vip) || svc.forwarding !== 'NAT') continue;
    if (svc.natReturnPath === 'SNAT') return { full: `${svc.key} needs an SNAT rule` };
    if (!s.last.natFamilies.includes(svc.family)) return { full: `the first IPv${svc.family} NAT service` };
  }
  const announced = new Set(s.before.filter((v) => v.announce).map((v) => v.address));
  const snat = new Set([...s.last.snat, ...(s.last.keepSnat ?? [])].map((r) => r.vip));
  // The last VIP of a family: a full sync drops its drop table with it, as the node had it.
  // (Asked only when something goes: announce() for every wanted VIP is not free at 10,000.)
  const left = remove.length > 0 ? new Set(s.want.filter((v) => !s.announce(v)).map(ipFamily)) : new Set<4 | 6>();
  for (const v of remove) {
    if (announced.has(v)) return { full: `${v} is announced` };
    if (snat.has(v)) return { full: `${v} has an SNAT rule` };
    if (!left.has(ipFamily(v))) return { full: `${v} is the last quiet IPv${ipFamily(v)} VIP` };
  }
  const rules = add.filter((v) => !s.quiet.has(v)).map((v) => {
    const r = quietRule(v);
    return `add rule ${r.family} ${NFT_TABLE} input ${r.rule}`;
  });
  return { rules, add, remove };
}

/** The quick steps, drop rules first. Throws on the first failed command (the caller then syncs in full). */
export async function applyQuickBind(run: Runner, q: QuickBind, device = DEVICE): Promise<void> {
  if (q.rules.length > 0) await run('nft', ['-f', '-'], { input: q.rules.join('\n') + '\n' });
  const lines = [
    ...q.add.map((address) => ipLine({ kind: 'address', address, op: 'add' }, device)!),
    ...q.remove.map((v) => ipLine({ kind: 'address', address: hostPrefix(v), op: 'remove' }, device)!),
  ];
  await ipBatch(run, lines);
}
