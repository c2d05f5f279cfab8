// The VirtualServer CRD as data: its schema accepts every example and rejects every schema-layer
// invalid manifest at the field its header names; its CEL rules are well-formed, all compile in
// the in-process evaluator (api/cel) and reject every cel-layer manifest at its field; the
// generated model is up to date. The apiserver tier runs the same manifests on a real kube-apiserver.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { celRules, compileCrd, compiledCrd, loadCrd, repoRoot, toFieldPath, validateManifest } from '../lib/schema.ts';
import { CelCompileError } from '../../api/cel/errors.ts';

const crd = loadCrd();
const crdDoc = parse(readFileSync(join(repoRoot, 'crds', 'virtualserver.yaml'), 'utf8'));
type Json = { [key: string]: unknown };

function yamlFiles(dir: string): string[] {
  return readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort().map((f) => join(dir, f));
}

interface InvalidCase { file: string; field: string; reason: string; layer: string; manifest: unknown; }

function readInvalid(file: string): InvalidCase {
  const text = readFileSync(file, 'utf8');
  const header = (key: string) => text.match(new RegExp(`^# ${key}: (.+)$`, 'm'))?.[1]?.trim() ?? '';
  return { file: relative(repoRoot, file), field: header('field'), reason: header('reason'), layer: header('layer'), manifest: parse(text) };
}

const invalid = yamlFiles(join(repoRoot, 'test', 'invalid')).map(readInvalid);

// ---------------------------------------------------------------------------------------------
const shape = suite('crd shape');

shape('names, scope, status subresource and printer columns', () => {
  assert.is(crdDoc.metadata.name, 'virtualservers.lvs.dev');
  assert.equal(crdDoc.spec.names, {
    kind: 'VirtualServer', listKind: 'VirtualServerList', plural: 'virtualservers',
    singular: 'virtualserver', shortNames: ['vs'], categories: ['lvs'],
  });
  assert.is(crdDoc.spec.scope, 'Namespaced');
  const v = crdDoc.spec.versions[0];
  assert.equal(v.subresources, { status: {} });
  assert.equal(v.additionalPrinterColumns.map((c: Json) => `${c.name}=${c.jsonPath}`), [
    'VIPs=.spec.addresses', 'Ports=.spec.ports[*].port', 'Forwarding=.spec.forwarding',
    'Scheduler=.spec.scheduler.name', 'Ready-RS=.status.readyRealServers',
    'Ready=.status.conditions[?(@.type=="Ready")].status', 'Age=.metadata.creationTimestamp',
  ]);
});

// Unbounded lists and strings make the API server's static CEL cost estimate assume megabytes
// and reject the CRD; every one must carry a bound (enums and date-times are bounded by nature).
shape('every list, map and string under spec and status is bounded', () => {
  const unbounded: string[] = [];
  const walk = (s: Json, path: string) => {
    if (s.type === 'array' && s.maxItems === undefined) unbounded.push(`${path} (maxItems)`);
    if (s.type === 'string' && s.maxLength === undefined && s.enum === undefined && s.format !== 'date-time') unbounded.push(`${path} (maxLength)`);
    if (s.type === 'object' && s.additionalProperties && s.maxProperties === undefined) unbounded.push(`${path} (maxProperties)`);
    for (const [k, v] of Object.entries((s.properties ?? {}) as Json)) walk(v as Json, `${path}.${k}`);
    if (s.items) walk(s.items as Json, `${path}[*]`);
    if (typeof s.additionalProperties === 'object') walk(s.additionalProperties as Json, `${path}[*]`);
  };
  const props = crd.schema.properties as Json;
  walk(props.spec as Json, 'spec');
  walk(props.status as Json, 'status');
  assert.equal(unbounded, []);
});

