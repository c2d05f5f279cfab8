// One copy of each repeated string value in the informer caches. JSON.parse gives every object
// its own copy of every string value (only property names are shared), so a cache of 10,000
// objects holds 10,000 copies of "lvs.dev/v1alpha1", of each condition's type, status, reason and
// message, of a namespace, a node name, a label value. Measured with bench/controller/memory.ts.
//
// The table is bounded: it holds at most MAX_ENTRIES strings and is emptied when full, so unique
// values (names, uids, addresses) cost nothing lasting, while values that repeat are back in it
// after a few objects. Replacing a string by an equal one changes no behaviour.
const MAX_ENTRIES = 8192;
/** Longer strings are rarely repeated verbatim; they are left as they are. */
const MAX_LENGTH = 512;

export class Interner {
  readonly #table = new Map<string, string>();
  readonly #maxEntries: number;

  constructor(maxEntries = MAX_ENTRIES) {
    this.#maxEntries = maxEntries;
  }

  get size(): number {
    return this.#table.size;
  }

  string(s: string): string {
    if (s.length > MAX_LENGTH) return s;
    const have = this.#table.get(s);
    if (have !== undefined) return have;
    if (this.#table.size >= this.#maxEntries) this.#table.clear();
    this.#table.set(s, s);
    return s;
  }

  /** Replaces, in place, every string value of a JSON value (objects and arrays, at any depth); returns it. */
  deep<T>(value: T): T {
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) {
        const v: unknown = value[i];
        if (typeof v === 'string') value[i] = this.string(v);
        else if (v !== null && typeof v === 'object') this.deep(v);
      }
    } else if (value !== null && typeof value === 'object') {
      const o = value as Record<string, unknown>;
      for (const k of Object.keys(o)) {
        const v = o[k];
        if (typeof v === 'string') o[k] = this.string(v);
        else if (v !== null && typeof v === 'object') this.deep(v);
      }
    }
    return value;
  }
}

/** The process's table, shared by every informer: the same namespace or node name recurs across resources. */
export const interner = new Interner();
