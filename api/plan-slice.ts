// The published plan: how the controller hands one VirtualServer's resolved services to the
// agents, in PlanSlice objects (cluster-scoped, written by the controller only; crds/planslice.yaml).
//
// Bounded like EndpointSlices: a slice holds at most MAX_SLICE_REAL_SERVERS real-server entries
// and MAX_SLICE_SERVICES service entries; a service with more real servers is split across slices
// (the same header in each, its real servers in order). Every slice of one plan carries the same
// revision (a hash of the whole plan: owner, generation, directors, services) and the number of
// slices, so an agent uses a plan only when it holds all `count` slices of one revision and the
// content hashes to it — never a mix of two generations while the controller rewrites them.
//
// Pure: slicing, revision and the strict reader (an agent meeting a field or value it does not
// know — a newer controller — gets an error naming it and keeps what it programmed before).
import { createHash } from 'node:crypto';
import type { PlanAnnounce, PlanHealthCheck, PlanRealServer, PlanService, PlanTunnel } from './plan.ts';
import { reader, type Reader } from './strict.ts';

export const PLAN_SLICE_API_VERSION = 'lvs.dev/v1alpha1';
/** Label naming the VirtualServer (by uid) a slice belongs to. */
export const OWNER_UID_LABEL = 'lvs.dev/owner-uid';
/**
 * Annotation: when the change that led to this revision happened (RFC 3339, ms): the newest
 * `endpoints.kubernetes.io/last-change-trigger-time` of the Service's EndpointSlices when that is
 * newer than the previous revision's, else when the controller resolved the plan. The agent
 * measures the network-programming latency from it. Not part of the content: never a reason to write.
 */
export const CHANGE_TIME_ANNOTATION = 'lvs.dev/change-time';
/** Set by the EndpointSlice controller: when the Pod or Service change behind the slice's update happened. */
export const TRIGGER_TIME_ANNOTATION = 'endpoints.kubernetes.io/last-change-trigger-time';
export const MAX_SLICE_REAL_SERVERS = 1000;
export const MAX_SLICE_SERVICES = 256;
/** CRD bound on directors per slice (crds/planslice.yaml). */
export const MAX_SLICE_DIRECTORS = 5000;

export interface PlanOwner {
  namespace: string;
  name: string;
  uid: string;
  /** The VirtualServer generation this plan was resolved from. */
  generation: number;
}

/** One service entry of a slice: a PlanService without owner and directors (they are per slice). */
export type SliceService = Omit<PlanService, 'owner' | 'directors'>;

export interface PlanSliceObject {
  apiVersion: string;
  kind: 'PlanSlice';
  metadata: { name: string; uid?: string; resourceVersion?: string; labels?: Record<string, string>; annotations?: Record<string, string>; [k: string]: unknown };
  owner: PlanOwner;
  revision: string;
  index: number;
  count: number;
  /** Sorted node names directing every service of this plan. */
  directors: string[];
  services: SliceService[];
}

/** The whole plan of one VirtualServer, before slicing (what the resolver produced for it). */
export interface OwnerPlan {
  owner: PlanOwner;
  directors: string[];
  /** Sorted by key; real servers sorted by address, then port. */
  services: SliceService[];
}

export function sliceName(uid: string, index: number): string {
  return `${uid}-${index}`;
}

/** Canonical JSON: object keys sorted, undefined dropped. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o).filter((k) => o[k] !== undefined).sort().map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

/** The revision of a plan: the first 16 hex digits of the SHA-256 of its canonical JSON. */
export function planRevision(p: OwnerPlan): string {
  return createHash('sha256').update(canonical({ owner: p.owner, directors: p.directors, services: p.services })).digest('hex').slice(0, 16);
}

/** Cuts a plan into slices (at least one, even for a plan with no service). */
export function slicePlan(p: OwnerPlan): PlanSliceObject[] {
  const revision = planRevision(p);
  const parts: SliceService[][] = [[]];
  let rs = 0;
  const room = () => parts.at(-1)!.length < MAX_SLICE_SERVICES && rs < MAX_SLICE_REAL_SERVERS;
  for (const svc of p.services) {
    let rest = svc.realServers;
    do {
      if (!room()) { parts.push([]); rs = 0; }
      const take = rest.slice(0, MAX_SLICE_REAL_SERVERS - rs);
      rest = rest.slice(take.length);
      parts.at(-1)!.push({ ...svc, realServers: take });
      rs += take.length;
    } while (rest.length > 0);
  }
  return parts.map((services, index) => ({
    apiVersion: PLAN_SLICE_API_VERSION, kind: 'PlanSlice',
    metadata: { name: sliceName(p.owner.uid, index), labels: { [OWNER_UID_LABEL]: p.owner.uid } },
    owner: { ...p.owner }, revision, index, count: parts.length, directors: [...p.directors], services,
  }));
}

