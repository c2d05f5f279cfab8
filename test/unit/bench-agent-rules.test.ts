// The agent benchmark's two inputs for the whole-process comparison (bench/agent/rules.ts): the
// VirtualServer manifests `lvs-agent apply` reads must resolve to exactly the services and
// destinations of the ipvsadm-restore file, and the VIP batch must name every service's VIP once.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { defaultCompiledCrd } from '../../api/schema.ts';
import { loadManifests, standalonePlan } from '../../dataplane/agent/manifests.ts';
import { manifests, NODE, onePercent, replace, restoreFile, ruleSet, vipBatch } from '../../bench/agent/rules.ts';

const test = suite('bench agent rules');
const crd = await defaultCompiledCrd();

/** The restore lines a plan programs, in ipvsadm -S -n's format, sorted. */
function linesOf(services: ReturnType<typeof standalonePlan>['services']): string[] {
  const out: string[] = [];
  for (const s of services) {
    out.push(`-A -t ${s.vip}:${s.port} -s ${s.scheduler.name}`);
    for (const r of s.realServers) out.push(`-a -t ${s.vip}:${s.port} -r ${r.address}:${r.port} -m -w ${r.weight}`);
  }
  return out.sort();
}

test('the manifests resolve to the rules of the restore file, after a replacement too', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bench-rules-'));
  try {
    const base = ruleSet(37, 4);
    for (const rs of [base, replace(base, onePercent(base)).next]) {
      const file = join(dir, 'vs.yaml');
      writeFileSync(file, manifests(rs));
      const plan = standalonePlan(loadManifests([file], crd), NODE);
      assert.is(plan.services.length, 37);
      assert.ok(plan.services.every((s) => s.forwarding === 'NAT'));
      assert.equal(linesOf(plan.services), restoreFile(rs).trim().split('\n').sort());
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the VIP batch makes the device and adds each VIP once', () => {
  const lines = vipBatch(ruleSet(300, 1), 'benchvip0').trim().split('\n');
  assert.equal(lines.slice(0, 2), ['link add benchvip0 type dummy', 'link set benchvip0 up']);
  const adds = lines.slice(2);
  assert.is(adds.length, 300);
  assert.is(new Set(adds).size, 300);
  assert.ok(adds.every((l) => /^addr add 198\.18\.\d+\.\d+\/32 dev benchvip0$/.test(l)));
});

test.run();
