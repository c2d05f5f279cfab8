// The project's one IP module. parseIp: strict parsing for the resolver and the CEL library, one
// canonical text form per address (dotted quad; RFC 5952 for IPv6) so that "2001:DB8:0::1" and
// "2001:db8::1" are the same VIP in conflict detection and the same real server in
// de-duplication, and a byte-order sort key. ipFamily/canonicalIp: the dataplane's reading of
// any literal (kernel read-back, `ip -j` output, plan entries), in inet_ntop's text — the form
// ipvsadm and the kernel print. Both give the same text for every address the CRD admits except
// the deprecated IPv4-compatible form (::a.b.c.d, which inet_ntop prints dotted and Go's netip in
// hex); the dataplane reads plans and the kernel alike through canonicalIp, so it only ever
// compares its own form (test/unit/resolve-ip.test.ts checks both statements).
import { isIP, SocketAddress } from 'node:net';

export interface ParsedIp {
  family: 4 | 6;
  /** Canonical text form. */
  address: string;
  /** Fixed-width sort key: IPv4 before IPv6, then numeric byte order. */
  sortKey: string;
  unspecified: boolean;
  loopback: boolean;
  multicast: boolean;
  /** 169.254.0.0/16, fe80::/10. */
  linkLocal: boolean;
  /** 255.255.255.255. */
  broadcast: boolean;
  /** ::ffff:a.b.c.d, which Kubernetes' isIP() rejects. */
  v4Mapped: boolean;
}

/**
 * Strict dotted quad as a 32-bit number. No leading zeros ("010" is octal to some parsers and
 * decimal to others), so an accepted string is already canonical. A hand loop: this runs once per
 * endpoint and dominates a 100k-endpoint resolve when written with split and regexes.
 */
function parseIpv4(s: string): number | undefined {
  let n = 0, octet = 0, digits = 0, dots = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || dots === 3) return undefined;
      n = n * 256 + octet;
      octet = 0; digits = 0; dots++;
      continue;
    }
    if (c < 48 || c > 57 || (digits > 0 && octet === 0)) return undefined;
    octet = octet * 10 + (c - 48);
    if (++digits > 3 || octet > 255) return undefined;
  }
  if (dots !== 3 || digits === 0) return undefined;
  return n * 256 + octet;
}

function parseGroups(s: string): number[] | undefined {
  if (s === '') return [];
  const out: number[] = [];
  const parts = s.split(':');
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i] as string;
    if (i === parts.length - 1 && p.includes('.')) {
      const v4 = parseIpv4(p);
      if (v4 === undefined) return undefined;
      out.push(Math.floor(v4 / 65536), v4 % 65536);
      continue;
    }
    if (!/^[0-9a-fA-F]{1,4}$/.test(p)) return undefined;
    out.push(parseInt(p, 16));
  }
  return out;
}

function parseIpv6Groups(s: string): number[] | undefined {
  const dbl = s.indexOf('::');
  if (dbl !== s.lastIndexOf('::')) return undefined;
  if (dbl < 0) {
    const g = parseGroups(s);
    return g && g.length === 8 ? g : undefined;
  }
  const head = parseGroups(s.slice(0, dbl));
  const tail = parseGroups(s.slice(dbl + 2));
  if (!head || !tail || head.length + tail.length > 7) return undefined;
  return [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
}

/** RFC 5952: lowercase, no leading zeros, the longest run (>= 2) of zero groups as "::". */
function formatIpv6(g: number[]): string {
  if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) {
    const lo = (g[6] as number), hi = (g[7] as number);
    return `::ffff:${lo >> 8}.${lo & 255}.${hi >> 8}.${hi & 255}`;
  }
  let bestAt = -1, bestLen = 1;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) { bestAt = i; bestLen = j - i; }
    i = j;
  }
  const hex = (xs: number[]) => xs.map((x) => x.toString(16)).join(':');
  if (bestAt < 0) return hex(g);
  return `${hex(g.slice(0, bestAt))}::${hex(g.slice(bestAt + bestLen))}`;
}

/** Parses an IPv4 or IPv6 address (no zone, no prefix); undefined when it is not one. */
export function parseIp(s: unknown): ParsedIp | undefined {
  if (typeof s !== 'string' || s.length === 0 || s.length > 45) return undefined;
  if (!s.includes(':')) {
    const n = parseIpv4(s);
    if (n === undefined) return undefined;
    const a0 = Math.floor(n / 2 ** 24);
    return {
      family: 4,
      address: s,
      sortKey: '4' + n.toString(16).padStart(8, '0'),
      unspecified: n === 0,
      loopback: a0 === 127,
      multicast: a0 >= 224 && a0 <= 239,
      linkLocal: Math.floor(n / 65536) === 0xa9fe,
      broadcast: n === 0xffffffff,
      v4Mapped: false,
    };
  }
  const g = parseIpv6Groups(s);
  if (!g) return undefined;
  const allZeroHead = g.slice(0, 7).every((x) => x === 0);
  return {
    family: 6,
    address: formatIpv6(g),
    sortKey: '6' + g.map((x) => x.toString(16).padStart(4, '0')).join(''),
    unspecified: allZeroHead && g[7] === 0,
    loopback: allZeroHead && g[7] === 1,
    multicast: ((g[0] as number) >> 8) === 0xff,
    linkLocal: ((g[0] as number) & 0xffc0) === 0xfe80,
    broadcast: false,
    v4Mapped: g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff,
  };
}

