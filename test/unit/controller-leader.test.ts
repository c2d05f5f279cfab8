// Lease leader election on the in-memory API with a manual clock: one leader at every instant,
// a leader that cannot renew steps down before the lease can be taken over, and a graceful stop
// hands over at the standby's next retry.
import pino from 'pino';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ManualClock, settle } from '../../kube/clock.ts';
import type { KubeApi } from '../../kube/api.ts';
import { FakeKubeApi, partitionable } from '../../kube/testing/fake.ts';
import { LEASES, type KubeObject } from '../../kube/types.ts';
import { LeaderElector } from '../../kube/leader.ts';

const test = suite('controller: leader election');
const CFG = { namespace: 'lvs-system', name: 'lvs-operator', leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 };

function elector(api: KubeApi, clock: ManualClock, identity: string, log: string[]) {
  const stop = new AbortController();
  const e = new LeaderElector({
    ...CFG, api, clock, identity, logger: pino({ level: 'silent' }), random: () => 0,
    onStartedLeading: () => log.push(`${clock.now()} ${identity} +`),
    onStoppedLeading: async () => { log.push(`${clock.now()} ${identity} -`); },
  });
  const running = e.run(stop.signal);
  return { e, stop: async () => { stop.abort(); await running; } };
}

/** A fake API and candidate 'a', which leads once the first attempt has settled. */
async function firstLeader() {
  const clock = new ManualClock();
  const fake = new FakeKubeApi(() => clock.now());
  const log: string[] = [];
  const a = elector(fake, clock, 'a', log);
  await settle();
  return { clock, fake, log, a };
}

const holder = (api: FakeKubeApi) => api.peek<KubeObject & { spec?: { holderIdentity?: string } }>(LEASES, CFG.namespace, CFG.name)?.spec?.holderIdentity;

/** Advances in small steps, asserting there is never more than one leader. */
async function run(clock: ManualClock, ms: number, electors: Array<{ e: LeaderElector }>, step = 250): Promise<void> {
  for (let t = 0; t < ms; t += step) {
    await clock.advance(step);
    assert.ok(electors.filter((x) => x.e.isLeader()).length <= 1, `two leaders at ${clock.now()}`);
  }
}

test('the first candidate leads and renews; the second stays a standby', async () => {
  const { clock, fake, log, a } = await firstLeader();
  assert.ok(a.e.isLeader());
  const b = elector(fake, clock, 'b', log);
  await run(clock, 60_000, [a, b]);
  assert.ok(a.e.isLeader());
  assert.not.ok(b.e.isLeader());
  assert.is(holder(fake), 'a');
  assert.ok(fake.count('replace', 'leases') >= 25, 'renewed every retry period');
  await b.stop();
  await a.stop();
});

test('a partitioned leader steps down within renewDeadline; the standby takes over only after the lease expires', async () => {
  const clock = new ManualClock();
  const fake = new FakeKubeApi(() => clock.now());
  const log: string[] = [];
  const net = partitionable(fake);
  const a = elector(net.api, clock, 'a', log);
  await settle();
  const b = elector(fake, clock, 'b', log);
  await run(clock, 4_000, [a, b]);
  const cutAt = clock.now();
  net.cut(true);
  await run(clock, 30_000, [a, b]);
  const down = log.find((l) => l.endsWith('a -'));
  const up = log.find((l) => l.endsWith('b +'));
  assert.ok(down && up, log.join('\n'));
  const downAt = Number(down.split(' ')[0]), upAt = Number(up.split(' ')[0]);
  assert.ok(downAt - cutAt <= CFG.renewDeadlineMs + CFG.retryPeriodMs, `a stepped down ${downAt - cutAt} ms after the cut`);
  assert.ok(upAt > downAt, 'never two leaders');
  assert.ok(upAt - cutAt >= CFG.leaseDurationMs - CFG.retryPeriodMs, `b took over ${upAt - cutAt} ms after the cut: not before the lease ran out`);
  assert.is(holder(fake), 'b');
  // The network comes back: a stays a standby behind b's live lease.
  net.cut(false);
  await run(clock, 20_000, [a, b]);
  assert.ok(b.e.isLeader());
  assert.not.ok(a.e.isLeader());
  await a.stop();
  await b.stop();
});

test('graceful stop releases the lease: the standby leads at its next retry, not after the lease duration', async () => {
  const { clock, fake, log, a } = await firstLeader();
  const b = elector(fake, clock, 'b', log);
  await run(clock, 5_000, [a, b]);
  const stoppedAt = clock.now();
  await a.stop();
  assert.is(holder(fake), undefined, 'released');
  assert.not.ok(a.e.isLeader());
  await run(clock, 3_000, [a, b]);
  assert.ok(b.e.isLeader());
  const up = Number(log.find((l) => l.endsWith('b +'))!.split(' ')[0]);
  assert.ok(up - stoppedAt <= CFG.retryPeriodMs, `hand-over took ${up - stoppedAt} ms`);
  await b.stop();
});

test('inconsistent timings are refused', () => {
  const clock = new ManualClock();
  const base = { api: new FakeKubeApi(), clock, identity: 'x', logger: pino({ level: 'silent' }), onStartedLeading() {}, async onStoppedLeading() {} };
  assert.throws(() => new LeaderElector({ ...base, ...CFG, renewDeadlineMs: 15_000 }), /renewDeadline must be shorter than leaseDuration/);
  assert.throws(() => new LeaderElector({ ...base, ...CFG, retryPeriodMs: 10_000 }), /retryPeriod must be shorter than renewDeadline/);
});

test('a renewal is one write, no read; a lease someone else wrote meanwhile is read and lost', async () => {
  const { clock, fake, log, a } = await firstLeader();
  assert.ok(a.e.isLeader());
  const gets = fake.count('get', 'leases'), writes = fake.count('replace', 'leases');
  await run(clock, 20_000, [a]);
  assert.is(fake.count('get', 'leases'), gets, 'renewals read nothing');
  assert.ok(fake.count('replace', 'leases') - writes >= 9, 'renewed every retry period');
  // Someone else takes the lease (an admin's edit, a candidate with a skewed view): the leader's
  // next conditional write conflicts, it reads the lease, sees another live holder and steps down.
  const lease = fake.peek<KubeObject & { spec: Record<string, unknown> }>(LEASES, CFG.namespace, CFG.name)!;
  fake.apply(LEASES, { ...lease, spec: { ...lease.spec, holderIdentity: 'x' } });
  await run(clock, 3_000, [a]);
  assert.not.ok(a.e.isLeader());
  assert.ok(log.some((l) => l.endsWith('a -')), log.join('\n'));
  assert.is(holder(fake), 'x', 'the other holder\'s lease is left alone');
  await a.stop();
});

test.run();
