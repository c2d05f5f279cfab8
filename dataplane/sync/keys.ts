// Identity of kernel IPVS objects as plain strings, so desired state and the kernel's read-back can
// be matched in maps whatever textual form an address arrived in. The kernel stores addresses as
// bytes, so "2001:DB8:0::1" and "2001:db8::1" are the same service; we compare canonical forms.
import { canonicalIp, ipFamily } from '../../api/ip.ts';
import { parseServiceKey, serviceKey } from '../../api/plan.ts';
import type { IpvsDestination, IpvsServiceKey } from '../ipvs/types.ts';

/** The address's family, or undefined when it is not a plain IPv4/IPv6 literal (zone ids rejected). */
export const addressFamily = ipFamily;

/** Canonical text of an IP literal (lowercase, RFC 5952 compressed for IPv6). Throws on non-IPs. */
export function canonicalAddress(address: string): string {
  const c = canonicalIp(address);
  if (c === undefined) throw new Error(`not an IP address: ${JSON.stringify(address)}`);
  return c;
}

/** "addr:port" or "[v6]:port". */
export function hostPort(address: string, port: number): string {
  const a = canonicalAddress(address);
  return a.includes(':') ? `[${a}]:${port}` : `${a}:${port}`;
}

/**
 * The service's key: the plan's serviceKey() form ("TCP/203.0.113.10:80", "UDP/[2001:db8::1]:53")
 * for address services, "FWM<family>/<mark>" for firewall-mark services (never ours).
 */
export function ipvsServiceKey(k: IpvsServiceKey): string {
  if (k.fwmark) return `FWM${k.family}/${k.fwmark}`;
  return serviceKey(k.protocol, canonicalAddress(k.address), k.port);
}

/** The parts of a plan service key: one parser, beside serviceKey() in the contract. */
export { parseServiceKey };

/** The key of parseServiceKey()'s parts. */
export function serviceKeyOf(k: { protocol: 'TCP' | 'UDP' | 'SCTP'; vip: string; port: number }): string {
  return serviceKey(k.protocol, canonicalAddress(k.vip), k.port);
}

export function destKey(d: Pick<IpvsDestination, 'address' | 'port'>): string {
  return hostPort(d.address, d.port);
}

/** Key of one destination of one service, as used in the draining map. */
export function drainKey(svc: IpvsServiceKey, d: Pick<IpvsDestination, 'address' | 'port'>): string {
  return `${ipvsServiceKey(svc)} -> ${destKey(d)}`;
}

export function byString(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Sort order of destinations in an IpvsServiceState: address, then port. */
export function compareDestinations(
  a: Pick<IpvsDestination, 'address' | 'port'>,
  b: Pick<IpvsDestination, 'address' | 'port'>,
): number {
  return byString(canonicalAddress(a.address), canonicalAddress(b.address)) || a.port - b.port;
}
