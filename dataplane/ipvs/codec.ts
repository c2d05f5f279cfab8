// IPVS generic-netlink attribute codec, pure. Numbers and semantics from include/uapi/linux/ip_vs.h
// and net/netfilter/ipvs/ip_vs_ctl.c (ip_vs_genl_parse_service/_dest, ip_vs_genl_fill_service/_dest).
// Encoders validate their input and throw NetlinkCodecError naming the field; decoders turn the
// kernel's attribute sets into the plain objects of types.ts, in canonical form (see decodeService).
import { serviceKey } from '../../api/plan.ts';
import { addressToBytes, afOf, bytesToAddress, canonicalIp, familyOfAf, hostPort } from './address.ts';
import { Attrs, AttrWriter, hostU32s, NetlinkCodecError, readU32 } from './nla.ts';
import type {
  ForwardMethod, IpvsDestination, IpvsDestinationStats, IpvsInfo, IpvsService, IpvsServiceKey,
  IpvsServiceStats, IpvsTimeouts, IpvsTunnelType,
} from './types.ts';
import type { Protocol } from '../../api/plan.ts';

export const IPVS_GENL_NAME = 'IPVS';
export const IPVS_GENL_VERSION = 1;

/** enum IPVS_CMD_*. */
export const CMD = {
  NEW_SERVICE: 1, SET_SERVICE: 2, DEL_SERVICE: 3, GET_SERVICE: 4,
  NEW_DEST: 5, SET_DEST: 6, DEL_DEST: 7, GET_DEST: 8, NEW_DAEMON: 9, DEL_DAEMON: 10, GET_DAEMON: 11,
  SET_CONFIG: 12, GET_CONFIG: 13, SET_INFO: 14, GET_INFO: 15, ZERO: 16, FLUSH: 17,
} as const;

/** enum IPVS_CMD_ATTR_*: the top level of every IPVS message. */
export const CMD_ATTR = { SERVICE: 1, DEST: 2, DAEMON: 3, TIMEOUT_TCP: 4, TIMEOUT_TCP_FIN: 5, TIMEOUT_UDP: 6 } as const;

/** enum IPVS_SVC_ATTR_*, nested in CMD_ATTR.SERVICE. */
export const SVC_ATTR = {
  AF: 1, PROTOCOL: 2, ADDR: 3, PORT: 4, FWMARK: 5, SCHED_NAME: 6, FLAGS: 7, TIMEOUT: 8, NETMASK: 9,
  STATS: 10, PE_NAME: 11, STATS64: 12,
} as const;

/** enum IPVS_DEST_ATTR_*, nested in CMD_ATTR.DEST. TUN_* exist since Linux 5.2 (TUN_FLAGS 5.3). */
export const DEST_ATTR = {
  ADDR: 1, PORT: 2, FWD_METHOD: 3, WEIGHT: 4, U_THRESH: 5, L_THRESH: 6, ACTIVE_CONNS: 7, INACT_CONNS: 8,
  PERSIST_CONNS: 9, STATS: 10, ADDR_FAMILY: 11, STATS64: 12, TUN_TYPE: 13, TUN_PORT: 14, TUN_FLAGS: 15,
} as const;

/** enum IPVS_STATS_ATTR_*: u32 (STATS, except the byte counters) or u64 (STATS64). */
export const STATS_ATTR = { CONNS: 1, INPKTS: 2, OUTPKTS: 3, INBYTES: 4, OUTBYTES: 5 } as const;
export const INFO_ATTR = { VERSION: 1, CONN_TAB_SIZE: 2 } as const;

/** IP_VS_SVC_F_HASHED: set by the kernel on every live service; never user intent. */
export const SVC_F_HASHED = 0x0002;
/** IP_VS_SCHEDNAME_MAXLEN / IP_VS_PENAME_MAXLEN include the NUL. */
const NAME_MAXLEN = 16;

