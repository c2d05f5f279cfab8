// Input and intermediate types of the resolver. Inputs are read-only; nothing here is mutated.
import type { V1EndpointSlice, V1Node, V1Service } from '@kubernetes/client-node';
import type { VirtualServer } from '../generated/index.ts';
import type { VIPPoolLike } from '../pool.ts';
import type { ServiceCIDRLike } from './reserved.ts';
import type {
  Forwarding, NatReturnPath, ObjectRef, PlanHealthCheck, PlanRealServer, PlanService, Protocol, Reason, SchedulerFlag, SchedulerName,
  TunnelType, VirtualServerResolution,
} from '../plan.ts';

/**
 * The VirtualServer shape the resolver reads (lvs.dev/v1alpha1): the generated model
 * (api/generated, from crds/) with every field optional and enums widened to string, because the
 * resolver validates defensively (stored objects may predate a CRD change or bypass CEL). The
 * generated VirtualServer is assignable to it (checked by the tests' fixtures), and so are the
 * plain objects a watch delivers.
 */
export interface VirtualServerLike {
  metadata?: {
    name?: string;
    namespace?: string;
    generation?: number;
    /** RFC 3339 string from raw JSON, Date from the typed client. */
    creationTimestamp?: string | Date;
  };
  spec?: VirtualServerSpecLike;
  /** Only claims is read: who holds which (VIP, protocol, port) since when. */
  status?: { claims?: Array<{ service?: string; since?: string | Date }> };
}

export interface VirtualServerSpecLike {
  addresses?: string[];
  ports?: Array<{ name?: string; port?: number; protocol?: string; targetPort?: number }>;
  forwarding?: string;
  tunnel?: { type?: string; port?: number; checksum?: string };
  nat?: { returnPath?: string };
  scheduler?: { name?: string; flags?: string[] };
  persistence?: { timeoutSeconds?: number; netmask?: string; ipv6PrefixLength?: number };
  backends?: {
    service?: { name?: string; ports?: Array<{ name?: string; servicePort?: number | string }> };
    static?: Array<{ address?: string; port?: number; weight?: number; healthCheck?: { port?: number; path?: string } }>;
  };
  healthCheck?: Record<string, unknown>;
  directors?: { nodeSelector?: Record<string, string> };
  realServers?: { prepare?: boolean };
}

export interface NamespaceLike {
  metadata?: { name?: string; labels?: Record<string, string> };
}

export interface ResolveInput {
  /** Normally the generated VirtualServer; anything looser is validated, never trusted. */
  virtualServers: readonly (VirtualServer | VirtualServerLike)[];
  services: readonly V1Service[];
  endpointSlices: readonly V1EndpointSlice[];
  nodes: readonly V1Node[];
  /**
   * Who may use which address. Deny by default: without pools every VIP is refused
   * (AddressNotAllowed). `unrestricted` is for standalone `lvs-agent apply`, where the admin of
   * the host wrote every manifest and there is no cluster to protect.
   */
  admission?: { unrestricted: true } | { pools?: readonly VIPPoolLike[]; namespaces?: readonly NamespaceLike[]; serviceCIDRs?: readonly ServiceCIDRLike[] };
}

/** A VIP after validation: canonical text, family, sort key. */
export interface Vip {
  address: string;
  family: 4 | 6;
  /** Index in spec.addresses, for field paths. */
  index: number;
}

export interface VsPort {
  index: number;
  name: string;
  port: number;
  protocol: Protocol;
  targetPort?: number;
}

export interface StaticBackend {
  index: number;
  address: string;
  family: 4 | 6;
  sortKey: string;
  port?: number;
  weight: number;
  check?: { port?: number; path?: string };
}

/** A VirtualServer spec with defaults applied and every value checked: safe to plan from. */
export interface NormalizedSpec {
  vips: Vip[];
  ports: VsPort[];
  forwarding: Forwarding;
  tunnel?: { type: TunnelType; port?: number; flags?: string[] };
  natReturnPath?: NatReturnPath;
  scheduler: { name: SchedulerName; flags: SchedulerFlag[] };
  persistence?: { timeoutSeconds: number; netmask4: string; netmask6: string };
  backends:
    | { kind: 'service'; name: string; mapping: Map<string, { index: number; servicePort: number | string }> }
    | { kind: 'static'; entries: StaticBackend[] };
  /** undefined: every node is a director. */
  nodeSelector?: Record<string, string>;
  prepareRealServers: boolean;
  healthCheck?: PlanHealthCheck;
}

/** Identity of a VirtualServer plus what arbitration needs: its age and what it holds. */
export interface Claimant {
  ref: ObjectRef & { generation: number };
  /** creationTimestamp in ms since the epoch; +Infinity when absent or unparsable (youngest). */
  created: number;
  /**
   * Service keys it holds, from its status (status.claims, written by the controller only) ->
   * since when (ms). The holder of a key keeps it against any other claimant.
   */
  held: ReadonlyMap<string, number>;
}

/**
 * A VirtualServer resolved on its own, before conflicts with others are arbitrated: every
 * service it claims, with real servers and directors, and the reasons found so far.
 */
export interface Candidate extends Claimant {
  /** Sorted by key. */
  services: PlanService[];
  /** Sorted; no Conflict reasons yet. */
  reasons: Reason[];
  /**
   * Keys it holds and keeps claiming though it does not serve them now: an invalid spec keeps
   * what it held (its published plan stays), so a newcomer cannot take the key meanwhile.
   */
  keeps: string[];
  directors: string[];
  /** Which spec.addresses index each claimed key came from, for Conflict field paths. */
  keyFields: Map<string, string>;
  /**
   * Ports whose backends could not be looked up at all (ServiceNotFound, ServicePortNotFound):
   * already explained, so they are not reported again as NoReadyEndpoints.
   */
  unresolvedPorts: Set<string>;
  /**
   * Real servers per port name and VIP family, sorted. The same array for both families when
   * they share one list (TUN static backends), family-pure otherwise.
   */
  realServersByPort: Map<string, Map<4 | 6, PlanRealServer[]>>;
}

export type { VirtualServerResolution };
