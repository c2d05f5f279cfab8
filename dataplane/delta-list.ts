// A list passed on in proportion to its change (issue 14, item 2): `delta` names the positions
// where `list` differs from `from`, the list it was patched from (same length). Without a delta
// a consumer rebuilds from the whole list.

export interface ListDelta<T> {
  from: readonly T[];
  /** Positions where the list differs from `from`. */
  at: readonly number[];
}

export interface Staged<T> {
  list: readonly T[];
  delta?: ListDelta<T>;
}

/** Array → how many times an AlternatingList wrote into it again (see rewrites()). */
const writes = new WeakMap<readonly unknown[], number>();

/**
 * How many times `list` was rewritten in place (0: never). A consumer that keeps a list to compare
 * or patch from keeps this number with it: the list is what it was only while the number is the
 * same (a list kept past the next-but-one patch is another list in the same array).
 */
export function rewrites(list: readonly unknown[]): number {
  return writes.get(list) ?? 0;
}

/**
 * A stage's output lists, patched without allocating: two arrays used in turn, the next list
 * written into the one before the last after bringing it level with the last (copying a list of
 * 40,000 entries per change cost more CPU, in the garbage collector, than the rest of a change).
 * So a list stays as it was only until the next-but-one patch: a consumer may rely on the last list
 * it was given (to compare or patch from), never an older one; one that may have missed a list (a
 * stage that threw between) keeps rewrites() of what it kept and rebuilds when that moved.
 */
export class AlternatingList<T> {
  /** The last list given out, the one before it, and where they differ. */
  #last: readonly T[] | undefined;
  #spare: T[] | undefined;
  #behind: readonly number[] = [];

  /** A whole new list: the next patch copies it once. */
  whole(list: readonly T[]): Staged<T> {
    this.#last = list;
    this.#spare = undefined;
    return { list };
  }

  /** `from` (the last list) with `value(i)` at each of `at`. */
  patch(from: readonly T[], at: readonly number[], value: (i: number) => T): Staged<T> {
    let list: T[];
    if (this.#spare && from === this.#last) {
      list = this.#spare;
      writes.set(list, rewrites(list) + 1);
      for (const i of this.#behind) list[i] = from[i]!;
    } else list = from.slice();
    for (const i of at) list[i] = value(i);
    this.#spare = from === this.#last ? (from as T[]) : undefined;
    this.#behind = at;
    this.#last = list;
    return { list, delta: { from, at } };
  }
}