/** A contiguous dotted IPv4 netmask (ones then zeros, at least one one), e.g. 255.255.255.0. */
export function isContiguousNetmask(s: unknown): boolean {
  const n = typeof s === 'string' ? parseIpv4(s) : undefined;
  if (n === undefined || n === 0) return false;
  const inverted = 0xffffffff - n;
  // ones-then-zeros <=> the inverted mask is 2^k - 1.
  return (inverted & (inverted + 1)) === 0;
}

/** The family of a plain IPv4/IPv6 literal (zone ids rejected), or undefined. */
export function ipFamily(address: string): 4 | 6 | undefined {
  if (typeof address !== 'string' || address.includes('%')) return undefined;
  const v = isIP(address);
  return v === 4 || v === 6 ? v : undefined;
}

const v6Cache = new Map<string, string>();

/** Canonical text of an IP literal (inet_ntop's: lowercase, RFC 5952 compressed), or undefined. */
export function canonicalIp(address: string): string | undefined {
  const family = ipFamily(address);
  if (family === undefined) return undefined;
  // node:net accepts only plain dotted-decimal IPv4 (no leading zeros), which is already canonical.
  if (family === 4) return address;
  let c = v6Cache.get(address);
  if (c === undefined) {
    c = new SocketAddress({ address, family: 'ipv6' }).address;
    if (v6Cache.size >= 100_000) v6Cache.clear();
    v6Cache.set(address, c);
  }
  return c;
}


/** A closed range of addresses of one family, as numbers: a CIDR, an "a-b" range or one address. */
export interface AddressRange {
  family: 4 | 6;
  start: bigint;
  end: bigint;
}

/** The address as a number (from the fixed-width sort key). */
export function ipNumber(ip: ParsedIp): bigint {
  return BigInt(`0x${ip.sortKey.slice(1)}`);
}

/**
 * Parses "a.b.c.d/n" or "x::/n" (host bits must be zero: "10.0.0.1/24" is refused, as
 * Kubernetes' canonical CIDR form requires) into a range; a string error otherwise.
 */
export function parseCidr(s: unknown): AddressRange | string {
  if (typeof s !== 'string') return 'must be a string';
  const slash = s.indexOf('/');
  if (slash < 0) return `${s} is not a CIDR (address/prefix-length)`;
  const ip = parseIp(s.slice(0, slash));
  const lenText = s.slice(slash + 1);
  if (!ip || ip.address !== s.slice(0, slash)) return `${s}: ${s.slice(0, slash)} is not a canonical IP address`;
  const bits = ip.family === 4 ? 32 : 128;
  if (!/^(0|[1-9][0-9]{0,2})$/.test(lenText) || Number(lenText) > bits) return `${s}: prefix length must be 0-${bits}`;
  const host = (1n << BigInt(bits - Number(lenText))) - 1n;
  const start = ipNumber(ip);
  if ((start & host) !== 0n) return `${s} has host bits set (did you mean ${formatNumber(start & ~host, ip.family)}/${lenText}?)`;
  return { family: ip.family, start, end: start | host };
}

/** Parses a CIDR, an "a-b" range (same family, a <= b) or a single address. */
export function parseAddressRange(s: unknown): AddressRange | string {
  if (typeof s !== 'string') return 'must be a string';
  if (s.includes('/')) return parseCidr(s);
  const dash = s.indexOf('-');
  const parts = dash < 0 ? [s, s] : [s.slice(0, dash), s.slice(dash + 1)];
  const a = parseIp(parts[0]), b = parseIp(parts[1]);
  if (!a || !b || a.address !== parts[0] || b.address !== parts[1]) return `${s} is not a CIDR, an address or a range "first-last" of canonical addresses`;
  if (a.family !== b.family) return `${s} mixes IPv4 and IPv6`;
  const start = ipNumber(a), end = ipNumber(b);
  if (start > end) return `${s}: the first address is after the last`;
  return { family: a.family, start, end };
}

export function rangeContains(r: AddressRange, ip: ParsedIp): boolean {
  if (r.family !== ip.family) return false;
  const n = ipNumber(ip);
  return n >= r.start && n <= r.end;
}

export function rangesOverlap(a: AddressRange, b: AddressRange): boolean {
  return a.family === b.family && a.start <= b.end && b.start <= a.end;
}

/** Canonical text of an address given as a number. */
export function formatNumber(n: bigint, family: 4 | 6): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((s) => ((n >> s) & 255n).toString()).join('.');
  const groups: string[] = [];
  for (let i = 7; i >= 0; i--) groups.push(((n >> BigInt(i * 16)) & 0xffffn).toString(16));
  return parseIp(groups.join(':'))?.address ?? groups.join(':');
}
