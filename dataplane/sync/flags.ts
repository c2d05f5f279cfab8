// Bit values from include/uapi/linux/ip_vs.h (and net/netfilter/ipvs/ip_vs_mh.c for the mh aliases).

/** IP_VS_SVC_F_*: virtual service flags. */
export const SVC_F = {
  PERSISTENT: 0x0001,
  /** Set by the kernel on every hashed (i.e. every live) service; user space never asks for it. */
  HASHED: 0x0002,
  ONEPACKET: 0x0004,
  SCHED1: 0x0008,
  SCHED2: 0x0010,
  SCHED3: 0x0020,
} as const;

/** Scheduler flags: sh uses SCHED1/SCHED2 for fallback/port, mh reuses the same two bits. */
export const SCHED_FLAG_BITS = {
  'sh-fallback': SVC_F.SCHED1,
  'sh-port': SVC_F.SCHED2,
  'mh-fallback': SVC_F.SCHED1,
  'mh-port': SVC_F.SCHED2,
} as const;

/** IP_VS_TUNNEL_ENCAP_FLAG_*: checksum options for gue/gre tunnels. */
export const TUNNEL_FLAG = {
  csum: 1 << 0,
  remcsum: 1 << 1,
} as const;

/** Flags a service is compared on: everything user space controls (HASHED is the kernel's). */
export function userServiceFlags(flags: number): number {
  return flags & ~SVC_F.HASHED;
}
