// The VirtualServer validator generated ahead of time (api/precompiled/, scripts/generate-validator.ts)
// against ajv compiling the same CRD at run time: the committed module is current, both report the
// same errors on every manifest in the repository and on crafted ones (unknown field, int32/int64
// overflow, duplicates in list-type set and map, bad formats), a CRD file with other bytes is
// compiled at run time instead, and the precompiled path loads neither ajv's compiler (in a fresh
// process) nor, in the agent's bundle, anything of it.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { build, type Metafile } from 'esbuild';
import type { ValidateFunction } from 'ajv';
import { compileCrdFile, defaultCompiledCrd, defaultCrdPath, loadCrd, repoRoot, toJsonSchema } from '../../api/schema.ts';
import { compileCrd, newAjv } from '../../api/schema-compile.ts';
import * as precompiled from '../../api/precompiled/virtualserver.js';
import { parseDocuments } from '../../api/yaml.ts';
import { bundleOptions } from '../../scripts/build.ts';
import { VALIDATOR_PATH, validatorModule } from '../../scripts/generate-validator.ts';

type Json = Record<string, unknown>;
const crd = loadCrd();
const pre = await defaultCompiledCrd();
const runtime = compileCrd(crd);
const runtimeValidate = newAjv().compile(toJsonSchema(crd.schema));

// ---------------------------------------------------------------------------------------------
const current = suite('precompiled validator: current');

current('api/precompiled/virtualserver.js matches a fresh generation (run node scripts/generate-validator.ts)', () => {
  assert.ok(readFileSync(VALIDATOR_PATH, 'utf8') === validatorModule(), `${relative(repoRoot, VALIDATOR_PATH)} is stale`);
});

current('it carries crds/virtualserver.yaml as loadCrd reads it, and is what the default CRD uses', () => {
  assert.equal(precompiled.crd, crd);
  assert.is(pre.validator, 'precompiled');
  assert.is(runtime.validator, 'runtime');
});

current.run();

// ---------------------------------------------------------------------------------------------
const same = suite('precompiled validator: same errors as ajv at run time');

function yamlFilesUnder(dir: string): string[] {
  return readdirSync(dir).sort().flatMap((f) => {
    const p = join(dir, f);
    if (statSync(p).isDirectory()) return yamlFilesUnder(p);
    return /\.ya?ml$/.test(f) ? [p] : [];
  });
}

/** Both validators on one manifest: the raw ajv errors, and what check() makes of them. */
function compare(manifest: unknown, what: string): void {
  const a = runtime.check(manifest), b = pre.check(manifest);
  assert.equal(b.errors, a.errors, what);
  assert.equal(b.object, a.object, what);
  const raw = (validate: ValidateFunction) => (validate(a.object), validate.errors ?? []);
  assert.equal(raw(precompiled.validate), raw(runtimeValidate), `${what} (ajv errors)`);
}

const files = ['examples', 'test'].flatMap((d) => yamlFilesUnder(join(repoRoot, d)));

same('the repository has manifests to compare (examples/, test/invalid/, fixtures)', () => {
  assert.ok(files.filter((f) => f.includes('/test/invalid/')).length >= 60);
  assert.ok(files.some((f) => f.includes('/examples/')));
});

same('every document of every YAML file under examples/ and test/', () => {
  let n = 0;
  for (const file of files) {
    parseDocuments(readFileSync(file, 'utf8')).forEach((d, i) => {
      if ('value' in d && d.value !== null) { compare(d.value, `${relative(repoRoot, file)} document ${i + 1}`); n++; }
    });
  }
  assert.ok(n > 80, `only ${n} documents`);
});

const base = (): Json => ({
  apiVersion: 'lvs.dev/v1alpha1', kind: 'VirtualServer', metadata: { name: 'crafted' },
  spec: { addresses: ['203.0.113.10'], ports: [{ name: 'http', port: 80 }], backends: { static: [{ address: '192.0.2.1' }] } },
});
const withSpec = (spec: Json): Json => ({ ...base(), spec: { ...(base().spec as Json), ...spec } });
const condition = { type: 'Ready', status: 'True', lastTransitionTime: '2024-01-01T00:00:00Z', reason: 'Ok', message: '' };