export const PROTO_NUM: Record<Protocol, number> = { TCP: 6, UDP: 17, SCTP: 132 };
const PROTO_NAME = new Map<number, Protocol>(Object.entries(PROTO_NUM).map(([n, v]) => [v, n as Protocol]));
/** IP_VS_CONN_F_MASQ..BYPASS, the low 3 bits (IP_VS_CONN_F_FWD_MASK) of a destination's conn flags. */
export const FWD_NUM: Record<ForwardMethod, number> = { masq: 0, local: 1, tunnel: 2, droute: 3, bypass: 4 };
const FWD_NAME = new Map<number, ForwardMethod>(Object.entries(FWD_NUM).map(([n, v]) => [v, n as ForwardMethod]));
/** IP_VS_CONN_F_TUNNEL_TYPE_*. */
export const TUN_NUM: Record<IpvsTunnelType, number> = { ipip: 0, gue: 1, gre: 2 };
const TUN_NAME = new Map<number, IpvsTunnelType>(Object.entries(TUN_NUM).map(([n, v]) => [v, n as IpvsTunnelType]));

// ---- validation -------------------------------------------------------------------------------

export function uint(v: unknown, max: number, field: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) {
    throw new NetlinkCodecError(field, `${JSON.stringify(v)} is not an integer 0..${max}`);
  }
  return v;
}

export function name(v: unknown, field: string, optional: boolean): string {
  if (optional && (v === undefined || v === '')) return '';
  if (typeof v !== 'string' || !/^[\w-]+$/.test(v) || Buffer.byteLength(v) >= NAME_MAXLEN) {
    throw new NetlinkCodecError(field, `${JSON.stringify(v)} is not a module name of 1..${NAME_MAXLEN - 1} word characters`);
  }
  return v;
}

export function family(v: unknown, field: string): 4 | 6 {
  if (v !== 4 && v !== 6) throw new NetlinkCodecError(field, `${JSON.stringify(v)} is not 4 or 6`);
  return v;
}

export function lookup<K extends string>(table: Record<K, number>, v: unknown, field: string): number {
  if (typeof v !== 'string' || !Object.hasOwn(table, v)) {
    throw new NetlinkCodecError(field, `${JSON.stringify(v)} is not one of ${Object.keys(table).join(', ')}`);
  }
  return table[v as K];
}

// ---- encoding ---------------------------------------------------------------------------------

/** The identifying attributes of a service: AF plus either FWMARK or PROTOCOL/ADDR/PORT. */
function putServiceKey(w: AttrWriter, k: IpvsServiceKey): void {
  const fam = family(k.family, 'service.family');
  w.u16(SVC_ATTR.AF, afOf(fam));
  if (k.fwmark) {
    w.u32(SVC_ATTR.FWMARK, uint(k.fwmark, 0xffffffff, 'service.fwmark'));
    return;
  }
  w.u16(SVC_ATTR.PROTOCOL, lookup(PROTO_NUM, k.protocol, 'service.protocol'));
  w.put(SVC_ATTR.ADDR, addressToBytes(fam, k.address, 'service.address'));
  w.be16(SVC_ATTR.PORT, uint(k.port, 0xffff, 'service.port'));
}

/**
 * The persistence netmask shares one u32 attribute between two meanings: for IPv4 it is a __be32
 * mask (its bytes are the dotted quad), for IPv6 a prefix length in host order (ip_vs_ctl.c checks
 * 1..128 and rejects anything else with EINVAL).
 */
function netmaskBytes(fam: 4 | 6, mask: string): Buffer {
  if (fam === 4) return addressToBytes(4, mask, 'service.netmask').subarray(0, 4);
  const n = /^\d{1,3}$/.test(mask) ? Number(mask) : NaN;
  if (!(n >= 1 && n <= 128)) throw new NetlinkCodecError('service.netmask', `${JSON.stringify(mask)} is not an IPv6 prefix length 1..128`);
  return hostU32s(n);
}

