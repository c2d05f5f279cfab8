// The plan book: published slices → what the agent programs per owner, and why not when it cannot.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { planServices, slicePlan, type OwnerPlan, type PlanSliceObject } from '../../api/plan-slice.ts';
import { belowRewrites, bookHeld, bookServices, directedKeys, PlanBookCache, readPlanBook, type RecordedOwner } from '../../dataplane/cluster/plan-book.ts';
import { ownerPlan, service } from '../lib/plan-fixtures.ts';

const test = suite('cluster: plan book');
const NONE = new Map<string, RecordedOwner>();
const big = (generation = 1, weight = 1): OwnerPlan => ownerPlan('web', [service({
  realServers: Array.from({ length: 1500 }, (_, i) => ({ address: `10.1.${Math.floor(i / 250)}.${i % 250}`, port: 80, weight, state: 'Ready' as const })),
})], { generation });
const sliced = (p: OwnerPlan) => slicePlan(p).map((s) => structuredClone(s) as unknown);

test('usable: all slices of one revision give the plan, split services joined, remembered as last good', () => {
  const p = big();
  assert.is(slicePlan(p).length, 2, 'the fixture spans two slices');
  const book = readPlanBook(sliced(p), new Map(), NONE);
  const o = book.owners.get('uid-web')!;
  assert.equal([o.virtualServer, o.frozen, o.held], ['default/web', undefined, []]);
  assert.equal(bookServices(book), planServices(p));
  assert.is(bookServices(book)[0]!.realServers.length, 1500);
  assert.equal(book.lastGood.get('uid-web'), p);
});

test('slices of two revisions while the controller rewrites: frozen, the last good plan stays', () => {
  const before = big(1, 1);
  const memory = readPlanBook(sliced(before), new Map(), NONE).lastGood;
  const after = slicePlan(big(2, 2));
  const mixed = [{ ...after[0]!, metadata: { ...after[0]!.metadata, resourceVersion: '20' } }, { ...slicePlan(before)[1]!, metadata: { ...slicePlan(before)[1]!.metadata, resourceVersion: '10' } }];
  const book = readPlanBook(mixed, memory, NONE);
  const o = book.owners.get('uid-web')!;
  assert.match(o.frozen!, /slices of two revisions/);
  assert.is(o.rewriting, '20', 'incomplete, not wrong: a rewrite in progress since its newest slice');
  assert.equal(belowRewrites('25', [o]), { synced: '19', frozenOwners: [] }, 'reported synced only below the rewrite');
  assert.equal(belowRewrites('25', [{ ...o, rewriting: 'x' }]).frozenOwners.length, 1, 'versions that cannot be compared: frozen');
  assert.equal(bookServices(book), planServices(before));
  const done = readPlanBook(after, book.lastGood, NONE);
  assert.equal([done.owners.get('uid-web')!.frozen, bookServices(done)[0]!.realServers[0]!.weight], [undefined, 2], 'rewrite finished: the new plan');
});

test('a slice missing, or content not hashing to its revision: frozen with the reason', () => {
  const p = big();
  const memory = readPlanBook(sliced(p), new Map(), NONE).lastGood;
  assert.match(readPlanBook([slicePlan(p)[0]!], memory, NONE).owners.get('uid-web')!.frozen!, /1 of 2 slices present/);
  const tampered = sliced(p) as PlanSliceObject[];
  tampered[1]!.services[0]!.realServers[0]!.weight = 9;
  const book = readPlanBook(tampered, memory, NONE);
  assert.match(book.owners.get('uid-web')!.frozen!, /content hashes to \w+, not /);
  assert.is(book.owners.get('uid-web')!.rewriting, undefined, 'a hash mismatch is wrong, not a rewrite');
  assert.equal(bookServices(book), planServices(p));
});

test('a field or value this agent does not know freezes the owner, naming the field; others are unaffected', () => {
  const web = ownerPlan('web', [service()]);
  const api = ownerPlan('api', [service({ vip: '203.0.113.20' })]);
  const memory = readPlanBook([...sliced(web), ...sliced(api)], new Map(), NONE).lastGood;
  const newer = sliced(ownerPlan('web', [service({ realServers: [] })], { generation: 2 })) as PlanSliceObject[];
  (newer[0]!.services[0]!.realServers as unknown as object[]).push({ address: '10.0.0.9', port: 80, weight: 1, state: 'Ready', zone: 'a' });
  const book = readPlanBook([...newer, ...sliced(api)], memory, NONE);
  assert.match(book.owners.get('uid-web')!.frozen!, /^plan unusable: slice uid-web-0: services\[0\]\.realServers\[0\]\.zone: unknown field/);
  assert.equal(bookServices(book).map((s) => [s.owner.name, s.realServers.length]), [['api', 1], ['web', 1]], 'web keeps its last good plan');
  assert.is(book.owners.get('uid-api')!.frozen, undefined);
});

