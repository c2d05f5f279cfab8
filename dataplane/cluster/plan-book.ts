// Pure: the plan book. The PlanSlices the controller published, grouped by owner (VirtualServer
// uid), read strictly and assembled, decide what this agent programs for each owner:
// - usable (every slice known and complete, one revision, hashing to it): that plan, remembered
//   as the owner's last good plan;
// - unusable (a field or value this agent does not know, slices missing or of two revisions, a
//   hash mismatch): frozen, with the reason. The owner keeps its last good plan; without one (the
//   agent restarted since), the kernel services the owner record names for it are held as they
//   are — never re-resolved from a spec, never guessed;
// - absent (no slice left): the controller, the only writer of slices, deleted the plan, so the
//   owner's services are removed (drained) — the caller's mass-removal guard decides when.
import { comparableResourceVersion, compareResourceVersions } from '../../api/agent-report.ts';
import { assemblePlan, OWNER_UID_LABEL, parsePlanSlice, planServices, type OwnerPlan, type PlanSliceObject, type SliceService } from '../../api/plan-slice.ts';
import type { PlanService } from '../../api/plan.ts';
import { byString, parseServiceKey, serviceKeyOf } from '../sync/keys.ts';

/** Who a service key belongs to, as reports and the owner record name it. */
export interface KeyOwner {
  uid: string;
  /** namespace/name */
  virtualServer: string;
}

/** What the owner record says a key belonged to (uid absent in records of older agents). */
export interface RecordedOwner {
  uid?: string;
  virtualServer: string;
}

export interface BookOwner extends KeyOwner {
  /** The plan programmed for the owner: its published one, or (frozen) its last good one. */
  plan?: OwnerPlan;
  /** Why the published plan is not used (absent when it is). */
  frozen?: string;
  /** Frozen without a last good plan: the recorded service keys held as the kernel has them. */
  held: string[];
  /**
   * The plan is only incomplete — the controller is rewriting it (slices of two revisions, or not
   * all there yet): the lowest resourceVersion among its newest revision's slices. The agent
   * reports itself synced only below it, so the controller waits instead of seeing it frozen.
   */
  rewriting?: string;
}

export interface PlanBook {
  /** By uid, sorted by namespace/name. */
  owners: ReadonlyMap<string, BookOwner>;
  /** The last good plan of every owner that still has slices: the memory for the next read. */
  lastGood: ReadonlyMap<string, OwnerPlan>;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/** The owner a slice claims, read leniently (a slice this agent cannot parse still has one). */
function rawOwner(obj: unknown): { uid: string; virtualServer?: string } {
  const o = (obj ?? {}) as { owner?: { uid?: unknown; namespace?: unknown; name?: unknown }; metadata?: { name?: unknown; labels?: Record<string, unknown> } };
  const uid = str(o.owner?.uid) ?? str(o.metadata?.labels?.[OWNER_UID_LABEL]) ?? `slice ${String(o.metadata?.name)}`;
  const ns = str(o.owner?.namespace), name = str(o.owner?.name);
  return ns && name ? { uid, virtualServer: `${ns}/${name}` } : { uid };
}

interface Group { virtualServer?: string; slices: PlanSliceObject[]; errors: string[] }

/**
 * What one read keeps for the next, so a change costs the strict read, assembly and hash check of
 * the slices that changed, not of every slice: results by object identity. The informer replaces
 * an object when it changes and never modifies one, so an object seen before reads the same.
 */
export class PlanBookCache {
  readonly parsed = new WeakMap<object, ReadSlice>();
  /**
   * By owner uid: the parsed slices an assembly was made of (an array: an owner has a few, and a
   * Set per owner cost about 200 bytes more at 10,000 owners), and its result. Owners gone are dropped.
   */
  assembled = new Map<string, { slices: readonly PlanSliceObject[]; result: ReturnType<typeof assemblePlan> }>();
  readonly services = new WeakMap<OwnerPlan, PlanService[]>();
  /** By plan: its services' canonical keys (directedKeys). */
  readonly keys = new WeakMap<OwnerPlan, string[]>();

