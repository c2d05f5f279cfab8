// ajv, set up for the Kubernetes dialect api/schema.ts translates to (see its header), and the CRD
// compile that runs it in-process: for a caller-supplied CRD (tests, benchmarks), for the default
// CRD when the precompiled validator does not match it, and, with code.source, for
// scripts/generate-validator.ts, which writes that precompiled validator with ajv's standalone
// code generation. Loading this module loads ajv's compiler: api/schema.ts imports it only when it
// has to compile.
import { _, Ajv, stringify, type Code, type CodeKeywordDefinition, type Name } from 'ajv';
import { compiledFrom, toJsonSchema, type CompiledCrd, type Crd, type SchemaError } from './schema.ts';
import { LIST_UNIQUE, formats, listDuplicates } from './schema-runtime.ts';

/**
 * How generated code names api/schema-runtime.ts: require("lvs:schema-runtime").formats, ...
 * (ajv's standalone code refers to outside values as require() expressions;
 * scripts/generate-validator.ts turns them into imports).
 */
export const RUNTIME_MODULE = 'lvs:schema-runtime';

/** Items of a set, or key fields of a list-type map, must be unique; reports each later duplicate at its index. */
const listUnique: CodeKeywordDefinition = {
  keyword: LIST_UNIQUE,
  type: 'array',
  schemaType: 'array',
  error: {
    message: ({ params }) => params.message as Code,
    params: ({ params }) => _`{keys: ${params.keys}}`,
  },
  code(cxt) {
    const { gen, data, schema } = cxt;
    const keys = stringify(schema);
    const check = gen.scopeValue('func', { ref: listDuplicates, code: _`require(${RUNTIME_MODULE}).listDuplicates` });
    const dups = gen.const('dups', _`${check}(${data}, ${keys})`);
    gen.forOf('dup', dups, (dup: Name) => {
      const index = gen.const('index', _`${dup}.index`);
      cxt.error(true, { message: _`${dup}.message`, keys }, { instancePath: index });
    });
  },
};

/** An ajv instance for CRD schemas; source: keep each validator's code for standalone generation. */
export function newAjv(source = false): Ajv {
  const ajv = new Ajv({
    allErrors: true,
    strict: true,
    strictTypes: false,
    formats,
    code: { source, esm: true, lines: source, formats: _`require(${RUNTIME_MODULE}).formats` },
  });
  ajv.addKeyword(listUnique);
  return ajv;
}

/** Compiles a CRD's schema (ajv) and CEL rules now; throws CelCompileError for a rule it cannot evaluate. */
export function compileCrd(crd: Crd): CompiledCrd {
  return compiledFrom(crd, newAjv().compile(toJsonSchema(crd.schema)), 'runtime');
}

const compiled = new WeakMap<Crd, CompiledCrd>();

/** compileCrd(crd), once per CRD object. */
export function compiledCrd(crd: Crd): CompiledCrd {
  let c = compiled.get(crd);
  if (!c) compiled.set(crd, c = compileCrd(crd));
  return c;
}

/**
 * Validates one manifest (a parsed object) as the API server would on create: defaults, then the
 * CRD's schema (apiVersion and kind included), then its CEL rules. Returns [] when valid.
 */
export function validateManifest(manifest: unknown, crd: Crd): SchemaError[] {
  return compiledCrd(crd).check(manifest).errors;
}
