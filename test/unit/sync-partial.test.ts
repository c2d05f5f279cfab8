// Partial syncs against the in-memory kernel: between full read-backs a sync reads back only the
// services whose desired state changed (or that drain), and still reaches the same end state as a
// full sync would; the periodic full sync and any error bring the full read-back back.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { PlanService } from '../../api/plan.ts';
import { FakeIpvsKernel } from '../../dataplane/ipvs/testing/fake.ts';
import { desiredState, type DesiredMemo } from '../../dataplane/sync/desired.ts';
import { ipvsServiceKey } from '../../dataplane/sync/keys.ts';
import { advanceView, changedIn, changedServices, drainService, identityIn, mergeDraining, sameState, serviceIdentity, viewOf, type SyncedView } from '../../dataplane/sync/partial.ts';
import { createSyncer } from '../../dataplane/sync/sync.ts';
import { ManualClock, captureLog, planService, rs } from '../lib/sync-fixtures.ts';

const test = suite('sync: partial read-back between full resyncs');
const FULL_MS = 30_000;

/** n services on 203.0.113.10, ports 1000.., two real servers each. */
function plan(n: number, edit: (i: number, s: PlanService) => PlanService | undefined = (_, s) => s): PlanService[] {
  return Array.from({ length: n }, (_, i) => edit(i, planService({
    port: 1000 + i, owner: { namespace: 'default', name: `web-${i}`, generation: 1 },
    realServers: [rs(`10.0.${i}.1`, 8080), rs(`10.0.${i}.2`, 8080)],
  }))).filter((s): s is PlanService => s !== undefined);
}

function setup(initial: PlanService[], fullResyncIntervalMs: number | null = FULL_MS) {
  const kernel = new FakeIpvsKernel();
  const clock = new ManualClock();
  const state = { plan: initial };
  const syncer = createSyncer({
    kernel, node: 'node-a', plan: () => state.plan, log: captureLog().log, clock, drainTimeoutMs: 60_000,
    ...(fullResyncIntervalMs === null ? {} : { fullResyncIntervalMs }),
  });
  return { kernel, clock, state, syncer };
}

/** What a fresh full sync of `p` leaves in an empty kernel: the reference end state. */
async function reference(p: PlanService[], prepare?: (k: FakeIpvsKernel) => Promise<void>): Promise<unknown> {
  const kernel = new FakeIpvsKernel();
  await prepare?.(kernel);
  await createSyncer({ kernel, node: 'node-a', plan: () => p, log: captureLog().log, clock: new ManualClock() }).sync();
  return strip(kernel);
}

const strip = (k: FakeIpvsKernel) => k.snapshot().map((s) => ({ service: s.service, destinations: s.destinations.map(({ stats: _, ...d }) => d) }));
const reads = (k: FakeIpvsKernel) => ({ ...k.reads });

test('a one-service change reads back only that service and ends where a full sync would', async () => {
  const { kernel, state, syncer } = setup(plan(50));
  assert.is((await syncer.sync()).kind, 'ok');
  assert.equal(reads(kernel), { dump: 1, readService: 0, services: 0 }, 'the first sync is full');
  state.plan = plan(50, (i, s) => (i === 7 ? { ...s, realServers: [rs('10.0.7.1', 8080), rs('10.0.7.3', 8080)] } : s));
  const r = await syncer.sync();
  assert.equal([r.kind, r.ops, r.read], ['ok', 2, 1]);
  assert.equal(reads(kernel), { dump: 1, readService: 1, services: 0 }, 'one GET of the changed service, no dump');
  assert.equal(strip(kernel), await reference(state.plan));
});

test('a sync with no desired change at all (asked for as a repair) reads everything back', async () => {
  const { kernel, syncer } = setup(plan(20));
  await syncer.sync();
  await kernel.deleteService({ family: 4, protocol: 'TCP', address: '203.0.113.10', port: 1002 });
  const r = await syncer.sync();
  assert.equal([r.kind, r.ops, r.read], ['ok', 3, 'full']);
  assert.equal(reads(kernel), { dump: 2, readService: 0, services: 0 });
  assert.equal(strip(kernel), await reference(plan(20)));
});

