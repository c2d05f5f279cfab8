// In-process validation of manifests against a CRD's openAPIV3Schema (the API server's schema
// layer), for the agent's standalone mode and for tests. The Kubernetes dialect is translated to plain JSON Schema for ajv:
//   - objects with properties reject unknown fields (the API server prunes them, and kubectl's
//     default --validate=strict turns that into an error), unless
//     x-kubernetes-preserve-unknown-fields is set; an object with neither properties nor
//     additionalProperties (metadata) is free-form, as in Kubernetes;
//   - x-kubernetes-int-or-string -> integer or string; nullable -> also null;
//   - x-kubernetes-list-type set -> no two equal items; map -> no two items share their key
//     fields; the later duplicate is reported at its index (spec.ports[1]), like the API server;
//   - formats: date-time and friends via ajv-formats, int32/int64 ranges; unknown formats are
//     ignored, as Kubernetes ignores them.
// Before validation the API server's structural defaults are applied (api/defaults.ts); after the
// schema passes, the CRD's own CEL rules (x-kubernetes-validations) are evaluated by api/cel/ (a
// schema-invalid object is already rejected, and its rules could only fail on wrong types). The
// apiserver test tier checks the same manifests against a real kube-apiserver.
// A CRD is compiled once (ajv and every CEL rule) and kept for the life of the process: a rule
// outside the supported CEL subset fails there, loudly, not on some later document. ajv itself
// lives in api/schema-compile.ts; the default CRD's validator is generated ahead of time
// (api/precompiled/), so the agent's standalone mode neither parses the CRD's YAML nor loads ajv's
// compiler unless crds/virtualserver.yaml changed since (compileCrdFile).
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ErrorObject, ValidateFunction } from 'ajv';
import { compileRuleTree, evaluateRules, type RuleNode } from './cel/rules.ts';
import { withSchemaDefaults } from './defaults.ts';
import { parseShipped } from './yaml.ts';
import * as precompiled from './precompiled/virtualserver.js';
import { LIST_UNIQUE } from './schema-runtime.ts';

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
export const defaultCrdPath = join(repoRoot, 'crds', 'virtualserver.yaml');

type Json = { [key: string]: unknown };

export interface Crd {
  group: string;
  version: string;
  kind: string;
  plural: string;
  /** group/version */
  apiVersion: string;
  /** The version's openAPIV3Schema, as written in the CRD. */
  schema: Json;
}

/** One schema violation; path in Kubernetes field-path form, e.g. spec.ports[0].port. */
export interface SchemaError {
  path: string;
  message: string;
  keyword: string;
}

export interface CelRule {
  /** Where the rule sits, items written [*], e.g. spec.addresses[*] or spec. */
  location: string;
  /** location + fieldPath: where the API server reports its failure. */
  reportedAt: string;
  rule: string;
  message?: string;
  messageExpression?: string;
  fieldPath?: string;
  reason?: string;
}

const KNOWN_FORMATS = new Set(['date-time', 'date', 'time', 'email', 'hostname', 'ipv4', 'ipv6', 'uri', 'uuid', 'byte', 'int32', 'int64']);

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Loads a CRD file (single version) and returns its identity and schema. */
export function loadCrd(path: string = defaultCrdPath): Crd {
  const doc = parseShipped(readFileSync(path, 'utf8'), path) as Json;
  if (doc.kind !== 'CustomResourceDefinition') throw new Error(`${path}: not a CustomResourceDefinition`);
  const spec = doc.spec as { group: string; names: { kind: string; plural: string }; versions: Array<{ name: string; schema: { openAPIV3Schema: Json } }> };
  const v = spec.versions[0];
  if (!v || spec.versions.length !== 1) throw new Error(`${path}: expected exactly one version`);
  return {
    group: spec.group,
    version: v.name,
    kind: spec.names.kind,
    plural: spec.names.plural,
    apiVersion: `${spec.group}/${v.name}`,
    schema: v.schema.openAPIV3Schema,
  };
}

/** Translates a Kubernetes structural schema into JSON Schema that ajv understands (see header). */
export function toJsonSchema(s: Json): Json {
  const out: Json = {};
  for (const [k, v] of Object.entries(s)) {
    if (k.startsWith('x-kubernetes-') || k === 'default' || k === 'nullable' || k === 'description') continue;
    if (k === 'format' && !KNOWN_FORMATS.has(String(v))) continue;
    if (k === 'properties' && isObject(v)) {
      out.properties = Object.fromEntries(Object.entries(v).map(([p, ps]) => [p, toJsonSchema(ps as Json)]));
    } else if ((k === 'items' || k === 'additionalProperties') && isObject(v)) {
      out[k] = toJsonSchema(v);
    } else if ((k === 'anyOf' || k === 'allOf' || k === 'oneOf') && Array.isArray(v)) {
      out[k] = v.map((x) => toJsonSchema(x as Json));
    } else if (k === 'not' && isObject(v)) {
      out.not = toJsonSchema(v);
    } else {
      out[k] = v;
    }
  }
  if (s['x-kubernetes-int-or-string'] === true) {
    delete out.type;
    out.anyOf = [{ type: 'integer' }, { type: 'string' }];
  }
  if (s.nullable === true && typeof out.type === 'string') {
    out.type = [out.type, 'null'];
    if (Array.isArray(out.enum)) out.enum = [...out.enum, null];
  }
  if (s.type === 'object' && isObject(s.properties) && s.additionalProperties === undefined
    && s['x-kubernetes-preserve-unknown-fields'] !== true) {
    out.additionalProperties = false;
  }
  // [] means: compare whole items (a set); otherwise compare these fields (a map).
  if (s['x-kubernetes-list-type'] === 'set') out[LIST_UNIQUE] = [];
  if (s['x-kubernetes-list-type'] === 'map') out[LIST_UNIQUE] = s['x-kubernetes-list-map-keys'] ?? [];
  return out;
}

