// The agent's plan book kept between reads (PlanBookIndex): the same book readPlanBook()
// (plan-book.ts) reads over the same slices, re-reading only the owners whose slices changed.
import type { OwnerPlan, SliceService } from '../../api/plan-slice.ts';
import { bookOwner, byOwnerName, directedKeys, groupSlices, PlanBookCache, readSliceCached, type BookOwner, type KeyOwner, type PlanBook, type RecordedOwner } from './plan-book.ts';

const NO_SERVICES: readonly SliceService[] = Object.freeze([]);

/**
 * What an owner adds to directedKeys(): its name, its services when this node directs them, its
 * held keys. References into the book owner, not a text made of them (about 110 bytes an owner
 * at 10,000 owners).
 */
interface Contribution { virtualServer: string; services: readonly SliceService[]; held: readonly string[] }

function sameContribution(a: Contribution, b: Contribution): boolean {
  return a.virtualServer === b.virtualServer && a.services.length === b.services.length && a.held.length === b.held.length
    && a.services.every((s, i) => s.key === b.services[i]!.key) && a.held.every((k, i) => k === b.held[i]);
}

/**
 * The book kept between reads (the agent's): a read re-reads only the owners whose slices changed
 * since the last one, found by object identity per slice (the informer replaces an object when it
 * changes and never modifies one), and re-sorts the owners only when one came, went or was renamed.
 * Reads the same book as readPlanBook() over the same slices with the previous read's memory
 * (test/unit/cluster-plan-book-index.test.ts holds it to that). The book a read returns holds the
 * index's own maps, not copies: it is valid until the next read.
 */
export class PlanBookIndex {
  readonly cache = new PlanBookCache();
  /**
   * Slice key → the object last read, the owner it claimed, the read that last found it, and when
   * the key was first seen (a group's slices are read in that order, the informer's list order).
   */
  #slices = new Map<string, { obj: unknown; uid: string; seen: number; seq: number }>();
  /** Owner uid → the keys of its slices (in #slices; an array, not a Map per owner: most have one). */
  #groups = new Map<string, string[]>();
  #seq = 0;
  #owners = new Map<string, BookOwner>();
  #memory = new Map<string, OwnerPlan>();
  #recorded: ReadonlyMap<string, RecordedOwner> | undefined;
  #reads = 0;
  /** What each owner adds to directedKeys(); the map stands while none of it changes (sameContribution). */
  #contributions = new Map<string, Contribution>();
  #directed: Map<string, KeyOwner> | undefined;

  /** The node whose directed keys directedKeys() gives. */
  readonly node: string;

  constructor(node = '') {
    this.node = node;
  }

  /** Slice key → the object an informer event gave since the last read (null: deleted). */
  #noted = new Map<string, unknown>();

  /** An informer event for one slice: readNoted() looks only at the slices events named. */
  note(obj: unknown, deleted = false): void {
    this.#noted.set(sliceKey(obj), deleted ? null : obj);
  }

