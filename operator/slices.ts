// The plan slices as the controller knows them: the informer's cache plus the writes of this
// controller that the watch has not delivered yet, grouped by owner (the VirtualServer's
// namespace/name). With the overlay a reconcile that runs right after a write (another event
// for the same VirtualServer) diffs against what it wrote, not against the older cached copy, so
// it neither rewrites a slice nor PUTs a stale resourceVersion. An overlay entry goes away when
// the watch delivers that write (or anything newer). No I/O here.
import { compareResourceVersions } from '../api/agent-report.ts';
import type { PublishedSlice } from './publish.ts';

/** namespace/name of the VirtualServer a slice belongs to, from its owner field. */
export function ownerKeyOf(slice: unknown): string | undefined {
  const o = (slice as { owner?: { namespace?: unknown; name?: unknown } } | undefined)?.owner;
  return typeof o?.namespace === 'string' && typeof o.name === 'string' ? `${o.namespace}/${o.name}` : undefined;
}

const decimal = (rv: string | undefined): bigint | undefined => (rv && /^[0-9]{1,30}$/.test(rv) ? BigInt(rv) : undefined);

/** Owners sorted by the highest resourceVersion among their slices. */
class RvIndex {
  readonly #of = new Map<string, bigint>();
  #sorted: Array<[bigint, string]> = [];

  /** First position whose rv is > rv (or >= with inclusive). */
  #search(rv: bigint, inclusive: boolean): number {
    let lo = 0, hi = this.#sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const v = this.#sorted[mid]![0];
      if (v < rv || (!inclusive && v === rv)) lo = mid + 1; else hi = mid;
    }
    return lo;
  }

  set(owner: string, rv: bigint | undefined): void {
    const old = this.#of.get(owner);
    if (old === rv) return;
    if (old !== undefined) {
      let i = this.#search(old, true);
      while (this.#sorted[i]![1] !== owner) i++;
      this.#sorted.splice(i, 1);
      this.#of.delete(owner);
    }
    if (rv === undefined) return;
    this.#of.set(owner, rv);
    // New resourceVersions are the highest so far: this is an append in the common case.
    this.#sorted.splice(this.#search(rv, false), 0, [rv, owner]);
  }

  /** Owners whose highest resourceVersion lies in (lo, hi]. */
  between(lo: bigint, hi: bigint): string[] {
    const out: string[] = [];
    for (let i = this.#search(lo, false); i < this.#sorted.length && this.#sorted[i]![0] <= hi; i++) out.push(this.#sorted[i]![1]);
    return out;
  }
}

export class PublishedSlices {
  readonly #cached = new Map<string, Map<string, PublishedSlice>>();
  /** Our writes not yet seen in the cache, by owner and name; undefined: we deleted it. */
  readonly #written = new Map<string, Map<string, PublishedSlice | undefined>>();
  readonly #rv = new RvIndex();

  /**
   * An informer event for one slice. Returns true when it tells nothing new: the echo of a write
   * of ours, or a version older than the one we wrote. Slices without an owner are ignored (the
   * CRD requires one).
   */
  observe(slice: PublishedSlice, deleted: boolean): boolean {
    const owner = ownerKeyOf(slice);
    if (!owner) return true;
    const name = slice.metadata.name;
    let m = this.#cached.get(owner);
    if (deleted) m?.delete(name);
    else {
      if (!m) this.#cached.set(owner, (m = new Map()));
      m.set(name, slice);
    }
    if (m?.size === 0) this.#cached.delete(owner);
    const mine = this.#written.get(owner);
    let echo = false;
    if (mine?.has(name)) {
      const w = mine.get(name);
      const cmp = w ? compareResourceVersions(slice.metadata.resourceVersion ?? '', w.metadata.resourceVersion ?? '') : undefined;
      // Our deletion is seen once the watch says DELETED; events before it are older news.
      if (!w) { echo = true; if (deleted) this.#forget(owner, name); }
      else if (cmp === 0) { echo = true; this.#forget(owner, name); }
      else if (cmp === -1) echo = true;
      else this.#forget(owner, name);
    }
    this.#reindex(owner);
    return echo;
  }

  /**
   * A slice this controller created or replaced (the object the API server returned). When the
   * watch delivered this version (or a newer one) before the response came back, the cache already
   * says so and nothing is kept: an entry kept then would never be echoed again.
   */
  wrote(slice: PublishedSlice): void {
    const owner = ownerKeyOf(slice);
    if (!owner) return;
    const name = slice.metadata.name;
    const cached = this.#cached.get(owner)?.get(name);
    const cmp = cached ? compareResourceVersions(cached.metadata.resourceVersion ?? '', slice.metadata.resourceVersion ?? '') : undefined;
    if (cmp === 0 || cmp === 1) {
      this.#forget(owner, name);
      this.#reindex(owner);
      return;
    }
    this.#remember(owner, name, slice);
  }

  /** Writes and deletions of ours the watch has not delivered yet (tests check that none linger). */
  get pending(): number {
    let n = 0;
    for (const m of this.#written.values()) n += m.size;
    return n;
  }

  /** A slice this controller deleted (or found gone). */
  deleted(owner: string, name: string): void {
    this.#remember(owner, name, undefined);
  }

  /** The slices of one owner as last written or seen, sorted by uid then index. */
  current(owner: string): PublishedSlice[] {
    const out = new Map(this.#cached.get(owner) ?? []);
    for (const [name, w] of this.#written.get(owner) ?? []) {
      const c = out.get(name);
      if (!w) out.delete(name);
      else if (!c || compareResourceVersions(c.metadata.resourceVersion ?? '', w.metadata.resourceVersion ?? '') !== 1) out.set(name, w);
    }
    return [...out.values()].sort((a, b) => (a.owner.uid < b.owner.uid ? -1 : a.owner.uid > b.owner.uid ? 1 : a.index - b.index));
  }

  /** The directors of an owner's published plan (every slice of a plan names the same). */
  directors(owner: string): readonly string[] | undefined {
    return this.current(owner)[0]?.directors;
  }

  /** Every owner with a slice (cached or written). */
  owners(): string[] {
    return [...new Set([...this.#cached.keys(), ...this.#written.keys()])];
  }

  /**
   * Owners whose slices' highest resourceVersion lies in (lo, hi]: the VirtualServers whose
   * current plan a node moving its synced resourceVersion from lo to hi has just read. Costs
   * O(log owners + answer).
   */
  ownersBetween(lo: bigint, hi: bigint): string[] {
    return this.#rv.between(lo, hi);
  }

  #remember(owner: string, name: string, slice: PublishedSlice | undefined): void {
    let m = this.#written.get(owner);
    if (!m) this.#written.set(owner, (m = new Map()));
    m.set(name, slice);
    this.#reindex(owner);
  }

  #forget(owner: string, name: string): void {
    const m = this.#written.get(owner);
    if (m?.delete(name) && m.size === 0) this.#written.delete(owner);
  }

  #reindex(owner: string): void {
    let max: bigint | undefined;
    for (const s of this.current(owner)) {
      const v = decimal(s.metadata.resourceVersion);
      if (v !== undefined && (max === undefined || v > max)) max = v;
    }
    this.#rv.set(owner, max);
  }
}
