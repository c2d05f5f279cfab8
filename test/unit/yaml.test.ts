// api/yaml.ts: the fast parser (js-yaml, core schema) must read every YAML file of this repository
// and the tricky scalars exactly as `yaml` does; files it must not take (bad YAML, anchors and
// aliases, directives) go to `yaml`, whose per-document errors are kept.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseDocuments, parseShipped, slowDocuments } from '../../api/yaml.ts';
import { repoRoot } from '../../api/schema.ts';

const test = suite('yaml');

function yamlFiles(dir: string): string[] {
  return readdirSync(join(repoRoot, dir), { recursive: true, encoding: 'utf8' })
    .filter((f) => /\.ya?ml$/.test(f)).map((f) => join(repoRoot, dir, f));
}

test('every manifest, example and CRD of the repository reads the same with both parsers', () => {
  const files = ['examples', 'test/invalid', 'crds', 'demo'].flatMap(yamlFiles);
  assert.ok(files.length >= 70, `${files.length} files`);
  let fast = 0;
  for (const f of files) {
    const text = readFileSync(f, 'utf8');
    assert.equal(parseDocuments(text), slowDocuments(text), f);
    if (!text.includes('&') && !text.includes('*')) fast++;
  }
  assert.ok(fast >= 60, `only ${fast} files took the fast path`);
  for (const f of yamlFiles('crds')) assert.equal([{ value: parseShipped(readFileSync(f, 'utf8'), f) }], slowDocuments(readFileSync(f, 'utf8')), f);
});

test('tricky scalars resolve as YAML 1.2 core, as `yaml` has them', () => {
  const scalars = ['1_000', '0o17', '017', '0x1F', '+12', '-0', '1e3', '1.', '.5', '.inf', '-.Inf', '.NaN', '~', 'Null', 'TRUE', 'True', 'yes', 'on', 'off', 'y', 'n',
    '2001-12-14', '2001-12-14t21:59:43.10-05:00', '12:30:00', '9007199254740993', '0b101', '"a\\/b"', "'x''y'", '!!str 12', '!!int "3"', '<<', '00', '08', '-0x1', '"\\u00e9"'];
  for (const s of scalars) {
    const text = `k: ${s}\nlist: [${s}]\n`;
    assert.equal(parseDocuments(text), slowDocuments(text), s);
  }
  for (const text of ['', '# only a comment\n', '---\n', 'a: 1\n---\n', '---\na: 1\n---\n---\nb: 2\n', 'a: 1\n...\n---\nb: 2\n', '--- {a: 1}\n--- [1]\n', '<<: {a: 1}\n']) {
    assert.equal(parseDocuments(text), slowDocuments(text), JSON.stringify(text));
  }
});

test('bad YAML keeps `yaml`\'s message, per document', () => {
  const docs = parseDocuments('a: 1\n---\nb: 1\nb: 2\n---\nc: [\n');
  assert.equal(docs[0], { value: { a: 1 } });
  assert.ok('errors' in docs[1]! && /unique/.test(docs[1].errors), JSON.stringify(docs[1]));
  assert.ok('errors' in docs[2]!, JSON.stringify(docs[2]));
});

test('anchors, aliases and directives go to `yaml` (alias expansion bounded; %YAML 1.1 honoured)', () => {
  const bomb = ['a: &a [x, x, x, x, x, x, x, x, x, x]', ...Array.from({ length: 8 }, (_, i) => `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(10).fill(`*${String.fromCharCode(97 + i)}`).join(', ')}]`)].join('\n');
  const [doc] = parseDocuments(bomb);
  assert.ok(doc && 'errors' in doc && /alias/i.test(doc.errors), JSON.stringify(doc).slice(0, 200));
  assert.equal(parseDocuments('%YAML 1.1\n---\nk: yes\n'), [{ value: { k: true } }]);
});

test.run();
