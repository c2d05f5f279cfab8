// The rolling verifier (verify.ts) against the in-memory kernel: between the rare full read-backs,
// verify slices read back every desired service once per interval and repair outside edits to
// them; a change is synced without a full read-back; what a slice cannot see (a service someone
// added on an owned VIP) is left to the full sync; a slice that fails makes the next sync full.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { PlanService } from '../../api/plan.ts';
import { FakeIpvsKernel } from '../../dataplane/ipvs/testing/fake.ts';
import type { IpvsServiceKey, IpvsServiceState } from '../../dataplane/ipvs/types.ts';
import { byString, ipvsServiceKey } from '../../dataplane/sync/keys.ts';
import { createSyncLoop } from '../../dataplane/sync/loop.ts';
import { createSyncer, type SyncResult, type VipBinder } from '../../dataplane/sync/sync.ts';
import { VERIFY_BATCH, VERIFY_CHUNK, VERIFY_SLICE_CAP, VERIFY_SLICE_FLOOR, verifyBudget, verifySlice, verifySliceSize } from '../../dataplane/sync/verify.ts';
import { settle } from '../../kube/clock.ts';
import { ManualClock, captureLog, planService, rs } from '../lib/sync-fixtures.ts';

const test = suite('sync: rolling verifier');
const INTERVAL = 30_000, TICK = 5_000, FULL = 300_000;
const N = 100;

/** n services on 203.0.113.10, ports 1000.., two real servers each. */
function plan(n: number, edit: (i: number, s: PlanService) => PlanService = (_, s) => s): PlanService[] {
  return Array.from({ length: n }, (_, i) => edit(i, planService({
    port: 1000 + i, owner: { namespace: 'default', name: `web-${i}`, generation: 1 },
    realServers: [rs(`10.0.${i}.1`, 8080), rs(`10.0.${i}.2`, 8080)],
  })));
}

/** A fake kernel that remembers which services readService() was asked for. */
class CountingKernel extends FakeIpvsKernel {
  readKeys: string[] = [];
  override async readService(k: IpvsServiceKey): Promise<IpvsServiceState | undefined> {
    const s = await super.readService(k);
    this.readKeys.push(ipvsServiceKey(k));
    return s;
  }
}

function setup(n = N) {
  const kernel = new CountingKernel();
  const clock = new ManualClock();
  const state = { plan: plan(n) };
  const syncer = createSyncer({
    kernel, node: 'node-a', plan: () => state.plan, log: captureLog().log, clock, drainTimeoutMs: 60_000,
    fullResyncIntervalMs: FULL, verify: { intervalMs: INTERVAL, tickMs: TICK },
  });
  return { kernel, clock, state, syncer };
}

const svc = (port: number) => ({ family: 4 as const, protocol: 'TCP' as const, address: '203.0.113.10', port });
const dests = (k: FakeIpvsKernel, port: number) => k.snapshot().find((s) => s.service.port === port)?.destinations.map((d) => `${d.address}/${d.weight}`);

test('verifySliceSize: ceil(N · tick / interval), between the floor and the cap, at most N', () => {
  assert.is(verifySliceSize(0, TICK, INTERVAL), 0);
  assert.is(verifySliceSize(5, TICK, INTERVAL), 5, 'never more than N');
  assert.is(verifySliceSize(N, TICK, INTERVAL), Math.max(VERIFY_SLICE_FLOOR, Math.ceil(N / 6)));
  assert.is(verifySliceSize(40_000, TICK, INTERVAL), 6_667);
  assert.is(verifySliceSize(1_000_000, TICK, INTERVAL), VERIFY_SLICE_CAP);
});

test('verifySlice: consecutive slices walk the sorted keys, wrap, and cover each key once per pass', () => {
  const desired = plan(10).map((p) => ({ service: { ...svc(p.port), scheduler: 'rr', flags: 0, timeout: 0, netmask: '255.255.255.255' }, destinations: [] } as IpvsServiceState));
  const all = desired.map((s) => ipvsServiceKey(s.service)).sort();
  let cursor: string | undefined;
  const slices: string[][] = [];
  for (let i = 0; i < 3; i++) {
    const slice = verifySlice(desired, cursor, 4);
    slices.push([...slice.keys.keys()]);
    cursor = slice.cursor;
  }
  assert.equal(slices[0], all.slice(0, 4));
  assert.equal(slices[1], all.slice(4, 8));
  assert.equal(slices[2], [all[0], all[1], all[8], all[9]], 'the last two, then it wraps to the first (each slice sorted)');
  assert.is(cursor, all[1], 'the cursor is the last key read');
});