/** Service attributes for NEW_SERVICE/SET_SERVICE: the kernel requires SCHED_NAME, FLAGS, TIMEOUT and NETMASK. */
export function encodeService(svc: IpvsService): Buffer {
  const scheduler = name(svc.scheduler, 'service.scheduler', false);
  const pe = name(svc.pe, 'service.pe', true);
  // struct ip_vs_flags { flags, mask }: the kernel replaces the bits in mask; all of them here,
  // so the service ends up with exactly these flags (HASHED is re-added by the kernel itself).
  const flags = hostU32s(uint(svc.flags, 0xffffffff, 'service.flags') & ~SVC_F_HASHED, 0xffffffff);
  return new AttrWriter().nested(CMD_ATTR.SERVICE, (w) => {
    putServiceKey(w, svc);
    w.str(SVC_ATTR.SCHED_NAME, scheduler);
    if (pe) w.str(SVC_ATTR.PE_NAME, pe);
    w.put(SVC_ATTR.FLAGS, flags);
    w.u32(SVC_ATTR.TIMEOUT, uint(svc.timeout, 0xffffffff, 'service.timeout'));
    w.put(SVC_ATTR.NETMASK, netmaskBytes(svc.family, svc.netmask));
  }).bytes();
}

/** Only the key: DEL_SERVICE, and the service selector of GET_DEST/NEW_DEST/SET_DEST/DEL_DEST. */
export function encodeServiceKey(k: IpvsServiceKey): Buffer {
  return new AttrWriter().nested(CMD_ATTR.SERVICE, (w) => putServiceKey(w, k)).bytes();
}

type DestKey = Pick<IpvsDestination, 'family' | 'address' | 'port'>;

function putDestKey(w: AttrWriter, d: DestKey, field: string): void {
  const fam = family(d.family, `${field}.family`);
  w.put(DEST_ATTR.ADDR, addressToBytes(fam, d.address, `${field}.address`));
  w.be16(DEST_ATTR.PORT, uint(d.port, 0xffff, `${field}.port`));
  // Without ADDR_FAMILY the kernel assumes the service's family (mixed families need TUN).
  w.u16(DEST_ATTR.ADDR_FAMILY, afOf(fam));
}

/**
 * A destination's numbers as the kernel takes them, each checked (a NetlinkCodecError naming the
 * field) in this order, before the service key; shared by encodeDestination and encoder.ts.
 */
export function destinationNumbers(d: IpvsDestination, f: string) {
  return {
    fwd: lookup(FWD_NUM, d.forward, `${f}.forward`),
    // The kernel keeps weight in an int and answers ERANGE for a negative one.
    weight: uint(d.weight, 0x7fffffff, `${f}.weight`),
    upper: uint(d.upperThreshold, 0xffffffff, `${f}.upperThreshold`),
    lower: uint(d.lowerThreshold, 0xffffffff, `${f}.lowerThreshold`),
    tunType: d.tunnelType === undefined ? undefined : lookup(TUN_NUM, d.tunnelType, `${f}.tunnelType`),
    tunPort: d.tunnelPort === undefined ? undefined : uint(d.tunnelPort, 0xffff, `${f}.tunnelPort`),
    tunFlags: d.tunnelFlags === undefined ? undefined : uint(d.tunnelFlags, 0xffff, `${f}.tunnelFlags`),
  };
}

/** NEW_DEST/SET_DEST: the service key plus a full destination (FWD_METHOD, WEIGHT, U/L_THRESH required). */
export function encodeDestination(svc: IpvsServiceKey, d: IpvsDestination): Buffer {
  const f = 'destination';
  const { fwd, weight, upper, lower, tunType, tunPort, tunFlags } = destinationNumbers(d, f);
  return Buffer.concat([
    encodeServiceKey(svc),
    new AttrWriter().nested(CMD_ATTR.DEST, (w) => {
      putDestKey(w, d, f);
      w.u32(DEST_ATTR.FWD_METHOD, fwd).u32(DEST_ATTR.WEIGHT, weight);
      w.u32(DEST_ATTR.U_THRESH, upper).u32(DEST_ATTR.L_THRESH, lower);
      // Sent only when asked for, so kernels before 5.2 (which lack them) still accept the rest.
      if (tunType !== undefined) w.u8(DEST_ATTR.TUN_TYPE, tunType);
      if (tunPort !== undefined) w.be16(DEST_ATTR.TUN_PORT, tunPort);
      if (tunFlags !== undefined) w.u16(DEST_ATTR.TUN_FLAGS, tunFlags);
    }).bytes(),
  ]);
}

