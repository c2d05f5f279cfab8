// The loop driver on a manual clock: rate limit, coalescing, backoff, drain polling, resync.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { PlanService } from '../../api/plan.ts';
import { FakeIpvsKernel } from '../../dataplane/ipvs/testing/fake.ts';
import type { IpvsServiceState } from '../../dataplane/ipvs/types.ts';
import { createSyncLoop, type SyncLoopOptions } from '../../dataplane/sync/loop.ts';
import type { SyncResult } from '../../dataplane/sync/sync.ts';
import { ManualClock, captureLog, planService, rs } from '../lib/sync-fixtures.ts';

const test = suite('sync: loop');
const WEB = 'TCP/203.0.113.10:80';

function setup(plan: PlanService[], over: Partial<SyncLoopOptions> = {}) {
  const kernel = (over.kernel as FakeIpvsKernel | undefined) ?? new FakeIpvsKernel();
  const clock = new ManualClock(0);
  const state = { plan };
  const runs: Array<{ at: number; result: SyncResult }> = [];
  const loop = createSyncLoop({
    kernel, node: 'node-a', plan: () => state.plan, log: captureLog().log, clock,
    minIntervalMs: 1_000, resyncIntervalMs: 30_000, drainTimeoutMs: 120_000, drainPollMs: 5_000,
    onResult: (result) => runs.push({ at: clock.now(), result }),
    ...over,
  });
  const elapse = (ms: number) => clock.elapse(ms, () => loop.idle());
  return { kernel, clock, state, runs, loop, elapse };
}

test('start syncs at once; a verify tick repairs an outside edit without any event or full read-back', async () => {
  const { kernel, loop, runs, elapse } = setup([planService()]);
  loop.start();
  await elapse(0);
  assert.equal(runs.map((r) => [r.at, r.result.kind]), [[0, 'ok']]);
  assert.is(loop.nextRunAt, 5_000, 'the next verify tick (default max(minIntervalMs, 5 s))');
  const svc = kernel.snapshot()[0]!.service;
  await kernel.deleteDestination(svc, { family: 4, address: '10.0.0.1', port: 8080 });
  await elapse(4_999);
  assert.is(kernel.snapshot()[0]!.destinations.length, 1);
  await elapse(1);
  assert.is(kernel.snapshot()[0]!.destinations.length, 2);
  assert.equal([runs.at(-1)!.result.read, runs.at(-1)!.result.verified], [1, 1], 'a partial sync of its verify slice');
  assert.is(kernel.reads.dump, 1, 'only the first sync dumped');
  await loop.stop();
});

test('a burst of marks is rate-limited into one sync, which sees the latest plan', async () => {
  const { kernel, loop, runs, state, elapse } = setup([planService()]);
  loop.start();
  await elapse(100);
  for (let w = 2; w <= 10; w++) {
    state.plan = [planService({ realServers: [rs('10.0.0.1', 8080, { weight: w })] })];
    loop.markDirty();
    await elapse(50);
  }
  await elapse(2_000);
  assert.equal(runs.map((r) => r.at), [0, 1_000]);
  assert.is(kernel.snapshot()[0]!.destinations[0]!.weight, 10);
  await loop.stop();
});

test('by default a mark syncs at once, and marks during a sync go into one more that starts when it ends', async () => {
  let release: () => void = () => {};
  let gate: Promise<void> | undefined;
  class GatedKernel extends FakeIpvsKernel {
    override async applyBatch(ops: Parameters<FakeIpvsKernel['applyBatch']>[0]): ReturnType<FakeIpvsKernel['applyBatch']> {
      if (gate) await gate;
      return super.applyBatch(ops);
    }
  }
  const kernel = new GatedKernel();
  const { loop, runs, state, clock, elapse } = setup([planService()], { kernel, minIntervalMs: undefined, verifyTickMs: 60_000 });
  loop.start();
  await elapse(100);
  const weight = (w: number) => { state.plan = [planService({ realServers: [rs('10.0.0.1', 8080, { weight: w })] })]; loop.markDirty(); };
  weight(2);
  await elapse(0);
  assert.equal(runs.map((r) => r.at), [0, 100], 'no gap after the first sync');
  assert.is(kernel.snapshot()[0]!.destinations[0]!.weight, 2);
  gate = new Promise((r) => { release = r; });
  clock.tick(30);
  weight(3);
  clock.tick(0);
  await new Promise((r) => setImmediate(r)); // this sync now waits inside its write
  for (let w = 4; w <= 9; w++) { clock.tick(10); weight(w); }
  clock.tick(40);
  gate = undefined;
  release();
  await loop.idle();
  await elapse(0);
  assert.equal(runs.map((r) => r.at), [0, 100, 230, 230], 'the marks made during the sync: one more, as soon as it ended');
  assert.is(kernel.snapshot()[0]!.destinations[0]!.weight, 9);
  await loop.stop();
});