test('an outside edit (weight changed, a destination deleted) is repaired by verify slices within interval + tick, without a full read-back', async () => {
  const { kernel, clock, syncer } = setup();
  await syncer.sync();
  await kernel.updateDestination(svc(1098), { family: 4, address: '10.0.98.1', port: 8080, forward: 'masq', weight: 7, upperThreshold: 0, lowerThreshold: 0 });
  await kernel.deleteDestination(svc(1003), { family: 4, address: '10.0.3.2', port: 8080 });
  const results: SyncResult[] = [];
  for (let t = TICK; t <= INTERVAL + TICK; t += TICK) {
    clock.tick(TICK);
    results.push(await syncer.sync());
  }
  assert.equal(dests(kernel, 1098), ['10.0.98.1/1', '10.0.98.2/1'], 'weight restored');
  assert.equal(dests(kernel, 1003), ['10.0.3.1/1', '10.0.3.2/1'], 'destination re-added');
  assert.is(kernel.reads.dump, 1, 'only the first sync dumped');
  assert.ok(results.every((r) => r.kind === 'ok' && typeof r.read === 'number' && r.verified === r.read), 'every tick a partial sync of its slice');
  assert.is(results.reduce((a, r) => a + r.ops, 0), 2, 'two repairs');
});

test('the verify slices read every desired service within one interval', async () => {
  const { kernel, clock, syncer } = setup(250);
  await syncer.sync();
  for (let t = TICK; t <= INTERVAL; t += TICK) {
    clock.tick(TICK);
    await syncer.sync();
  }
  assert.equal(new Set(kernel.readKeys).size, 250);
  assert.is(kernel.reads.readService, 6 * 42, 'ceil(250 · 5 / 30) = 42 a tick, six ticks');
  assert.is(kernel.reads.dump, 1);
});

test('a change is synced by the next sync without a full read-back (the loop, 40 s of ticks)', async () => {
  const kernel = new CountingKernel();
  const clock = new ManualClock(0);
  const state = { plan: plan(N) };
  const loop = createSyncLoop({
    kernel, node: 'node-a', plan: () => state.plan, log: captureLog().log, clock,
    minIntervalMs: 1_000, resyncIntervalMs: INTERVAL, verifyTickMs: TICK,
  });
  const elapse = (ms: number) => clock.elapse(ms, () => loop.idle());
  loop.start();
  await elapse(0);
  await elapse(40_000);
  assert.is(kernel.reads.dump, 1, 'verify ticks, no periodic full read-back at 30 s');
  state.plan = plan(N, (i, s) => (i === 42 ? { ...s, realServers: [rs('10.0.42.1', 8080), rs('10.0.42.9', 8080)] } : s));
  const reads = kernel.reads.readService;
  loop.markDirty();
  await elapse(1_000);
  assert.equal(dests(kernel, 1042), ['10.0.42.1/1', '10.0.42.9/1']);
  assert.is(kernel.reads.dump, 1, 'no full read-back for the change');
  assert.ok(kernel.reads.readService - reads <= 1 + verifySliceSize(N, TICK, INTERVAL), 'the change, and at most one slice');
  await loop.stop();
});

test('a sync asked for with no desired change, before a slice is due, reads the next slice, not everything', async () => {
  const { kernel, clock, syncer } = setup();
  await syncer.sync();
  clock.tick(TICK);
  const r1 = await syncer.sync();
  clock.tick(1_000);
  const r2 = await syncer.sync();
  const size = verifySliceSize(N, TICK, INTERVAL);
  assert.equal([r1.read, r1.verified, r2.read, r2.verified], [size, size, size, size]);
  assert.is(new Set(kernel.readKeys).size, 2 * size, 'the second slice follows the first');
  assert.is(kernel.reads.dump, 1);
});

