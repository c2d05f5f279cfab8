// A step of the wall clock (NTP, `date -s`) must not end every drain at once nor cost leadership:
// durations are measured on the monotonic clock, wall time only stamps what is written to the API.
// Date.now is stepped here by hours while the real monotonic clock (CLOCK_MONOTONIC) is not.

import pino from 'pino';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { FakeIpvsKernel } from '../../dataplane/ipvs/testing/fake.ts';
import { createSyncer } from '../../dataplane/sync/sync.ts';
import { ManualClock, realClock, settle } from '../../kube/clock.ts';
import { FakeKubeApi } from '../../kube/testing/fake.ts';
import { LEASES, type KubeObject } from '../../kube/types.ts';
import { LeaderElector } from '../../kube/leader.ts';
import { captureLog, planService, rs } from '../lib/sync-fixtures.ts';

const test = suite('clock: wall-clock steps');
const HOURS = 3 * 3600_000;
const realDateNow = Date.now;

/** Runs fn with Date.now (the wall clock) stepped by ms; monotonic time goes on as it was. */
async function withWallStep<T>(ms: number, fn: () => Promise<T>): Promise<T> {
  Date.now = () => realDateNow() + ms;
  try {
    return await fn();
  } finally {
    Date.now = realDateNow;
  }
}

test('the real clock: now() ignores a wall-clock step, wallNow() follows it', async () => {
  const before = realClock.now();
  await withWallStep(HOURS, async () => {
    assert.ok(realClock.now() - before < 60_000, 'monotonic time did not jump');
    assert.ok(realClock.wallNow() - realDateNow() > HOURS - 60_000, 'wall time did');
  });
});

test('a drain on the default (real) clock survives a wall-clock step of hours', async () => {
  const kernel = new FakeIpvsKernel();
  const state = { plan: [planService()] };
  const syncer = createSyncer({ kernel, node: 'node-a', plan: () => state.plan, log: captureLog().log, drainTimeoutMs: 60_000 });
  await syncer.sync();
  kernel.setConnections('TCP/203.0.113.10:80', '10.0.0.1:8080', { active: 40 });
  state.plan = [planService({ realServers: [rs('10.0.0.2', 8080)] })];
  assert.is((await syncer.sync()).kind, 'drainPending');
  for (const step of [HOURS, -HOURS]) {
    const r = await withWallStep(step, () => syncer.sync());
    assert.is(r.kind, 'drainPending', `step ${step}: the drain must not end at once`);
    const dests = kernel.snapshot()[0]!.destinations.map((d) => `${d.address} w=${d.weight}`).sort();
    assert.equal(dests, ['10.0.0.1 w=0', '10.0.0.2 w=1']);
  }
});

test('leadership on the real clock survives a wall-clock step; the standby does not take over', async () => {
  const api = new FakeKubeApi();
  const cfg = { namespace: 'lvs-system', name: 'lvs-operator', leaseDurationMs: 1_500, renewDeadlineMs: 1_000, retryPeriodMs: 100 };
  const make = (identity: string) => new LeaderElector({
    ...cfg, api, clock: realClock, identity, logger: pino({ level: 'silent' }), random: () => 0,
    onStartedLeading: () => undefined, onStoppedLeading: async () => undefined,
  });
  const a = make('a'), b = make('b');
  const stop = new AbortController();
  const running = [a.run(stop.signal)];
  await realClock.sleep(50);
  running.push(b.run(stop.signal));
  await realClock.sleep(250);
  assert.ok(a.isLeader());
  try {
    await withWallStep(HOURS, async () => {
      assert.ok(a.isLeader(), 'a forward step must not look like a missed renew deadline');
      await realClock.sleep(400);
      assert.ok(a.isLeader());
      assert.not.ok(b.isLeader(), 'a forward step must not expire the lease for the standby');
    });
    await withWallStep(-HOURS, async () => {
      await realClock.sleep(300);
      assert.ok(a.isLeader());
      assert.not.ok(b.isLeader());
    });
  } finally {
    stop.abort();
    await Promise.all(running);
  }
});

test('manual clock: leases renew on monotonic time and stamp renewTime with wall time', async () => {
  const clock = new ManualClock();
  const api = new FakeKubeApi(() => clock.wallNow());
  const e = new LeaderElector({
    namespace: 'ns', name: 'l', leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000,
    api, clock, identity: 'a', logger: pino({ level: 'silent' }), random: () => 0,
    onStartedLeading: () => undefined, onStoppedLeading: async () => undefined,
  });
  const stop = new AbortController();
  const running = e.run(stop.signal);
  await settle();
  assert.ok(e.isLeader());
  clock.stepWall(HOURS);
  await clock.advance(2_000);
  assert.ok(e.isLeader());
  const renew = api.peek<KubeObject & { spec?: { renewTime?: string } }>(LEASES, 'ns', 'l')?.spec?.renewTime;
  assert.is(Date.parse(renew!), clock.wallNow());
  stop.abort();
  await clock.advance(0);
  await running;
});

test.run();
