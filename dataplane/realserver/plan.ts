// Real-server preparation for DR and TUN, as pure planning: given the VIPs a namespace must
// accept and what the namespace looks like now, decide what to change. No side effects here.
//
// Kernel behaviour relied on (IPv4; IPv6 below):
// - DR: the director only rewrites the destination MAC, so the packet still carries the VIP; the
//   real server accepts it when the VIP is a local address, e.g. VIP/32 on lo (lo must be up, or
//   the kernel installs no local route for it).
// - TUN: the director wraps the packet in IP-in-IP to the real server's address. The ipip module's
//   fallback device tunl0 (created in every namespace when the module loads) decapsulates any
//   ipip packet; the inner packet is then accepted when the VIP is local (VIP/32 on tunl0). The
//   inner source (the client) arrives on tunl0, so reverse-path filtering must be off for it; the
//   effective rp_filter of a device is max(conf.all, conf.<dev>), hence 0 on both.
// - Linux answers ARP for any local address on any interface (weak host model). A real server
//   must not answer ARP for the VIP, or it steals the VIP from the director: arp_ignore=1 replies
//   only for addresses configured on the receiving interface (the VIP is on lo/tunl0, never on
//   the wire-facing one). arp_announce=2 keeps the VIP out of the sender field of the real
//   server's own ARP requests (its replies are sourced from the VIP). Both take max(all, dev).
//
// Kernel behaviour relied on (IPv6, verified in test/kernel/guest/realserver6.guest.ts):
// - IPv6 has no ARP. ndisc answers a neighbour solicitation only for an address on the device the
//   solicitation arrived on (ndisc_recv_ns looks the target up with ipv6_get_ifaddr(.., dev,
//   strict=1); only proxy-NDP entries answer for others), so VIP/128 on lo is never announced
//   while the packets addressed to it are still accepted on eth0. When the real server solicits
//   its neighbours it uses the packet's source only if that address is on the outgoing device, so
//   the VIP never appears as a solicitation's source either: no sysctl plays arp_ignore or
//   arp_announce. `nodad`: the address is usable at once, and a DAD probe for it is pointless.
// - TUN: IPVS wraps an IPv6 packet for an IPv6 real server in IPv6 with next header 41 (ip6ip6).
//   ip6_tunnel's fallback device ip6tnl0 (ip6ip6, any to any) decapsulates it only while UP. For
//   an IPv4 real server behind an IPv6 VIP the outer header is IPv4 with protocol 41, which sit's
//   fallback device sit0 takes (again only while UP; inner addresses outside its 6rd prefix,
//   2002::/16 by default, pass its spoofing check). IPv6 has no rp_filter: no sysctl is needed.
// - An IPv4 VIP over an IPv6 real server (IPv4 in IPv6, next header 4) is refused here: ip6tnl0
//   decapsulates ip6ip6 only (seen: such traffic dropped), a second any-to-any ip6tnl device
//   collides with it (EEXIST), and switching ip6tnl0 to `mode any` (seen working) would change a
//   device every user of ip6_tunnel in the namespace shares.
//
// Ownership: IPv4 addresses we add carry the label "<dev>:lvsop"; IPv6 addresses have no label, so
// ours carry the prefix-route metric OWNED_METRIC6 (IFA_RT_PRIORITY, kernel >= 4.18; a /128's
// prefix route duplicates its local route, so the metric changes nothing about delivery). Cleanup
// removes only those (an identical address someone else configured satisfies the VIP but is never
// removed). Sysctls we change, and the tunnels we bring up or create, are recorded with their
// previous state in the lo device's alias (IFLA_IFALIAS), a string that lives and dies with the
// namespace; once no owned VIP needs a sysctl any more it is restored to the recorded value, but
// only if it still holds the value we set. When lo's alias is used by someone else nothing is
// recorded and nothing is restored (result.recordable = false).
//
// The 6rd detail is from net/ipv6/sit.c (is_spoofed_6rd); the rest was seen in the test VM.
import { parseIp } from '../../api/ip.ts';
import type { AddrInfo, LinkInfo } from './iproute.ts';
import { canonicalIp, ipFamily } from './iproute.ts';

export type RealServerMode = 'DR' | 'TUN';

export interface RealServerVip {
  mode: RealServerMode;
  vip: string;
  /**
   * TUN only: the family of the real server's own address, i.e. of the outer header IPVS wraps
   * around the packet, when it differs from the VIP's (an IPv6 VIP over an IPv4 real server: 4).
   */
  encap?: 4 | 6;
}

