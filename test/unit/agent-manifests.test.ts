// lvs-agent's standalone input (dataplane/agent/manifests.ts): it rejects what the API server
// rejects — every manifest of test/invalid/ (the apiserver tier runs the same files on a real
// kube-apiserver) at the field its header names — accepts every example, and refuses unsafe sets
// (empty, a kind typo in our group, nameless or badly named objects, duplicates) before anything
// reaches the kernel.
import { rejects } from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { celRules, defaultCompiledCrd, loadCrd, repoRoot } from '../../api/schema.ts';
import { loadManifests, InvalidManifestsError, type ManifestProblem } from '../../dataplane/agent/manifests.ts';
import { applyCommand } from '../../dataplane/cli/commands.ts';
import { IpvsNetlink } from '../../dataplane/ipvs/netlink.ts';
import { invalidCases, manifestsIn } from '../lib/invalid-cases.ts';

const crd = await defaultCompiledCrd();

function problemsOf(paths: string[], opts = {}): ManifestProblem[] {
  try {
    loadManifests(paths, crd, opts);
  } catch (err) {
    if (err instanceof InvalidManifestsError) return err.problems;
    throw err;
  }
  return [];
}

// ---------------------------------------------------------------------------------------------
const same = suite('rejects what the API server rejects');
const cases = invalidCases();
const rules = celRules(loadCrd().schema);

same('all 66 invalid manifests are here', () => {
  assert.is(cases.length, 66);
});

for (const c of cases) {
  same(`${c.file} is rejected naming ${c.field} (${c.layer})`, () => {
    const problems = problemsOf([join(repoRoot, c.file)]);
    assert.ok(problems.length > 0, `${c.file} was accepted`);
    const at = problems.filter((p) => p.field === c.field);
    assert.ok(at.length > 0, `${c.file}: no problem at ${c.field}: ${JSON.stringify(problems)}`);
    if (c.layer === 'cel') {
      // The message is the one the CRD's rule at that place states (or builds, for messageExpression).
      const here = rules.filter((r) => r.reportedAt === c.field.replace(/\[\d+\]/g, '[*]'));
      assert.ok(at.some((p) => here.some((r) => p.message === r.message || (r.messageExpression && / not (a|the) /.test(p.message)))),
        `${c.file}: ${JSON.stringify(at)} is not a message of a rule at ${c.field}`);
    }
  });
}

for (const file of manifestsIn('examples')) {
  same(`${file.slice(repoRoot.length + 1)} is accepted, and only its Service documents are skipped`, () => {
    const loaded = loadManifests([file], crd);
    assert.ok(loaded.virtualServers.length > 0);
    for (const s of loaded.skipped) assert.match(s, / v1 Service /);
  });
}

same.run();

// ---------------------------------------------------------------------------------------------
const safety = suite('input safety');
let dir = '';
safety.before.each(() => { dir = mkdtempSync(join(tmpdir(), 'lvs-manifests-')); });
safety.after.each(() => { rmSync(dir, { recursive: true, force: true }); });

const vs = (name: string, extra = '') => `apiVersion: lvs.dev/v1alpha1
kind: VirtualServer
metadata: {name: ${name}${extra}}
spec:
  addresses: [203.0.113.10]
  ports: [{name: http, port: 80}]
  backends: {static: [{address: 192.0.2.1}]}
`;
const service = 'apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}]}\n';
const file = (name: string, text: string) => { const p = join(dir, name); writeFileSync(p, text); return p; };
const lines = (ps: ManifestProblem[]) => ps.map((p) => new InvalidManifestsError([p]).message);

safety('a file with only --- is refused, unless allowEmpty', () => {
  const f = file('empty.yaml', '---\n');
  assert.equal(lines(problemsOf([f])), [`${f}: (set): no VirtualServer in the input; applying an empty set removes everything lvs-agent programmed on this host: pass --allow-empty to mean it`]);
  assert.equal(loadManifests([f], crd, { allowEmpty: true }), { virtualServers: [], skipped: [] });
});

