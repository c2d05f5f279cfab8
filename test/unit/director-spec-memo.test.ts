// The director check's spec (dataplane/agent/lvs-device.ts specOf): the last spec again while
// nothing it depends on changed — the same object, so the check neither rebuilds nor re-sorts it —
// and a new one as soon as anything the director reads does; through the device, a plan change
// that only a director check would apply (an SNAT return path on a bound VIP) is applied by it.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { PlanService } from '../../api/plan.ts';
import { createLvsDevice, specFor, specOf, type SpecMemo } from '../../dataplane/agent/lvs-device.ts';
import { normalizeSpec, type DirectorSpec } from '../../dataplane/director/plan.ts';
import { FakeKernel } from '../../dataplane/realserver/testing/fake-netns.ts';

const test = suite('director: the check\'s spec, reused while its inputs stay');
const A = '192.0.2.10', B = '192.0.2.20';

const svc = (vip: string, over: Partial<PlanService> = {}): PlanService => ({
  key: `TCP/${vip}:80`, owner: { namespace: 'default', name: 'web', generation: 1 }, portName: 'http',
  vip, family: 4, protocol: 'TCP', port: 80, forwarding: 'NAT', natReturnPath: 'Gateway', scheduler: { name: 'rr', flags: [] },
  prepareRealServers: false, realServers: [], directors: ['d1'], ...over,
});

/** specOf() as the device calls it: the memo it returned is given to the next call. */
function caller(plan: () => PlanService[], announce: (v: string) => boolean = () => false, held: () => string[] = () => []) {
  const opts = { node: 'd1', plan, kernelRelease: '6.1.0', announce, held };
  let memo: SpecMemo | undefined;
  let before: DirectorSpec['vips'] = [];
  return (bound: string[]): DirectorSpec => {
    memo = specOf(opts, bound, before, memo);
    before = memo.spec.vips;
    return memo.spec;
  };
}

test('the same spec object while only real servers change; a new one for each change the director reads', () => {
  let plan = [svc(A), svc(B)];
  const on = new Set<string>();
  let held: string[] = [];
  const next = caller(() => plan, (v) => on.has(v), () => held);
  const first = next([A, B]);
  assert.equal(first, normalizeSpec(specFor({ node: 'd1', plan: () => plan, kernelRelease: '6.1.0' }, [A, B])));
  plan = [svc(A, { realServers: [{ address: '10.0.0.1', port: 80, weight: 1 } as never] }), svc(B)];
  assert.is(next([A, B]), first, 'new service objects, the same director fields: reused');
  const changes: Array<[string, () => void, (s: DirectorSpec) => void]> = [
    ['an SNAT return path', () => { plan = [svc(A, { natReturnPath: 'SNAT' }), svc(B)]; }, (s) => assert.equal(s.snat.map((r) => r.vip), [A])],
    ['the directors', () => { plan = [svc(A), svc(B, { directors: ['d2'] })]; }, (s) => assert.equal(s.snat, [])],
    ['announce()', () => { on.add(A); }, (s) => assert.ok(s.vips.find((v) => v.address === A)!.announce)],
    ['the bound VIPs', () => {}, (s) => assert.equal(s.vips.map((v) => v.address), [A])],
    ['the held keys', () => { held = [`TCP/${A}:81`]; }, (s) => assert.equal(s.keepSnat?.map((r) => r.port), [81])],
  ];
  let last = first;
  for (const [what, change, check] of changes) {
    change();
    const bound = what === 'the bound VIPs' || what === 'the held keys' ? [A] : [A, B];
    const s = next(bound);
    assert.is.not(s, last, `${what}: a new spec`);
    check(s);
    assert.is(next(bound), s, `${what}: then reused`);
    last = s;
  }
});

test('through the device: an SNAT return path given to a bound VIP is applied by the next director check', async () => {
  const k = new FakeKernel({ ipvs: true });
  const ns = k.ns('/run/netns/director');
  ns.addLink('eth0', 'veth', true).addrs.push({ address: '192.0.2.2', prefixLen: 24, scope: 'global', label: 'eth0' });
  let plan = [svc(A), svc(B)];
  const device = createLvsDevice({ run: k.runner(), node: 'd1', plan: () => plan, target: { kind: 'named', name: 'director' }, kernelRelease: '6.1.0-56-amd64' });
  await device.set([A, B]);
  await device.list();
  const inet = () => ns.nft.get('inet lvs_operator') ?? '';
  assert.not.match(inet(), /masquerade/);
  plan = [svc(A), svc(B, { realServers: [] })];
  await device.list();
  assert.not.match(inet(), /masquerade/);
  plan = [svc(A, { natReturnPath: 'SNAT' }), svc(B)];
  await device.list();
  assert.match(inet(), /192\.0\.2\.10/);
  assert.match(inet(), /masquerade/);
});

test.run();
