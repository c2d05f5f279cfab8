// Kernel-side IPVS objects, in the kernel's own words (include/uapi/linux/ip_vs.h). These are what
// the agent reads back from and writes to the kernel; they never carry Kubernetes names.
import type { Protocol } from '../../api/plan.ts';

/** ip_vs.h IP_VS_CONN_F_* forwarding methods (low bits of the destination conn flags). */
export type ForwardMethod = 'masq' | 'local' | 'tunnel' | 'droute' | 'bypass';
export type IpvsTunnelType = 'ipip' | 'gue' | 'gre';

/** Identity of a virtual service: either (family, protocol, address, port) or a firewall mark. */
export interface IpvsServiceKey {
  family: 4 | 6;
  protocol: Protocol;
  address: string;
  port: number;
  /** Non-zero: a fwmark service; protocol/address/port are then ignored by the kernel. */
  fwmark?: number;
}

export interface IpvsService extends IpvsServiceKey {
  scheduler: string;
  /** IP_VS_SVC_F_* bits: PERSISTENT=0x1, HASHED=0x2 (kernel-owned), ONEPACKET=0x4, SCHED1..3=0x8/0x10/0x20. */
  flags: number;
  /** Persistence timeout in seconds; 0 = not persistent. */
  timeout: number;
  /** Persistence netmask: dotted IPv4 mask, or IPv6 prefix length as a string ("128"). */
  netmask: string;
  /** Persistence engine name (e.g. "sip"); empty when none. */
  pe?: string;
  /** Present on services read back from the kernel (traffic counters since the service was added). */
  stats?: IpvsServiceStats;
}

/** Service-level counters (IPVS_SVC_ATTR_STATS64, or STATS on old kernels). */
export interface IpvsServiceStats {
  conns: number;
  inPkts: number;
  outPkts: number;
  inBytes: number;
  outBytes: number;
}

export interface IpvsDestinationStats {
  activeConns: number;
  inactiveConns: number;
  persistConns: number;
  conns: number;
  inPkts: number;
  outPkts: number;
  inBytes: number;
  outBytes: number;
}

export interface IpvsDestination {
  family: 4 | 6;
  address: string;
  port: number;
  forward: ForwardMethod;
  weight: number;
  upperThreshold: number;
  lowerThreshold: number;
  tunnelType?: IpvsTunnelType;
  tunnelPort?: number;
  tunnelFlags?: number;
  /** Present on destinations read back from the kernel. */
  stats?: IpvsDestinationStats;
}

export interface IpvsServiceState {
  service: IpvsService;
  /** Sorted by address, then port. */
  destinations: IpvsDestination[];
}

export interface IpvsInfo {
  version: string;
  connTableSize: number;
}

export interface IpvsTimeouts {
  tcp: number;
  tcpFin: number;
  udp: number;
}

/**
 * One IPVS connection-synchronisation daemon (what `ipvsadm --start-daemon` starts). A network
 * namespace runs at most one master and one backup (both may run together).
 */
export interface SyncDaemon {
  state: 'master' | 'backup';
  /** The multicast interface (IPVS_DAEMON_ATTR_MCAST_IFN); at most 15 bytes (IP_VS_IFNAME_MAXLEN 16 with the NUL). */
  interface: string;
  /** 0..255: the sync messages carry it in one byte. */
  syncId: number;
  /** Largest sync message payload; absent or 0 = the kernel's default (from the MTU). */
  maxLen?: number;
  /** Multicast group (IPv4 or IPv6); absent = the kernel's default 224.0.0.81. */
  group?: string;
  /** UDP port; absent or 0 = the kernel's default 8848. */
  port?: number;
  /** Multicast TTL; absent or 0 = the kernel's default 1. */
  ttl?: number;
}