test('marks during a running sync are coalesced into exactly one more', async () => {
  let release: () => void = () => {};
  let gate: Promise<void> | undefined;
  class GatedKernel extends FakeIpvsKernel {
    override async dump(): Promise<IpvsServiceState[]> {
      if (gate) await gate;
      return super.dump();
    }
  }
  const kernel = new GatedKernel();
  // Verify ticks far apart: only the coalesced follow-up is counted here.
  const { loop, runs, clock } = setup([planService()], { kernel, verifyTickMs: 60_000 });
  gate = new Promise((r) => { release = r; });
  loop.start();
  clock.tick(0);
  await new Promise((r) => setImmediate(r)); // the sync is now blocked inside dump()
  loop.markDirty();
  loop.markDirty();
  clock.tick(5_000);
  loop.markDirty();
  gate = undefined;
  release();
  await loop.idle();
  assert.equal(runs.map((r) => `${r.at} ${r.result.kind}`), ['5000 ok']);
  await clock.elapse(10_000, () => loop.idle());
  assert.equal(runs.map((r) => r.at), [5_000, 5_000], 'one follow-up, at once: the rate limit counts from the first start');
  await loop.stop();
});

test('failures back off exponentially; a mark does not wait out the backoff', async () => {
  const { kernel, loop, runs, elapse } = setup([planService()], { backoff: { initialMs: 1_000, maxMs: 8_000 } });
  kernel.fail('dump', 'ENOBUFS');
  loop.start();
  await elapse(20_000);
  assert.equal(runs.map((r) => r.at), [0, 1_000, 3_000, 7_000, 15_000]);
  assert.is(loop.nextRunAt, 23_000);
  kernel.clearFailures();
  loop.markDirty();
  await elapse(1_000);
  assert.equal(runs.map((r) => `${r.at} ${r.result.kind}`).slice(-1), ['20000 ok']);
  assert.is(loop.nextRunAt, 25_000, 'back to verify ticks');
  await loop.stop();
});

test('while a destination drains, the loop re-reads the kernel and deletes it once idle', async () => {
  const { kernel, loop, runs, state, elapse } = setup([planService()]);
  loop.start();
  await elapse(0);
  kernel.setConnections(WEB, '10.0.0.1:8080', { active: 2 });
  state.plan = [planService({ realServers: [rs('10.0.0.2', 8080)] })];
  loop.markDirty();
  await elapse(1_000);
  assert.equal(runs.map((r) => r.result.kind), ['ok', 'drainPending']);
  assert.is(loop.nextRunAt, 6_000);
  await elapse(7_000);
  assert.is(kernel.snapshot()[0]!.destinations.length, 2, 'still busy');
  kernel.setConnections(WEB, '10.0.0.1:8080', { active: 0 });
  await elapse(5_000);
  assert.equal(kernel.snapshot()[0]!.destinations.map((d) => d.address), ['10.0.0.2']);
  assert.is(runs.at(-1)!.result.kind, 'ok');
  await loop.stop();
});

test('stop: no sync after it, even when marked', async () => {
  const { loop, runs, elapse } = setup([planService()]);
  loop.start();
  await elapse(0);
  await loop.stop();
  loop.markDirty();
  await elapse(100_000);
  assert.is(runs.length, 1);
  assert.is(loop.nextRunAt, undefined);
});

test.run();
