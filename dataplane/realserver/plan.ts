// Real-server preparation for DR and TUN, as pure planning: given the VIPs a namespace must
// accept and what the namespace looks like now, decide what to change. No side effects here.
//
// Kernel behaviour relied on (IPv4):
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
// Ownership: addresses we add carry the IPv4 label "<dev>:lvsop", so cleanup removes only those
// (an identical address someone else configured satisfies the VIP but is never removed). Sysctls
// we change are recorded with their previous value in the lo device's alias (IFLA_IFALIAS), a
// string that lives and dies with the namespace; once no owned VIP needs a sysctl any more it is
// restored to the recorded value, but only if it still holds the value we set. When lo's alias is
// used by someone else nothing is recorded and nothing is restored (result.recordable = false).
import type { LinkInfo } from './iproute.ts';
import { canonicalIp } from './iproute.ts';

export type RealServerMode = 'DR' | 'TUN';

export interface RealServerVip {
  mode: RealServerMode;
  vip: string;
}

export const LABEL_SUFFIX = 'lvsop';
export const RECORD_PREFIX = 'lvs-operator/v1';
export const TUNNEL_DEVICE = 'tunl0';

export function ownedLabel(device: string): string {
  return `${device}:${LABEL_SUFFIX}`;
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
    if (vip.includes(':')) {
      throw new RealServerSpecError(`${field}[${i}].vip`, `${vip} is IPv6; real-server preparation supports IPv4 VIPs only (ownership labels and ipip are IPv4)`);
    }
    out.set(`${vip}/${v.mode}`, { mode: v.mode, vip });
  });
  return [...out.values()].sort((a, b) => compareVip(a, b));
}

function compareVip(a: RealServerVip, b: RealServerVip): number {
  return a.vip === b.vip ? a.mode.localeCompare(b.mode) : ipSortKey(a.vip).localeCompare(ipSortKey(b.vip));
}

function ipSortKey(ip: string): string {
  return ip.split('.').map((o) => o.padStart(3, '0')).join('.');
}

export function deviceFor(mode: RealServerMode): string {
  return mode === 'DR' ? 'lo' : TUNNEL_DEVICE;
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

export function sysctlNeeds(vips: readonly RealServerVip[]): SysctlNeed[] {
  const needs = new Map<string, SysctlNeed>();
  const add = (key: string, want: string, accepts: readonly string[] = [want]) => needs.set(key, { key, want, accepts });
  if (vips.length > 0) {
    add(conf('all', 'arp_ignore'), '1', ARP_IGNORE);
    add(conf('all', 'arp_announce'), '2');
  }
  if (vips.some((v) => v.mode === 'DR')) {
    add(conf('lo', 'arp_ignore'), '1', ARP_IGNORE);
    add(conf('lo', 'arp_announce'), '2');
  }
  if (vips.some((v) => v.mode === 'TUN')) {
    add(conf('all', 'rp_filter'), '0');
    add(conf(TUNNEL_DEVICE, 'rp_filter'), '0');
  }
  return [...needs.values()].sort((a, b) => a.key.localeCompare(b.key));
}

/** Every sysctl preparation may touch (read them all in one go). */
export const MANAGED_SYSCTLS: readonly string[] = sysctlNeeds([{ mode: 'DR', vip: '0.0.0.0' }, { mode: 'TUN', vip: '0.0.0.0' }]).map((n) => n.key);

/** What we changed and must be able to undo, kept in lo's alias. */
export interface PrepRecord {
  /** sysctl key -> value before we first changed it. */
  sysctls: Record<string, string>;
  tunnelUp: boolean;
  tunnelCreated: boolean;
}

export function emptyRecord(): PrepRecord {
  return { sysctls: {}, tunnelUp: false, tunnelCreated: false };
}

export function formatRecord(r: PrepRecord): string {
  const parts = Object.keys(r.sysctls).sort().map((k) => `${k.replace(/^net\.ipv4\.conf\./, '')}=${r.sysctls[k]}`);
  const tun = [r.tunnelUp ? 'up' : '', r.tunnelCreated ? 'created' : ''].filter(Boolean);
  if (tun.length) parts.push(`${TUNNEL_DEVICE}=${tun.join(',')}`);
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
    const k = p.slice(0, eq), v = p.slice(eq + 1);
    if (k === TUNNEL_DEVICE) {
      r.tunnelUp = v.split(',').includes('up');
      r.tunnelCreated = v.split(',').includes('created');
    } else r.sysctls[`net.ipv4.conf.${k}`] = v;
  }
  return r;
}

export interface ObservedRealServer {
  lo?: LinkInfo;
  tunnel?: LinkInfo;
  /** Current values of MANAGED_SYSCTLS that exist (tunl0's only while tunl0 exists). */
  sysctls: Record<string, string>;
}

/** VIPs this namespace holds under our label, i.e. what a previous preparation added. */
export function ownedVips(obs: ObservedRealServer): RealServerVip[] {
  const out: RealServerVip[] = [];
  for (const [mode, link] of [['DR', obs.lo], ['TUN', obs.tunnel]] as const) {
    for (const a of link?.addresses ?? []) {
      if (a.family === 4 && a.label === ownedLabel(link!.name)) out.push({ mode, vip: a.address });
    }
  }
  return normalizeVips(out);
}