test('a service someone added on an owned VIP is left to the periodic listing sync, which removes it', async () => {
  const { kernel, clock, syncer } = setup();
  await syncer.sync();
  const extra = { ...svc(9999), scheduler: 'rr', flags: 0, timeout: 0, netmask: '255.255.255.255' };
  await kernel.addService(extra);
  for (let t = TICK; t < FULL; t += TICK) {
    clock.tick(TICK);
    await syncer.sync();
  }
  assert.ok(kernel.snapshot().some((s) => s.service.port === 9999), 'no slice reads a service that is not desired');
  assert.is(kernel.reads.dump, 1);
  clock.tick(TICK);
  const r = await syncer.sync();
  assert.equal([r.kind, r.listed, r.read, r.ops], ['ok', N + 1, 1, 1], 'the listing sync, fullResyncIntervalMs after the last: it reads back the extra service alone');
  assert.equal([kernel.reads.dump, kernel.reads.services], [1, 1], 'a services-only dump, no full read-back');
  assert.not.ok(kernel.snapshot().some((s) => s.service.port === 9999), 'removed');
  // A desired service deleted by hand: the next listing (not a slice: it may be far from the cursor) adds it back.
  await kernel.deleteService(svc(1005));
  clock.tick(FULL);
  const again = await syncer.sync();
  assert.equal([again.kind, again.listed, again.read, again.ops], ['ok', N - 1, 0, 3], 'added with its two real servers, nothing read');
  assert.equal(dests(kernel, 1005), ['10.0.5.1/1', '10.0.5.2/1']);
});

test('a verify slice that fails is retried, and the retry reads everything back', async () => {
  const { kernel, clock, syncer } = setup();
  await syncer.sync();
  await kernel.deleteDestination(svc(1000), { family: 4, address: '10.0.0.2', port: 8080 });
  kernel.fail('readService', 'ENOBUFS', { times: 1 });
  clock.tick(TICK);
  const r1 = await syncer.sync();
  assert.equal([r1.kind, r1.ops], ['retry', 0]);
  assert.is(dests(kernel, 1000)?.length, 1, 'nothing applied');
  const r2 = await syncer.sync();
  assert.equal([r2.kind, r2.read, r2.ops], ['ok', 'full', 1]);
  assert.is(kernel.reads.dump, 2);
  assert.equal(dests(kernel, 1000), ['10.0.0.1/1', '10.0.0.2/1']);
});

/** The plan with the services on these ports moved to another second real server (x.x.x.7). */
const withChange = (...ports: number[]) => plan(N, (i, s) => (ports.includes(1000 + i) ? { ...s, realServers: [rs(`10.0.${i}.1`, 8080), rs(`10.0.${i}.7`, 8080)] } : s));

test('a change that meets a due verify slice goes first; the slice is the next sync, and the slices keep their rhythm', async () => {
  const { kernel, clock, state, syncer } = setup();
  await syncer.sync();
  const size = verifySliceSize(N, TICK, INTERVAL);
  clock.tick(TICK);
  state.plan = withChange(1007);
  const r1 = await syncer.sync();
  assert.equal([r1.kind, r1.read, r1.verified, r1.followUp], ['ok', 1, undefined, 'verify'], 'only the change read back; the slice left to the next sync');
  assert.equal(dests(kernel, 1007), ['10.0.7.1/1', '10.0.7.7/1']);
  clock.tick(1_000);
  const r2 = await syncer.sync();
  assert.equal([r2.read, r2.verified, r2.followUp], [size, size, undefined], 'the deferred slice, alone');
  // The next slice is due at 2 ticks, not at 1 s + a tick: a pass still takes one interval.
  clock.tick(TICK - 1_000);
  state.plan = withChange(1007, 1008);
  const r3 = await syncer.sync();
  assert.equal([r3.read, r3.followUp], [1, 'verify'], 'due again at 2 ticks: the change first again');
  clock.tick(1_000);
  state.plan = withChange(1007, 1008, 1009);
  const r4 = await syncer.sync();
  assert.equal([r4.read, r4.verified, r4.followUp], [1 + size, size, undefined], 'a slice deferred once rides with the next change');
  assert.is(kernel.reads.dump, 1);
});

test('a change that meets the periodic listing sync goes first; the listing is the next sync', async () => {
  const { kernel, clock, state, syncer } = setup();
  await syncer.sync();
  clock.tick(FULL);
  state.plan = withChange(1011);
  const r1 = await syncer.sync();
  assert.equal([r1.kind, r1.read, r1.followUp], ['ok', 1, 'full'], 'the change alone, read back by itself');
  assert.equal(dests(kernel, 1011), ['10.0.11.1/1', '10.0.11.7/1']);
  assert.is(kernel.reads.dump, 1);
  clock.tick(1_000);
  state.plan = withChange(1011, 1012);
  const r2 = await syncer.sync();
  assert.equal([r2.listed, r2.read, r2.followUp], [N, 1, undefined], 'deferred once: the next change rides with the listing');
  assert.equal([kernel.reads.dump, kernel.reads.services], [1, 1]);
  assert.equal(dests(kernel, 1012), ['10.0.12.1/1', '10.0.12.7/1']);
  clock.tick(TICK);
  assert.is((await syncer.sync()).read, verifySliceSize(N, TICK, INTERVAL), 'then slices again');
});