// Each crafted manifest, and a keyword the run-time validator must report for it (so none passes by accident).
const crafted: Array<[string, unknown, string]> = [
  ['unknown field', withSpec({ portz: [] }), 'additionalProperties'],
  ['unknown nested field', withSpec({ ports: [{ name: 'http', port: 80, proto: 'TCP' }] }), 'additionalProperties'],
  ['int32 overflow', withSpec({ persistence: { timeoutSeconds: 2 ** 31 } }), 'format'],
  ['int64 overflow', { ...base(), status: { observedGeneration: 2 ** 63 } }, 'format'],
  ['not an integer', withSpec({ ports: [{ name: 'http', port: 80.5 }] }), 'type'],
  ['list-type set: duplicate value', withSpec({ addresses: ['203.0.113.10', '203.0.113.11', '203.0.113.10'] }), 'x-lvs-list-unique'],
  ['list-type map: duplicate key', withSpec({ ports: [{ name: 'a', port: 80 }, { name: 'b', port: 81 }, { name: 'a', port: 82 }, { name: 'b', port: 83 }] }), 'x-lvs-list-unique'],
  ['list-type map: duplicate key, other list', withSpec({ backends: { static: [{ address: '192.0.2.1' }, { address: '192.0.2.1', weight: 2 }] } }), 'x-lvs-list-unique'],
  ['list-type map: duplicate status condition', { ...base(), status: { conditions: [condition, condition] } }, 'x-lvs-list-unique'],
  ['bad date-time format', { ...base(), status: { conditions: [{ ...condition, lastTransitionTime: 'yesterday' }] } }, 'format'],
  ['enum', withSpec({ forwarding: 'FAST' }), 'enum'],
  ['pattern and length', withSpec({ ports: [{ name: 'A-very-long-port-name', port: 80 }] }), 'pattern'],
  ['int-or-string of the wrong type', withSpec({ backends: { service: { name: 'web', ports: [{ name: 'p', servicePort: true }] } } }), 'anyOf'],
  ['required', { ...base(), spec: { addresses: ['203.0.113.10'] } }, 'required'],
  ['wrong apiVersion and kind', { ...base(), apiVersion: 'v1', kind: 'Service' }, 'kind'],
  ['not an object', 'a string', 'type'],
];

for (const [name, manifest, keyword] of crafted) {
  same(`crafted: ${name}`, () => {
    const errors = runtime.check(manifest).errors;
    assert.ok(errors.some((e) => e.keyword === keyword), `${name}: no ${keyword} error in ${JSON.stringify(errors)}`);
    compare(manifest, name);
  });
}

same('a CEL-layer error is the same too (the schema passes, a rule fails)', () => {
  const m = withSpec({ forwarding: 'DR', ports: [{ name: 'http', port: 80, targetPort: 8080 }] });
  assert.ok(runtime.check(m).errors.some((e) => e.keyword === 'x-kubernetes-validations'));
  compare(m, 'targetPort with DR');
});

same.run();

// ---------------------------------------------------------------------------------------------
const stale = suite('precompiled validator: only for the CRD it was made from');
let dir = '';
stale.before.each(() => { dir = mkdtempSync(join(tmpdir(), 'lvs-precompiled-')); });
stale.after.each(() => { rmSync(dir, { recursive: true, force: true }); });

const crdText = readFileSync(defaultCrdPath, 'utf8');
const crdCopy = (text: string) => { const p = join(dir, 'virtualserver.yaml'); writeFileSync(p, text); return p; };

stale('a byte-identical copy uses it', async () => {
  assert.is((await compileCrdFile(crdCopy(crdText))).validator, 'precompiled');
});

stale('a CRD with other bytes (a comment) is compiled at run time', async () => {
  assert.is((await compileCrdFile(crdCopy(`# edited\n${crdText}`))).validator, 'runtime');
});