/** One write of a batch: the arguments of the IpvsKernel method of the same name. */
export type IpvsWrite =
  | { kind: 'addService' | 'updateService'; service: IpvsService }
  | { kind: 'deleteService'; service: IpvsServiceKey }
  | { kind: 'addDestination' | 'updateDestination'; service: IpvsServiceKey; destination: IpvsDestination }
  | { kind: 'deleteDestination'; service: IpvsServiceKey; destination: Pick<IpvsDestination, 'address' | 'port' | 'family'> };

/**
 * What became of one write: 'ok' (the kernel accepted it), 'failed' (an IpvsError, as the one-op
 * method would have thrown), or 'skipped' (an earlier addService of the same service failed).
 */
export type IpvsWriteResult = { status: 'ok' } | { status: 'failed'; error: Error } | { status: 'skipped' };

/**
 * The narrow kernel interface the agent depends on. The netlink client implements it against a
 * real kernel; the unit-test fake implements it in memory and fails the way the kernel does
 * (EEXIST, ENOENT/ESRCH, EINVAL on unknown schedulers or non-unicast destinations).
 */
export interface IpvsKernel {
  /** One service dump plus one destination dump per service (pipelined). Sorted by service key. */
  dump(): Promise<IpvsServiceState[]>;
  /**
   * One service as dump() would show it (GET_SERVICE for that key plus its destination dump), or
   * undefined when the kernel has no such service. Optional: without it every sync is full.
   */
  readService?(key: IpvsServiceKey): Promise<IpvsServiceState | undefined>;
  /**
   * Every service without its destinations (one GET_SERVICE dump), sorted by service key; with
   * `stats: false` without traffic counters either (a nested attribute of 64-bit values: a fifth of
   * the cost of listing 10,000 services under emulation). Optional: without it the listing sync
   * (sync/listing.ts) is a full one.
   */
  services?(opts?: { stats?: boolean }): Promise<IpvsService[]>;
  /**
   * The writes in order, one result per write (same index). A write whose service's addService
   * failed earlier in the batch is skipped. Optional: callers fall back to the one-op methods.
   */
  applyBatch?(writes: readonly IpvsWrite[]): Promise<IpvsWriteResult[]>;
  addService(svc: IpvsService): Promise<void>;
  updateService(svc: IpvsService): Promise<void>;
  deleteService(key: IpvsServiceKey): Promise<void>;
  addDestination(svc: IpvsServiceKey, dest: IpvsDestination): Promise<void>;
  updateDestination(svc: IpvsServiceKey, dest: IpvsDestination): Promise<void>;
  deleteDestination(svc: IpvsServiceKey, dest: Pick<IpvsDestination, 'address' | 'port' | 'family'>): Promise<void>;
  info(): Promise<IpvsInfo>;
  getTimeouts(): Promise<IpvsTimeouts>;
  setTimeouts(t: IpvsTimeouts): Promise<void>;
  /** The running sync daemons (GET_DAEMON dump), master before backup. Optional, as the next two. */
  listDaemons?(): Promise<SyncDaemon[]>;
  /** NEW_DAEMON: EEXIST when a daemon of that state already runs, ENODEV for an unknown interface. */
  startDaemon?(d: SyncDaemon): Promise<void>;
  /** DEL_DAEMON: ESRCH when no daemon of that state runs. */
  stopDaemon?(state: SyncDaemon['state']): Promise<void>;
  close(): Promise<void>;
}

/** One write through the one-op methods (the unbatched path; the fallback of a lost batch). */
export function performWrite(k: IpvsKernel, w: IpvsWrite): Promise<void> {
  switch (w.kind) {
    case 'addService': return k.addService(w.service);
    case 'updateService': return k.updateService(w.service);
    case 'deleteService': return k.deleteService(w.service);
    case 'addDestination': return k.addDestination(w.service, w.destination);
    case 'updateDestination': return k.updateDestination(w.service, w.destination);
    case 'deleteDestination': return k.deleteDestination(w.service, w.destination);
  }
}
