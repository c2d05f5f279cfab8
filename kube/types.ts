// The resources the controller reads and writes, and the small structural object types it relies
// on. Objects stay plain JSON as the apiserver sent them (timestamps are RFC 3339 strings), so the
// status the controller computes compares byte-for-byte with what is stored.

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
}

export interface ResourceType {
  group: string;
  version: string;
  /** URL segment, e.g. virtualservers. */
  plural: string;
  kind: string;
  namespaced: boolean;
}

export const VIRTUAL_SERVERS: ResourceType = { group: 'lvs.dev', version: 'v1alpha1', plural: 'virtualservers', kind: 'VirtualServer', namespaced: true };
export const SERVICES: ResourceType = { group: '', version: 'v1', plural: 'services', kind: 'Service', namespaced: true };
export const ENDPOINT_SLICES: ResourceType = { group: 'discovery.k8s.io', version: 'v1', plural: 'endpointslices', kind: 'EndpointSlice', namespaced: true };
export const PODS: ResourceType = { group: '', version: 'v1', plural: 'pods', kind: 'Pod', namespaced: true };
export const NODES: ResourceType = { group: '', version: 'v1', plural: 'nodes', kind: 'Node', namespaced: false };
export const LEASES: ResourceType = { group: 'coordination.k8s.io', version: 'v1', plural: 'leases', kind: 'Lease', namespaced: true };
export const PLAN_SLICES: ResourceType = { group: 'lvs.dev', version: 'v1alpha1', plural: 'planslices', kind: 'PlanSlice', namespaced: false };
export const AGENT_REPORTS: ResourceType = { group: 'lvs.dev', version: 'v1alpha1', plural: 'agentreports', kind: 'AgentReport', namespaced: false };
export const VIP_POOLS: ResourceType = { group: 'lvs.dev', version: 'v1alpha1', plural: 'vippools', kind: 'VIPPool', namespaced: false };
export const NAMESPACES: ResourceType = { group: '', version: 'v1', plural: 'namespaces', kind: 'Namespace', namespaced: false };
export const SERVICE_CIDRS: ResourceType = { group: 'networking.k8s.io', version: 'v1', plural: 'servicecidrs', kind: 'ServiceCIDR', namespaced: false };
export const EVENTS: ResourceType = { group: 'events.k8s.io', version: 'v1', plural: 'events', kind: 'Event', namespaced: true };

export function apiVersionOf(rt: ResourceType): string {
  return rt.group ? `${rt.group}/${rt.version}` : rt.version;
}

/** URL path of a collection (all namespaces when namespace is undefined) or of one object. */
export function resourcePath(rt: ResourceType, namespace?: string, name?: string, subresource?: string): string {
  const base = rt.group ? `/apis/${rt.group}/${rt.version}` : `/api/${rt.version}`;
  const ns = rt.namespaced && namespace !== undefined ? `/namespaces/${encodeURIComponent(namespace)}` : '';
  const obj = name !== undefined ? `/${encodeURIComponent(name)}` : '';
  const sub = subresource !== undefined && name !== undefined ? `/${subresource}` : '';
  return `${base}${ns}/${rt.plural}${obj}${sub}`;
}

/** Cache key: namespace/name, or just name for cluster-scoped objects. */
export function objectKey(obj: KubeObject): string {
  return obj.metadata.namespace ? `${obj.metadata.namespace}/${obj.metadata.name}` : obj.metadata.name;
}

export function splitKey(key: string): { namespace: string; name: string } {
  const i = key.indexOf('/');
  return i < 0 ? { namespace: '', name: key } : { namespace: key.slice(0, i), name: key.slice(i + 1) };
}

/** metav1.Condition as stored (lastTransitionTime is an RFC 3339 string with second precision). */
export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

/** A node that has not programmed a VirtualServer's published plan, as status.unprogrammedNodes lists it. */
export interface NodeProgramming {
  name: string;
  /** Waiting: has not read the plan yet (or no report); Failing: programming it failed; Frozen: keeps what it had. */
  state: 'Waiting' | 'Failing' | 'Frozen';
  message: string;
}

/** The VirtualServer status the controller writes (crds/virtualserver.yaml): bounded whatever the size of the plan. */
export interface VirtualServerStatus {
  observedGeneration?: number;
  conditions?: Condition[];
  /** Keys of the virtual services this VirtualServer won (PlanService.key), sorted. */
  services?: string[];
  /** The same keys with the time each was first held: the holder keeps a key (api/resolve/conflicts.ts). */
  claims?: Array<{ service: string; since: string }>;
  /** Distinct real-server addresses with a Ready entry. */
  readyRealServers?: number;
  /** Distinct real-server addresses, Ready or Draining. */
  realServerCount?: number;
  /** The first MAX_STATUS_DIRECTORS directors of the published plan, sorted; directorCount counts them all. */
  directors?: string[];
  directorCount?: number;
  /** The published plan: its revision, number of PlanSlices, and the generation it was resolved from. */
  plan?: { revision: string; slices: number; generation: number };
  /** Nodes that have not programmed the published plan (bounded); programmedNodes counts the others. */
  unprogrammedNodes?: NodeProgramming[];
  programmedNodes?: number;
  /** Health checks as the directors report them (only with spec.healthCheck). */
  health?: { down: number; unhealthy: UnhealthyEntry[] };
  /** Per address won, the directors that report answering ARP/NDP for it (operator/announce-status.ts). */
  announcers?: Array<{ address: string; node: string }>;
}

/** One real server out of rotation on one director. */
export interface UnhealthyEntry {
  node: string;
  address: string;
  port: number;
  message: string;
  since?: string;
}

// Legacy: the real-server list and per-node entries VirtualServer status carried before PlanSlices
// and AgentReports. The CRD no longer has them; the controller only removes them where a stored
// status still holds them (operator/status.ts).
/** @deprecated status.realServers is gone; real servers are published in PlanSlices. */
export interface StatusRealServer {
  port: string;
  address: string;
  targetPort: number;
  weight: number;
  state: 'Ready' | 'Draining';
  node?: string;
  pod?: { namespace: string; name: string };
}

/** @deprecated status.nodes is gone; each agent writes its node's AgentReport. */
export interface NodeReport {
  name: string;
  observedGeneration?: number;
  director?: boolean;
  programmed?: boolean;
  preparedRealServers?: string[];
  message?: string;
  lastUpdateTime?: string;
}

/** @deprecated see StatusRealServer and NodeReport. */
export interface LegacyAgentStatus {
  realServers?: StatusRealServer[];
  nodes?: NodeReport[];
}

export interface VirtualServerObject extends KubeObject {
  spec?: {
    addresses?: string[];
    backends?: { service?: { name?: string }; static?: Array<{ address?: string }> };
    directors?: { nodeSelector?: Record<string, string> };
    [k: string]: unknown;
  };
  status?: VirtualServerStatus & LegacyAgentStatus;
}

export interface NodeObject extends KubeObject {
  spec?: { unschedulable?: boolean; taints?: Array<{ key: string; value?: string; effect?: string }> };
  status?: {
    addresses?: Array<{ type: string; address: string }>;
    conditions?: Array<{ type: string; status: string }>;
  };
}

/** Label an EndpointSlice carries to name its Service. */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

/** metav1.Status, as in watch ERROR events and error bodies. */
export interface StatusObject {
  kind?: 'Status';
  code?: number;
  reason?: string;
  message?: string;
  details?: { retryAfterSeconds?: number };
}
