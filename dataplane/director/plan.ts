// What a director node needs besides IPVS rules, as pure data: the VIPs it owns (bound to the
// dummy device lvs0), the sysctls IPVS relies on, and our nftables tables (SNAT return path and
// ARP silence). No side effects here; ./setup.ts observes, diffs and applies.
//
// Kernel behaviour relied on:
// - IPVS takes packets for a virtual service at LOCAL_IN, so the VIP must be a local address. A
//   dummy device holds it without touching any real interface; VIP/32 (/128) adds only a local
//   route. The set of global addresses on lvs0 is the ownership record across agent restarts.
// - ARP: Linux answers ARP for a local address on every interface (weak host model), so a VIP on
//   lvs0 is answered on eth0 unless something stops it. Instead of arp_ignore=1 on all interfaces
//   (which silences every VIP, including those the node should announce, and changes behaviour
//   for the node's other addresses), the ARP requests for non-announced VIPs are dropped in an
//   nftables `arp` table at the input hook, before arp_process() would reply or learn.
// - NDP: ndisc answers a neighbour solicitation only for an address on the receiving device or a
//   proxy-NDP entry of it (ndisc_recv_ns), so a VIP on lvs0 is silent on eth0 by default; with
//   proxy_ndp and `ip -6 neigh add proxy VIP dev eth0` (how an IPv6 VIP gets announced) it is
//   answered. The mirror of the ARP table: solicitations whose target is a non-announced VIP are
//   dropped in an `ip6` table at the input hook, before ndisc_rcv(), whatever proxy entry exists.
//   (The director's own solicitations never carry the VIP: ndisc uses a packet's source only if it
//   is on the outgoing device, so no arp_announce counterpart is needed.)
// - arp_announce=2 (conf.all; the effective value is max(all, dev)): the director forwards NAT
//   replies whose source is the VIP; with the default 0 its ARP requests would carry the VIP as
//   sender address and teach the LAN that the VIP lives here.
// - NAT return path SNAT: IPVS does not use netfilter NAT, but with net.ipv4.vs.conntrack=1 it
//   keeps a conntrack entry per connection whose original tuple is client -> VIP:port. The first
//   packet IPVS sends to the real server traverses POSTROUTING with that entry unconfirmed, so a
//   nat rule matching `ct original ip daddr VIP ct original proto-dst PORT` can masquerade it;
//   replies come back to the director, conntrack undoes the masquerade and IPVS the DNAT.
import type { Plan, Protocol } from '../../api/plan.ts';
import { ipNumber, parseIp } from '../../api/ip.ts';
import { canonicalIp, ipFamily } from '../realserver/iproute.ts';

export const DEVICE = 'lvs0';
export const NFT_TABLE = 'lvs_operator';

export interface DirectorVip {
  address: string;
  /** Answer ARP for it (the active director of an announced VIP); false keeps the node silent. */
  announce: boolean;
  /** Devices to announce it on, instead of the spec's `interfaces` or its uplinks. */
  interfaces?: string[];
}

export interface SnatRule {
  family: 4 | 6;
  protocol: Protocol;
  vip: string;
  /** 0: every port (a port-0 persistent service). */
  port: number;
}

export interface DirectorSpec {
  vips: DirectorVip[];
  snat: SnatRule[];
  /**
   * SNAT rules kept only where present already (services held as the kernel has them, whose
   * return path the agent cannot know from a plan): never added, not removed while held.
   */
  keepSnat?: SnatRule[];
  /** Families that have NAT services: their replies are forwarded, so forwarding must be on. */
  natFamilies: Array<4 | 6>;
  kernelRelease: string;
  /**
   * Devices announced VIPs are announced on (gratuitous ARP, unsolicited NA, proxy NDP). Default:
   * each VIP's uplinks, the devices whose subnet contains it (./announce.ts).
   */
  interfaces?: string[];
  /** The kernel's IPVS connection sync runs here: its sysctls are set (CONNECTION_SYNC_SYSCTLS). */
  connectionSync?: boolean;
}

