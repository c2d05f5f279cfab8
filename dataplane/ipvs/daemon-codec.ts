// IPVS sync-daemon attributes (IPVS_CMD_NEW_DAEMON / DEL_DAEMON / GET_DAEMON), pure. Numbers from
// include/uapi/linux/ip_vs.h; semantics from net/netfilter/ipvs/ip_vs_ctl.c
// (ip_vs_genl_new_daemon, ip_vs_genl_del_daemon, ip_vs_genl_fill_daemon) and ip_vs_sync.c
// (start_sync_thread), as seen on Linux 6.1 (test/fixtures/netlink/daemon-*.hex):
//  - requests nest the daemon in CMD_ATTR_DAEMON; NEW_DAEMON needs STATE, MCAST_IFN and SYNC_ID,
//    DEL_DAEMON only STATE. ipvsadm sends the optional ones in the order STATE, MCAST_IFN,
//    SYNC_ID, SYNC_MAXLEN, MCAST_PORT, MCAST_TTL, MCAST_GROUP(6); we send the same bytes.
//  - integers are in host order (SYNC_MAXLEN, MCAST_PORT included); only MCAST_GROUP is a __be32.
//  - an omitted or zero SYNC_MAXLEN / MCAST_PORT / MCAST_TTL and an omitted group mean the
//    kernel's defaults (from the MTU / 8848 / 1 / 224.0.0.81), which GET_DAEMON then reports.
//  - kernels before 4.3 report only STATE, MCAST_IFN and SYNC_ID, so the rest decode as optional.
import { ipFamily } from '../../api/ip.ts';
import { addressToBytes, bytesToAddress } from './address.ts';
import { CMD_ATTR, lookup, uint } from './codec.ts';
import { Attrs, AttrWriter, NetlinkCodecError } from './nla.ts';
import type { SyncDaemon } from './types.ts';

/** enum IPVS_DAEMON_ATTR_*, nested in CMD_ATTR.DAEMON. */
export const DAEMON_ATTR = {
  STATE: 1, MCAST_IFN: 2, SYNC_ID: 3, SYNC_MAXLEN: 4, MCAST_GROUP: 5, MCAST_GROUP6: 6, MCAST_PORT: 7, MCAST_TTL: 8,
} as const;

/** IP_VS_STATE_MASTER / IP_VS_STATE_BACKUP. */
export const DAEMON_STATE: Record<SyncDaemon['state'], number> = { master: 1, backup: 2 };

/** What start_sync_thread fills in for an omitted group, port or TTL (IP_VS_SYNC_GROUP / _PORT). */
export const SYNC_DEFAULTS = { group: '224.0.0.81', port: 8848, ttl: 1 } as const;

/** IP_VS_IFNAME_MAXLEN, the NUL included. */
const IFNAME_MAXLEN = 16;

function ifname(v: unknown, field: string): string {
  if (typeof v !== 'string' || v === '' || v.includes('\0') || Buffer.byteLength(v) >= IFNAME_MAXLEN) {
    throw new NetlinkCodecError(field, `${JSON.stringify(v)} is not an interface name of 1..${IFNAME_MAXLEN - 1} bytes`);
  }
  return v;
}

/** The group attribute: MCAST_GROUP (4 bytes, network order) or MCAST_GROUP6 (16 bytes). */
function groupAttr(group: string): { type: number; bytes: Buffer } {
  const fam = ipFamily(group);
  if (fam === undefined) throw new NetlinkCodecError('daemon.group', `${JSON.stringify(group)} is not an IP address`);
  const bytes = addressToBytes(fam, group, 'daemon.group');
  return fam === 4 ? { type: DAEMON_ATTR.MCAST_GROUP, bytes: bytes.subarray(0, 4) } : { type: DAEMON_ATTR.MCAST_GROUP6, bytes };
}

/**
 * NEW_DAEMON. SYNC_ID goes out as a u32 but sync messages carry it in one byte (ipvsadm refuses
 * more than 255), so 0..255 only. Zero maxLen/port/ttl are left out, as ipvsadm does.
 */
