// A strict reader of JSON the other side of the contract wrote: every field must be one the
// reader knows, every value of the expected type and range. A violation throws a FieldError
// naming the JSON path; callers turn it into data (Parsed) at their boundary.

export class FieldError extends Error {
  readonly field: string;
  constructor(field: string, message: string) {
    super(`${field}: ${message}`);
    this.field = field;
  }
}

export interface Reader {
  readonly raw: unknown;
  readonly path: string;
  fail(key: string, message: string): never;
  /** Rejects any key not in `known`. */
  only(known: readonly string[]): void;
  has(key: string): boolean;
  str(key: string): string;
  int(key: string, min: number, max: number): number;
  bool(key: string): boolean;
  oneOf<T extends string | number>(key: string, values: readonly T[]): T;
  obj(key: string): Reader;
  /** An array field; absent reads as empty. */
  list(key: string): Reader[];
  /** This value itself, as a string / one of values (for list elements). */
  strSelf(): string;
  intSelf(min: number, max: number): number;
  oneOfSelf<T extends string | number>(values: readonly T[]): T;
}

const join = (path: string, key: string) => (path ? (key.startsWith('[') ? `${path}${key}` : `${path}.${key}`) : key);

export function reader(value: unknown, path: string): Reader {
  const o = (value && typeof value === 'object' && !Array.isArray(value) ? value : undefined) as Record<string, unknown> | undefined;
  const need = (key: string): unknown => {
    if (!o) throw new FieldError(path || '.', 'must be an object');
    if (o[key] === undefined || o[key] === null) throw new FieldError(join(path, key), 'required');
    return o[key];
  };
  const r: Reader = {
    raw: value,
    path,
    fail(key, message) { throw new FieldError(join(path, key), message); },
    only(known) {
      if (!o) throw new FieldError(path || '.', 'must be an object');
      for (const k of Object.keys(o)) if (!known.includes(k)) throw new FieldError(join(path, k), 'unknown field (written by a newer version?)');
    },
    has: (key) => o !== undefined && o[key] !== undefined && o[key] !== null,
    str(key) {
      const v = need(key);
      if (typeof v !== 'string') r.fail(key, 'must be a string');
      return v;
    },
    int(key, min, max) {
      const v = need(key);
      if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) r.fail(key, `must be an integer in ${min}..${max}`);
      return v;
    },
    bool(key) {
      const v = need(key);
      if (typeof v !== 'boolean') r.fail(key, 'must be true or false');
      return v;
    },
    oneOf(key, values) {
      const v = need(key);
      if (!values.includes(v as never)) r.fail(key, `unknown value ${JSON.stringify(v)} (known: ${values.join(', ')})`);
      return v as never;
    },
    obj: (key) => reader(need(key), join(path, key)),
    list(key) {
      if (!r.has(key)) return [];
      const v = o![key];
      if (!Array.isArray(v)) r.fail(key, 'must be a list');
      return v.map((x, i) => reader(x, join(path, `${key}[${i}]`)));
    },
    strSelf() {
      if (typeof value !== 'string') throw new FieldError(path || '.', 'must be a string');
      return value;
    },
    intSelf(min, max) {
      if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) throw new FieldError(path || '.', `must be an integer in ${min}..${max}`);
      return value;
    },
    oneOfSelf(values) {
      if (!values.includes(value as never)) throw new FieldError(path || '.', `unknown value ${JSON.stringify(value)} (known: ${values.join(', ')})`);
      return value as never;
    },
  };
  return r;
}