/** A time annotation (RFC 3339) as epoch ms; undefined when absent or not a time. */
export function annotatedTime(metadata: { annotations?: unknown } | undefined, name: string): number | undefined {
  const v = (metadata?.annotations as Record<string, unknown> | undefined)?.[name];
  if (typeof v !== 'string' || v.length > 64) return undefined;
  const t = Date.parse(v);
  return Number.isFinite(t) ? t : undefined;
}

/** The slice's own content (what the controller compares before writing), without metadata. */
export function sliceContent(s: PlanSliceObject): string {
  return canonical({ owner: s.owner, revision: s.revision, index: s.index, count: s.count, directors: s.directors, services: s.services });
}

export type Parsed<T> = { ok: true; value: T } | { ok: false; field: string; message: string };

const PROTOCOLS = ['TCP', 'UDP', 'SCTP'] as const;
const FORWARDINGS = ['NAT', 'DR', 'TUN'] as const;
const SCHEDULERS = ['rr', 'wrr', 'lc', 'wlc', 'lblc', 'lblcr', 'dh', 'sh', 'sed', 'nq', 'mh', 'fo', 'ovf'] as const;
const SCHED_FLAGS = ['sh-fallback', 'sh-port', 'mh-fallback', 'mh-port'] as const;

function readRealServer(r: Reader): PlanRealServer {
  r.only(['address', 'port', 'weight', 'state', 'node', 'pod', 'check']);
  const out: PlanRealServer = { address: r.str('address'), port: r.int('port', 0, 65535), weight: r.int('weight', 0, 65535), state: r.oneOf('state', ['Ready', 'Draining'] as const) };
  if (r.has('node')) out.node = r.str('node');
  if (r.has('pod')) {
    const p = r.obj('pod');
    p.only(['namespace', 'name']);
    out.pod = { namespace: p.str('namespace'), name: p.str('name') };
  }
  if (r.has('check')) {
    const c = r.obj('check');
    c.only(['port', 'path']);
    out.check = {};
    if (c.has('port')) out.check.port = c.int('port', 1, 65535);
    if (c.has('path')) out.check.path = c.str('path');
  }
  return out;
}

function readHealthCheck(r: Reader): PlanHealthCheck {
  r.only(['type', 'path', 'host', 'statuses', 'intervalSeconds', 'timeoutSeconds', 'failureThreshold', 'successThreshold', 'onFailure']);
  const out: PlanHealthCheck = {
    type: r.oneOf('type', ['tcp', 'http', 'https'] as const),
    intervalSeconds: r.int('intervalSeconds', 1, 3600), timeoutSeconds: r.int('timeoutSeconds', 1, 60),
    failureThreshold: r.int('failureThreshold', 1, 100), successThreshold: r.int('successThreshold', 1, 100),
    onFailure: r.oneOf('onFailure', ['Quiesce', 'Remove'] as const),
  };
  if (r.has('path')) out.path = r.str('path');
  if (r.has('host')) out.host = r.str('host');
  if (r.has('statuses')) out.statuses = r.list('statuses').map((x) => x.intSelf(100, 599));
  return out;
}

function readTunnel(r: Reader): PlanTunnel {
  r.only(['type', 'port', 'flags']);
  const t: PlanTunnel = { type: r.oneOf('type', ['ipip', 'gue', 'gre'] as const) };
  if (r.has('port')) t.port = r.int('port', 1, 65535);
  if (r.has('flags')) t.flags = r.list('flags').map((f) => f.oneOfSelf(['csum', 'remcsum'] as const));
  return t;
}

function readAnnounce(r: Reader): PlanAnnounce {
  r.only(['interfaces']);
  if (!r.has('interfaces')) return {};
  const interfaces = r.list('interfaces').map((d) => d.strSelf());
  interfaces.forEach((d, i) => { if (!/^[^\s/.][^\s/]{0,14}$/.test(d)) r.fail(`interfaces[${i}]`, `${JSON.stringify(d)} is not a network device name`); });
  return { interfaces };
}

function readService(r: Reader): SliceService {
  r.only(['key', 'portName', 'vip', 'family', 'protocol', 'port', 'forwarding', 'tunnel', 'natReturnPath', 'scheduler', 'persistence', 'prepareRealServers', 'realServers', 'healthCheck', 'announce']);
  const sched = r.obj('scheduler');
  sched.only(['name', 'flags']);
  const out: SliceService = {
    key: r.str('key'), portName: r.str('portName'), vip: r.str('vip'), family: r.oneOf('family', [4, 6] as const),
    protocol: r.oneOf('protocol', PROTOCOLS), port: r.int('port', 1, 65535), forwarding: r.oneOf('forwarding', FORWARDINGS),
    scheduler: { name: sched.oneOf('name', SCHEDULERS), flags: sched.list('flags').map((f) => f.oneOfSelf(SCHED_FLAGS)) },
    prepareRealServers: r.bool('prepareRealServers'),
    realServers: r.list('realServers').map(readRealServer),
  };
  if (r.has('tunnel')) out.tunnel = readTunnel(r.obj('tunnel'));
  if (r.has('healthCheck')) out.healthCheck = readHealthCheck(r.obj('healthCheck'));
  if (r.has('natReturnPath')) out.natReturnPath = r.oneOf('natReturnPath', ['Gateway', 'SNAT'] as const);
  if (r.has('announce')) out.announce = readAnnounce(r.obj('announce'));
  if (r.has('persistence')) {
    const p = r.obj('persistence');
    p.only(['timeoutSeconds', 'netmask']);
    out.persistence = { timeoutSeconds: p.int('timeoutSeconds', 1, 2678400), netmask: p.str('netmask') };
  }
  return out;
}

