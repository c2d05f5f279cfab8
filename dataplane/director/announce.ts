// How the network finds an announced VIP (pure decisions; the commands are run by ./setup.ts and
// by whoever refreshes announcements). A VIP lives on lvs0; the segment reaches it through an
// uplink: a device of the node whose own subnet contains the VIP (seed 004's setup: client,
// director and real servers on one segment, the VIP in their subnet). A VIP outside every
// connected subnet is reached by routes to the directors, so there is nothing to announce on L2.
//
// Kernel behaviour relied on (verified on Debian 6.1 in test/kernel/guest/announce.guest.ts):
// - IPv4: with arp_ignore=0 (the default) arp_process() answers a request for any local address,
//   whatever device holds it, so an announced VIP needs no drop rule and nothing else. A
//   gratuitous ARP request (sender = target = VIP) updates an existing entry on every neighbour
//   even inside its locktime (arp_process treats is_garp as override), which is what moves clients
//   to a new director at once.
// - IPv6: ndisc_recv_ns() answers only for addresses on the receiving device, or, when that
//   device forwards (conf.<dev>.forwarding=1) and proxy_ndp is on, for a proxy entry
//   (`ip -6 neigh add proxy VIP dev <uplink>`). A multicast solicitation for a proxy entry is
//   answered after a random delay up to neigh.<dev>.proxy_delay (0.8 s by default): 0 answers at
//   once. forwarding=1 makes accept_ra=1 ignore router advertisements, so a device learning its
//   route by SLAAC gets accept_ra=2 (accept them while forwarding), as Kubernetes nodes with IPv6
//   pods already run. An unsolicited neighbour advertisement with the override flag (ndptool -U)
//   updates an existing entry on every neighbour, the IPv6 counterpart of gratuitous ARP.
import { formatNumber, ipNumber, parseCidr, parseIp, type AddressRange } from '../../api/ip.ts';
import type { LinkInfo } from '../realserver/iproute.ts';
import { ipFamily } from '../realserver/iproute.ts';
import type { DirectorSpec } from './plan.ts';

/** An announced VIP and the devices it is announced on. */
export interface Announcement {
  address: string;
  devices: string[];
}

/** A proxy-NDP entry as `ip -6 -j neigh show proxy` lists it. */
export interface ProxyEntry {
  address: string;
  device: string;
}

/**
 * Devices whose global subnet contains `vip`: up, not `exclude` (lvs0), not loopback. A /32 or
 * /128 of the device never contains anything but itself, so it never makes an uplink.
 */
export function uplinksFor(vip: string, links: readonly LinkInfo[], exclude: string): string[] {
  return uplinksIn(uplinkSubnets(links, exclude), vip);
}

/** A device's own global subnet that may hold VIPs (uplinksFor's candidates). */
interface Subnet {
  device: string;
  /** The device's own address in it (never its own uplink). */
  address: string;
  range: AddressRange;
}

/**
 * The candidate subnets of `links`, computed once for many VIPs: a director check asks for every
 * VIP's uplinks, and building each subnet again per VIP (BigInt arithmetic, a CIDR parse) was about
 * a quarter of the check's time on the agent's main thread in a profile at 10,000 services (400
 * VIPs) under emulation (bench/RESULTS.md run 20's profile).
 */
function uplinkSubnets(links: readonly LinkInfo[], exclude: string): Subnet[] {
  const out: Subnet[] = [];
  for (const l of links) {
    if (l.name === exclude || l.name === 'lo' || !l.up) continue;
    for (const a of l.addresses) {
      if (a.scope !== 'global' || a.prefixLen >= (a.family === 4 ? 32 : 128)) continue;
      const range = parseCidr(`${networkOf(a.address, a.prefixLen)}/${a.prefixLen}`);
      if (typeof range !== 'string') out.push({ device: l.name, address: a.address, range });
    }
  }
  return out;
}

function uplinksIn(subnets: readonly Subnet[], vip: string): string[] {
  const ip = parseIp(vip);
  if (!ip) return [];
  const out = new Set<string>();
  let at: bigint | undefined;
  for (const { device, address, range } of subnets) {
    if (address === ip.address || range.family !== ip.family) continue;
    at ??= ipNumber(ip);
    if (at >= range.start && at <= range.end) out.add(device);
  }
  return [...out].sort();
}

function networkOf(address: string, prefixLen: number): string {
  const ip = parseIp(address)!;
  const bits = ip.family === 4 ? 32 : 128;
  return formatNumber(ipNumber(ip) & ~((1n << BigInt(bits - prefixLen)) - 1n), ip.family);
}

