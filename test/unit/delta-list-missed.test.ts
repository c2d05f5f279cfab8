// A stage that missed a list (a call between threw, so it never saw it) is handed the next one,
// which AlternatingList wrote into the very array the stage kept (dataplane/delta-list.ts). The
// kept array now holds the new entries: compared with itself it looks unchanged. Each consumer
// that keeps a list (desiredState's memo, MappedList, the agent's health stage) must notice the
// rewrite and rebuild, never pass on what it built from the old entries.
import pino from 'pino';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { PlanService } from '../../api/plan.ts';
import { MappedList } from '../../dataplane/cluster/plan-list.ts';
import { AlternatingList, rewrites } from '../../dataplane/delta-list.ts';
import { createAgentHealth } from '../../dataplane/health/agent-health.ts';
import { withHealth } from '../../dataplane/health/targets.ts';
import { desiredState, type DesiredMemo } from '../../dataplane/sync/desired.ts';
import { ManualClock } from '../../kube/clock.ts';
import { planService, rs } from '../lib/sync-fixtures.ts';

const test = suite('delta list: a consumer that missed a list rebuilds');

const entry = (i: number, gen: number): PlanService => planService({
  key: `TCP/203.0.113.${i}:80`, vip: `203.0.113.${i}`, owner: { namespace: 'default', name: `web-${i}`, generation: gen },
  directors: ['n1'], realServers: [rs(`10.0.${i}.1`, 8080), rs(`10.0.${i}.${2 + gen}`, 8080)],
});

type Staged2 = { list: readonly PlanService[]; delta: { from: readonly PlanService[]; at: readonly number[] } };

/** L0 (seen by the consumer), then L1 (the list it misses), then L2, which lands in L0's array. */
function missedOne(see: (l0: readonly PlanService[]) => void): Staged2 {
  const lists = new AlternatingList<PlanService>();
  const l0 = lists.whole(Array.from({ length: 6 }, (_, i) => entry(i, 1))).list;
  see(l0);
  const l1 = lists.patch(l0, [1], (i) => entry(i, 2)).list;
  const l2 = lists.patch(l1, [4], (i) => entry(i, 3));
  // The premise: L2 was written into L0's array.
  assert.ok(l2.list === l0 && l2.delta !== undefined, 'L2 reuses the array L0 was in');
  return l2 as Staged2;
}

test('rewrites() counts the writes into an array given out again, and only those', () => {
  const lists = new AlternatingList<number>();
  const a = lists.whole([1, 2, 3]).list;
  const b = lists.patch(a, [0], () => 9).list;
  assert.equal([rewrites(a), rewrites(b)], [0, 0], 'a copy is a new array');
  const c = lists.patch(b, [1], () => 8).list;
  assert.equal([c === a, rewrites(a), rewrites(b)], [true, 1, 0]);
  lists.patch(c, [2], () => 7);
  assert.equal([rewrites(a), rewrites(b)], [1, 1]);
});

test('desiredState: after a missed plan, the plan in the kept array is built, not taken for the last one', () => {
  const memo: DesiredMemo = {};
  const l2 = missedOne((l0) => desiredState(l0, 'n1', [], memo));
  const got = desiredState(l2.list, 'n1', [], memo, l2.delta);
  assert.equal(got.services, desiredState(l2.list.slice(), 'n1').services);
  assert.equal(got.services.map((s) => s.destinations.map((d) => d.address).join()), [0, 1, 2, 3, 4, 5].map((i) => `10.0.${i}.1,10.0.${i}.${i === 1 ? 4 : i === 4 ? 5 : 3}`).sort());
});

test('MappedList: after a missed input, the input in the kept array is mapped again', () => {
  const mapped = new MappedList((s: PlanService, _d: null) => s.realServers.map((x) => x.address).join());
  const l2 = missedOne((l0) => mapped.map({ list: l0 }, null));
  const got = mapped.map(l2, null);
  assert.equal(got.list, l2.list.map((s) => s.realServers.map((x) => x.address).join()));
});

test('health: after a missed plan, the plan in the kept array is applied whole', () => {
  const health = createAgentHealth({ node: 'n1', clock: new ManualClock(), log: pino({ level: 'silent' }), onChange: () => {}, checker: async () => ({ ok: true, message: 'ok' }) });
  try {
    const l2 = missedOne((l0) => health.apply(l0));
    const got = health.apply(l2.list, l2.delta);
    assert.equal(got, withHealth(l2.list, 'n1', (id) => health.monitor.health(id)));
  } finally { health.close(); }
});

test.run();