/** DEL_DEST: the service key plus the destination's address and port. */
export function encodeDestinationKey(svc: IpvsServiceKey, d: DestKey): Buffer {
  return Buffer.concat([
    encodeServiceKey(svc),
    new AttrWriter().nested(CMD_ATTR.DEST, (w) => putDestKey(w, d, 'destination')).bytes(),
  ]);
}

/** SET_CONFIG. The kernel leaves a timeout unchanged when it is 0 (or absent). */
export function encodeTimeouts(t: IpvsTimeouts): Buffer {
  return new AttrWriter()
    .u32(CMD_ATTR.TIMEOUT_TCP, uint(t.tcp, 0x7fffffff, 'timeouts.tcp'))
    .u32(CMD_ATTR.TIMEOUT_TCP_FIN, uint(t.tcpFin, 0x7fffffff, 'timeouts.tcpFin'))
    .u32(CMD_ATTR.TIMEOUT_UDP, uint(t.udp, 0x7fffffff, 'timeouts.udp'))
    .bytes();
}

// ---- decoding ---------------------------------------------------------------------------------

const num = (v: bigint | number | undefined): number => (v === undefined ? 0 : Number(v));

/** Prefers STATS64 (all u64, Linux 4.7+); falls back to STATS (u32 counters, u64 byte counts). */
function decodeStats(a: Attrs, stats: number, stats64: number): IpvsServiceStats | undefined {
  const s64 = a.nested(stats64, 'stats64');
  if (s64) {
    return {
      conns: num(s64.u64(STATS_ATTR.CONNS, 'conns')), inPkts: num(s64.u64(STATS_ATTR.INPKTS, 'inpkts')),
      outPkts: num(s64.u64(STATS_ATTR.OUTPKTS, 'outpkts')), inBytes: num(s64.u64(STATS_ATTR.INBYTES, 'inbytes')),
      outBytes: num(s64.u64(STATS_ATTR.OUTBYTES, 'outbytes')),
    };
  }
  const s = a.nested(stats, 'stats');
  if (!s) return undefined;
  return {
    conns: num(s.u32(STATS_ATTR.CONNS, 'conns')), inPkts: num(s.u32(STATS_ATTR.INPKTS, 'inpkts')),
    outPkts: num(s.u32(STATS_ATTR.OUTPKTS, 'outpkts')), inBytes: num(s.u64(STATS_ATTR.INBYTES, 'inbytes')),
    outBytes: num(s.u64(STATS_ATTR.OUTBYTES, 'outbytes')),
  };
}

/**
 * One CMD_ATTR_SERVICE set (a GET_SERVICE reply). Canonical form: HASHED is masked out of flags;
 * a firewall-mark service (which the kernel reports without protocol, address and port, and
 * stores as TCP) reads back as TCP, the family's zero address, port 0; pe is absent when unset.
 */
