// A node's report: one cluster-scoped AgentReport per node, named after it (crds/agentreport.yaml),
// written only by that node's agent — a ValidatingAdmissionPolicy compares the name with the
// node the agent's service-account token is bound to (authentication.kubernetes.io/node-name).
//
// Bounded whatever the cluster's size: instead of one entry per VirtualServer, the agent says up
// to which plan-slice resourceVersion its last sync read (syncedResourceVersion) and lists only
// the exceptions — VirtualServers whose programming failed or that it keeps frozen (each list
// capped, with the full count). A VirtualServer is programmed on a node when the node's
// syncedResourceVersion is at or past every slice of its current plan and the node lists no
// exception for it. resourceVersions are compared as integers: Kubernetes made them comparable
// (KEP-5504); one that is not a decimal integer compares as unknown.
import { reader, type Reader } from './strict.ts';
import type { Parsed } from './plan-slice.ts';
import type { Forwarding } from './plan.ts';

export const AGENT_REPORT_API_VERSION = 'lvs.dev/v1alpha1';
export const MAX_REPORT_EXCEPTIONS = 100;
export const MAX_REPORT_NODE_ERRORS = 16;
export const MAX_REPORT_PREPARED = 8192;
export const MAX_REPORT_MESSAGE = 1024;
export const MAX_REPORT_ANNOUNCED = 1024;

/** A VirtualServer this node could not program (failing) or keeps as it was (frozen). */
export interface ReportException {
  uid: string;
  /** namespace/name, for people. */
  virtualServer: string;
  message: string;
}

/** A real server on this node readied for one VIP and method (weight > 0 only once listed). */
export interface PreparedRealServer {
  address: string;
  vip: string;
  forwarding: Exclude<Forwarding, 'NAT'>;
}

/** A real server a health check keeps out of rotation on this node (weight 0 or removed). */
export interface UnhealthyRealServer {
  uid: string;
  virtualServer: string;
  address: string;
  port: number;
  message: string;
  /** RFC 3339, seconds: since when it is down (or, never passed, since it is checked). */
  since: string;
}

/** Health checks on this node: how many targets it checks and which real servers are down. */
export interface ReportHealth {
  checked: number;
  /** Sorted by virtualServer, address, port; capped at MAX_REPORT_EXCEPTIONS. */
  unhealthy: UnhealthyRealServer[];
  unhealthyCount: number;
}

export interface AgentReportObject {
  apiVersion: string;
  kind: 'AgentReport';
  metadata: { name: string; resourceVersion?: string; [k: string]: unknown };
  node: string;
  /** Plan slices up to this resourceVersion were read by the sync this report describes. */
  syncedResourceVersion: string;
  /** Errors of no one VirtualServer (kernel read-back, lvs0, nft, sysctls): every VirtualServer this node directs fails. */
  nodeErrors: string[];
  failing: ReportException[];
  failingCount: number;
  frozen: ReportException[];
  frozenCount: number;
  /** Sorted by address, vip, forwarding. */
  prepared: PreparedRealServer[];
  /** Absent from agents without health checks (older versions). */
  health?: ReportHealth;
  /**
   * The VIPs this node answers ARP/NDP for now (it is their active director), sorted, capped at
   * MAX_REPORT_ANNOUNCED; announcedCount counts all. Absent from older agents.
   */
  announced?: string[];
  announcedCount?: number;
  /** Where this node's agent takes director heartbeats (lvs-agent run --peer-key-file); absent without. */
  peer?: { address: string; port: number };
  /** Why this director is yielding in the election (dataplane/cluster/yielding.ts); absent while its node is in service. */
  yielding?: string;
}

/** A resourceVersion that compares as a number (a decimal integer). */
export function comparableResourceVersion(rv: string): boolean {
  return /^[0-9]{1,30}$/.test(rv);
}