test('the loop runs the follow-up right after the change\'s sync', async () => {
  const kernel = new CountingKernel();
  const clock = new ManualClock(0);
  const state = { plan: plan(N) };
  const seen: { at: number; read: SyncResult['read']; followUp: SyncResult['followUp']; dests?: string[] }[] = [];
  const loop = createSyncLoop({
    kernel, node: 'node-a', plan: () => state.plan, log: captureLog().log, clock,
    minIntervalMs: 1_000, resyncIntervalMs: INTERVAL, verifyTickMs: TICK, fullResyncIntervalMs: 22_000,
    onResult: (r) => seen.push({ at: clock.now(), read: r.read, followUp: r.followUp, dests: dests(kernel, 1020) }),
  });
  const elapse = (ms: number) => clock.elapse(ms, () => loop.idle());
  loop.start();
  await elapse(0);
  await elapse(22_000);
  assert.is(kernel.reads.dump, 1, 'verify ticks up to 20 s; the full read-back is due at 22 s');
  seen.length = 0;
  state.plan = withChange(1020);
  loop.markDirty();
  await elapse(0);
  assert.equal(seen, [
    { at: 22_000, read: 1, followUp: 'full', dests: ['10.0.20.1/1', '10.0.20.7/1'] },
    { at: 22_000, read: 0, followUp: undefined, dests: ['10.0.20.1/1', '10.0.20.7/1'] },
  ], 'the change in the kernel by its own sync, then the periodic listing at once');
  assert.equal([kernel.reads.dump, kernel.reads.services], [1, 1]);
  assert.is(loop.nextRunAt, 22_000 + TICK, 'then the ticks');
  await loop.stop();
});

/**
 * lvs0 as the syncer sees it: bound VIPs, how often listed, a failure to inject, and a gate that
 * holds listings (a listing reads lvs0 when asked, as the real binder's runs in its turn, and
 * answers when the gate opens).
 */
function binder() {
  const b = { bound: [] as string[], lists: 0, failing: false, gate: undefined as Promise<void> | undefined };
  const vips: VipBinder = {
    async list() {
      b.lists++;
      const seen = [...b.bound];
      await b.gate;
      if (b.failing) throw Object.assign(new Error('nft: exit status 1'), { code: 'EDIRECTOR' });
      return seen;
    },
    async set(v) { b.bound = [...v]; },
  };
  return { b, vips };
}

