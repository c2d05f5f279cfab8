// The manifests of test/invalid/ and what each declares in its header, shared by the apiserver
// tier (a real kube-apiserver must reject it) and the unit tier (lvs-agent's standalone loader
// must reject it the same way):
//   # field: spec.ports[0].targetPort
//   # reason: why it is invalid (prose)
//   # layer: schema | cel
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { repoRoot } from '../../api/schema.ts';

export interface InvalidCase { file: string; field: string; reason: string; layer: 'schema' | 'cel' }

export function parseInvalidHeader(file: string, text: string): InvalidCase {
  const header = (key: string) => new RegExp(`^#\\s*${key}:\\s*(.+?)\\s*$`, 'm').exec(text)?.[1];
  const field = header('field'), reason = header('reason') ?? '', layer = header('layer');
  if (!field) throw new Error(`${file}: missing '# field: <json path>' header`);
  if (layer !== 'schema' && layer !== 'cel') throw new Error(`${file}: '# layer:' must be schema or cel, got ${layer}`);
  return { file, field, reason, layer };
}

/** The .yaml/.yml files of a repository directory, sorted, as absolute paths ([] if it is missing). */
export function manifestsIn(dir: string): string[] {
  try {
    return readdirSync(join(repoRoot, dir)).filter((f) => /\.ya?ml$/.test(f)).sort().map((f) => join(repoRoot, dir, f));
  } catch { return []; }
}

/** Every case of test/invalid, file relative to the repository root. */
export function invalidCases(): InvalidCase[] {
  return manifestsIn('test/invalid').map((f) => parseInvalidHeader(relative(repoRoot, f), readFileSync(f, 'utf8')));
}