export const LABEL_SUFFIX = 'lvsop';
export const RECORD_PREFIX = 'lvs-operator/v1';
/** The IPv4-in-IPv4 fallback device (module ipip); TUN of IPv4 VIPs. */
export const TUNNEL_DEVICE = 'tunl0';
/** Prefix-route metric that marks an IPv6 address as ours ("LV" in ASCII). */
export const OWNED_METRIC6 = 0x4c56;

/** A fallback tunnel device: how to make it appear (`ip link add ...`, autoloading `module`). */
export interface TunnelSpec {
  device: string;
  /** What the kernel calls it in errors and `ip -d` (rtnl link kind). */
  kind: string;
  module: string;
  linkArgs: readonly string[];
}

export const TUNNELS: Readonly<Record<string, TunnelSpec>> = {
  tunl0: { device: 'tunl0', kind: 'ipip', module: 'ipip', linkArgs: ['type', 'ipip'] },
  ip6tnl0: { device: 'ip6tnl0', kind: 'ip6tnl', module: 'ip6_tunnel', linkArgs: ['type', 'ip6tnl', 'mode', 'ip6ip6'] },
  sit0: { device: 'sit0', kind: 'sit', module: 'sit', linkArgs: ['type', 'sit', 'mode', 'ip6ip'] },
};
export const TUNNEL_DEVICES: readonly string[] = Object.keys(TUNNELS);

export function ownedLabel(device: string): string {
  return `${device}:${LABEL_SUFFIX}`;
}

/** Did a preparation add this address (our IPv4 label, our IPv6 metric)? */
export function isOwnedAddress(a: AddrInfo, device: string): boolean {
  return a.family === 4 ? a.label === ownedLabel(device) : a.metric === OWNED_METRIC6;
}

export class RealServerSpecError extends Error {
  readonly field: string;
  constructor(field: string, reason: string) {
    super(`${field}: ${reason}`);
    this.name = 'RealServerSpecError';
    this.field = field;
  }
}

/** Validate and canonicalise, sorted by (vip, mode), duplicates dropped. */
export function normalizeVips(vips: readonly RealServerVip[], field = 'vips'): RealServerVip[] {
  const out = new Map<string, RealServerVip>();
  vips.forEach((v, i) => {
    if (v.mode !== 'DR' && v.mode !== 'TUN') throw new RealServerSpecError(`${field}[${i}].mode`, `must be DR or TUN, got ${JSON.stringify(v.mode)}`);
    const vip = canonicalIp(String(v.vip));
    if (!vip) throw new RealServerSpecError(`${field}[${i}].vip`, `${JSON.stringify(v.vip)} is not an IP address`);
    const n: RealServerVip = { mode: v.mode, vip };
    const encap = v.encap ?? ipFamily(vip);
    if (encap !== 4 && encap !== 6) throw new RealServerSpecError(`${field}[${i}].encap`, `must be 4 or 6, got ${JSON.stringify(v.encap)}`);
    if (encap !== ipFamily(vip)) {
      if (v.mode === 'DR') throw new RealServerSpecError(`${field}[${i}].encap`, 'DR delivers the packet unchanged: the real server has the VIP\'s family');
      if (encap === 6) {
        throw new RealServerSpecError(`${field}[${i}].encap`, `${vip} over an IPv6 real server (IPv4 in IPv6) is not supported: the shared fallback device ip6tnl0 decapsulates ip6ip6 only`);
      }
      n.encap = encap;
    }
    out.set(`${vip}/${v.mode}/${encap}`, n);
  });
  return [...out.values()].sort((a, b) => compareVip(a, b));
}

function compareVip(a: RealServerVip, b: RealServerVip): number {
  if (a.vip !== b.vip) return ipSortKey(a.vip).localeCompare(ipSortKey(b.vip));
  return a.mode === b.mode ? (a.encap ?? 0) - (b.encap ?? 0) : a.mode.localeCompare(b.mode);
}

/** IPv4 before IPv6, each in numeric order. */
function ipSortKey(ip: string): string {
  return parseIp(ip)!.sortKey;
}

/** The fallback tunnel that decapsulates what IPVS sends for a TUN VIP. */
export function tunnelFor(v: RealServerVip): TunnelSpec {
  const inner = ipFamily(v.vip);
  const outer = v.encap ?? inner;
  return inner === 4 ? TUNNELS.tunl0! : outer === 6 ? TUNNELS.ip6tnl0! : TUNNELS.sit0!;
}

/** Where the VIP goes: lo for DR, the decapsulating device for TUN. */
export function deviceFor(v: RealServerVip): string {
  return v.mode === 'DR' ? 'lo' : tunnelFor(v).device;
}

/** A sysctl we need, the value we write, and which values already satisfy the need. */
export interface SysctlNeed {
  key: string;
  want: string;
  accepts: readonly string[];
}

