// Structural defaulting as the API server applies it before validation
// (k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting), so that the schema and the
// CEL rules see what they would see in a cluster (forwarding: NAT when it is left out, scheduler
// {name: wlc}, …):
//   - an absent property with a default gets a copy of the default, and defaulting continues
//     inside it (a default of {} picks up its children's defaults);
//   - a null in a property that is not nullable is pruned before defaulting, then defaulted;
//   - list items and additionalProperties values are defaulted by their own schema.
// The input is not modified: the result is a copy.

type Json = { [key: string]: unknown };
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A deep copy of a JSON value (what a parsed manifest is); several times faster than structuredClone. */
function jsonCopy<T>(v: T): T {
  if (Array.isArray(v)) return v.map(jsonCopy) as T;
  if (!isObject(v)) return v;
  const out: Json = {};
  for (const k of Object.keys(v)) out[k] = jsonCopy(v[k]);
  return out as T;
}

function defaultInPlace(x: unknown, s: Json): void {
  if (Array.isArray(x)) {
    if (isObject(s.items)) for (const v of x) defaultInPlace(v, s.items);
    return;
  }
  if (!isObject(x)) return;
  const props = isObject(s.properties) ? s.properties : {};
  for (const [k, p] of Object.entries(props)) {
    const prop = p as Json;
    if (x[k] === null && prop.nullable !== true) delete x[k];
    if (!(k in x) && prop.default !== undefined) x[k] = jsonCopy(prop.default);
  }
  for (const [k, v] of Object.entries(x)) {
    const prop = props[k];
    if (isObject(prop)) defaultInPlace(v, prop);
    else if (isObject(s.additionalProperties)) defaultInPlace(v, s.additionalProperties);
  }
}

/** A defaulted copy of a manifest under its openAPIV3Schema. */
export function withSchemaDefaults<T>(manifest: T, schema: Json): T {
  const copy = jsonCopy(manifest);
  defaultInPlace(copy, schema);
  return copy;
}