/** A gate for binder(): open() lets held listings answer. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => { open = r; });
  return { promise, open };
}

test('a sync for a new owned VIP goes on from what the binder knows, until the director check is due or a sync failed', async () => {
  const kernel = new CountingKernel();
  const clock = new ManualClock();
  const { b, vips } = binder();
  const known = { vips: { ...vips, known: () => [...b.bound] } satisfies VipBinder };
  const VIP2 = '203.0.113.20', VIP3 = '203.0.113.30';
  const state = { plan: plan(N) };
  const syncer = createSyncer({ kernel, node: 'node-a', plan: () => state.plan, log: captureLog().log, clock, vips: known.vips, fullResyncIntervalMs: FULL, verify: { intervalMs: INTERVAL, tickMs: TICK } });
  await syncer.sync();
  assert.is(b.lists, 1, 'the first sync lists lvs0');
  // A VirtualServer with a VIP of its own: the owned VIPs change; the services are listed (no full
  // read-back, nothing to read: the new service does not exist yet) and lvs0 is not read.
  clock.tick(1_000);
  state.plan = [...state.plan, planService({ vip: VIP2, port: 80, owner: { namespace: 'default', name: 'new', generation: 1 }, realServers: [rs('10.1.0.1', 8080)] })];
  const r = await syncer.sync();
  assert.equal([r.kind, r.read, r.newVips, b.lists, kernel.reads.dump, kernel.reads.services], ['ok', 0, 1, 1, 1, 1]);
  assert.equal(b.bound, ['203.0.113.10', VIP2], 'the new VIP bound');
  assert.equal(dests(kernel, 80), ['10.1.0.1/1']);
  // Due: the next full sync for a new VIP lists (and re-applies) the director.
  clock.tick(INTERVAL);
  state.plan = [...state.plan, planService({ vip: VIP3, port: 80, owner: { namespace: 'default', name: 'third', generation: 1 }, realServers: [rs('10.1.0.2', 8080)] })];
  await syncer.sync();
  assert.is(b.lists, 2, 'the director check was due');
  assert.equal(b.bound, ['203.0.113.10', VIP2, VIP3]);
  // After a failed sync, the next full sync lists again.
  clock.tick(1_000);
  b.failing = true;
  state.plan = state.plan.filter((p) => p.vip !== VIP3);
  const retried = await syncer.sync();
  assert.is(retried.kind, 'ok', 'not due: no listing, nothing to fail');
  assert.is(b.lists, 2);
  kernel.fail('addService', 'ENOMEM', { times: 1 });
  state.plan = [...state.plan, planService({ vip: VIP3, port: 81, owner: { namespace: 'default', name: 'fourth', generation: 1 }, realServers: [rs('10.1.0.3', 8080)] })];
  clock.tick(1_000);
  assert.is((await syncer.sync()).kind, 'retry', 'the kernel refused the new service');
  b.failing = false;
  clock.tick(1_000);
  await syncer.sync();
  assert.is(b.lists, 3, 'the retry lists lvs0');
});

test('the director is checked once per verify interval beside the partial syncs; an outcome to act on wakes the owner, and the next sync acts', async () => {
  const kernel = new CountingKernel();
  const clock = new ManualClock();
  const { b, vips } = binder();
  let wakes = 0;
  const syncer = createSyncer({
    kernel, node: 'node-a', plan: () => plan(N), log: captureLog().log, clock, vips, fullResyncIntervalMs: FULL, verify: { intervalMs: INTERVAL, tickMs: TICK },
    onDirectorChecked: () => { wakes++; },
  });
  await syncer.sync();
  assert.equal([b.bound, b.lists], [['203.0.113.10'], 1]);
  const results: SyncResult[] = [];
  for (let t = TICK; t <= 2 * INTERVAL; t += TICK) { clock.tick(TICK); results.push(await syncer.sync()); await syncer.directorChecked(); }
  assert.is(b.lists, 3, 'listed by the full sync, then at 30 s and 60 s');
  assert.ok(results.every((r) => r.kind === 'ok' && r.read !== 'full'), 'all partial');
  assert.is(wakes, 0, 'lvs0 as left: nothing to act on');
  /** Syncs a tick apart until one starts a check; waits for the check. */
  const untilChecked = async () => {
    const before = b.lists;
    for (let t = TICK; t <= INTERVAL && b.lists === before; t += TICK) { clock.tick(TICK); assert.is((await syncer.sync()).kind, 'ok', 'the sync that starts a check goes on'); }
    assert.is(b.lists, before + 1, 'a check within the interval');
    await syncer.directorChecked();
  };
  // lvs0's director setup fails (nft broken): the owner is woken, and its sync fails naming the step.
  b.failing = true;
  await untilChecked();
  assert.is(wakes, 1, 'woken by the failure');
  const failed = await syncer.sync();
  assert.ok(failed.kind === 'retry' && failed.errors.some((e) => e.op === 'listVips'), 'the next sync fails with the director step');
  b.failing = false;
  clock.tick(TICK);
  assert.is((await syncer.sync()).read, 'full', 'the retry after the failure');
  // A VIP removed from lvs0 by hand: the check finds lvs0 not as left, and a full sync binds it again.
  b.bound = [];
  await untilChecked();
  assert.is(wakes, 2, 'woken: lvs0 not as left');
  const lists = b.lists;
  const rebound = await syncer.sync();
  assert.is(rebound.read, 'full');
  assert.is(b.lists, lists, 'the full sync goes on from the check\'s listing of lvs0');
  assert.equal(b.bound, ['203.0.113.10'], 'bound again');
  assert.is(kernel.reads.dump, 3, 'first, retry, rebinding: no periodic full read-back');
  // After a quick announce (an election change) the next sync checks the director, off schedule.
  clock.tick(TICK);
  await syncer.sync();
  assert.is(b.lists, lists, 'not due');
  syncer.checkDirectorNext();
  clock.tick(1_000);
  await syncer.sync();
  assert.is(b.lists, lists + 1, 'checked when asked');
});