test('a service gone from the plan is removed, and a new one added, reading only those two', async () => {
  const { kernel, state, syncer } = setup(plan(10));
  await syncer.sync();
  state.plan = [...plan(10, (i, s) => (i === 3 ? undefined : s)), planService({ port: 2000, owner: { namespace: 'default', name: 'new', generation: 1 } })];
  const r = await syncer.sync();
  assert.equal([r.kind, r.read], ['ok', 2]);
  assert.equal(reads(kernel), { dump: 1, readService: 2, services: 0 });
  assert.equal(strip(kernel), await reference(state.plan));
  assert.not.ok(kernel.snapshot().some((s) => s.service.port === 1003), 'TCP/203.0.113.10:1003 deleted');
});

test('a service gone alone, its VIP still owned through the others: removed by a partial sync that reads only it', async () => {
  const { kernel, state, syncer } = setup(plan(10));
  await syncer.sync();
  state.plan = plan(10, (i, s) => (i === 3 ? undefined : s));
  const r = await syncer.sync();
  assert.equal([r.kind, r.read], ['ok', 1]);
  assert.not.ok(kernel.snapshot().some((s) => s.service.port === 1003), 'its VIP is owned: TCP/203.0.113.10:1003 deleted');
  assert.equal(strip(kernel), await reference(state.plan));
});

test('a drain started by a partial sync completes in later partial syncs that read only that service', async () => {
  const { kernel, clock, state, syncer } = setup(plan(10));
  await syncer.sync();
  const key = 'TCP/203.0.113.10:1004';
  kernel.setConnections(key, '10.0.4.2:8080', { active: 2 });
  state.plan = plan(10, (i, s) => (i === 4 ? { ...s, realServers: [rs('10.0.4.1', 8080)] } : s));
  const r1 = await syncer.sync();
  assert.equal([r1.kind, r1.read, r1.draining], ['drainPending', 1, 1]);
  assert.is(kernel.snapshot().find((s) => s.service.port === 1004)?.destinations.find((d) => d.address === '10.0.4.2')?.weight, 0, 'draining at weight 0');
  clock.tick(5_000);
  const r2 = await syncer.sync();
  assert.equal([r2.kind, r2.read, r2.ops], ['drainPending', 1, 0], 'still busy: re-read, kept');
  kernel.setConnections(key, '10.0.4.2:8080', { active: 0 });
  clock.tick(5_000);
  const r3 = await syncer.sync();
  assert.equal([r3.kind, r3.read, r3.ops, r3.draining], ['ok', 1, 1, 0]);
  assert.equal(reads(kernel), { dump: 1, readService: 3, services: 0 });
  assert.equal(strip(kernel), await reference(state.plan));
});

test('an outside edit elsewhere survives partial syncs and is undone by the periodic full one', async () => {
  const { kernel, clock, state, syncer } = setup(plan(10));
  await syncer.sync();
  const svc5 = { family: 4 as const, protocol: 'TCP' as const, address: '203.0.113.10', port: 1005 };
  await kernel.deleteDestination(svc5, { family: 4, address: '10.0.5.1', port: 8080 });
  state.plan = plan(10, (i, s) => (i === 7 ? { ...s, realServers: [rs('10.0.7.1', 8080)] } : s));
  clock.tick(10_000);
  assert.is((await syncer.sync()).read, 1);
  assert.is(kernel.snapshot().find((s) => s.service.port === 1005)?.destinations.length, 1, 'not seen by the partial sync');
  clock.tick(FULL_MS);
  const r = await syncer.sync();
  assert.equal([r.kind, r.read, r.ops], ['ok', 'full', 1]);
  assert.equal(reads(kernel), { dump: 2, readService: 1, services: 0 });
  assert.equal(strip(kernel), await reference(state.plan));
});

test('after an apply error the next sync reads everything back', async () => {
  const { kernel, state, syncer } = setup(plan(10));
  await syncer.sync();
  kernel.fail('addDestination', 'ENOMEM', { times: 1 });
  state.plan = plan(10, (i, s) => (i === 2 ? { ...s, realServers: [...s.realServers, rs('10.0.2.3', 8080)] } : s));
  const r1 = await syncer.sync();
  assert.equal([r1.kind, r1.read], ['retry', 1]);
  const r2 = await syncer.sync();
  assert.equal([r2.kind, r2.read, r2.ops], ['ok', 'full', 1]);
  assert.equal(reads(kernel), { dump: 2, readService: 1, services: 0 });
  assert.equal(strip(kernel), await reference(state.plan));
});