/** /spec/ports/0/port -> spec.ports[0].port (JSON pointer escapes undone). */
export function toFieldPath(pointer: string, child?: string): string {
  const parts = pointer.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (child !== undefined) parts.push(child);
  let out = '';
  for (const p of parts) out += /^\d+$/.test(p) ? `[${p}]` : out === '' ? p : `.${p}`;
  return out;
}

function toSchemaError(e: ErrorObject): SchemaError {
  const params = e.params as { missingProperty?: string; additionalProperty?: string };
  const child = e.keyword === 'required' ? params.missingProperty
    : e.keyword === 'additionalProperties' ? params.additionalProperty : undefined;
  const path = toFieldPath(e.instancePath, child);
  const message = e.keyword === 'additionalProperties' ? `unknown field "${path}"` : (e.message ?? e.keyword);
  return { path, message, keyword: e.keyword };
}

export interface CompiledCrd {
  crd: Crd;
  /** The manifest with the schema's defaults applied, and every error (apiVersion, kind, schema, CEL). */
  check(manifest: unknown): { object: unknown; errors: SchemaError[] };
  /** Schema layer only (apiVersion, kind, OpenAPI), on the defaulted manifest. */
  schemaErrors(manifest: unknown): SchemaError[];
  /** Where the schema validator came from: generated ahead of time (api/precompiled/) or by ajv in this process. */
  validator: 'precompiled' | 'runtime';
}

/** A CRD's CompiledCrd around its ajv validator; compiles its CEL rules (throws CelCompileError). */
export function compiledFrom(crd: Crd, validate: ValidateFunction, validator: CompiledCrd['validator']): CompiledCrd {
  const rules: RuleNode | undefined = compileRuleTree(crd.schema);
  const schemaLayer = (manifest: unknown): SchemaError[] => {
    const errors: SchemaError[] = [];
    if (isObject(manifest)) {
      if (manifest.apiVersion !== crd.apiVersion) errors.push({ path: 'apiVersion', keyword: 'apiVersion', message: `must be ${crd.apiVersion}` });
      if (manifest.kind !== crd.kind) errors.push({ path: 'kind', keyword: 'kind', message: `must be ${crd.kind}` });
    }
    if (!validate(manifest)) errors.push(...(validate.errors ?? []).map(toSchemaError));
    return errors;
  };
  return {
    crd,
    validator,
    schemaErrors: (manifest) => schemaLayer(withSchemaDefaults(manifest, crd.schema)),
    check(manifest) {
      const object = withSchemaDefaults(manifest, crd.schema);
      const errors = schemaLayer(object);
      if (errors.length === 0) {
        for (const v of evaluateRules(rules, object)) errors.push({ path: v.path, message: v.message, keyword: 'x-kubernetes-validations' });
      }
      return { object, errors };
    },
  };
}

/** SHA-256 of a file's bytes (hex): what the precompiled validator records of the CRD it was made from. */
export function fileSha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/**
 * A CRD file compiled: with the validator generated ahead of time from crds/virtualserver.yaml
 * (api/precompiled/, scripts/generate-validator.ts) when the file has exactly the bytes it was
 * generated from, else with ajv now (which loads ajv's compiler: a CRD edited since the last
 * `npm run build`, correct but slower). CEL rules are compiled here either way.
 */
export async function compileCrdFile(path: string): Promise<CompiledCrd> {
  if (fileSha256(path) === precompiled.crdSha256) return compiledFrom(precompiled.crd, precompiled.validate, 'precompiled');
  const { compileCrd } = await import('./schema-compile.ts');
  return compileCrd(loadCrd(path));
}

let defaultCompiled: Promise<CompiledCrd> | undefined;

/** crds/virtualserver.yaml compiled (compileCrdFile), once per process. */
export function defaultCompiledCrd(): Promise<CompiledCrd> {
  return (defaultCompiled ??= compileCrdFile(defaultCrdPath));
}

/** Every CEL rule in a schema, with where it sits and where its failure is reported. */
export function celRules(schema: Json, location = ''): CelRule[] {
  const rules: CelRule[] = [];
  const list = schema['x-kubernetes-validations'];
  if (Array.isArray(list)) {
    for (const r of list as Json[]) {
      const fieldPath = typeof r.fieldPath === 'string' ? r.fieldPath : undefined;
      rules.push({
        location,
        reportedAt: fieldPath ? `${location}${fieldPath}` : location,
        rule: String(r.rule),
        ...(typeof r.message === 'string' ? { message: r.message } : {}),
        ...(typeof r.messageExpression === 'string' ? { messageExpression: r.messageExpression } : {}),
        ...(fieldPath ? { fieldPath } : {}),
        ...(typeof r.reason === 'string' ? { reason: r.reason } : {}),
      });
    }
  }
  const join = (child: string) => (location === '' ? child : `${location}.${child}`);
  if (isObject(schema.properties)) {
    for (const [k, v] of Object.entries(schema.properties)) rules.push(...celRules(v as Json, join(k)));
  }
  if (isObject(schema.items)) rules.push(...celRules(schema.items, `${location}[*]`));
  if (isObject(schema.additionalProperties)) rules.push(...celRules(schema.additionalProperties, `${location}[*]`));
  return rules;
}