/**
 * Reads a PlanSlice as an agent must: every field known, every value in range. An unknown field
 * or enum value (a newer controller's plan) is an error naming it, never a guess.
 */
export function parsePlanSlice(obj: unknown): Parsed<PlanSliceObject> {
  try {
    const r = reader(obj, '');
    r.only(['apiVersion', 'kind', 'metadata', 'owner', 'revision', 'index', 'count', 'directors', 'services']);
    if (r.str('apiVersion') !== PLAN_SLICE_API_VERSION) r.fail('apiVersion', `unsupported version (this agent reads ${PLAN_SLICE_API_VERSION})`);
    if (r.str('kind') !== 'PlanSlice') r.fail('kind', 'must be PlanSlice');
    const meta = r.obj('metadata').raw as PlanSliceObject['metadata'];
    const o = r.obj('owner');
    o.only(['namespace', 'name', 'uid', 'generation']);
    const owner: PlanOwner = { namespace: o.str('namespace'), name: o.str('name'), uid: o.str('uid'), generation: o.int('generation', 0, Number.MAX_SAFE_INTEGER) };
    const count = r.int('count', 1, 100000);
    const value: PlanSliceObject = {
      apiVersion: PLAN_SLICE_API_VERSION, kind: 'PlanSlice', metadata: meta, owner,
      revision: r.str('revision'), index: r.int('index', 0, count - 1), count,
      directors: r.list('directors').map((d) => d.strSelf()),
      services: r.list('services').map(readService),
    };
    return { ok: true, value };
  } catch (err) {
    const e = err as { field?: string; message: string };
    if (e.field === undefined) throw err;
    return { ok: false, field: e.field, message: e.message };
  }
}

/** Header of a service entry: everything but its real servers (equal in every slice it spans). */
function header(s: SliceService): string {
  return canonical({ ...s, realServers: undefined });
}

/**
 * One VirtualServer's plan from its slices, or why it cannot be used: slices missing, of two
 * revisions, disagreeing, or not hashing to their revision. Field `slices` marks the states a
 * controller's rewrite passes through (two revisions, some slices not there yet): incomplete, not
 * wrong.
 */
export function assemblePlan(slices: readonly PlanSliceObject[]): Parsed<OwnerPlan> {
  const first = slices[0];
  if (!first) return { ok: false, field: 'slices', message: 'no slice' };
  const byIndex = new Map<number, PlanSliceObject>();
  for (const s of slices) {
    if (s.revision !== first.revision || s.count !== first.count) {
      return { ok: false, field: 'slices', message: `slices of two revisions (${first.revision}/${first.count}, ${s.revision}/${s.count}): the controller is rewriting this plan` };
    }
    if (byIndex.has(s.index)) return { ok: false, field: 'index', message: `two slices with index ${s.index}` };
    byIndex.set(s.index, s);
  }
  if (byIndex.size !== first.count) return { ok: false, field: 'slices', message: `${byIndex.size} of ${first.count} slices present` };
  const services: SliceService[] = [];
  for (let i = 0; i < first.count; i++) {
    for (const svc of byIndex.get(i)!.services) {
      const last = services.at(-1);
      if (last && last.key === svc.key) {
        if (header(last) !== header(svc)) return { ok: false, field: `services[${svc.key}]`, message: 'the parts of one service disagree' };
        last.realServers = [...last.realServers, ...svc.realServers];
      } else services.push({ ...svc, realServers: [...svc.realServers] });
    }
  }
  // A copy at its size: the array grown by push keeps room for 17 services, and an agent keeps
  // every plan it programs (1.4 MiB at 10,000 one-service plans).
  const plan: OwnerPlan = { owner: first.owner, directors: first.directors, services: services.slice() };
  const revision = planRevision(plan);
  if (revision !== first.revision) return { ok: false, field: 'revision', message: `content hashes to ${revision}, not ${first.revision}` };
  return { ok: true, value: plan };
}

/** The plan as the agent's syncer consumes it. */
export function planServices(p: OwnerPlan): PlanService[] {
  const owner = { namespace: p.owner.namespace, name: p.owner.name, generation: p.owner.generation };
  return p.services.map((s) => ({ ...s, owner, directors: p.directors }));
}