/** -1, 0, 1, or undefined when either is not a decimal resourceVersion. */
export function compareResourceVersions(a: string, b: string): -1 | 0 | 1 | undefined {
  if (!comparableResourceVersion(a) || !comparableResourceVersion(b)) return undefined;
  const x = BigInt(a), y = BigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

export function preparedKey(p: PreparedRealServer): string {
  return `${p.address}|${p.vip}|${p.forwarding}`;
}

function readException(r: Reader): ReportException {
  r.only(['uid', 'virtualServer', 'message']);
  return { uid: r.str('uid'), virtualServer: r.str('virtualServer'), message: r.str('message') };
}

function readHealth(r: Reader): ReportHealth {
  return {
    checked: r.has('checked') ? r.int('checked', 0, Number.MAX_SAFE_INTEGER) : 0,
    unhealthy: r.list('unhealthy').map((u) => ({
      uid: u.str('uid'), virtualServer: u.str('virtualServer'), address: u.str('address'), port: u.int('port', 1, 65535),
      message: u.str('message'), since: u.has('since') ? u.str('since') : '',
    })),
    unhealthyCount: r.has('unhealthyCount') ? r.int('unhealthyCount', 0, Number.MAX_SAFE_INTEGER) : 0,
  };
}

/** Reads a report; fields this version does not know are ignored (a report is advice, not a plan). */
export function parseAgentReport(obj: unknown): Parsed<AgentReportObject> {
  try {
    const r = reader(obj, '');
    const meta = r.obj('metadata').raw as AgentReportObject['metadata'];
    const value: AgentReportObject = {
      apiVersion: r.str('apiVersion'), kind: 'AgentReport', metadata: meta,
      node: r.str('node'),
      syncedResourceVersion: r.has('syncedResourceVersion') ? r.str('syncedResourceVersion') : '',
      nodeErrors: r.list('nodeErrors').map((e) => e.strSelf()),
      failing: r.list('failing').map(readException),
      failingCount: r.has('failingCount') ? r.int('failingCount', 0, Number.MAX_SAFE_INTEGER) : 0,
      frozen: r.list('frozen').map(readException),
      frozenCount: r.has('frozenCount') ? r.int('frozenCount', 0, Number.MAX_SAFE_INTEGER) : 0,
      prepared: r.list('prepared').map((p) => ({ address: p.str('address'), vip: p.str('vip'), forwarding: p.oneOf('forwarding', ['DR', 'TUN'] as const) })),
    };
    if (r.has('health')) value.health = readHealth(r.obj('health'));
    if (r.has('announced')) {
      value.announced = r.list('announced').map((e) => e.strSelf());
      value.announcedCount = r.has('announcedCount') ? r.int('announcedCount', 0, Number.MAX_SAFE_INTEGER) : value.announced.length;
    }
    if (r.has('peer')) {
      const p = r.obj('peer');
      value.peer = { address: p.str('address'), port: p.int('port', 1, 65535) };
    }
    if (r.has('yielding')) value.yielding = r.str('yielding');
    if (value.node !== meta.name) r.fail('node', `must equal metadata.name (${JSON.stringify(meta.name)})`);
    return { ok: true, value };
  } catch (err) {
    const e = err as { field?: string; message: string };
    if (e.field === undefined) throw err;
    return { ok: false, field: e.field, message: e.message };
  }
}

/** A report body, its lists capped and sorted, messages cut to MAX_REPORT_MESSAGE. */
export function buildAgentReport(node: string, r: {
  syncedResourceVersion: string; nodeErrors: readonly string[]; failing: readonly ReportException[];
  frozen: readonly ReportException[]; prepared: readonly PreparedRealServer[];
  health?: { checked: number; unhealthy: readonly UnhealthyRealServer[] };
  announced?: readonly string[];
  peer?: { address: string; port: number };
  yielding?: string;
}): AgentReportObject {
  const cut = (s: string) => (s.length > MAX_REPORT_MESSAGE ? `${s.slice(0, MAX_REPORT_MESSAGE - 3)}...` : s);
  const exc = (l: readonly ReportException[]) => [...l].sort((a, b) => (a.virtualServer < b.virtualServer ? -1 : a.virtualServer > b.virtualServer ? 1 : 0))
    .slice(0, MAX_REPORT_EXCEPTIONS).map((e) => ({ ...e, message: cut(e.message) }));
  const prepared = [...r.prepared].sort((a, b) => (preparedKey(a) < preparedKey(b) ? -1 : preparedKey(a) > preparedKey(b) ? 1 : 0)).slice(0, MAX_REPORT_PREPARED);
  return {
    apiVersion: AGENT_REPORT_API_VERSION, kind: 'AgentReport', metadata: { name: node }, node,
    syncedResourceVersion: r.syncedResourceVersion,
    nodeErrors: r.nodeErrors.slice(0, MAX_REPORT_NODE_ERRORS).map(cut),
    failing: exc(r.failing), failingCount: r.failing.length,
    frozen: exc(r.frozen), frozenCount: r.frozen.length,
    prepared,
    ...(r.health ? { health: healthOf(r.health, cut) } : {}),
    ...(r.announced ? { announced: [...r.announced].sort().slice(0, MAX_REPORT_ANNOUNCED), announcedCount: r.announced.length } : {}),
    ...(r.peer ? { peer: { address: r.peer.address, port: r.peer.port } } : {}),
    ...(r.yielding ? { yielding: cut(r.yielding) } : {}),
  };
}

function healthOf(h: { checked: number; unhealthy: readonly UnhealthyRealServer[] }, cut: (s: string) => string): ReportHealth {
  const key = (u: UnhealthyRealServer) => `${u.virtualServer}|${u.address}|${String(u.port).padStart(5, '0')}`;
  const unhealthy = [...h.unhealthy].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0))
    .slice(0, MAX_REPORT_EXCEPTIONS).map((u) => ({ ...u, message: cut(u.message) }));
  return { checked: h.checked, unhealthy, unhealthyCount: h.unhealthy.length };
}
