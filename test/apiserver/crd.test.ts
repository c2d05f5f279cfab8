// The CRD in crds/ as the real kube-apiserver enforces it (OpenAPI schema and CEL rules both run
// there): every manifest in examples/ is accepted by a server-side apply, and every manifest in
// test/invalid/ is rejected, by create and by server-side apply, with an error (from create) that
// names the field its header declares:
//   # field: spec.ports[0].targetPort
//   # reason: why it is invalid (prose)
//   # layer: schema | cel
import { join, relative } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { invalidCases, manifestsIn } from '../lib/invalid-cases.ts';
import { gated } from '../lib/prereq.ts';
import { repoRoot as root } from '../lib/schema.ts';
import { apiserverPrereqs, startControlPlane, type ControlPlane } from '../../lab/apiserver/harness.ts';

const examples = manifestsIn('examples');
const invalid = invalidCases();

const missing = apiserverPrereqs()
  ?? (examples.length === 0 ? 'examples/ holds no manifest yet' : undefined)
  ?? (invalid.length === 0 ? 'test/invalid/ holds no manifest yet' : undefined);
const test = gated(suite('CRD on the real apiserver'), missing);
let plane: ControlPlane | undefined;
const P = () => { if (!plane) throw new Error('control plane did not start'); return plane; };

test.before(async () => {
  plane = await startControlPlane();
  await plane.installCrds('crds');
});
test.after(async () => { await plane?.stop(); });

for (const file of examples) {
  const name = relative(root, file);
  test(`${name} is accepted (server-side apply)`, async () => {
    const r = await P().kubectl(['apply', '--server-side', '--field-manager=lvs-examples', '-f', file]);
    assert.is(r.code, 0, `${name} rejected:\n${r.stderr}`);
  });
}

/** The apiserver names a field as spec.ports[0].targetPort; accept the header in that form. */
function fieldPattern(field: string): RegExp {
  const path = field.replace(/^\$?\.?/, '').replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`(^|[\\s"':])${path}(?=[:\\s,"]|$)`, 'm');
}

for (const c of invalid) {
  test(`${c.file} is rejected naming ${c.field} (${c.layer})`, async () => {
    // create (POST) is the path whose errors carry element paths (spec.ports[1]); kubectl's default
    // --validate=strict makes the server reject unknown fields too.
    const r = await P().kubectl(['create', '-f', join(root, c.file)]);
    assert.is.not(r.code, 0, `${c.file} was accepted; expected a rejection of ${c.field} (${c.reason})`);
    assert.match(r.stderr, /is invalid|Invalid value|Unsupported value|Required value|Duplicate value|Too many|Too long|unknown field/,
      `${c.file}: not a validation error:\n${r.stderr}`);
    assert.ok(fieldPattern(c.field).test(r.stderr), `${c.file}: the error does not name ${c.field}:\n${r.stderr}`);
    // Server-side apply takes another path (structured merge first): it must not let the object in either.
    const ssa = await P().kubectl(['apply', '--server-side', '--field-manager=lvs-invalid', '-f', join(root, c.file)]);
    assert.is.not(ssa.code, 0, `${c.file} was accepted by server-side apply`);
  });
}

test.run();