export class DirectorSpecError extends Error {
  readonly field: string;
  constructor(field: string, reason: string) {
    super(`${field}: ${reason}`);
    this.name = 'DirectorSpecError';
    this.field = field;
  }
}

function ipKey(ip: string): string {
  if (ip.includes(':')) return `6:${ip}`;
  return `4:${ip.split('.').map((o) => o.padStart(3, '0')).join('.')}`;
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** SNAT rules of one VIP: by protocol, then port. */
const snatOrder = (a: SnatRule, b: SnatRule) => cmp(a.protocol, b.protocol) || a.port - b.port;

/**
 * Sorted by address (ipKey), then by `tie`: each key computed once, not once per comparison (a
 * director with 40,000 VIPs sorted them with 1.3 million ipKey() calls on every check).
 */
function sortByAddress<T>(xs: Iterable<T>, address: (x: T) => string, tie: (a: T, b: T) => number = () => 0): T[] {
  return [...xs].map((x) => ({ x, k: ipKey(address(x)) })).sort((a, b) => cmp(a.k, b.k) || tie(a.x, b.x)).map((e) => e.x);
}

/** The specs normalizeSpec() returned (their users never modify them): normalizing one again returns it. */
const normalized = new WeakSet<DirectorSpec>();

/** Validate, canonicalise and sort a spec (bad input names the field). */
export function normalizeSpec(spec: DirectorSpec): DirectorSpec {
  if (normalized.has(spec)) return spec;
  const vips = new Map<string, DirectorVip>();
  spec.vips.forEach((v, i) => {
    const address = canonicalIp(v.address);
    if (!address) throw new DirectorSpecError(`vips[${i}].address`, `${JSON.stringify(v.address)} is not an IP address`);
    const prev = vips.get(address);
    const interfaces = v.interfaces ?? prev?.interfaces;
    if (interfaces) checkDevices(interfaces, `vips[${i}].interfaces`);
    vips.set(address, { address, announce: Boolean(v.announce) || Boolean(prev?.announce), ...(interfaces ? { interfaces: [...new Set(interfaces)].sort() } : {}) });
  });
  if (!/^\d+\.\d+/.test(spec.kernelRelease)) throw new DirectorSpecError('kernelRelease', `${JSON.stringify(spec.kernelRelease)} does not start with MAJOR.MINOR`);
  const out: DirectorSpec = {
    vips: sortByAddress(vips.values(), (v) => v.address),
    snat: normalizeSnat(spec.snat, vips, 'snat'),
    natFamilies: [...new Set(spec.natFamilies)].sort(),
    kernelRelease: spec.kernelRelease,
  };
  if (spec.keepSnat?.length) out.keepSnat = normalizeSnat(spec.keepSnat, vips, 'keepSnat');
  if (spec.connectionSync) out.connectionSync = true;
  if (spec.interfaces) {
    checkDevices(spec.interfaces, 'interfaces');
    out.interfaces = [...new Set(spec.interfaces)].sort();
  }
  normalized.add(out);
  return out;
}

function checkDevices(list: readonly string[], field: string): void {
  list.forEach((d, i) => {
    if (!/^[^\s/.][^\s/]{0,14}$/.test(d)) throw new DirectorSpecError(`${field}[${i}]`, `${JSON.stringify(d)} is not a network device name`);
  });
}

function normalizeSnat(rules: readonly SnatRule[], vips: ReadonlyMap<string, DirectorVip>, field: string): SnatRule[] {
  const snat = new Map<string, SnatRule>();
  rules.forEach((r, i) => {
    const vip = canonicalIp(r.vip);
    if (!vip) throw new DirectorSpecError(`${field}[${i}].vip`, `${JSON.stringify(r.vip)} is not an IP address`);
    if (!['TCP', 'UDP', 'SCTP'].includes(r.protocol)) throw new DirectorSpecError(`${field}[${i}].protocol`, `must be TCP, UDP or SCTP, got ${JSON.stringify(r.protocol)}`);
    if (!Number.isInteger(r.port) || r.port < 0 || r.port > 65535) throw new DirectorSpecError(`${field}[${i}].port`, `must be an integer 0-65535, got ${r.port}`);
    if (!vips.has(vip)) throw new DirectorSpecError(`${field}[${i}].vip`, `${vip} is not one of this director's VIPs`);
    snat.set(`${vip}|${r.protocol}|${r.port}`, { family: ipFamily(vip), protocol: r.protocol, vip, port: r.port });
  });
  return sortByAddress(snat.values(), (r) => r.vip, snatOrder);
}

/** The director part of a plan for one node: services whose directors include `node`. */
export function directorSpecFromPlan(plan: Plan, node: string, kernelRelease: string, announce: (vip: string) => boolean = () => false): DirectorSpec {
  const mine = plan.services.filter((s) => s.directors.includes(node));
  return normalizeSpec({
    vips: [...new Set(mine.map((s) => s.vip))].map((address) => ({ address, announce: announce(address) })),
    snat: mine.filter((s) => s.forwarding === 'NAT' && s.natReturnPath === 'SNAT').map((s) => ({ family: s.family, protocol: s.protocol, vip: s.vip, port: s.port })),
    natFamilies: [...new Set(mine.filter((s) => s.forwarding === 'NAT').map((s) => s.family))],
    kernelRelease,
  });
}

/**
 * conn_reuse_mode=1 (the kernel default) reschedules a new connection that reuses the source port
 * of an old one still in the IPVS table; on kernels before 5.9, with conntrack involved, it did
 * so by dropping the SYN, so such clients waited a 1 s SYN retransmit. kube-proxy (constant
 * connReuseFixedKernelVersion = "5.9", citing linux commit 35dfb013149f) sets 0 on 4.1 <= kernel
 * < 5.9 and keeps 1 from 5.9 on; we do the same, and ensure 1 on 5.9+.
 */
export function connReuseMode(kernelRelease: string): '0' | '1' {
  const m = /^(\d+)\.(\d+)/.exec(kernelRelease);
  if (!m) throw new DirectorSpecError('kernelRelease', `${JSON.stringify(kernelRelease)} does not start with MAJOR.MINOR`);
  const [maj, min] = [Number(m[1]), Number(m[2])];
  return maj > 5 || (maj === 5 && min >= 9) ? '1' : '0';
}

export interface DirectorSysctl {
  key: string;
  want: string;
  why: string;
}

/** A node without VIPs is no director and needs nothing. */
export function directorSysctls(spec: DirectorSpec): DirectorSysctl[] {
  if (spec.vips.length === 0) return [];
  const out: DirectorSysctl[] = [
    { key: 'net.ipv4.vs.expire_nodest_conn', want: '1', why: 'connections to a deleted destination (UDP above all) expire instead of blackholing' },
    { key: 'net.ipv4.vs.expire_quiescent_template', want: '1', why: 'persistence templates of a weight-0 destination expire, so draining finishes' },
    { key: 'net.ipv4.vs.conn_reuse_mode', want: connReuseMode(spec.kernelRelease), why: `kernel ${spec.kernelRelease}: see connReuseMode()` },
  ];
  if (spec.snat.length > 0) out.push({ key: 'net.ipv4.vs.conntrack', want: '1', why: 'SNAT return path: nftables masquerade needs IPVS connections in conntrack' });
  if (spec.natFamilies.includes(4)) out.push({ key: 'net.ipv4.ip_forward', want: '1', why: 'NAT replies are forwarded back to the client' });
  if (spec.natFamilies.includes(6)) out.push({ key: 'net.ipv6.conf.all.forwarding', want: '1', why: 'NAT replies are forwarded back to the client' });
  if (spec.vips.some((v) => !v.announce && ipFamily(v.address) === 4)) {
    out.push({ key: 'net.ipv4.conf.all.arp_announce', want: '2', why: 'never use a VIP as the sender address of ARP requests' });
  }
  if (spec.connectionSync) out.push(...CONNECTION_SYNC_SYSCTLS);
  return out.sort((a, b) => cmp(a.key, b.key));
}

/**
 * The kernel's IPVS connection sync, as measured in docs/ha-kernel-facts.md (item 5): each
 * connection is sent once when it becomes ESTABLISHED ("3 0": no resend every 50 packets), again
 * every 10 s while it lives and on state changes — about 12 times less steady sync traffic than the
 * defaults, which resend every connection every 50 incoming packets; failover carried 100% of DR
 * and TUN streams with it. Version 1 carries IPv6 and each connection's timeout (v0 neither).
 */
export const CONNECTION_SYNC_SYSCTLS: readonly DirectorSysctl[] = [
  { key: 'net.ipv4.vs.sync_refresh_period', want: '10', why: 'connection sync: each connection again every 10 s and on state changes' },
  { key: 'net.ipv4.vs.sync_threshold', want: '3 0', why: 'connection sync: sent once ESTABLISHED, not every 50 packets' },
  { key: 'net.ipv4.vs.sync_version', want: '1', why: 'connection sync: IPv6 and per-connection timeouts' },
];

/** Every sysctl the director may touch (read in one go). */
export const DIRECTOR_SYSCTLS: readonly string[] = [
  'net.ipv4.conf.all.arp_announce', 'net.ipv4.ip_forward', 'net.ipv4.vs.conn_reuse_mode', 'net.ipv4.vs.conntrack',
  'net.ipv4.vs.expire_nodest_conn', 'net.ipv4.vs.expire_quiescent_template', 'net.ipv6.conf.all.forwarding',
  ...CONNECTION_SYNC_SYSCTLS.map((s) => s.key),
];

/** nft tables we own, in the canonical form `nft list table` prints them ('' = table absent). */
export interface NftTables {
  inet: string;
  arp: string;
  /** Neighbour solicitations for non-announced IPv6 VIPs. */
  ip6: string;
}

export const NFT_FAMILIES = ['inet', 'arp', 'ip6'] as const;

const L4: Record<Protocol, string> = { TCP: 'tcp', UDP: 'udp', SCTP: 'sctp' };

/** One SNAT rule as `nft list table` prints it (without indentation). */
function snatRuleLine(r: SnatRule): string {
  const fam = r.family === 4 ? 'ipv4' : 'ipv6';
  const ip = r.family === 4 ? 'ip' : 'ip6';
  const port = r.port ? ` ct original proto-dst ${r.port}` : '';
  return `meta nfproto ${fam} meta l4proto ${L4[r.protocol]} ct original ${ip} daddr ${r.vip}${port} masquerade`;
}

/** The spec's SNAT rules plus those of keepSnat that the listed inet table already holds. */
export function withKeptSnat(spec: DirectorSpec, inet: string): DirectorSpec {
  if (!spec.keepSnat?.length) return spec;
  // Whole lines compared, so port 80 never matches a listed 8080.
  const listed = new Set(inet.split('\n').map((l) => l.replace(/\s+/g, ' ').trim()));
  const have = new Set(spec.snat.map(snatRuleLine));
  const kept = spec.keepSnat.filter((r) => listed.has(snatRuleLine(r)) && !have.has(snatRuleLine(r)));
  if (kept.length === 0) return spec;
  const snat = sortByAddress([...spec.snat, ...kept], (r) => r.vip, snatOrder);
  return { ...spec, snat };
}

export function nftTables(spec: DirectorSpec, alsoQuiet: readonly string[] = []): NftTables {
  let inet = '';
  if (spec.snat.length > 0) {
    const rules = spec.snat.map((r) => `\t\t${snatRuleLine(r)}\n`);
    inet = `table inet ${NFT_TABLE} {\n\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n${rules.join('')}\t}\n}\n`;
  }
  // One rule per VIP rather than a set: ARP and NDP are rare enough that a linear walk costs
  // nothing. Rendered sorted; compared whatever their order (sameRuleset), as the quick bind
  // (./quick-bind.ts) appends the rules of new VIPs.
  const quiet = sortByAddress(new Set([...spec.vips.filter((v) => !v.announce).map((v) => v.address), ...alsoQuiet]), (a) => a);
  const rules = quiet.map(quietRule);
  const arp = inputTable('arp', rules.filter((r) => r.family === 'arp').map((r) => r.rule));
  const ip6 = inputTable('ip6', rules.filter((r) => r.family === 'ip6').map((r) => r.rule));
  return { inet, arp, ip6 };
}

/** The rule in our `family` table's input chain that keeps a quiet VIP from being answered (ARP request, or IPv6 neighbour solicitation). */
export function quietRule(address: string): { family: 'arp' | 'ip6'; rule: string } {
  return ipFamily(address) === 4
    ? { family: 'arp', rule: `arp operation request arp daddr ip ${address} drop` }
    : { family: 'ip6', rule: `icmpv6 type nd-neighbor-solicit ${ndTarget(address)} drop` };
}

function inputTable(family: string, rules: readonly string[]): string {
  if (rules.length === 0) return '';
  const body = rules.map((r) => `\t\t${r}\n`).join('');
  return `table ${family} ${NFT_TABLE} {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n${body}\t}\n}\n`;
}

/**
 * The target address of a neighbour solicitation: 16 bytes at offset 8 of the ICMPv6 header. As a
 * raw payload match, because nft before 1.1 has no `icmpv6 taddr` (1.0.6 prints this form back).
 */
function ndTarget(address: string): string {
  return `@th,64,128 0x${ipv6Hex(address)}`;
}

function ipv6Hex(address: string): string {
  const ip = parseIp(address);
  if (!ip) throw new DirectorSpecError('vips', `${address} is not an IP address`);
  return ipNumber(ip).toString(16).padStart(32, '0');
}

/**
 * Compare listings modulo whitespace (nft indents as it likes), the two ways nft prints a
 * solicitation's target (newer versions may show the raw match as `icmpv6 taddr`) and the order of
 * lines: each of our tables has one chain of independent rules (SNAT per VIP and port, a drop
 * per quiet VIP), whose order changes nothing, and `nft list` prints rules in insertion order.
 */
export function sameRuleset(a: string, b: string): boolean {
  const taddr = (s: string) => s.replace(/icmpv6 taddr (\S+)/g, (_m, ip: string) => ndTarget(canonicalIp(ip) ?? ip));
  const flat = (s: string) => taddr(s).replace(/\s+/g, ' ').trim();
  if (flat(a) === flat(b)) return true;
  // Line by line (nft lists a rule per line), in any order.
  const lines = (s: string) => taddr(s).split('\n').map((l) => l.replace(/\s+/g, ' ').trim()).filter((l) => l !== '').sort().join('\n');
  return lines(a) === lines(b);
}

/** One atomic `nft -f -` transaction replacing exactly our tables of `families` (and nothing else). */
export function nftTransaction(want: NftTables, families: ReadonlyArray<(typeof NFT_FAMILIES)[number]> = NFT_FAMILIES): string {
  const lines: string[] = [];
  for (const family of families) {
    const text = want[family];
    // "add" of an empty table is a no-op when it exists, so the delete never fails.
    lines.push(`table ${family} ${NFT_TABLE} {}`, `delete table ${family} ${NFT_TABLE}`);
    if (text) lines.push(text.trimEnd());
  }
  return lines.join('\n') + '\n';
}