test('changes do not wait for a director check: it runs beside their syncs, one at a time', async () => {
  const kernel = new CountingKernel();
  const clock = new ManualClock();
  const { b, vips } = binder();
  const state = { plan: plan(N) };
  let wakes = 0;
  const syncer = createSyncer({
    kernel, node: 'node-a', plan: () => state.plan, log: captureLog().log, clock, vips, fullResyncIntervalMs: FULL, verify: { intervalMs: INTERVAL, tickMs: TICK },
    onDirectorChecked: () => { wakes++; },
  });
  await syncer.sync();
  for (let t = TICK; t < INTERVAL; t += TICK) { clock.tick(TICK); await syncer.sync(); }
  clock.tick(2_000);
  assert.is(b.lists, 1, 'the full sync\'s listing so far');
  const held = gate();
  b.gate = held.promise;
  let checked = false;
  syncer.checkDirectorNext();
  state.plan = withChange(1030);
  const r1 = await syncer.sync();
  void syncer.directorChecked().then(() => { checked = true; });
  assert.equal([r1.kind, r1.read, r1.followUp, b.lists], ['ok', 1, undefined, 2], 'the change synced; the check started');
  assert.equal(dests(kernel, 1030), ['10.0.30.1/1', '10.0.30.7/1']);
  clock.tick(500);
  state.plan = withChange(1030, 1031);
  const r2 = await syncer.sync();
  assert.equal([r2.kind, r2.read, b.lists, checked], ['ok', 1, 2, false], 'the next change synced while the check runs; no second check');
  assert.equal(dests(kernel, 1031), ['10.0.31.1/1', '10.0.31.7/1']);
  held.open();
  await syncer.directorChecked();
  assert.equal([checked, wakes], [true, 0], 'lvs0 as left: nothing to act on');
  clock.tick(2_000);
  const r3 = await syncer.sync();
  assert.equal([r3.kind, r3.read === 'full', b.lists], ['ok', false, 2], 'partial; the next check one interval on');
});

test('a check that listed lvs0 before a sync bound a new VIP is stale: it does not make the next sync full', async () => {
  const kernel = new CountingKernel();
  const clock = new ManualClock();
  const { b, vips } = binder();
  const known: VipBinder = { ...vips, known: () => [...b.bound] };
  const state = { plan: plan(N) };
  let wakes = 0;
  const syncer = createSyncer({
    kernel, node: 'node-a', plan: () => state.plan, log: captureLog().log, clock, vips: known, fullResyncIntervalMs: FULL, verify: { intervalMs: INTERVAL, tickMs: TICK },
    onDirectorChecked: () => { wakes++; },
  });
  await syncer.sync();
  clock.tick(INTERVAL);
  const held = gate();
  b.gate = held.promise;
  assert.is((await syncer.sync()).kind, 'ok');
  assert.is(b.lists, 2, 'a check started; it has read lvs0 with one VIP');
  // A VirtualServer with a VIP of its own: a listing sync binds it while the check is held.
  clock.tick(1_000);
  state.plan = [...state.plan, planService({ vip: '203.0.113.20', port: 80, owner: { namespace: 'default', name: 'new', generation: 1 }, realServers: [rs('10.1.0.1', 8080)] })];
  const bind = await syncer.sync();
  assert.equal([bind.kind, bind.newVips, b.bound], ['ok', 1, ['203.0.113.10', '203.0.113.20']]);
  held.open();
  await syncer.directorChecked();
  assert.is(wakes, 0, 'the listing is older than the binding: nothing to act on');
  const dumps = kernel.reads.dump;
  clock.tick(1_000);
  const next = await syncer.sync();
  assert.equal([next.kind, next.read === 'full', kernel.reads.dump], ['ok', false, dumps], 'no full read-back for a stale listing');
});

test('the loop runs a sync as soon as a director check fails, not at the next tick', async () => {
  const kernel = new CountingKernel();
  const clock = new ManualClock(0);
  const { b, vips } = binder();
  const seen: { at: number; kind: SyncResult['kind']; op?: string }[] = [];
  const loop = createSyncLoop({
    kernel, node: 'node-a', plan: () => plan(N), log: captureLog().log, clock, vips, resyncIntervalMs: INTERVAL, verifyTickMs: TICK,
    onResult: (r) => seen.push({ at: clock.now(), kind: r.kind, ...(r.kind === 'retry' ? { op: r.errors[0]?.op } : {}) }),
  });
  const elapse = (ms: number) => clock.elapse(ms, async () => { await loop.idle(); await settle(); await loop.idle(); });
  loop.start();
  await elapse(0);
  b.failing = true;
  await elapse(INTERVAL - 1);
  assert.ok(seen.every((r) => r.kind === 'ok'), 'no check before its time');
  seen.length = 0;
  await elapse(1);
  assert.equal(seen, [{ at: INTERVAL, kind: 'ok' }, { at: INTERVAL, kind: 'retry', op: 'listVips' }], 'the tick starts the check; its failure is a sync at once');
  await loop.stop();
});

