// The plan: what the controller resolved, in plain sorted data. It is the contract between
// operator/ (which computes it from VirtualServers, Services, EndpointSlices and Nodes) and
// dataplane/ (which turns it into kernel state). Nothing here talks to Kubernetes or a kernel.

import { canonicalIp, ipFamily } from './ip.ts';

export type Protocol = 'TCP' | 'UDP' | 'SCTP';
export type Forwarding = 'NAT' | 'DR' | 'TUN';
export type TunnelType = 'ipip' | 'gue' | 'gre';
/** How replies from NAT real servers get back to the director. */
export type NatReturnPath = 'Gateway' | 'SNAT';
export type SchedulerName =
  | 'rr' | 'wrr' | 'lc' | 'wlc' | 'lblc' | 'lblcr' | 'dh' | 'sh' | 'sed' | 'nq' | 'mh' | 'fo' | 'ovf';
export type SchedulerFlag = 'sh-fallback' | 'sh-port' | 'mh-fallback' | 'mh-port';

/**
 * Ready: receives new connections. Draining: weight 0, existing connections finish
 * (EndpointSlice serving && terminating, or a static backend with weight 0).
 */
export type RealServerState = 'Ready' | 'Draining';

export interface ObjectRef {
  namespace: string;
  name: string;
}

export interface PlanRealServer {
  address: string;
  /** The port the real server listens on (equals the virtual port for DR and TUN). */
  port: number;
  weight: number;
  state: RealServerState;
  /** Node hosting the real server, when it is a pod or a cluster node; absent for outside hosts. */
  node?: string;
  /** The pod behind it, for real-server preparation (DR/TUN). */
  pod?: ObjectRef;
  /** This real server's health check differs from the service's in port or path. */
  check?: { port?: number; path?: string };
}

/**
 * How each director checks the service's real servers (spec.healthCheck). Checkers report only
 * up/down; the agent's policy turns a down real server into weight 0 (Quiesce) or no destination
 * (Remove), and one that has never passed starts at weight 0.
 */
export interface PlanHealthCheck {
  type: 'tcp' | 'http' | 'https';
  /** http/https: request path and Host header (default the real server's address). */
  path?: string;
  host?: string;
  /** http/https: passing statuses, sorted; absent means 200..399. */
  statuses?: number[];
  intervalSeconds: number;
  timeoutSeconds: number;
  failureThreshold: number;
  successThreshold: number;
  onFailure: 'Quiesce' | 'Remove';
}

/**
 * Present: the VIP is announced on L2 (its active director answers ARP/NDP), on `interfaces` or
 * else on the devices whose subnet holds it. Absent: no director announces it (the pool says
 * none, or the plan comes from manifests without pools, whose agent decides by its own flag).
 */
export interface PlanAnnounce {
  interfaces?: string[];
}

export interface PlanTunnel {
  type: TunnelType;
  /** UDP destination port for gue. */
  port?: number;
  /** Checksum options for gue/gre: 'csum' | 'remcsum'. */
  flags?: string[];
}

/** One IPVS virtual service: a (VIP, protocol, port) and everything the kernel needs for it. */
export interface PlanService {
  /** Canonical key, see serviceKey(). Unique across the whole plan. */
  key: string;
  owner: ObjectRef & { generation: number };
  /** Name of the VirtualServer port this service came from. */
  portName: string;
  vip: string;
  family: 4 | 6;
  protocol: Protocol;
  port: number;
  forwarding: Forwarding;
  tunnel?: PlanTunnel;
  natReturnPath?: NatReturnPath;
  scheduler: { name: SchedulerName; flags: SchedulerFlag[] };
  persistence?: { timeoutSeconds: number; netmask: string };
  prepareRealServers: boolean;
  healthCheck?: PlanHealthCheck;
  /** Sorted by address, then port. */
  realServers: PlanRealServer[];
  announce?: PlanAnnounce;
  /** Sorted node names. */
  directors: string[];
}

export type ReasonType =
  | 'Conflict'
  | 'ServiceNotFound'
  | 'ServicePortNotFound'
  | 'PortRemapNotSupported'
  | 'AddressFamilyMismatch'
  | 'NoReadyEndpoints'
  | 'NoDirectors'
  | 'InvalidSpec'
  | 'AddressNotAllowed'
  | 'AddressReserved'
  | 'ForwardingNotAllowed'
  | 'RealServerNotAllowed';

/** Why (part of) a VirtualServer could not be resolved: data, never an exception. */
export interface Reason {
  type: ReasonType;
  /** JSON path of the offending field, e.g. spec.backends.service.name. */
  field?: string;
  message: string;
}

/** Resolution of one VirtualServer: input for its status. */
export interface VirtualServerResolution {
  ref: ObjectRef & { generation: number };
  /** Keys of the PlanServices this VirtualServer won (sorted). */
  services: string[];
  /** Sorted (portName, address, port). */
  realServers: Array<PlanRealServer & { portName: string }>;
  directors: string[];
  reasons: Reason[];
}

export interface Plan {
  /** Sorted by key. */
  services: PlanService[];
  /** Keyed by namespace/name, iteration in sorted order. */
  virtualServers: Map<string, VirtualServerResolution>;
}

/**
 * The parts of a service key ("TCP/203.0.113.10:80", "UDP/[2001:db8::1]:53"), its address
 * canonical (api/ip.ts canonicalIp); undefined for anything else (firewall-mark keys included).
 */
export function parseServiceKey(key: string): { protocol: Protocol; vip: string; family: 4 | 6; port: number } | undefined {
  const m = /^(TCP|UDP|SCTP)\/(?:\[([^\]]+)\]|([^:/\[\]]+)):(\d{1,5})$/.exec(key);
  if (!m) return undefined;
  const address = m[2] ?? m[3]!;
  const family = ipFamily(address);
  const vip = canonicalIp(address);
  const port = Number(m[4]);
  // An IPv6 address only in brackets, an IPv4 one only without.
  if (family === undefined || vip === undefined || (family === 6) !== (m[2] !== undefined) || port < 1 || port > 65535) return undefined;
  return { protocol: m[1] as Protocol, vip, family, port };
}

export function serviceKey(protocol: Protocol, vip: string, port: number): string {
  return vip.includes(':') ? `${protocol}/[${vip}]:${port}` : `${protocol}/${vip}:${port}`;
}

export function refKey(ref: ObjectRef): string {
  return `${ref.namespace}/${ref.name}`;
}