  /**
   * The informer's form of a slice (its transform): the strictly read slice itself when it reads
   * (its metadata the received object's), noted as its own read, so one copy of the slice is kept
   * and not the received object besides; the received object when it does not read.
   */
  adopt<T extends object>(obj: T): T {
    const r = readSlice(obj);
    const kept = r.parsed.ok ? (r.parsed.value as unknown as T) : obj;
    this.parsed.set(kept, r);
    return kept;
  }
}

/** A slice read strictly, and the owner it claims (read leniently when the slice is unusable). */
interface ReadSlice { parsed: ReturnType<typeof parsePlanSlice>; owner: { uid: string; virtualServer?: string } }

function readSlice(obj: unknown): ReadSlice {
  const parsed = parsePlanSlice(obj);
  const owner = parsed.ok
    ? { uid: parsed.value.owner.uid, virtualServer: `${parsed.value.owner.namespace}/${parsed.value.owner.name}` }
    : rawOwner(obj);
  return { parsed, owner };
}

export function readSliceCached(obj: unknown, cache: PlanBookCache | undefined): ReadSlice {
  if (!cache || typeof obj !== 'object' || obj === null) return readSlice(obj);
  let r = cache.parsed.get(obj);
  if (!r) cache.parsed.set(obj, (r = readSlice(obj)));
  return r;
}

function assembledPlan(uid: string, slices: PlanSliceObject[], cache: PlanBookCache | undefined, next: PlanBookCache['assembled']): ReturnType<typeof assemblePlan> {
  const hit = cache?.assembled.get(uid);
  const result = hit && hit.slices.length === slices.length && slices.every((s) => hit.slices.includes(s)) ? hit.result : assemblePlan(slices);
  next.set(uid, { slices: hit?.result === result ? hit.slices : [...slices], result });
  return result;
}

export function groupSlices(objects: readonly unknown[], cache?: PlanBookCache): Map<string, Group> {
  const groups = new Map<string, Group>();
  for (const obj of objects) {
    const { parsed, owner } = readSliceCached(obj, cache);
    let g = groups.get(owner.uid);
    if (!g) groups.set(owner.uid, (g = { slices: [], errors: [] }));
    g.virtualServer ??= owner.virtualServer;
    if (parsed.ok) g.slices.push(parsed.value);
    else g.errors.push(`slice ${String((obj as { metadata?: { name?: unknown } })?.metadata?.name)}: ${parsed.message}`);
  }
  return groups;
}

/** The recorded keys of an owner: by uid, or by name where the record has no uid. */
function recordedKeys(recorded: ReadonlyMap<string, RecordedOwner>, owner: KeyOwner): string[] {
  const out: string[] = [];
  for (const [key, r] of recorded) if (r.uid === owner.uid || (r.uid === undefined && r.virtualServer === owner.virtualServer)) out.push(key);
  return out.sort(byString);
}

/**
 * Reads the book. `lastGood` is the previous read's memory; `recorded` is the owner record the
 * agent wrote after its last sync (key → owner), used only for owners frozen without a last good plan.
 */
export function readPlanBook(objects: readonly unknown[], lastGood: ReadonlyMap<string, OwnerPlan>, recorded: ReadonlyMap<string, RecordedOwner>, cache?: PlanBookCache): PlanBook {
  const owners: BookOwner[] = [];
  const memory = new Map<string, OwnerPlan>();
  const nextAssembled: PlanBookCache['assembled'] = new Map();
  for (const [uid, g] of groupSlices(objects, cache)) {
    const o = bookOwner(uid, g, lastGood.get(uid), recorded, cache, nextAssembled);
    if (o.plan) memory.set(uid, o.plan);
    owners.push(o);
  }
  owners.sort(byOwnerName);
  if (cache) cache.assembled = nextAssembled;
  return { owners: new Map(owners.map((o) => [o.uid, o])), lastGood: memory };
}

export function byOwnerName(a: BookOwner, b: BookOwner): number {
  return byString(a.virtualServer, b.virtualServer) || byString(a.uid, b.uid);
}

/** One owner of the book from its slices; `last`: its last good plan, if any. */
export function bookOwner(uid: string, g: Group, last: OwnerPlan | undefined, recorded: ReadonlyMap<string, RecordedOwner>, cache: PlanBookCache | undefined, nextAssembled: PlanBookCache['assembled']): BookOwner {
  const assembled = g.errors.length === 0 ? assembledPlan(uid, g.slices, cache, nextAssembled) : undefined;
  if (assembled?.ok) {
    const o = assembled.value.owner;
    return { uid, virtualServer: `${o.namespace}/${o.name}`, plan: assembled.value, held: NO_KEYS };
  }
  const reason = assembled ? assembled.message : g.errors.join('; ');
  const rewriting = assembled?.field === 'slices' ? newestSince(g.slices) : undefined;
  const virtualServer = g.virtualServer ?? (last ? `${last.owner.namespace}/${last.owner.name}` : [...recorded.values()].find((r) => r.uid === uid)?.virtualServer ?? '(unknown)');
  if (last) {
    return { uid, virtualServer, plan: last, frozen: `plan unusable: ${reason}; keeping the last good plan (generation ${last.owner.generation})`, held: NO_KEYS, ...(rewriting ? { rewriting } : {}) };
  }
  const held = recordedKeys(recorded, { uid, virtualServer });
  return { uid, virtualServer, frozen: `plan unusable: ${reason}; no good plan seen since the agent started: ${held.length} recorded service(s) held as the kernel has them`, held, ...(rewriting ? { rewriting } : {}) };
}

/** Held keys of an owner that holds none: one shared array, not an empty one per owner. */
const NO_KEYS: string[] = Object.freeze([]) as unknown as string[];

/** The lowest resourceVersion among the slices of the newest revision (the one written last). */
function newestSince(slices: readonly PlanSliceObject[]): string | undefined {
  const rv = (s: PlanSliceObject) => s.metadata.resourceVersion ?? '';
  const newest = slices.reduce<PlanSliceObject | undefined>((a, s) => (!a || compareResourceVersions(rv(s), rv(a)) === 1 ? s : a), undefined);
  if (!newest) return undefined;
  const own = slices.filter((s) => s.revision === newest.revision).map(rv);
  if (!own.every(comparableResourceVersion)) return undefined;
  return own.reduce((a, b) => (compareResourceVersions(b, a) === -1 ? b : a));
}

/** The services to program: every owner's plan (published or last good), as the syncer reads them. */
export function bookServices(book: PlanBook, cache?: PlanBookCache): PlanService[] {
  return [...book.owners.values()].flatMap((o) => (o.plan ? ownerServices(o.plan, cache) : []));
}

/** planServices, kept per plan object when a cache is given. */
export function ownerServices(plan: OwnerPlan, cache?: PlanBookCache): PlanService[] {
  let out = cache?.services.get(plan);
  if (!out) { out = planServices(plan); cache?.services.set(plan, out); }
  return out;
}

/** Keys held without a plan entry (owners frozen without a last good plan). */
export function bookHeld(book: PlanBook): string[] {
  return [...book.owners.values()].flatMap((o) => o.held);
}

/** Canonical service key of a plan key (the syncer's form); the key itself when it is no service key. */
export function canonicalKey(key: string): string {
  const k = parseServiceKey(key);
  return k ? serviceKeyOf(k) : key;
}

/** The owner of every key this node programs from the book: its directed services and held keys. */
export function directedKeys(book: PlanBook, node: string, cache?: PlanBookCache): Map<string, KeyOwner> {
  const out = new Map<string, KeyOwner>();
  for (const o of book.owners.values()) {
    const owner = { uid: o.uid, virtualServer: o.virtualServer };
    if (o.plan?.directors.includes(node)) {
      let keys = cache?.keys.get(o.plan);
      if (!keys) { keys = o.plan.services.map((s) => canonicalKey(s.key)); cache?.keys.set(o.plan, keys); }
      for (const k of keys) out.set(k, owner);
    }
    for (const k of o.held) out.set(canonicalKey(k), owner);
  }
  return out;
}

/**
 * The resourceVersion this node may report as synced while some plans are being rewritten: just
 * below the first slice of each rewrite (so the controller keeps waiting for those plans), and
 * the owners still to be reported frozen (unusable for another reason, or whose resourceVersions
 * cannot be compared).
 */
export function belowRewrites(rv: string, unusable: readonly BookOwner[]): { synced: string; frozenOwners: BookOwner[] } {
  let synced = rv;
  const frozenOwners: BookOwner[] = [];
  for (const o of unusable) {
    const since = o.rewriting;
    if (since === undefined || !comparableResourceVersion(since) || !comparableResourceVersion(synced) || since === '0') {
      frozenOwners.push(o);
      continue;
    }
    const below = String(BigInt(since) - 1n);
    if (compareResourceVersions(below, synced) === -1) synced = below;
  }
  return { synced, frozenOwners };
}