/** Announced VIPs with their devices: the VIP's or the spec's `interfaces` if given, else its uplinks. */
export function announcements(spec: DirectorSpec, links: readonly LinkInfo[], device: string): Announcement[] {
  let subnets: Subnet[] | undefined;
  return spec.vips.filter((v) => v.announce).map((v) => {
    const given = v.interfaces ?? spec.interfaces;
    return { address: v.address, devices: given ? [...given] : uplinksIn(subnets ??= uplinkSubnets(links, device), v.address) };
  });
}

/** The per-device sysctls that let an uplink answer solicitations for proxied IPv6 VIPs. */
export function uplinkSysctls(list: readonly Announcement[]): Array<{ key: string; want: string; why: string; onlyFrom?: string }> {
  const devices = [...new Set(list.filter((a) => ipFamily(a.address) === 6).flatMap((a) => a.devices))].sort();
  return devices.flatMap((d) => [
    { key: `net.ipv6.conf.${d}.forwarding`, want: '1', why: `ndisc answers for proxy entries only on a forwarding device (${d})` },
    { key: `net.ipv6.conf.${d}.proxy_ndp`, want: '1', why: `answer neighbour solicitations for announced IPv6 VIPs on ${d}` },
    { key: `net.ipv6.neigh.${d}.proxy_delay`, want: '0', why: 'answer a solicitation for a proxied VIP at once, not after up to 0.8 s' },
    // Only where it was 1: 0 (RAs off) and 2 (already accepted while forwarding) stay.
    { key: `net.ipv6.conf.${d}.accept_ra`, want: '2', why: `forwarding=1 would make accept_ra=1 ignore router advertisements on ${d}`, onlyFrom: '1' },
  ]);
}

/** Proxy entries we want: one per announced IPv6 VIP and device, sorted. */
export function wantedProxies(list: readonly Announcement[]): ProxyEntry[] {
  return list.filter((a) => ipFamily(a.address) === 6)
    .flatMap((a) => a.devices.map((device) => ({ address: a.address, device })))
    .sort((a, b) => cmpEntry(a, b));
}

function cmpEntry(a: ProxyEntry, b: ProxyEntry): number {
  return a.address < b.address ? -1 : a.address > b.address ? 1 : a.device < b.device ? -1 : a.device > b.device ? 1 : 0;
}

/** Parse `ip -6 -j neigh show proxy`. */
export function parseProxies(text: string): ProxyEntry[] {
  const raw = JSON.parse(text || '[]') as Array<{ dst?: string; dev?: string }>;
  return raw.flatMap((e) => (e.dst && e.dev ? [{ address: parseIp(e.dst)?.address ?? e.dst, device: e.dev }] : [])).sort(cmpEntry);
}

/**
 * Proxy entries to add and remove. Ours are entries of our VIPs (`owned`: every address on
 * lvs0 and those being removed from it); an entry for any other address is someone else's.
 */
export function proxyChanges(want: readonly ProxyEntry[], have: readonly ProxyEntry[], owned: ReadonlySet<string>): { add: ProxyEntry[]; remove: ProxyEntry[] } {
  const key = (e: ProxyEntry) => `${e.address}%${e.device}`;
  const wanted = new Set(want.map(key));
  const present = new Set(have.map(key));
  return {
    add: want.filter((e) => !present.has(key(e))),
    remove: have.filter((e) => owned.has(e.address) && !wanted.has(key(e))),
  };
}

/**
 * The VIPs announced in `after` that were not in `before` (by address and device): they get a
 * gratuitous ARP / unsolicited NA now, so neighbours that cached another director move at once.
 */
export function newlyAnnounced(before: readonly Announcement[], after: readonly Announcement[]): Announcement[] {
  const had = new Set(before.flatMap((a) => a.devices.map((d) => `${a.address}%${d}`)));
  return after.map((a) => ({ address: a.address, devices: a.devices.filter((d) => !had.has(`${a.address}%${d}`)) }))
    .filter((a) => a.devices.length > 0);
}

/**
 * The command that tells a segment where `address` lives now: a gratuitous ARP request (iputils
 * arping -U; it sends at once, then waits one second before it exits) or an unsolicited neighbour
 * advertisement with the override flag (libndp's ndptool).
 */
export function announceCommand(address: string, device: string): [string, string[]] {
  return ipFamily(address) === 4
    ? ['arping', ['-q', '-U', '-c', '1', '-I', device, '-s', address, address]]
    : ['ndptool', ['-t', 'na', '-U', '-i', device, '-T', address, 'send']];
}
