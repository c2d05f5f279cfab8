// What a compiled VirtualServer validator calls at validation time, besides ajv's own runtime
// helpers: the string formats (ajv-formats' full set, plus Kubernetes' int32/int64 ranges) and
// the duplicate check behind x-kubernetes-list-type set/map. Both api/schema-compile.ts (ajv at
// run time) and the precompiled validator (api/precompiled/, ajv's standalone code) use these same
// functions, so the two cannot disagree; this module must not import ajv itself, or the
// precompiled path would load ajv's compiler after all.
import { fullFormats } from 'ajv-formats/dist/formats.js';

/** The keyword api/schema.ts writes for x-kubernetes-list-type set ([]) and map (its key fields). */
export const LIST_UNIQUE = 'x-lvs-list-unique';

export const formats = {
  ...fullFormats,
  int32: { type: 'number', validate: (n: number) => Number.isInteger(n) && n >= -(2 ** 31) && n < 2 ** 31 },
  int64: { type: 'number', validate: (n: number) => Number.isSafeInteger(n) },
} as const;

/** A later item that repeats an earlier one: its index (a string, for ajv's error path) and the message. */
export interface Duplicate { index: string; message: string }

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * The later duplicates of a list: whole items when keys is [] (a set), else items whose key fields
 * are all equal (a map; a missing key counts as null, and non-object items are not compared).
 */
export function listDuplicates(data: readonly unknown[], keys: readonly string[]): Duplicate[] {
  const seen = new Set<string>();
  const out: Duplicate[] = [];
  data.forEach((item, i) => {
    const key = keys.length === 0 ? JSON.stringify(item)
      : isObject(item) ? JSON.stringify(keys.map((k) => item[k] ?? null)) : undefined;
    if (key === undefined) return;
    if (seen.has(key)) {
      const what = keys.length === 0 ? `value ${key}` : `entry for key ${keys.join(', ')} = ${key}`;
      out.push({ index: String(i), message: `duplicate ${what}` });
    }
    seen.add(key);
  });
  return out;
}