test('a change marked while a slice is read stops it after the batch being read; the next sync reads the change, then the slice from there', async () => {
  const n = 600;
  const size = verifySliceSize(n, TICK, INTERVAL);
  assert.ok(size > 2 * VERIFY_BATCH && size <= VERIFY_CHUNK, `one chunk of several batches: ${size}`);
  /** Marks a change (pending) once `markAfter` services were read. */
  const mark = { pending: false, markAfter: Infinity };
  class MarkingKernel extends CountingKernel {
    override async readService(k: IpvsServiceKey): Promise<IpvsServiceState | undefined> {
      const st = await super.readService(k);
      if (this.readKeys.length >= mark.markAfter) mark.pending = true;
      return st;
    }
  }
  const kernel = new MarkingKernel();
  const clock = new ManualClock();
  const state = { plan: plan(n) };
  const syncer = createSyncer({
    kernel, node: 'node-a', plan: () => state.plan, log: captureLog().log, clock, drainTimeoutMs: 60_000,
    fullResyncIntervalMs: FULL, verify: { intervalMs: INTERVAL, tickMs: TICK }, pending: () => mark.pending,
  });
  await syncer.sync();
  const table = [...new Set(kernel.snapshot().map((st) => ipvsServiceKey(st.service)))].sort(byString);
  clock.tick(TICK);
  kernel.readKeys = [];
  mark.markAfter = Math.ceil(VERIFY_BATCH / 2); // while the first batch is read
  const r1 = await syncer.sync();
  assert.equal([r1.kind, r1.read, r1.verified, r1.followUp], ['ok', VERIFY_BATCH, VERIFY_BATCH, 'verify'], 'one batch, then the slice stops; the rest asked for at once');
  const first = kernel.readKeys;
  // The change's sync reads it alone (a slice left behind waits for the change, as before), then
  // the next sync reads the slice from where it stopped.
  mark.pending = false;
  mark.markAfter = Infinity;
  kernel.readKeys = [];
  state.plan = plan(n, (i, x) => (i === 250 ? { ...x, realServers: [rs(`10.0.${i}.1`, 8080), rs(`10.0.${i}.7`, 8080)] } : x));
  const r2 = await syncer.sync();
  assert.equal([r2.kind, r2.read, r2.verified, r2.followUp], ['ok', 1, undefined, 'verify'], 'the change alone');
  assert.equal(kernel.readKeys, [ipvsServiceKey(svc(1250))]);
  assert.equal(dests(kernel, 1250), ['10.0.250.1/1', '10.0.250.7/1']);
  kernel.readKeys = [];
  const r3 = await syncer.sync();
  assert.equal([r3.kind, r3.read, r3.verified, r3.followUp], ['ok', size - VERIFY_BATCH, size - VERIFY_BATCH, undefined], 'the rest of the slice');
  assert.equal([...first, ...kernel.readKeys], table.slice(0, size), 'the slice read once, in order, nothing skipped');
});

test('the loop\'s mark is what stops a slice: a change marked while one is read', async () => {
  const n = 600;
  const size = verifySliceSize(n, TICK, INTERVAL);
  const hook = { at: Infinity, fire: () => {} };
  class MarkingKernel extends CountingKernel {
    override async readService(k: IpvsServiceKey): Promise<IpvsServiceState | undefined> {
      const st = await super.readService(k);
      if (this.readKeys.length >= hook.at) { hook.at = Infinity; hook.fire(); }
      return st;
    }
  }
  const kernel = new MarkingKernel();
  const clock = new ManualClock(0);
  const seen: { at: number; verified?: number; followUp?: string }[] = [];
  const loop = createSyncLoop({
    kernel, node: 'node-a', plan: () => plan(n), log: captureLog().log, clock, resyncIntervalMs: INTERVAL, verifyTickMs: TICK, fullResyncIntervalMs: FULL,
    onResult: (r) => seen.push({ at: clock.now(), ...(r.verified ? { verified: r.verified } : {}), ...(r.followUp ? { followUp: r.followUp } : {}) }),
  });
  const elapse = (ms: number) => clock.elapse(ms, () => loop.idle());
  loop.start();
  await elapse(0);
  kernel.readKeys = [];
  hook.at = Math.ceil(VERIFY_BATCH / 2); // while the first batch is read
  hook.fire = () => loop.markDirty();
  seen.length = 0;
  await elapse(TICK);
  assert.equal(seen, [{ at: TICK, verified: VERIFY_BATCH, followUp: 'verify' }, { at: TICK, verified: size - VERIFY_BATCH }], 'stopped after one batch; the rest at once');
  await loop.stop();
});