/** `stats: false` skips the traffic counters (a nested attribute of 64-bit values: most of the cost). */
export function decodeService(top: Attrs, opts: { stats?: boolean } = {}): IpvsService {
  const a = top.need(top.nested(CMD_ATTR.SERVICE, 'service'), 'service');
  const fam = familyOfAf(a.need(a.u16(SVC_ATTR.AF, 'af'), 'af'), `${a.where}.af`);
  const fwmark = a.u32(SVC_ATTR.FWMARK, 'fwmark') ?? 0;
  let protocol: Protocol = 'TCP';
  let address = fam === 4 ? '0.0.0.0' : '::';
  let port = 0;
  if (!fwmark) {
    const p = a.need(a.u16(SVC_ATTR.PROTOCOL, 'protocol'), 'protocol');
    const known = PROTO_NAME.get(p);
    if (!known) throw new NetlinkCodecError(`${a.where}.protocol`, `IP protocol ${p} is not TCP, UDP or SCTP`);
    protocol = known;
    address = bytesToAddress(fam, a.need(a.bytes(SVC_ATTR.ADDR, 'addr', fam === 4 ? 4 : 16), 'addr'));
    port = a.need(a.be16(SVC_ATTR.PORT, 'port'), 'port');
  }
  const flags = a.need(a.bytes(SVC_ATTR.FLAGS, 'flags', 8), 'flags');
  const mask = a.need(a.bytes(SVC_ATTR.NETMASK, 'netmask', 4), 'netmask');
  const svc: IpvsService = {
    family: fam, protocol, address, port,
    scheduler: a.need(a.str(SVC_ATTR.SCHED_NAME), 'sched_name'),
    // struct ip_vs_flags as the kernel fills it: { svc->flags, ~0 }.
    flags: (readU32(flags, 0) & ~SVC_F_HASHED) >>> 0,
    timeout: a.need(a.u32(SVC_ATTR.TIMEOUT, 'timeout'), 'timeout'),
    netmask: fam === 4 ? bytesToAddress(4, mask) : String(readU32(mask, 0)),
  };
  if (fwmark) svc.fwmark = fwmark;
  const pe = a.str(SVC_ATTR.PE_NAME);
  if (pe) svc.pe = pe;
  const stats = opts.stats === false ? undefined : decodeStats(a, SVC_ATTR.STATS, SVC_ATTR.STATS64);
  if (stats) svc.stats = stats;
  return svc;
}

/**
 * One CMD_ATTR_DEST set (a GET_DEST reply). `serviceFamily` is used when the kernel omits
 * ADDR_FAMILY (before Linux 4.3). Tunnel attributes are reported by the kernel for every
 * destination but only mean something for TUN, so they are decoded for 'tunnel' only.
 */
export function decodeDestination(top: Attrs, serviceFamily: 4 | 6): IpvsDestination {
  const a = top.need(top.nested(CMD_ATTR.DEST, 'destination'), 'destination');
  const af = a.u16(DEST_ATTR.ADDR_FAMILY, 'addr_family');
  const fam = af === undefined ? serviceFamily : familyOfAf(af, `${a.where}.addr_family`);
  const fwdNum = a.need(a.u32(DEST_ATTR.FWD_METHOD, 'fwd_method'), 'fwd_method') & 0x7;
  const forward = FWD_NAME.get(fwdNum);
  if (!forward) throw new NetlinkCodecError(`${a.where}.fwd_method`, `${fwdNum} is not a known forwarding method`);
  const d: IpvsDestination = {
    family: fam,
    address: bytesToAddress(fam, a.need(a.bytes(DEST_ATTR.ADDR, 'addr', fam === 4 ? 4 : 16), 'addr')),
    port: a.need(a.be16(DEST_ATTR.PORT, 'port'), 'port'),
    forward,
    weight: a.need(a.u32(DEST_ATTR.WEIGHT, 'weight'), 'weight') | 0,
    upperThreshold: a.need(a.u32(DEST_ATTR.U_THRESH, 'u_thresh'), 'u_thresh'),
    lowerThreshold: a.need(a.u32(DEST_ATTR.L_THRESH, 'l_thresh'), 'l_thresh'),
  };
  if (forward === 'tunnel') {
    const t = a.u8(DEST_ATTR.TUN_TYPE, 'tun_type') ?? 0;
    const type = TUN_NAME.get(t);
    if (!type) throw new NetlinkCodecError(`${a.where}.tun_type`, `${t} is not ipip (0), gue (1) or gre (2)`);
    d.tunnelType = type;
    d.tunnelPort = a.be16(DEST_ATTR.TUN_PORT, 'tun_port') ?? 0;
    d.tunnelFlags = a.u16(DEST_ATTR.TUN_FLAGS, 'tun_flags') ?? 0;
  }
  if (a.has(DEST_ATTR.ACTIVE_CONNS) || a.has(DEST_ATTR.STATS) || a.has(DEST_ATTR.STATS64)) {
    const traffic = decodeStats(a, DEST_ATTR.STATS, DEST_ATTR.STATS64);
    const stats: IpvsDestinationStats = {
      activeConns: a.u32(DEST_ATTR.ACTIVE_CONNS, 'active_conns') ?? 0,
      inactiveConns: a.u32(DEST_ATTR.INACT_CONNS, 'inact_conns') ?? 0,
      persistConns: a.u32(DEST_ATTR.PERSIST_CONNS, 'persist_conns') ?? 0,
      conns: traffic?.conns ?? 0, inPkts: traffic?.inPkts ?? 0, outPkts: traffic?.outPkts ?? 0,
      inBytes: traffic?.inBytes ?? 0, outBytes: traffic?.outBytes ?? 0,
    };
    d.stats = stats;
  }
  return d;
}