shape('list keys: ports and service port mappings by name, static by address, conditions by type', () => {
  const spec = (crd.schema.properties as Json).spec as Json;
  const p = spec.properties as Json;
  const keys = (s: unknown) => [(s as Json)['x-kubernetes-list-type'], (s as Json)['x-kubernetes-list-map-keys']];
  const backends = (p.backends as Json).properties as Json;
  assert.equal(keys(p.ports), ['map', ['name']]);
  assert.equal(keys((backends.static as Json)), ['map', ['address']]);
  assert.equal(keys(((backends.service as Json).properties as Json).ports), ['map', ['name']]);
  assert.equal(keys(p.addresses), ['set', undefined]);
  const status = ((crd.schema.properties as Json).status as Json).properties as Json;
  assert.equal(keys(status.conditions), ['map', ['type']]);
  // A map key must be required (or defaulted) for the API server to accept the CRD.
  const required = (list: unknown) => ((list as Json).items as Json).required as string[];
  assert.ok(required(p.ports).includes('name'));
  assert.ok(required(backends.static).includes('address'));
  assert.ok(required(status.conditions).includes('type'));
});

shape.run();

// ---------------------------------------------------------------------------------------------
const cel = suite('cel rules');
const rules = celRules(crd.schema);
const REASONS = ['FieldValueInvalid', 'FieldValueForbidden', 'FieldValueRequired', 'FieldValueDuplicate'];

cel('every rule has a rule and a message or messageExpression', () => {
  assert.ok(rules.length >= 25, `only ${rules.length} rules`);
  for (const r of rules) {
    assert.ok(r.rule.trim().length > 0, `empty rule at ${r.location}`);
    const msg = (r.message ?? r.messageExpression ?? '').trim();
    assert.ok(msg.length > 0, `rule at ${r.location} has no message: ${r.rule}`);
  }
});

// The in-process evaluator reads the rules from the CRD itself: each must compile, and one it
// cannot read must stop the load rather than pass silently.
cel('every rule and messageExpression in the CRD compiles in api/cel', () => {
  assert.is(rules.length, 34);
  compileCrd(crd);
  const broken = structuredClone(crd);
  const spec = (broken.schema.properties as Json).spec as Json;
  (spec['x-kubernetes-validations'] as Json[]).push({ rule: 'self.addresses.map(a, a).sortBy(a)', message: 'x' });
  assert.throws(() => compileCrd(broken), (e: unknown) => e instanceof CelCompileError && /^spec: unsupported method \.sortBy\(\)/.test((e as Error).message));
});

cel('fieldPath and reason are in the forms the API server accepts', () => {
  for (const r of rules) {
    if (r.fieldPath !== undefined) assert.match(r.fieldPath, /^(\.[A-Za-z][A-Za-z0-9]*)+$/, `${r.location}: ${r.fieldPath}`);
    if (r.reason !== undefined) assert.ok(REASONS.includes(r.reason), `${r.location}: reason ${r.reason}`);
  }
});

// A rule at an object level that is about one child should say so (fieldPath), so the error names
// that field; cross-field rules on spec must all point somewhere below spec.
cel('rules on spec name the field they are about', () => {
  const onSpec = rules.filter((r) => r.location === 'spec');
  assert.ok(onSpec.length > 0);
  for (const r of onSpec) assert.ok(r.fieldPath, `spec rule without fieldPath: ${r.rule}`);
});

// Static messages name a field path or the field they sit on; this catches a message copied from
// a neighbouring rule and left pointing nowhere.
cel('static messages on cross-field rules mention the field they report', () => {
  for (const r of rules.filter((x) => x.fieldPath && x.message)) {
    const last = r.reportedAt.split('.').pop()!;
    assert.ok(r.message!.includes(last), `${r.reportedAt}: "${r.message}" does not mention ${last}`);
  }
});

cel.run();

// ---------------------------------------------------------------------------------------------
const examples = suite('examples');
const exampleFiles = yamlFiles(join(repoRoot, 'examples'));
const DOC_RANGES = [/^192\.0\.2\.\d+$/, /^198\.51\.100\.\d+$/, /^203\.0\.113\.\d+$/, /^2001:db8:/];

examples('the five documented examples exist', () => {
  assert.equal(exampleFiles.map((f) => relative(join(repoRoot, 'examples'), f)), ['dr.yaml', 'health-check.yaml', 'nat-seeds.yaml', 'service.yaml', 'tun.yaml']);
});