test('only owned VIPs: a foreign service is left as found; a new VIP lists the services instead of reading all back', async () => {
  const foreign = async (k: FakeIpvsKernel) => {
    const svc = { family: 4 as const, protocol: 'TCP' as const, address: '198.51.100.99', port: 1003, scheduler: 'rr', flags: 0, timeout: 0, netmask: '255.255.255.255' };
    await k.addService(svc);
    await k.addDestination(svc, { family: 4, address: '10.9.9.9', port: 80, forward: 'droute', weight: 3, upperThreshold: 0, lowerThreshold: 0 });
  };
  const { kernel, state, syncer } = setup(plan(5));
  await foreign(kernel);
  await syncer.sync();
  state.plan = plan(5, (i, s) => (i === 3 ? undefined : s));
  assert.is((await syncer.sync()).read, 1);
  state.plan = [...state.plan, planService({ vip: '203.0.113.20', owner: { namespace: 'default', name: 'other', generation: 1 } })];
  const r = await syncer.sync();
  assert.equal([r.read, r.newVips, kernel.reads.dump, kernel.reads.services], [0, 1, 1, 1], 'owned VIPs grew: one services-only dump');
  assert.equal(strip(kernel), await reference(state.plan, foreign));
});

test('without fullResyncIntervalMs every sync is full (the syncer used on its own)', async () => {
  const { kernel, state, syncer } = setup(plan(5), null);
  await syncer.sync();
  state.plan = plan(5, (i, s) => (i === 1 ? { ...s, realServers: [rs('10.0.1.1', 8080)] } : s));
  assert.is((await syncer.sync()).read, 'full');
  assert.equal(reads(kernel), { dump: 2, readService: 0, services: 0 });
});

test('advanceView: a partial sync\'s view, built from the change only, equals viewOf over everything', () => {
  // Deterministic pseudo-random edits: services added, removed and changed; drains starting on
  // services that were diffed and ending on others.
  let seed = 7;
  const r = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
  const clone = (v: SyncedView): SyncedView => ({ states: new Map(v.states), keys: new Map(v.keys), scope: v.scope });
  let weights = Array.from({ length: 40 }, () => 1);
  let present = Array.from({ length: 40 }, () => true);
  const desiredOf = () => desiredState(plan(40, (i, s) => (present[i] ? { ...s, realServers: s.realServers.map((x) => ({ ...x, weight: weights[i]! })) } : undefined)), 'node-a').services;
  let draining = new Map<string, number>();
  let view = viewOf(desiredOf(), draining, new Map(), 'scope');
  let kinds = 0;
  for (let round = 0; round < 200; round++) {
    weights = weights.map((w) => (r() < 0.05 ? w + 1 : w));
    present = present.map((p) => (r() < 0.03 ? !p : p));
    const desired = desiredOf();
    const changed = changedServices(view, desired, draining)!;
    // The diff of the changed services: some of them (desired or not) start draining a destination now.
    const fresh = new Map<string, number>();
    for (const key of changed.keys()) if (r() < 0.3) fresh.set(`${key} -> 10.9.9.9:8080`, round);
    // Drains that ended among the diffed ones are simply not in `fresh`.
    const after = mergeDraining(draining, new Set(changed.keys()), fresh);
    const want = viewOf(desired, after, new Map([...view.keys, ...changed]), `scope-${round}`);
    const got = advanceView(clone(view), desired.filter((s) => changed.has(ipvsServiceKey(s.service))), changed, after, `scope-${round}`);
    assert.equal([[...got.states].sort(), [...got.keys].sort(), got.scope], [[...want.states].sort(), [...want.keys].sort(), want.scope], `round ${round}`);
    if ([...after.keys()].some((k) => !desired.some((s) => ipvsServiceKey(s.service) === drainService(k)))) kinds |= 1;
    if (changed.size > 0) kinds |= 2;
    view = want;
    draining = after;
  }
  assert.is(kinds, 3, 'the rounds drained services no longer desired, and changed some');
});

