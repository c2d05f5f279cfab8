// Kubernetes' CEL IP library (k8s.io/apiserver/pkg/cel/library/ip.go) on the project's one IP
// parser (api/ip.ts), with the behaviour the CRD's rules rely on:
//   - isIP(s): Go's netip.ParseAddr accepts it, with no zone and not IPv4-mapped IPv6
//     (::ffff:a.b.c.d); IPv4 octets with leading zeros are refused;
//   - ip.isCanonical(s): the address's canonical text (Go's Addr.String(): dotted quad, RFC 5952)
//     is s itself; an invalid address is an error;
//   - ip(s): an IP value, an error for an invalid address; its methods isUnspecified,
//     isLoopback, isLinkLocalUnicast, isGlobalUnicast (netip's: not unspecified, not
//     255.255.255.255, not loopback, multicast or link-local unicast) and family().
import { parseIp, type ParsedIp } from '../ip.ts';
import { CelEvalError } from './errors.ts';

export class CelIp {
  readonly ip: ParsedIp;
  constructor(ip: ParsedIp) { this.ip = ip; }
}


function parseStrict(s: unknown): ParsedIp | undefined {
  const ip = parseIp(s);
  return ip && !ip.v4Mapped ? ip : undefined;
}

function mustParse(s: unknown, fn: string): ParsedIp {
  if (typeof s !== 'string') throw new CelEvalError(`no such overload: ${fn}(${typeof s})`);
  const ip = parseStrict(s);
  if (!ip) throw new CelEvalError(`IP Address ${JSON.stringify(s)} parse error during conversion from string`);
  return ip;
}

/** Global (and namespaced) functions by name, each taking exactly its declared arguments. */
export const IP_FUNCTIONS: Record<string, (arg: unknown) => unknown> = {
  isIP: (s) => { if (typeof s !== 'string') throw new CelEvalError(`no such overload: isIP(${typeof s})`); return parseStrict(s) !== undefined; },
  ip: (s) => new CelIp(mustParse(s, 'ip')),
  'ip.isCanonical': (s) => mustParse(s, 'ip.isCanonical').address === s,
};

export const IP_METHODS: Record<string, (v: CelIp) => unknown> = {
  isUnspecified: (v) => v.ip.unspecified,
  isLoopback: (v) => v.ip.loopback,
  isLinkLocalUnicast: (v) => v.ip.linkLocal,
  isGlobalUnicast: (v) => !(v.ip.unspecified || v.ip.broadcast || v.ip.loopback || v.ip.multicast || v.ip.linkLocal),
  family: (v) => v.ip.family,
};
