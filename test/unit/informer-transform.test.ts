// What the informer's cache holds (issue 14, the agent's memory at 10,000 services): the
// transform's result for each object received, handed to handlers too, and after a relist the
// object it already had for every unchanged resourceVersion — not a second copy of each. The agent
// transforms PlanSlices into their strict read (PlanBookCache.adopt), so one copy of a slice is
// kept. In-memory API, manual clock.
import pino from 'pino';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { slicePlan } from '../../api/plan-slice.ts';
import { PlanBookCache } from '../../dataplane/cluster/plan-book.ts';
import { ManualClock, settle } from '../../kube/clock.ts';
import { Informer } from '../../kube/informer.ts';
import { FakeKubeApi } from '../../kube/testing/fake.ts';
import { PLAN_SLICES, SERVICES, type KubeObject } from '../../kube/types.ts';
import { ownerPlan, service } from '../lib/plan-fixtures.ts';

const test = suite('informer: transform, and a relist keeps unchanged objects');

function setup(transform?: (o: KubeObject) => KubeObject) {
  const clock = new ManualClock();
  const api = new FakeKubeApi(() => clock.now());
  const abort = new AbortController();
  const events: Array<[string, KubeObject, KubeObject?]> = [];
  const inf = new Informer<KubeObject>({ api, resource: SERVICES, clock, logger: pino({ level: 'silent' }), random: () => 0.5, ...(transform ? { transform } : {}) });
  inf.addHandlers({ onAdd: (o) => events.push(['add', o]), onUpdate: (old, o) => events.push(['update', o, old]), onDelete: (o) => events.push(['delete', o]) });
  return { clock, api, abort, inf, events };
}

const svc = (name: string, port: number) => ({ apiVersion: 'v1', kind: 'Service', metadata: { namespace: 'default', name }, spec: { ports: [{ port }] } }) as KubeObject;

test('the cache and the handlers hold what the transform returned, from the list and from the watch', async () => {
  const seen: KubeObject[] = [];
  const { clock, api, abort, inf, events } = setup((o) => { const t = { ...o, transformed: true } as KubeObject; seen.push(t); return t; });
  api.apply(SERVICES, svc('a', 80));
  void inf.run(abort.signal);
  await clock.advance(10);
  api.apply(SERVICES, svc('b', 81));
  api.apply(SERVICES, svc('a', 82));
  api.remove(SERVICES, 'default', 'b');
  await clock.advance(10);
  assert.equal(events.map(([k, o]) => [k, o.metadata.name, (o as { transformed?: boolean }).transformed]), [['add', 'a', true], ['add', 'b', true], ['update', 'a', true], ['delete', 'b', true]]);
  assert.ok(inf.get('default/a') === seen.filter((o) => o.metadata.name === 'a').at(-1));
  assert.ok(events[2]![2] === events[0]![1], 'the update names the cached object as the old one');
  abort.abort();
  await settle();
});

test('a relist keeps the cached object where the resourceVersion is unchanged, and replaces the changed one', async () => {
  let calls = 0;
  const { clock, api, abort, inf, events } = setup((o) => { calls++; return o; });
  api.apply(SERVICES, svc('a', 80));
  api.apply(SERVICES, svc('b', 81));
  void inf.run(abort.signal);
  await clock.advance(10);
  const a = inf.get('default/a'), b = inf.get('default/b');
  assert.is(calls, 2);
  api.closeWatches();
  api.apply(SERVICES, svc('b', 90)); // while no watch is open
  api.compact(); // the watch resumes too late: 410 Gone, a relist
  await clock.advance(60_000);
  assert.ok(inf.lists >= 2, 'relisted');
  assert.ok(inf.get('default/a') === a, 'unchanged: the same object, not the listed copy');
  assert.ok(inf.get('default/b') !== b);
  assert.equal((inf.get('default/b') as unknown as { spec: { ports: Array<{ port: number }> } }).spec.ports[0]!.port, 90);
  assert.is(calls, 3, 'only the changed object was transformed again');
  assert.equal(events.filter(([k]) => k === 'update').map(([, o]) => o.metadata.name), ['b']);
  abort.abort();
  await settle();
});

test('PlanBookCache.adopt: a readable slice becomes its own strict read (one copy); an unreadable one stays as received', () => {
  const cache = new PlanBookCache();
  const [raw] = slicePlan(ownerPlan('web', [service({ vip: '203.0.113.10' })]));
  const received = structuredClone({ ...raw!, metadata: { ...raw!.metadata, resourceVersion: '7' } });
  const kept = cache.adopt(received);
  assert.ok(kept !== received);
  const read = cache.parsed.get(kept)!;
  assert.ok(read.parsed.ok && read.parsed.value === kept, 'the kept object is the read itself: no second copy is made for it');
  assert.ok(kept.metadata === received.metadata, 'the metadata is the received one');
  assert.equal(kept.services, received.services);
  const bad = { ...structuredClone(received), services: 'nope' };
  assert.ok(cache.adopt(bad) === bad);
  assert.is(cache.parsed.get(bad)!.parsed.ok, false);
  assert.equal(PLAN_SLICES.plural, 'planslices');
});

test.run();