test('restart with no last good plan: the owner record\'s keys of that owner are held, nothing else invented', () => {
  const bad = sliced(ownerPlan('web', [service()])) as Array<PlanSliceObject & Record<string, unknown>>;
  bad[0]!.priority = 1;
  const recorded = new Map<string, RecordedOwner>([
    ['TCP/203.0.113.10:80', { uid: 'uid-web', virtualServer: 'default/web' }],
    ['TCP/203.0.113.10:443', { uid: 'uid-web', virtualServer: 'default/web' }],
    ['TCP/203.0.113.99:80', { uid: 'uid-gone', virtualServer: 'default/gone' }],
  ]);
  const book = readPlanBook(bad, new Map(), recorded);
  const o = book.owners.get('uid-web')!;
  assert.equal([bookServices(book), bookHeld(book)], [[], ['TCP/203.0.113.10:443', 'TCP/203.0.113.10:80']]);
  assert.match(o.frozen!, /^plan unusable: slice uid-web-0: priority: unknown field .*2 recorded service\(s\) held as the kernel has them$/);
  assert.equal([...directedKeys(book, 'n1').keys()], ['TCP/203.0.113.10:443', 'TCP/203.0.113.10:80'], 'the deleted owner\'s key is not held');
  // A record of an older agent names owners only: held by name.
  const byName = readPlanBook(bad, new Map(), new Map([['TCP/203.0.113.10:80', { virtualServer: 'default/web' }]]));
  assert.equal(bookHeld(byName), ['TCP/203.0.113.10:80']);
});

test('an owner whose slices are all gone was deleted: no services, no memory', () => {
  const web = ownerPlan('web', [service()]);
  const memory = readPlanBook(sliced(web), new Map(), NONE).lastGood;
  const book = readPlanBook([], memory, new Map([['TCP/203.0.113.10:80', { uid: 'uid-web', virtualServer: 'default/web' }]]));
  assert.equal([book.owners.size, bookServices(book), bookHeld(book), book.lastGood.size], [0, [], [], 0]);
});

test('directed keys: only plans this node directs, canonical keys', () => {
  const book = readPlanBook([
    ...sliced(ownerPlan('v6', [service({ vip: '2001:DB8::a', family: 6, key: 'TCP/[2001:DB8::a]:80' })])),
    ...sliced(ownerPlan('elsewhere', [service({ vip: '203.0.113.50' })], { directors: ['n2'] })),
  ], new Map(), NONE);
  assert.equal([...directedKeys(book, 'n1')], [['TCP/[2001:db8::a]:80', { uid: 'uid-v6', virtualServer: 'default/v6' }]]);
});

test('with a cache, a read reuses what did not change and reads what did; a slice made unusable is seen at once', () => {
  const cache = new PlanBookCache();
  const web = sliced(big(1, 1)), db = sliced(ownerPlan('db', [service({ vip: '203.0.113.20', key: 'TCP/203.0.113.20:80' })]));
  const first = readPlanBook([...web, ...db], new Map(), NONE, cache);
  const again = readPlanBook([...web, ...db], first.lastGood, NONE, cache);
  assert.ok(again.owners.get('uid-web')!.plan === first.owners.get('uid-web')!.plan, 'unchanged objects: the same assembled plan, not a new one');
  assert.ok(bookServices(again, cache)[0] === bookServices(again, cache)[0], 'services of an unchanged plan are not rebuilt');
  // A new revision of web (new objects, as the informer delivers them): read, not reused.
  const web2 = sliced(big(2, 3));
  const next = readPlanBook([...web2, ...db], again.lastGood, NONE, cache);
  assert.is(bookServices(next, cache).find((s) => s.vip === service().vip)!.realServers[0]!.weight, 3);
  assert.ok(next.owners.get('uid-db')!.plan === first.owners.get('uid-db')!.plan);
  // One slice of web replaced by a broken one: frozen on the last good plan, as without a cache.
  const broken = [{ ...(web2[0] as object), services: 'not a list' }, web2[1]];
  const frozen = readPlanBook([...broken, ...db], next.lastGood, NONE, cache).owners.get('uid-web')!;
  assert.match(frozen.frozen!, /plan unusable/);
  assert.equal(frozen.plan, next.owners.get('uid-web')!.plan);
  // An owner gone is forgotten by the cache.
  readPlanBook(db, new Map(), NONE, cache);
  assert.equal([...cache.assembled.keys()], ['uid-db']);
});

test.run();