safety('other API groups are skipped and listed; a set of only skipped documents is refused', () => {
  const only = file('svc.yaml', service);
  const p = problemsOf([only]);
  assert.is(p.length, 1);
  assert.match(p[0]!.message, /no VirtualServer in the input \(1 document\(s\) of other API groups skipped\)/);
  assert.equal(loadManifests([only], crd, { allowEmpty: true }).skipped, [`${only} document 1: v1 Service web`]);
  const mixed = file('mixed.yaml', `${service}---\n${vs('web')}`);
  const loaded = loadManifests([mixed], crd);
  assert.equal(loaded.skipped, [`${mixed} document 1: v1 Service web`]);
  assert.equal(loaded.virtualServers.map((v) => v.object.metadata?.name), ['web']);
});

safety('a kind typo in the lvs.dev group is an error naming the file and the document', () => {
  const f = file('typo.yaml', `${vs('a')}---\n${vs('b').replace('kind: VirtualServer', 'kind: VirtualSever')}`);
  assert.equal(lines(problemsOf([f])), [`${f} document 2: kind: "VirtualSever" is not a kind of lvs.dev; expected VirtualServer`]);
});

safety('metadata.name: required, and a DNS-1123 subdomain like the API server wants', () => {
  const f = file('names.yaml', `${vs('ok.example-1')}---\n${vs('x').replace('metadata: {name: x}', 'metadata: {}')}---\n${vs('Web_1')}---\n${vs('y', ', namespace: Team')}`);
  assert.equal(problemsOf([f]).map((p) => `${p.document} ${p.field} ${p.message.split(':')[0]}`), [
    '2 metadata.name Required value', '3 metadata.name Invalid value', '4 metadata.namespace Invalid value',
  ]);
});

safety('two documents with the same namespace/name are an error naming both', () => {
  const a = file('a.yaml', vs('web'));
  const b = file('b.yaml', `${vs('other')}---\n${vs('web', ', namespace: default')}`);
  assert.equal(lines(problemsOf([a, b])), [`${b} document 2 (VirtualServer default/web): metadata.name: Duplicate value: default/web is also defined by ${a} document 1`]);
  assert.equal(problemsOf([a, file('c.yaml', vs('web', ', namespace: other'))]), [], 'another namespace is another object');
});

safety('schema and CEL errors keep the established format (file, object, field, message)', () => {
  const f = file('bad.yaml', vs('typo').replace('192.0.2.1}', '192.0.2.1, weight: 65536}'));
  assert.equal(lines(problemsOf([f])), [`${f} (VirtualServer default/typo): spec.backends.static[0].weight: must be <= 65535`]);
});

safety('the loaded object carries the API server defaults', () => {
  const vsObj = loadManifests([file('d.yaml', vs('d'))], crd).virtualServers[0]!.object;
  assert.is(vsObj.spec.forwarding, 'NAT');
  assert.equal(vsObj.spec.scheduler, { name: 'wlc' });
  assert.is(readFileSync(join(dir, 'd.yaml'), 'utf8'), vs('d'));
});

safety.run();

// ---------------------------------------------------------------------------------------------
const cli = suite('lvs-agent apply refuses before the kernel');

cli('every refusal throws InvalidManifestsError without opening IPVS; an accepted set would open it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lvs-apply-'));
  const open = IpvsNetlink.open;
  let opened = 0;
  (IpvsNetlink as { open: unknown }).open = async () => { opened++; throw new Error('kernel reached'); };
  const apply = (files: string[], extra = {}) => applyCommand({
    values: { file: files, 'state-file': join(dir, 'state.json'), ...extra },
    log: pino({ level: 'silent' }),
    run: async () => { throw new Error('no command may run'); },
  });
  try {
    const refused = [
      ['empty.yaml', '---\n'], ['svc.yaml', service], ['typo.yaml', vs('a').replace('VirtualServer', 'VirtualSever')],
      ['noname.yaml', vs('x').replace('{name: x}', '{}')], ['dup.yaml', `${vs('a')}---\n${vs('a')}`],
      ['cel.yaml', vs('c').replace('203.0.113.10', "'2001:DB8::10'")],
    ];
    for (const [name, text] of refused) {
      const f = join(dir, name!);
      writeFileSync(f, text!);
      await rejects(apply([f]), (e: unknown) => e instanceof InvalidManifestsError, name);
    }
    assert.is(opened, 0);
    await rejects(apply([join(dir, 'empty.yaml')], { 'allow-empty': true }), /kernel reached/);
    assert.is(opened, 1);
  } finally {
    (IpvsNetlink as { open: unknown }).open = open;
    rmSync(dir, { recursive: true, force: true });
  }
});

cli.run();