test('sameState: the same object, or another with the same content, is the same desired state; other content is not', () => {
  const [a] = desiredState([planService({ realServers: [rs('10.0.1.1', 8080)] })], 'node-a').services;
  const [b] = desiredState([planService({ realServers: [rs('10.0.1.1', 8080)] })], 'node-a').services;
  const [c] = desiredState([planService({ realServers: [rs('10.0.1.2', 8080)] })], 'node-a').services;
  assert.ok(a !== b, 'built from two plan entries: two objects');
  assert.ok(sameState(a, a!) && sameState(a, b!));
  assert.not.ok(sameState(a, c!));
  assert.not.ok(sameState(undefined, a!));
  // A view holding `a` sees no change in `b`, and a change in `c`.
  const view = viewOf([a!], new Map(), new Map(), 'scope');
  assert.equal([...changedServices(view, [b!], new Map())!.keys()], []);
  assert.equal([...changedServices(view, [c!], new Map())!.keys()], [ipvsServiceKey(c!.service)]);
});

test('a view keeps identities only for draining services without a desired state; a desired one\'s comes from its state', () => {
  const [a] = desiredState([planService({ realServers: [rs('10.0.1.1', 8080)] })], 'node-a').services;
  const gone = { family: 4 as const, protocol: 'TCP' as const, address: '203.0.113.99', port: 80 };
  const goneKey = ipvsServiceKey(gone);
  const aKey = ipvsServiceKey(a!.service);
  const draining = new Map([[`${goneKey} -> 10.0.0.9:8080`, 1], [`${aKey} -> 10.0.0.8:8080`, 1]]);
  const view = viewOf([a!], draining, new Map([[goneKey, gone], [aKey, serviceIdentity(a!.service)]]), 'scope');
  assert.equal([...view.keys.keys()], [goneKey], 'the desired service\'s identity is not kept twice');
  assert.equal(identityIn(view, aKey), serviceIdentity(a!.service));
  assert.equal(identityIn(view, goneKey), gone);
  // The desired service leaves the plan while draining: advanceView keeps its identity (from `changed`).
  const next = advanceView(view, [], new Map([[aKey, serviceIdentity(a!.service)]]), draining, 'scope');
  assert.equal([...next.keys.keys()].sort(), [goneKey, aKey].sort());
  assert.equal(identityIn(next, aKey), serviceIdentity(a!.service));
});

test('changedIn: for a desired state patched from the view\'s services, the same change set as changedServices', () => {
  let seed = 3;
  const r = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
  let weights = Array.from({ length: 40 }, () => 1);
  let p = plan(40);
  const memo: DesiredMemo = {};
  let want = desiredState(p, 'node-a', [], memo);
  let draining = new Map<string, number>();
  let view = viewOf(want.services, draining, new Map(), 'scope');
  let patched = 0;
  for (let round = 0; round < 200; round++) {
    const next = weights.map((w) => (r() < 0.1 ? w + 1 : w));
    // Some rounds change a weight back and forth in one go: a new object, the same state.
    p = p.map((s, i) => (next[i] !== weights[i] || r() < 0.05 ? { ...s, realServers: s.realServers.map((x) => ({ ...x, weight: next[i]! })) } : s));
    weights = next;
    want = desiredState(p, 'node-a', [], memo);
    assert.ok(want.delta?.from === view.desired, `round ${round}: patched from the view's services`);
    patched++;
    const changed = changedIn(view, want.delta!.keys, want.services, want.index, draining)!;
    assert.equal([...changed], [...changedServices(view, want.services, draining)!], `round ${round}`);
    const fresh = new Map<string, number>();
    for (const key of changed.keys()) if (r() < 0.3) fresh.set(`${key} -> 10.9.9.9:8080`, round);
    draining = mergeDraining(draining, new Set(changed.keys()), fresh);
    view = advanceView(view, want.services.filter((s) => changed.has(ipvsServiceKey(s.service))), changed, draining, 'scope', want.services);
  }
  assert.is(patched, 200);
});

test('a patched change reads back only the changed service, through the syncer', async () => {
  const { kernel, state, syncer } = setup(plan(50));
  await syncer.sync();
  for (let n = 1; n <= 5; n++) {
    state.plan = state.plan.map((s, i) => (i === n ? { ...s, realServers: [rs(`10.0.${i}.1`, 8080), rs(`10.0.${i}.9`, 8080)] } : s));
    const r = await syncer.sync();
    assert.equal([r.kind, r.read], ['ok', 1], `change ${n}`);
  }
  assert.equal(strip(kernel), await reference(state.plan));
});

test.run();