export function encodeDaemon(d: SyncDaemon): Buffer {
  const state = lookup(DAEMON_STATE, d.state, 'daemon.state');
  const ifn = ifname(d.interface, 'daemon.interface');
  const syncId = uint(d.syncId, 0xff, 'daemon.syncId');
  const maxLen = d.maxLen === undefined ? 0 : uint(d.maxLen, 0xffff, 'daemon.maxLen');
  const port = d.port === undefined ? 0 : uint(d.port, 0xffff, 'daemon.port');
  const ttl = d.ttl === undefined ? 0 : uint(d.ttl, 0xff, 'daemon.ttl');
  const group = d.group === undefined ? undefined : groupAttr(d.group);
  return new AttrWriter().nested(CMD_ATTR.DAEMON, (w) => {
    w.u32(DAEMON_ATTR.STATE, state).str(DAEMON_ATTR.MCAST_IFN, ifn).u32(DAEMON_ATTR.SYNC_ID, syncId);
    if (maxLen) w.u16(DAEMON_ATTR.SYNC_MAXLEN, maxLen);
    if (port) w.u16(DAEMON_ATTR.MCAST_PORT, port);
    if (ttl) w.u8(DAEMON_ATTR.MCAST_TTL, ttl);
    if (group) w.put(group.type, group.bytes);
  }).bytes();
}

/** DEL_DAEMON: ip_vs_genl_del_daemon reads STATE alone. */
export function encodeDaemonState(state: SyncDaemon['state']): Buffer {
  const n = lookup(DAEMON_STATE, state, 'daemon.state');
  return new AttrWriter().nested(CMD_ATTR.DAEMON, (w) => w.u32(DAEMON_ATTR.STATE, n)).bytes();
}

/** One GET_DAEMON dump message (the kernel nests it without NLA_F_NESTED; Attrs ignores the flag). */
export function decodeDaemon(top: Attrs): SyncDaemon {
  const a = top.need(top.nested(CMD_ATTR.DAEMON, 'daemon'), 'daemon');
  const s = a.need(a.u32(DAEMON_ATTR.STATE, 'state'), 'state');
  const state = s === DAEMON_STATE.master ? 'master' : s === DAEMON_STATE.backup ? 'backup' : undefined;
  if (!state) throw new NetlinkCodecError(`${a.where}.state`, `${s} is neither master (1) nor backup (2)`);
  const d: SyncDaemon = {
    state,
    interface: a.need(a.str(DAEMON_ATTR.MCAST_IFN), 'mcast_ifn'),
    syncId: a.need(a.u32(DAEMON_ATTR.SYNC_ID, 'sync_id'), 'sync_id'),
  };
  const maxLen = a.u16(DAEMON_ATTR.SYNC_MAXLEN, 'sync_maxlen');
  if (maxLen !== undefined) d.maxLen = maxLen;
  const g4 = a.bytes(DAEMON_ATTR.MCAST_GROUP, 'mcast_group', 4);
  const g6 = a.bytes(DAEMON_ATTR.MCAST_GROUP6, 'mcast_group6', 16);
  if (g4) d.group = bytesToAddress(4, g4);
  else if (g6) d.group = bytesToAddress(6, g6);
  const port = a.u16(DAEMON_ATTR.MCAST_PORT, 'mcast_port');
  if (port !== undefined) d.port = port;
  const ttl = a.u8(DAEMON_ATTR.MCAST_TTL, 'mcast_ttl');
  if (ttl !== undefined) d.ttl = ttl;
  return d;
}

/** Master before backup, the order of the kernel's dump. */
export function compareDaemons(a: SyncDaemon, b: SyncDaemon): number {
  return (DAEMON_STATE[a.state] ?? 0) - (DAEMON_STATE[b.state] ?? 0);
}

/** "master on d0 (syncid 5)", for error messages. */
export function describeDaemon(d: Pick<SyncDaemon, 'state' | 'interface' | 'syncId'>): string {
  return `${d.state} on ${d.interface} (syncid ${d.syncId})`;
}