// arp_ignore 2 and 8 are stricter than 1 and also keep the VIP unanswered; 3 would not (it only
// ignores scope-host addresses, and the VIP is scope global), so it is not accepted.
const ARP_IGNORE = ['1', '2', '8'];
const conf = (dev: string, name: string) => `net.ipv4.conf.${dev}.${name}`;

/** Only IPv4 VIPs need sysctls (ARP; tunl0's reverse-path filter): see the header. */
export function sysctlNeeds(vips: readonly RealServerVip[]): SysctlNeed[] {
  const needs = new Map<string, SysctlNeed>();
  const add = (key: string, want: string, accepts: readonly string[] = [want]) => needs.set(key, { key, want, accepts });
  const v4 = vips.filter((v) => ipFamily(v.vip) === 4);
  if (v4.length > 0) {
    add(conf('all', 'arp_ignore'), '1', ARP_IGNORE);
    add(conf('all', 'arp_announce'), '2');
  }
  if (v4.some((v) => v.mode === 'DR')) {
    add(conf('lo', 'arp_ignore'), '1', ARP_IGNORE);
    add(conf('lo', 'arp_announce'), '2');
  }
  if (v4.some((v) => v.mode === 'TUN')) {
    add(conf('all', 'rp_filter'), '0');
    add(conf(TUNNEL_DEVICE, 'rp_filter'), '0');
  }
  return [...needs.values()].sort((a, b) => a.key.localeCompare(b.key));
}

/** Every sysctl preparation may touch (read them all in one go). */
export const MANAGED_SYSCTLS: readonly string[] = sysctlNeeds([{ mode: 'DR', vip: '0.0.0.0' }, { mode: 'TUN', vip: '0.0.0.0' }]).map((n) => n.key);

/** What we did to a fallback tunnel device. */
export interface TunnelRecord { up: boolean; created: boolean }

/** What we changed and must be able to undo, kept in lo's alias. */
export interface PrepRecord {
  /** sysctl key -> value before we first changed it. */
  sysctls: Record<string, string>;
  /** Tunnel device -> what we did to it (absent: nothing). */
  tunnels: Record<string, TunnelRecord>;
}

export function emptyRecord(): PrepRecord {
  return { sysctls: {}, tunnels: {} };
}

export function formatRecord(r: PrepRecord): string {
  const parts = Object.keys(r.sysctls).sort().map((k) => `${k.replace(/^net\.ipv4\.conf\./, '')}=${r.sysctls[k]}`);
  for (const dev of TUNNEL_DEVICES) {
    const t = r.tunnels[dev];
    const what = [t?.up ? 'up' : '', t?.created ? 'created' : ''].filter(Boolean);
    if (what.length) parts.push(`${dev}=${what.join(',')}`);
  }
  return parts.length ? `${RECORD_PREFIX} ${parts.join(' ')}` : '';
}

/** Parse lo's alias: a record, an empty record for "", or undefined when the alias is foreign. */
export function parseRecord(alias: string): PrepRecord | undefined {
  if (alias === '') return emptyRecord();
  const [head, ...parts] = alias.trim().split(/\s+/);
  if (head !== RECORD_PREFIX) return undefined;
  const r = emptyRecord();
  for (const p of parts) {
    const eq = p.indexOf('=');
    if (eq < 0) continue;
    const k = p.slice(0, eq), v = p.slice(eq + 1).split(',');
    if (TUNNEL_DEVICES.includes(k)) r.tunnels[k] = { up: v.includes('up'), created: v.includes('created') };
    else r.sysctls[`net.ipv4.conf.${k}`] = v.join(',');
  }
  return r;
}

export interface ObservedRealServer {
  lo?: LinkInfo;
  /** The fallback tunnel devices (TUNNEL_DEVICES) that exist, by name. */
  tunnels: Record<string, LinkInfo>;
  /** Current values of MANAGED_SYSCTLS that exist (tunl0's only while tunl0 exists). */
  sysctls: Record<string, string>;
}

/** VIPs this namespace holds under our mark, i.e. what a previous preparation added. */
export function ownedVips(obs: ObservedRealServer): RealServerVip[] {
  const out: RealServerVip[] = [];
  const links = [obs.lo, ...Object.values(obs.tunnels)].filter((l): l is LinkInfo => l !== undefined);
  for (const link of links) {
    for (const a of link.addresses) {
      if (!isOwnedAddress(a, link.name)) continue;
      if (link.name === 'lo') out.push({ mode: 'DR', vip: a.address });
      else out.push({ mode: 'TUN', vip: a.address, ...(link.name === 'sit0' ? { encap: 4 as const } : {}) });
    }
  }
  return normalizeVips(out);
}