stale('an edited schema is what validates', async () => {
  const edited = crdText.replace('maxLength: 15', 'maxLength: 4'); // the first: spec.ports[*].name
  assert.ok(edited !== crdText, 'the edit did not apply');
  const c = await compileCrdFile(crdCopy(edited));
  assert.is(c.validator, 'runtime');
  const m = withSpec({ ports: [{ name: 'https', port: 443 }] });
  assert.equal(pre.check(m).errors, []);
  assert.equal(c.check(m).errors.map((e) => `${e.path}: ${e.message}`), ['spec.ports[0].name: must NOT have more than 4 characters']);
});

stale.run();

// ---------------------------------------------------------------------------------------------
const light = suite('precompiled validator: no ajv compiler');

const AJV_COMPILER = /node_modules\/ajv\/dist\/(core|ajv)\.js$|node_modules\/ajv\/dist\/compile\//;

/** The CommonJS modules a fresh process has loaded after validating an example with the default CRD. */
function modulesAfterDefault(crdPath?: string): { validator: string; modules: string[] } {
  const schema = join(repoRoot, 'api', 'schema.ts');
  const script = `
    const s = await import(${JSON.stringify(schema)});
    const c = await ${crdPath ? `s.compileCrdFile(${JSON.stringify(crdPath)})` : 's.defaultCompiledCrd()'};
    if (c.check({ apiVersion: 'lvs.dev/v1alpha1', kind: 'VirtualServer', spec: {} }).errors.length === 0) throw new Error('accepted');
    const { createRequire } = await import('node:module');
    console.log(JSON.stringify({ validator: c.validator, modules: Object.keys(createRequire(import.meta.url).cache) }));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', cwd: repoRoot });
  assert.is(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

light('a fresh process validating with the default CRD never loads ajv\'s compiler', () => {
  const { validator, modules } = modulesAfterDefault();
  assert.is(validator, 'precompiled');
  assert.ok(modules.some((m) => m.includes('node_modules/ajv/dist/runtime/')), 'expected ajv\'s runtime helpers');
  assert.equal(modules.filter((m) => AJV_COMPILER.test(m)), []);
});

light('a stale CRD does load it (the check above can see it)', () => {
  dir = mkdtempSync(join(tmpdir(), 'lvs-precompiled-'));
  try {
    const p = join(dir, 'virtualserver.yaml');
    writeFileSync(p, `# edited\n${crdText}`);
    const { validator, modules } = modulesAfterDefault(p);
    assert.is(validator, 'runtime');
    assert.ok(modules.some((m) => AJV_COMPILER.test(m)));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Every input of an output file and of the outputs it imports statically (what loads at start). */
function staticInputs(meta: Metafile, output: string, seen = new Set<string>()): Set<string> {
  if (seen.has(output)) return new Set();
  seen.add(output);
  const o = meta.outputs[output];
  if (!o) throw new Error(`no output ${output}`);
  const inputs = new Set(Object.keys(o.inputs));
  for (const i of o.imports) {
    if (i.kind === 'import-statement' && !i.external) for (const x of staticInputs(meta, i.path, seen)) inputs.add(x);
  }
  return inputs;
}

light('the agent\'s bundle loads the precompiled validator at start, and ajv\'s compiler only by dynamic import', async () => {
  const out = join(tmpdir(), `lvs-bundle-${process.pid}`);
  const { metafile } = await build({ ...bundleOptions(out), write: false, sourcemap: false });
  const entry = Object.keys(metafile.outputs).find((f) => f.endsWith('/lvs-agent.mjs'));
  assert.ok(entry, 'no lvs-agent.mjs output');
  const atStart = staticInputs(metafile, entry);
  assert.ok(atStart.has('api/precompiled/virtualserver.js'));
  assert.equal([...atStart].filter((f) => AJV_COMPILER.test(f) || f.includes('node_modules/ajv-formats/dist/index.js') || f === 'api/schema-compile.ts'), []);
  const all = new Set(Object.values(metafile.outputs).flatMap((o) => Object.keys(o.inputs)));
  assert.ok(all.has('api/schema-compile.ts'), 'the run-time fallback is bundled (in a chunk of its own)');
});

light.run();