/** GET_INFO reply: VERSION is IP_VS_VERSION_CODE (0x010201 → "1.2.1"). */
export function decodeInfo(a: Attrs): IpvsInfo {
  const v = a.need(a.u32(INFO_ATTR.VERSION, 'version'), 'version');
  return {
    version: `${(v >> 16) & 0xff}.${(v >> 8) & 0xff}.${v & 0xff}`,
    connTableSize: a.need(a.u32(INFO_ATTR.CONN_TAB_SIZE, 'conn_tab_size'), 'conn_tab_size'),
  };
}

/** GET_CONFIG reply (seconds). The kernel omits TCP/TCP_FIN without CONFIG_IP_VS_PROTO_TCP, UDP likewise. */
export function decodeTimeouts(a: Attrs): IpvsTimeouts {
  return {
    tcp: a.u32(CMD_ATTR.TIMEOUT_TCP, 'timeout_tcp') ?? 0,
    tcpFin: a.u32(CMD_ATTR.TIMEOUT_TCP_FIN, 'timeout_tcp_fin') ?? 0,
    udp: a.u32(CMD_ATTR.TIMEOUT_UDP, 'timeout_udp') ?? 0,
  };
}

// ---- keys, order and names ----------------------------------------------------------------------

/** The plan's serviceKey() form for address services, "FWM<family>/<mark>" for fwmark ones. */
export function serviceKeyOf(k: IpvsServiceKey): string {
  if (k.fwmark) return `FWM${k.family}/${k.fwmark}`;
  return serviceKey(k.protocol, canonicalIp(k.family, k.address, 'service.address'), k.port);
}

const byString = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * `list` in service-key order, each key made once: a comparator that made both keys per comparison
 * was 43% of listing 10,000 services under emulation (bench/RESULTS.md, 2026-12-06, run 9).
 */
export function sortedByServiceKey<T extends IpvsServiceKey>(list: readonly T[]): T[] {
  return list.map((s) => ({ s, k: serviceKeyOf(s) })).sort((a, b) => byString(a.k, b.k)).map((x) => x.s);
}

/** Destinations: by canonical address text, then port (the order types.ts promises). */
export function compareDestinations(a: DestKey, b: DestKey): number {
  return byString(canonicalIp(a.family, a.address, 'a'), canonicalIp(b.family, b.address, 'b')) || a.port - b.port;
}

/** "TCP 203.0.113.10:80", "UDP [2001:db8::1]:53", "FWM 5 (IPv4)": as people read ipvsadm. */
export function describeService(k: IpvsServiceKey): string {
  if (k.fwmark) return `FWM ${k.fwmark} (IPv${k.family})`;
  return `${k.protocol} ${hostPort(k.address, k.port)}`;
}

export function describeDestination(d: DestKey): string {
  return hostPort(d.address, d.port);
}