  /**
   * read() of the informer's list, looking only at the slices noted since the last read, not at
   * every slice: the informer emits an event for every change, relists included. The first read
   * walks `list()` (events before it may have been missed).
   */
  readNoted(list: () => readonly unknown[], recorded: ReadonlyMap<string, RecordedOwner>): PlanBook {
    if (this.#reads === 0) return this.read(list(), recorded);
    const read = ++this.#reads;
    const dirty = new Set<string>();
    for (const [key, obj] of this.#noted) {
      const had = this.#slices.get(key);
      if (obj !== null) { if (had?.obj !== obj) this.#place(key, obj, had, read, dirty); continue; }
      if (!had) continue;
      this.#slices.delete(key);
      dirty.add(had.uid);
      this.#leave(had.uid, key);
    }
    this.#noted.clear();
    return this.#reread(dirty, recorded);
  }

  read(objects: readonly unknown[], recorded: ReadonlyMap<string, RecordedOwner>): PlanBook {
    // The walk sees every slice as it is now: what events said before is in it.
    this.#noted.clear();
    return this.#reread(this.#changedOwners(objects), recorded);
  }

  /** Owners re-read since the last takeChanges(), and whether the owners' order changed (BookList's input). */
  #touched = new Set<string>();
  #reordered = false;

  /** Uids of the owners whose plan is unusable (frozen). */
  #frozen = new Set<string>();

  /** The book's frozen owners in book order, without walking the book. */
  frozenOwners(): BookOwner[] {
    return [...this.#frozen].map((uid) => this.#owners.get(uid)!).sort(byOwnerName);
  }

  takeChanges(): { owners: ReadonlySet<string>; reordered: boolean } {
    const c = { owners: this.#touched, reordered: this.#reordered };
    this.#touched = new Set();
    this.#reordered = false;
    return c;
  }

  /** The book with the `dirty` owners read again. */
  #reread(dirty: Set<string>, recorded: ReadonlyMap<string, RecordedOwner>): PlanBook {
    // The record names the keys of owners frozen without a plan: a new one re-reads them.
    if (recorded !== this.#recorded) for (const o of this.#owners.values()) if (!o.plan) dirty.add(o.uid);
    this.#recorded = recorded;
    let resort = false;
    for (const uid of dirty) {
      const was = this.#owners.get(uid);
      const group = this.#groups.get(uid);
      if (!group) {
        this.#owners.delete(uid);
        this.#frozen.delete(uid);
        this.#memory.delete(uid);
        this.cache.assembled.delete(uid);
        if (this.#contributions.delete(uid)) this.#directed = undefined;
        continue;
      }
      const objs = [...group].sort((a, b) => this.#slices.get(a)!.seq - this.#slices.get(b)!.seq).map((k) => this.#slices.get(k)!.obj);
      const o = bookOwner(uid, groupSlices(objs, this.cache).get(uid)!, this.#memory.get(uid), recorded, this.cache, this.cache.assembled);
      if (o.plan) this.#memory.set(uid, o.plan); else this.#memory.delete(uid);
      if (!was || was.virtualServer !== o.virtualServer) resort = true;
      this.#owners.set(uid, o);
      if (o.frozen) this.#frozen.add(uid); else this.#frozen.delete(uid);
      const c = this.#contribution(o), before = this.#contributions.get(uid);
      // Replaced even when the same: the entry holds the plan's services, not an older plan's.
      this.#contributions.set(uid, c);
      if (!before || !sameContribution(before, c)) this.#directed = undefined;
    }
    for (const uid of dirty) this.#touched.add(uid);
    if (resort) this.#reordered = true;
    if (resort) { this.#owners = new Map([...this.#owners.values()].sort(byOwnerName).map((o) => [o.uid, o])); this.#directed = undefined; }
    // Not copies: the book read is valid until the next read (the agent uses each at once).
    return { owners: this.#owners, lastGood: this.#memory };
  }

  /**
   * directedKeys() of the last read for this index's node: the very same Map object while no owner
   * changed what it adds (its directed keys, its held keys, its name) — a plan revision that only
   * moves real servers keeps it, so the caller can tell "no key came or went" by identity. Never
   * modify it.
   */
  directedKeys(): ReadonlyMap<string, KeyOwner> {
    this.#directed ??= directedKeys({ owners: this.#owners, lastGood: this.#memory }, this.node, this.cache);
    return this.#directed;
  }

  #contribution(o: BookOwner): Contribution {
    return { virtualServer: o.virtualServer, services: o.plan?.directors.includes(this.node) ? o.plan.services : NO_SERVICES, held: o.held };
  }

  /**
   * The owners whose slices were added, replaced or removed since the last read; the groups follow.
   * `objects` has one object per slice key (the informer's list).
   */
  #changedOwners(objects: readonly unknown[]): Set<string> {
    const read = ++this.#reads;
    const before = this.#slices.size;
    const dirty = new Set<string>();
    let found = 0;
    for (const obj of objects) {
      const key = sliceKey(obj);
      const had = this.#slices.get(key);
      if (had) {
        if (had.seen !== read) {
          found++;
          had.seen = read;
          if (had.obj === obj) continue;
        }
      }
      this.#place(key, obj, had, read, dirty);
    }
    // Every slice of the last read found again: nothing was deleted (no walk over all of them).
    if (found === before) return dirty;
    for (const [key, s] of this.#slices) {
      if (s.seen === read) continue;
      this.#slices.delete(key);
      dirty.add(s.uid);
      this.#leave(s.uid, key);
    }
    return dirty;
  }

  /** A slice new or replaced (`had`: what its key held): it joins its owner's group; both owners are dirty. */
  #place(key: string, obj: unknown, had: { uid: string; seq: number } | undefined, read: number, dirty: Set<string>): void {
    if (had) dirty.add(had.uid);
    const uid = readSliceCached(obj, this.cache).owner.uid;
    if (had && had.uid !== uid) this.#leave(had.uid, key);
    dirty.add(uid);
    this.#slices.set(key, { obj, uid, seen: read, seq: had?.seq ?? this.#seq++ });
    const g = this.#groups.get(uid);
    // [key], not [] and a push: an array grown by push keeps room for 17 keys (1.3 MiB at 10,000 owners).
    if (!g) this.#groups.set(uid, [key]);
    else if (!g.includes(key)) g.push(key);
  }

  #leave(uid: string, key: string): void {
    const g = this.#groups.get(uid);
    const at = g?.indexOf(key) ?? -1;
    if (at >= 0) g!.splice(at, 1);
    if (g?.length === 0) this.#groups.delete(uid);
  }
}

/** A slice's identity in the informer's list: namespace/name (readable even when the slice is not). */
function sliceKey(obj: unknown): string {
  const m = (obj as { metadata?: { namespace?: unknown; name?: unknown } } | null)?.metadata;
  return `${String(m?.namespace ?? '')}/${String(m?.name)}`;
}