for (const file of exampleFiles) {
  const name = relative(repoRoot, file);
  examples(`${name}: every VirtualServer validates against the CRD schema`, () => {
    const text = readFileSync(file, 'utf8');
    assert.match(text, /^# /, `${name} should start with a comment saying what it demonstrates`);
    const docs = parseAllDocuments(text).map((d) => d.toJS() as Json);
    const vss = docs.filter((d) => d.kind === crd.kind);
    assert.ok(vss.length > 0, `${name} has no VirtualServer`);
    for (const d of docs) {
      if (d.kind === crd.kind) {
        assert.is(d.apiVersion, crd.apiVersion);
        assert.equal(validateManifest(d, crd), [], `${name} ${(d.metadata as Json).name}`);
      } else {
        assert.equal([d.apiVersion, d.kind], ['v1', 'Service'], `${name}: unexpected document kind`);
      }
    }
    for (const vs of vss) {
      for (const vip of ((vs.spec as Json).addresses as string[])) {
        assert.ok(DOC_RANGES.some((re) => re.test(vip)), `${name}: VIP ${vip} is not in a documentation range`);
      }
    }
  });
}

examples('nat-seeds.yaml reproduces the seed table: VIP:80 -> two weighted real servers, VIP:21 -> one', () => {
  const docs = parseAllDocuments(readFileSync(join(repoRoot, 'examples', 'nat-seeds.yaml'), 'utf8')).map((d) => d.toJS());
  const rows = docs.flatMap((d) => d.spec.backends.static.map((s: Json) =>
    `${d.spec.addresses[0]}:${d.spec.ports[0].port} -> ${s.address}:${s.port ?? d.spec.ports[0].port} w${s.weight ?? 1}`));
  assert.equal(rows, ['203.0.113.5:80 -> 172.16.0.2:80 w1', '203.0.113.5:80 -> 172.16.0.3:8000 w2', '203.0.113.5:21 -> 172.16.0.3:21 w1']);
  assert.ok(docs.every((d) => d.spec.forwarding === 'NAT'));
  assert.is(docs[0].spec.scheduler.name, 'wrr');
});

examples.run();

// ---------------------------------------------------------------------------------------------
const bad = suite('invalid manifests');

bad('at least 25 invalid manifests, each with field, reason and layer headers', () => {
  assert.ok(invalid.length >= 25, `only ${invalid.length}`);
  for (const c of invalid) {
    assert.match(c.field, /^(spec|status|metadata)(\.[A-Za-z][A-Za-z0-9]*|\[\d+\])*$/, `${c.file}: # field`);
    assert.ok(c.reason.length > 10, `${c.file}: # reason`);
    assert.ok(c.layer === 'schema' || c.layer === 'cel', `${c.file}: # layer must be schema or cel`);
    const m = c.manifest as Json;
    assert.is(m.apiVersion, crd.apiVersion, c.file);
    assert.is(m.kind, crd.kind, c.file);
  }
  const names = invalid.map((c) => ((c.manifest as Json).metadata as Json).name);
  assert.is(new Set(names).size, names.length, 'metadata.name must differ so they can be applied side by side');
});

for (const c of invalid.filter((x) => x.layer === 'schema')) {
  bad(`schema rejects ${c.file} at ${c.field}`, () => {
    const errors = validateManifest(c.manifest, crd);
    assert.ok(errors.length > 0, `${c.file} was accepted`);
    const paths = errors.map((e) => e.path);
    assert.ok(paths.includes(c.field), `${c.file}: no error at ${c.field}; got ${JSON.stringify(errors)}`);
  });
}

// A cel-layer manifest must get past the schema, or the apiserver tier would see a schema error
// instead of the rule it means to exercise; its field must be where some rule reports; and the
// in-process CEL evaluation must reject it there.
for (const c of invalid.filter((x) => x.layer === 'cel')) {
  bad(`${c.file} passes the schema, and a CEL rule rejects it at ${c.field}`, () => {
    assert.equal(compiledCrd(crd).schemaErrors(c.manifest), [], c.file);
    const at = c.field.replace(/\[\d+\]/g, '[*]');
    assert.ok(rules.some((r) => r.reportedAt === at), `${c.file}: no CEL rule reports at ${at}`);
    const errors = validateManifest(c.manifest, crd);
    assert.ok(errors.some((e) => e.path === c.field && e.keyword === 'x-kubernetes-validations'),
      `${c.file}: no CEL error at ${c.field}; got ${JSON.stringify(errors)}`);
  });
}

// Every place a CEL rule reports has at least one manifest that the apiserver tier can use to
// see that rule fire.
bad('every location a CEL rule reports at is exercised by a cel-layer manifest', () => {
  const covered = new Set(invalid.filter((x) => x.layer === 'cel').map((x) => x.field.replace(/\[\d+\]/g, '[*]')));
  const missing = [...new Set(rules.map((r) => r.reportedAt))].filter((at) => !covered.has(at));
  assert.equal(missing, []);
});

bad.run();

// ---------------------------------------------------------------------------------------------
const helper = suite('schema helper');

helper('field paths: JSON pointers become Kubernetes paths', () => {
  assert.is(toFieldPath('/spec/ports/0/port'), 'spec.ports[0].port');
  assert.is(toFieldPath('/spec/directors/nodeSelector/lvs.dev~1director'), 'spec.directors.nodeSelector.lvs.dev/director');
  assert.is(toFieldPath('/spec', 'backends'), 'spec.backends');
});

helper('int-or-string, nullable-free status and wrong apiVersion', () => {
  const ok = {
    apiVersion: crd.apiVersion, kind: crd.kind, metadata: { name: 'x' },
    spec: { addresses: ['203.0.113.1'], ports: [{ name: 'http', port: 80 }], backends: { service: { name: 'web', ports: [{ name: 'http', servicePort: 8080 }] } } },
    status: { conditions: [{ type: 'Ready', status: 'True', reason: 'Programmed', message: '', lastTransitionTime: '2026-01-01T00:00:00Z' }] },
  };
  assert.equal(validateManifest(ok, crd), []);
  const wrongTime = structuredClone(ok);
  wrongTime.status.conditions[0]!.lastTransitionTime = 'yesterday';
  assert.equal(validateManifest(wrongTime, crd).map((e) => e.path), ['status.conditions[0].lastTransitionTime']);
  assert.equal(validateManifest({ ...ok, apiVersion: 'lvs.dev/v1' }, crd).map((e) => e.path), ['apiVersion']);
});

helper.run();

// ---------------------------------------------------------------------------------------------
const generated = suite('generated model');

function tree(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string) => {
    for (const f of readdirSync(d).sort()) {
      const p = join(d, f);
      if (statSync(p).isDirectory()) walk(p); else out.set(relative(dir, p), readFileSync(p, 'utf8'));
    }
  };
  walk(dir);
  return out;
}

generated('api/generated matches a fresh generation from crds/ (run npm run generate)', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'lvs-model-'));
  try {
    const out = join(tmp, 'generated');
    const r = spawnSync(process.execPath, [join(repoRoot, 'scripts', 'generate-model.ts'), '--out', out], { encoding: 'utf8' });
    assert.is(r.status, 0, r.stderr);
    const fresh = tree(out);
    const committed = tree(join(repoRoot, 'api', 'generated'));
    assert.equal([...committed.keys()], [...fresh.keys()]);
    for (const [path, text] of fresh) assert.ok(committed.get(path) === text, `api/generated/${path} is stale: run npm run generate`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

generated('the model is importable at runtime and carries the CRD identity', async () => {
  const model = await import('../../api/generated/index.ts');
  assert.equal(model.VIRTUAL_SERVER, {
    group: crd.group, version: crd.version, apiVersion: crd.apiVersion, kind: crd.kind,
    plural: crd.plural, singular: 'virtualserver', shortNames: ['vs'],
  });
});

generated.run();
