// Bookkeeping that passes the plan on in proportion to its change (issue 14, item 2): the book's
// services list kept between syncs and patched where owners' services were replaced by as many,
// and per-entry stages (gating) that patch their output where their input was patched
// (../delta-list.ts). Without a delta a stage rebuilds its whole output.
import type { PlanService } from '../../api/plan.ts';
import { AlternatingList, rewrites, type Staged } from '../delta-list.ts';
import { ownerServices, type PlanBook, type PlanBookCache } from './plan-book.ts';

/** The owners a book read re-read, and whether the owners' order changed. */
export interface BookChanges {
  owners: ReadonlySet<string>;
  reordered: boolean;
}

/**
 * bookServices() kept between reads: every owner's plan services, owners in book order. Patched
 * where a re-read owner has as many services as before; rebuilt when owners came, went or moved,
 * or an owner's service count changed.
 */
export class BookList {
  #list: readonly PlanService[] = [];
  readonly #lists = new AlternatingList<PlanService>();
  /** Owner uid → where its services are in the list. */
  #spans = new Map<string, { start: number; count: number }>();
  #built = false;

  update(book: PlanBook, changes: BookChanges, cache: PlanBookCache): Staged<PlanService> {
    const patched = this.#built && !changes.reordered ? this.#patch(book, changes.owners, cache) : undefined;
    if (patched) return patched;
    const list: PlanService[] = [];
    this.#spans = new Map();
    for (const o of book.owners.values()) {
      const services = o.plan ? ownerServices(o.plan, cache) : [];
      this.#spans.set(o.uid, { start: list.length, count: services.length });
      for (const s of services) list.push(s);
    }
    this.#list = list;
    this.#built = true;
    return this.#lists.whole(list);
  }

  #patch(book: PlanBook, owners: ReadonlySet<string>, cache: PlanBookCache): Staged<PlanService> | undefined {
    const changed = new Map<number, PlanService>();
    for (const uid of owners) {
      const span = this.#spans.get(uid), o = book.owners.get(uid);
      if (!span || !o) return undefined;
      const services = o.plan ? ownerServices(o.plan, cache) : [];
      if (services.length !== span.count) return undefined;
      services.forEach((s, j) => { if (this.#list[span.start + j] !== s) changed.set(span.start + j, s); });
    }
    if (changed.size === 0) return { list: this.#list, delta: { from: this.#list, at: [] } };
    const next = this.#lists.patch(this.#list, [...changed.keys()], (i) => changed.get(i)!);
    this.#list = next.list;
    return next;
  }
}

/**
 * A per-entry stage kept between calls: `each` over the list, re-applied only where the list was
 * patched from the last input, while `deps` (what `each` reads besides the entry) is the same
 * object. The same input list gives the same output list.
 */
export class MappedList<I, O, D> {
  #in: readonly I[] | undefined;
  /** rewrites(#in) when it was kept: a rewritten input array is another input (../delta-list.ts). */
  #inRewrites = 0;
  #out: readonly O[] = [];
  #deps: D | undefined;
  readonly #each: (x: I, deps: D) => O;
  readonly #lists = new AlternatingList<O>();

  constructor(each: (x: I, deps: D) => O) {
    this.#each = each;
  }

  map(input: Staged<I>, deps: D): Staged<O> {
    const kept = this.#in !== undefined && deps === this.#deps && rewrites(this.#in) === this.#inRewrites;
    if (kept && input.list === this.#in) return { list: this.#out, delta: { from: this.#out, at: [] } };
    const at = kept && input.delta && input.delta.from === this.#in ? input.delta.at : undefined;
    const out = at ? this.#lists.patch(this.#out, at, (i) => this.#each(input.list[i]!, deps)) : this.#lists.whole(input.list.map((x) => this.#each(x, deps)));
    this.#in = input.list;
    this.#inRewrites = rewrites(input.list);
    this.#out = out.list;
    this.#deps = deps;
    return out;
  }
}
