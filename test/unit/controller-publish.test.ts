// Publishing a plan as PlanSlices, decided purely: which slices to create, replace (conditionally
// on the stored resourceVersion) or delete, and in which order; what an invalid spec or a lost
// conflict publishes; what the status learns of a publication.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { PlanService, Reason } from '../../api/plan.ts';
import { MAX_SLICE_REAL_SERVERS, slicePlan, type PlanOwner, type PlanSliceObject } from '../../api/plan-slice.ts';
import { desiredSlices, leftoverOps, ownerPlan, publicationOf, publishedSlice, sliceOps } from '../../operator/publish.ts';

const test = suite('controller: publish');
const OWNER: PlanOwner = { namespace: 'ns', name: 'web', uid: 'u1', generation: 4 };

function service(port: number, realServers: number): PlanService {
  return {
    key: `TCP/203.0.113.1:${port}`, owner: { namespace: 'ns', name: 'web', generation: 4 }, portName: `p${port}`, vip: '203.0.113.1', family: 4,
    protocol: 'TCP', port, forwarding: 'NAT', scheduler: { name: 'wrr', flags: [] }, prepareRealServers: false, directors: ['n1', 'n2'],
    realServers: Array.from({ length: realServers }, (_, i) => ({ address: `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`, port: 8080, weight: 1, state: 'Ready' as const })),
  };
}

const slices = (won: PlanService[], owner = OWNER) => slicePlan(ownerPlan(owner, ['n1', 'n2'], won));
/** As stored: with a resourceVersion each (edit applied first), in the controller's compact form. */
const stored = (list: PlanSliceObject[], rv0 = 10, edit = (s: PlanSliceObject, _i: number) => s) => list.map((s, i) => publishedSlice(edit({ ...s, metadata: { ...s.metadata, resourceVersion: String(rv0 + i) } }, i)));
const summary = (ops: ReturnType<typeof sliceOps>) => ops.map((o) => (o.op === 'delete' ? `delete ${o.name}@${o.resourceVersion}` : `${o.op} ${o.slice.metadata.name}${o.op === 'replace' ? `@${o.slice.metadata.resourceVersion}` : ''}`));

test('ownerPlan: the services won, without the per-slice owner and directors', () => {
  const p = ownerPlan(OWNER, ['n1'], [service(80, 1)]);
  assert.equal(p.owner, OWNER);
  assert.equal(p.directors, ['n1']);
  assert.not.ok('owner' in p.services[0]! || 'directors' in p.services[0]!);
  assert.is(p.services[0]!.realServers.length, 1);
});

test('nothing stored: every slice created, in index order; the same plan again: no write at all', () => {
  const want = slices([service(80, 2 * MAX_SLICE_REAL_SERVERS + 500)]);
  assert.is(want.length, 3);
  assert.equal(summary(sliceOps(want, [])), ['create u1-0', 'create u1-1', 'create u1-2']);
  assert.equal(sliceOps(want, stored(want)), [], 'unchanged slices are not written');
  assert.equal(sliceOps(slices([service(80, 2 * MAX_SLICE_REAL_SERVERS + 500)]), stored(want)), [], 'recomputed, equal content');
});

test('a change: only the slices whose content differs are written, each conditional on its stored version', () => {
  // Same real servers, but the revision changes with the plan: every slice carries it.
  const before = stored(slices([service(80, 1500), service(81, 10)]));
  const after = slices([service(80, 1500), service(81, 11)]);
  assert.equal(summary(sliceOps(after, before)), ['replace u1-0@10', 'replace u1-1@11'], 'revision changed: both rewritten, in index order');
  // A stored slice someone edited is put back; the untouched one is left alone.
  const want = slices([service(80, 1500)]);
  const edited = stored(want, 10, (s, i) => (i === 1 ? { ...s, directors: ['intruder'] } : s));
  assert.equal(summary(sliceOps(want, edited)), ['replace u1-1@11']);
  const missing = stored(want).slice(0, 1);
  assert.equal(summary(sliceOps(want, missing)), ['create u1-1'], 'a deleted slice is created again');
});

test('a plan that grows and one that shrinks: writes first in index order, then deletions of the higher indexes', () => {
  const three = stored(slices([service(80, 2500)]));
  const one = slices([service(80, 900)]);
  assert.equal(summary(sliceOps(one, three)), ['replace u1-0@10', 'delete u1-1@11', 'delete u1-2@12']);
  const grown = slices([service(80, 2500)]);
  assert.equal(summary(sliceOps(grown, stored(one))), ['replace u1-0@10', 'create u1-1', 'create u1-2']);
});

test('InvalidSpec publishes nothing (what is published stays); a VirtualServer that lost every key publishes an empty plan', () => {
  const invalid: Reason[] = [{ type: 'InvalidSpec', field: 'spec.ports[0].port', message: 'out of range' }];
  assert.is(desiredSlices(OWNER, invalid, [], []), undefined);
  const lost: Reason[] = [{ type: 'Conflict', field: 'spec.addresses[0]', message: 'TCP/203.0.113.1:80 is already claimed' }];
  const empty = desiredSlices(OWNER, lost, ['n1', 'n2'], [])!;
  assert.is(empty.length, 1);
  assert.equal([empty[0]!.count, empty[0]!.services], [1, []]);
  // Replacing a published plan with the empty one: slice 0 rewritten, the rest deleted.
  assert.equal(summary(sliceOps(empty, stored(slices([service(80, 1500)])))), ['replace u1-0@10', 'delete u1-1@11']);
});

test('leftovers: slices of another uid under the same name are deleted, the current uid\'s kept', () => {
  const old = stored(slices([service(80, 10)], { ...OWNER, uid: 'u0' }), 5);
  const cur = stored(slices([service(80, 10)]), 20);
  assert.equal(summary(leftoverOps([...old, ...cur], 'u1')), ['delete u0-0@5']);
  assert.equal(summary(leftoverOps([...old, ...cur], undefined)), ['delete u0-0@5', 'delete u1-0@20'], 'the VirtualServer is gone: all');
});

test('publicationOf: revision, count, generation, directors, services, and the highest resourceVersion compared as numbers', () => {
  const s = slices([service(80, 1500), service(81, 3)]);
  const pub = publicationOf([publishedSlice({ ...s[0]!, metadata: { ...s[0]!.metadata, resourceVersion: '10' } }), publishedSlice({ ...s[1]!, metadata: { ...s[1]!.metadata, resourceVersion: '9' } })])!;
  assert.equal(pub, { revision: s[0]!.revision, slices: 2, generation: 4, directors: ['n1', 'n2'], services: 2, resourceVersion: '10' });
  assert.is(publicationOf([]), undefined);
  assert.is(publicationOf(slices([]).map(publishedSlice))!.services, 0);
});

test.run();