test('slices keep to their share of the agent\'s time: where a read is slow, a pass takes longer than the interval, and still covers the table', async () => {
  const n = 3_000;
  const clock = new ManualClock();
  /** Every read takes READ_MS on the clock. */
  const READ_MS = 10;
  class SlowKernel extends CountingKernel {
    override async readService(k: IpvsServiceKey): Promise<IpvsServiceState | undefined> {
      clock.tick(READ_MS);
      return super.readService(k);
    }
  }
  const kernel = new SlowKernel();
  const { log, lines } = captureLog();
  const syncer = createSyncer({ kernel, node: 'node-a', plan: () => plan(n), log, clock, fullResyncIntervalMs: FULL, verify: { intervalMs: INTERVAL, tickMs: TICK } });
  await syncer.sync();
  const even = verifySliceSize(n, TICK, INTERVAL);
  const budget = verifyBudget(TICK, READ_MS);
  assert.ok(budget < even, `${budget} < ${even}`);
  // The first slice is the even share (nothing measured yet); it measures the reads.
  clock.tick(TICK);
  let r = await syncer.sync();
  assert.is(r.verified, VERIFY_CHUNK);
  while (r.followUp === 'verify') r = await syncer.sync();
  // From then on, a slice per tick is the budget.
  kernel.readKeys = [];
  const ticks = Math.ceil(n / budget);
  for (let t = 0; t < ticks; t++) {
    clock.tick(TICK);
    const rt = await syncer.sync();
    assert.equal([rt.kind, rt.verified, rt.followUp], ['ok', budget, undefined], `tick ${t}: the budget's slice`);
  }
  assert.is(new Set(kernel.readKeys).size, n, 'the whole table in ceil(N / budget) ticks');
  assert.ok(ticks * TICK > INTERVAL, 'longer than the interval');
  const said = lines.find((l) => l.op === 'verify');
  assert.equal([said?.slice, said?.passS], [budget, Math.round((ticks * TICK) / 1000)], 'the operator is told how long a pass takes');
  assert.is(kernel.reads.dump, 1, 'no full read-back');
});

test('a slice larger than VERIFY_CHUNK is read a chunk per sync, back to back; a change goes between two chunks', async () => {
  const n = 3_000;
  const { kernel, clock, state, syncer } = setup(n);
  await syncer.sync();
  const size = verifySliceSize(n, TICK, INTERVAL);
  assert.ok(size > VERIFY_CHUNK && size <= 2 * VERIFY_CHUNK, `two chunks: ${size}`);
  clock.tick(TICK);
  const r1 = await syncer.sync();
  assert.equal([r1.kind, r1.read, r1.verified, r1.followUp], ['ok', VERIFY_CHUNK, VERIFY_CHUNK, 'verify'], 'the first chunk; the rest asked for at once');
  // A change marked while the chunk was read: its sync reads it alone, the rest of the slice follows.
  state.plan = plan(n, (i, x) => (i === 100 ? { ...x, realServers: [rs(`10.0.${i}.1`, 8080), rs(`10.0.${i}.7`, 8080)] } : x));
  const r2 = await syncer.sync();
  assert.equal([r2.read, r2.verified, r2.followUp], [1, undefined, 'verify'], 'the change first, alone');
  const r3 = await syncer.sync();
  assert.equal([r3.read, r3.verified, r3.followUp], [size - VERIFY_CHUNK, size - VERIFY_CHUNK, undefined], 'the rest of the slice; the tick is done');
  const r4 = await syncer.sync();
  assert.equal([r4.read, r4.verified], [VERIFY_CHUNK, VERIFY_CHUNK], 'a sync asked for with nothing changed reads the next slice early, a chunk of it');
  // Every service is read once per interval all the same (the tick's rhythm moves per slice).
  kernel.readKeys = [];
  for (let t = 0; t < INTERVAL; t += 1_000) {
    clock.tick(1_000);
    let r = await syncer.sync();
    while (r.followUp === 'verify') r = await syncer.sync();
  }
  assert.is(new Set(kernel.readKeys).size, n, 'the whole table in one interval');
  assert.is(kernel.reads.dump, 1, 'no full read-back');
});

test.run();
